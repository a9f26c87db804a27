//! Detection: read everything first, then evaluate. Any read failure fails the whole
//! detection; nothing downstream acts on a half-read state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::MarkerStore;
use keyward_shared::redact::Redactor;
use keyward_shared::vercel_ledger::{Ledger, ledger_key};
use serde::{Deserialize, Serialize};

use crate::DriftError;
use crate::account::{Account, Calls, policies_of, replication_of};
use crate::findings::{Finding, Observed, Thresholds, evaluate};
use crate::native::{self, NativeChecks};
use crate::workload::{self, WorkloadCheck};

/// What a run looks at: the whole prefix, one service, or one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl DriftScope {
    pub fn covers(&self, prefix: &str, name: &str) -> bool {
        match (&self.secret, &self.service) {
            (Some(secret), _) => name == secret,
            (None, Some(service)) => name.starts_with(&format!("{prefix}{service}/")),
            (None, None) => name.starts_with(prefix),
        }
    }
}

/// One organisation's environment: the secrets under `/<org>/<environment>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estate<'a> {
    pub org: &'a str,
    pub environment: &'a str,
}

impl<'a> Estate<'a> {
    /// The estate a secret prefix (`/<org>/<env>/`, as configuration validated it) names.
    pub fn of_prefix(prefix: &'a str) -> Self {
        let mut parts = prefix.split('/').filter(|p| !p.is_empty());
        Self {
            org: parts.next().unwrap_or_default(),
            environment: parts.next().unwrap_or_default(),
        }
    }

    pub fn prefix(&self) -> String {
        format!("/{}/{}/", self.org, self.environment)
    }
}

/// How detection judges: the settings the detector and the gateway's verification share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionSettings {
    /// Read resource policies (`GetResourcePolicy` per secret).
    pub check_policies: bool,
    pub thresholds: Thresholds,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            check_policies: true,
            thresholds: Thresholds::default(),
        }
    }
}

/// Where the Vercel sync ledgers come from.
pub enum VercelLedgers<'a, M> {
    /// The state bucket vercel-sync writes: parity is checked.
    Read(&'a M),
    /// Parity is not checked (a local check, which has no deployed sync's ledgers).
    NotChecked,
}

/// One detection.
pub struct DetectionRequest<'a, M> {
    pub manifest: &'a Manifest,
    pub estate: Estate<'a>,
    pub scope: &'a DriftScope,
    pub settings: &'a DetectionSettings,
    pub ledgers: VercelLedgers<'a, M>,
    /// The Argo CD application to hold against the projections (`ENABLE_ARGOCD_CHECK`).
    pub workload: Option<&'a WorkloadCheck>,
    /// AWS Config's managed-rule verdicts (`ENABLE_NATIVE_CHECKS`).
    pub native: Option<&'a NativeChecks>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub findings: Vec<Finding>,
    pub secrets_listed: usize,
    pub declared: usize,
    pub calls: Calls,
}

/// Reads the estate (narrowed by the scope), then evaluates every rule.
pub async fn detect<A: Account, M: MarkerStore>(
    account: &A,
    request: DetectionRequest<'_, M>,
    redactor: &Redactor,
) -> Result<Detection, DriftError> {
    let prefix = request.estate.prefix();
    let scope = request.scope;
    let declared: Vec<_> = request
        .manifest
        .scope(request.estate.environment, None)
        .filter(|d| scope.covers(&prefix, &d.name.to_string()))
        .collect();
    let actual: Vec<_> = account
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|e| scope.covers(&prefix, &e.name))
        .collect();
    let arn_of = |name: &str| {
        actual
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.arn.clone())
    };
    let with_replicas: Vec<(String, String)> = declared
        .iter()
        .filter(|d| !d.governance.replicas.is_empty())
        .filter_map(|d| arn_of(&d.name.to_string()).map(|arn| (d.name.to_string(), arn)))
        .collect();
    let replication = replication_of(account, &with_replicas).await?;
    let policies = if request.settings.check_policies {
        let all: Vec<(String, String)> = actual
            .iter()
            .filter(|e| e.deleted.is_none())
            .map(|e| (e.name.clone(), e.arn.clone()))
            .collect();
        Some(policies_of(account, &all).await?)
    } else {
        None
    };
    let vercel_names = declared
        .iter()
        .filter(|d| d.governance.vercel.is_some())
        .map(|d| d.name.to_string());
    let ledgers = match request.ledgers {
        VercelLedgers::Read(state) => Some(read_ledgers(state, vercel_names, redactor).await?),
        VercelLedgers::NotChecked => None,
    };
    let workload = match request.workload {
        Some(check) => {
            let expected = workload::expected(request.manifest, request.estate, scope);
            // Argo CD is read only when the scope can hold a workload finding.
            if expected.is_empty() && !scope.covers(&prefix, &prefix) {
                Vec::new()
            } else {
                let observed = workload::read(check)
                    .await
                    .map_err(|e| DriftError::Workload(redactor.safe(&e.to_string())))?;
                workload::evaluate(
                    &observed,
                    &expected,
                    request.estate,
                    scope,
                    &check.namespace,
                )
            }
        }
        None => Vec::new(),
    };
    let native = match request.native {
        Some(native) => {
            let live: Vec<_> = actual.iter().filter(|e| e.deleted.is_none()).collect();
            native::findings(native, &live).await?
        }
        None => Vec::new(),
    };
    let observed = Observed {
        declared: declared.clone(),
        actual: &actual,
        replication: &replication,
        policies: policies.as_ref(),
        ledgers: ledgers.as_ref(),
    };
    let mut findings = evaluate(
        &observed,
        &prefix,
        request.now,
        &request.settings.thresholds,
    );
    findings.extend(workload);
    findings.extend(native);
    findings.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    Ok(Detection {
        findings,
        secrets_listed: actual.len(),
        declared: declared.len(),
        calls: account.calls(),
    })
}

/// The ledgers of the named secrets that have one.
async fn read_ledgers<M: MarkerStore>(
    state: &M,
    names: impl Iterator<Item = String>,
    redactor: &Redactor,
) -> Result<BTreeMap<String, Ledger>, DriftError> {
    let mut ledgers = BTreeMap::new();
    for name in names {
        let marker = state
            .get(&ledger_key(&name))
            .await
            .map_err(|e| DriftError::State(redactor.safe(&e.to_string())))?;
        if let Some(marker) = marker {
            // A damaged ledger reads as empty: every mapped variable shows as missing.
            ledgers.insert(name, serde_json::from_str(&marker.body).unwrap_or_default());
        }
    }
    Ok(ledgers)
}
