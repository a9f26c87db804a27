//! drift-detector: what runs against what was declared, on a schedule and on demand.
//!
//! One run ([`Detector::run`]):
//! 1. **Read everything first** ([`Detector::detect`]): the manifest CI wrote to S3 (a bad one
//!    fails the run before anything else happens), one `ListSecrets` walk of the stack's prefix,
//!    `DescribeSecret` only for secrets that declare replicas, `GetResourcePolicy` (bounded
//!    concurrency) when policy checks are on, and the Vercel sync ledgers of mapped secrets.
//! 2. **Evaluate** the rules ([`findings::evaluate`]): pure, every finding with a stable
//!    fingerprint, severity and evidence.
//! 3. **Ticket** ([`Detector::ticket`]): one GitHub issue per fingerprint (opened, updated when
//!    its evidence changes, reopened if it comes back, never duplicated), an optional Jira issue
//!    (`ENABLE_JIRA_INTEGRATION`), an optional webhook notification of new findings
//!    (`ENABLE_DRIFT_NOTIFICATIONS`), and a `DriftDetected` event for each finding that is new or
//!    changed (state markers `drift/seen/<sha256(fingerprint)>` remember what was reported).
//!
//! The remediation lifecycle (pre-merge guard, post-merge verification) runs in the CI gateway
//! with [`remediation`] and [`Detector::detect`].

pub mod account;
pub mod findings;
pub mod remediation;
pub mod tickets;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyward_shared::adapters::http::{HttpClient, HttpRequest};
use keyward_shared::config::{
    CommonConfig, ConfigError, EnvSource, flag, https_or_loopback, parsed_or, required,
    s3_location, secret_prefix,
};
use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, SecretRef,
};
use keyward_shared::ports::{EventPublisher, MarkerStore};
use keyward_shared::redact::{Redactor, SafeText};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::{Account, AccountError, Calls, policies_of, replication_of};
use crate::findings::{Finding, Observed, Thresholds, evaluate};
use crate::tickets::{IssueTracker, Jira, TicketError, TrackedIssue, issue_text};

pub const SEEN_PREFIX: &str = "drift/seen/";

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_SECRET_PREFIX`: `/<org>/<env>/`, the secrets this stack governs.
    pub secret_prefix: String,
    /// `KEYWARD_MANIFEST_S3_URI`: `s3://<bucket>/<prefix>/`, where CI writes the manifest files
    /// and `enums.yaml`.
    pub manifest_bucket: String,
    pub manifest_prefix: String,
    /// `KEYWARD_STATE_BUCKET`: Vercel sync ledgers (read) and the reported-finding markers.
    pub state_bucket: String,
    /// `KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN`: `{"github_token", "jira_email",
    /// "jira_api_token", "webhook_url"}` (each optional). Without it: events only.
    pub credentials_secret_arn: Option<String>,
    /// `KEYWARD_DRIFT_GITHUB_REPO`: `owner/repo` of the drift issues.
    pub github_repo: Option<String>,
    /// `KEYWARD_GITHUB_API_URL` (default `https://api.github.com`).
    pub github_api_url: String,
    /// `ENABLE_JIRA_INTEGRATION`, `KEYWARD_JIRA_URL`, `KEYWARD_JIRA_PROJECT`.
    pub jira: Option<JiraConfig>,
    /// `ENABLE_DRIFT_NOTIFICATIONS`: post new findings to the credentials' `webhook_url`.
    pub notifications: bool,
    /// `KEYWARD_DRIFT_CHECK_POLICIES` (default true): read resource policies.
    pub check_policies: bool,
    /// `KEYWARD_DRIFT_UNUSED_DAYS` (default 90).
    pub unused_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraConfig {
    pub base_url: String,
    pub project: String,
}

fn url_var(
    env: &dyn EnvSource,
    name: &'static str,
    default: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match env
        .get(name)
        .filter(|v| !v.is_empty())
        .or(default.map(str::to_owned))
    {
        Some(url) if https_or_loopback(&url) => Ok(Some(url.trim_end_matches('/').to_owned())),
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "must be an https:// URL (plain http only on 127.0.0.1)".into(),
        }),
        None => Ok(None),
    }
}

/// `KEYWARD_DRIFT_UNUSED_DAYS` (default 90, at least 1).
pub fn unused_days(env: &dyn EnvSource) -> Result<i64, ConfigError> {
    let days: i64 = parsed_or(env, "KEYWARD_DRIFT_UNUSED_DAYS", 90)?;
    if days < 1 {
        return Err(ConfigError::Invalid {
            name: "KEYWARD_DRIFT_UNUSED_DAYS",
            reason: format!("{days} is not a number of days (at least 1)"),
        });
    }
    Ok(days)
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let secret_prefix = secret_prefix(env, "KEYWARD_SECRET_PREFIX")?;
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        let jira = if flag(env, "ENABLE_JIRA_INTEGRATION", false)? {
            Some(JiraConfig {
                base_url: url_var(env, "KEYWARD_JIRA_URL", None)?
                    .ok_or(ConfigError::Missing("KEYWARD_JIRA_URL"))?,
                project: required(env, "KEYWARD_JIRA_PROJECT")?,
            })
        } else {
            None
        };
        let credentials_secret_arn = env
            .get("KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN")
            .filter(|v| !v.is_empty());
        let github_repo = env
            .get("KEYWARD_DRIFT_GITHUB_REPO")
            .filter(|v| !v.is_empty());
        if let Some(repo) = &github_repo
            && repo.split('/').filter(|p| !p.is_empty()).count() != 2
        {
            return Err(ConfigError::Invalid {
                name: "KEYWARD_DRIFT_GITHUB_REPO",
                reason: format!("`{repo}` is not owner/repo"),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            secret_prefix,
            manifest_bucket,
            manifest_prefix,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            credentials_secret_arn,
            github_repo,
            github_api_url: url_var(
                env,
                "KEYWARD_GITHUB_API_URL",
                Some("https://api.github.com"),
            )?
            .unwrap_or_default(),
            jira,
            notifications: flag(env, "ENABLE_DRIFT_NOTIFICATIONS", false)?,
            check_policies: flag(env, "KEYWARD_DRIFT_CHECK_POLICIES", true)?,
            unused_days: unused_days(env)?,
        })
    }

    pub fn environment(&self) -> &str {
        self.secret_prefix.split('/').nth(2).unwrap_or_default()
    }
}

/// The credentials secret.
#[derive(Default)]
pub struct Credentials {
    pub github_token: Option<SecretString>,
    pub jira_email: Option<String>,
    pub jira_api_token: Option<SecretString>,
    pub webhook_url: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
#[error("the drift credentials secret {0}")]
pub struct CredentialsError(&'static str);

pub fn credentials_from_secret(
    text: &str,
    redactor: &Redactor,
) -> Result<Credentials, CredentialsError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        github_token: Option<String>,
        jira_email: Option<String>,
        jira_api_token: Option<String>,
        webhook_url: Option<String>,
    }
    // serde quotes input in its messages, and the input is a secret.
    let raw: Raw = serde_json::from_str(text).map_err(|_| {
        CredentialsError(
            "is not JSON with only github_token, jira_email, jira_api_token and webhook_url",
        )
    })?;
    let secret = |v: Option<String>| {
        v.filter(|s| !s.trim().is_empty()).map(|s| {
            let s = SecretString::from(s);
            redactor.register(&s);
            s
        })
    };
    let creds = Credentials {
        github_token: secret(raw.github_token),
        jira_email: raw.jira_email,
        jira_api_token: secret(raw.jira_api_token),
        webhook_url: secret(raw.webhook_url),
    };
    if creds
        .webhook_url
        .as_ref()
        .is_some_and(|u| !https_or_loopback(u.expose_secret()))
    {
        return Err(CredentialsError(
            "has a webhook_url that is not an https:// URL",
        ));
    }
    Ok(creds)
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Nothing was ticketed: a run never acts on a half-read state.
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("ticketing: {0}")]
    Tickets(#[from] TicketError),
    #[error("state: {0}")]
    State(SafeText),
    #[error("publishing drift events: {0}")]
    Publish(SafeText),
}

impl DriftError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::Account(AccountError::Manifest(_)) => "ManifestError",
            Self::Account(AccountError::Aws { .. }) => "SecretsManagerError",
            Self::Tickets(_) => "TicketingError",
            Self::State(_) => "StateError",
            Self::Publish(_) => "PublishError",
        }
    }
}

impl From<DriftError> for lambda_runtime::Diagnostic {
    fn from(error: DriftError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.kind().to_owned(),
            error_message: keyward_shared::redact::error_chain(&error),
        }
    }
}

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
    fn covers(&self, prefix: &str, name: &str) -> bool {
        match (&self.secret, &self.service) {
            (Some(secret), _) => name == secret,
            (None, Some(service)) => name.starts_with(&format!("{prefix}{service}/")),
            (None, None) => name.starts_with(prefix),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub findings: Vec<Finding>,
    pub secrets_listed: usize,
    pub declared: usize,
    pub calls: Calls,
    /// The manifest's environments (the gateway checks a PR's `Environment` against them).
    #[serde(skip)]
    pub environments: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TicketReport {
    pub opened: Vec<u64>,
    pub updated: Vec<u64>,
    pub reopened: Vec<u64>,
    pub unchanged: usize,
    pub jira_created: Vec<String>,
    pub events: usize,
    pub notified: usize,
    /// Open drift issues whose finding this run did not see (left for the post-merge check).
    pub no_longer_detected: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub findings: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub secrets_listed: usize,
    pub declared: usize,
    pub calls: Calls,
    pub tickets: TicketReport,
}

pub struct Detector<A, G, J, M, P> {
    pub account: A,
    pub github: Option<G>,
    pub jira: Option<J>,
    pub state: M,
    pub publisher: P,
    pub http: HttpClient,
    pub webhook_url: Option<SecretString>,
    pub secret_prefix: String,
    pub thresholds: Thresholds,
    pub check_policies: bool,
    pub redactor: Redactor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDemand {
    scope: DriftScope,
}

impl<A, G, J, M, P> Detector<A, G, J, M, P>
where
    A: Account,
    G: IssueTracker,
    J: Jira,
    M: MarkerStore,
    P: EventPublisher,
{
    /// A scheduled event: the whole prefix. `{"scope": {"service"?, "secret"?}}`: on demand.
    pub async fn handle(&self, payload: &str) -> Result<RunReport, DriftError> {
        let scope = input_scope(payload)?;
        let result = self.run(&scope, Utc::now()).await;
        match &result {
            Ok(r) => tracing::info!(
                findings = r.findings,
                opened = r.tickets.opened.len(),
                updated = r.tickets.updated.len(),
                "drift run"
            ),
            Err(e) => tracing::error!(kind = e.kind(), error = %e, "drift run failed"),
        }
        result
    }

    pub async fn run(
        &self,
        scope: &DriftScope,
        now: DateTime<Utc>,
    ) -> Result<RunReport, DriftError> {
        // The counter lives as long as the sandbox: report this run's calls only.
        let before = self.account.calls();
        let detection = self.detect(scope, now).await?;
        let tickets = self.ticket(&detection.findings, scope).await?;
        let mut by_kind = BTreeMap::new();
        for f in &detection.findings {
            *by_kind.entry(f.kind.slug().to_owned()).or_insert(0) += 1;
        }
        Ok(RunReport {
            findings: detection.findings.len(),
            by_kind,
            secrets_listed: detection.secrets_listed,
            declared: detection.declared,
            calls: self.account.calls().since(&before),
            tickets,
        })
    }

    /// Reads everything, then evaluates. Any read failure fails the whole detection.
    pub async fn detect(
        &self,
        scope: &DriftScope,
        now: DateTime<Utc>,
    ) -> Result<Detection, DriftError> {
        detect_in(
            &self.account,
            &self.state,
            &self.secret_prefix,
            scope,
            self.check_policies,
            &self.thresholds,
            &self.redactor,
            now,
        )
        .await
    }

    /// Issues, Jira, notifications and events for the findings of one detection.
    pub async fn ticket(
        &self,
        findings: &[Finding],
        scope: &DriftScope,
    ) -> Result<TicketReport, DriftError> {
        let mut report = TicketReport::default();
        let existing: BTreeMap<String, TrackedIssue> = match &self.github {
            Some(github) => github
                .drift_issues()
                .await?
                .into_iter()
                .map(|i| (i.fingerprint.clone(), i))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut events = Vec::new();
        let mut new_findings = Vec::new();
        let mut reported: Vec<(String, String)> = Vec::new();
        for finding in findings {
            let evidence_hash = hex::encode(Sha256::digest(
                serde_json::to_string(&finding.evidence)
                    .unwrap_or_default()
                    .as_bytes(),
            ));
            let seen_key = format!(
                "{SEEN_PREFIX}{}",
                hex::encode(Sha256::digest(finding.fingerprint.as_bytes()))
            );
            let seen = self
                .state
                .get(&seen_key)
                .await
                .map_err(|e| DriftError::State(self.redactor.safe(&e.to_string())))?;
            let changed = seen.as_ref().is_none_or(|m| m.body != evidence_hash);
            let tracked = existing.get(&finding.fingerprint);
            // Jira works with or without GitHub: an issue's body records its key; otherwise
            // it is looked up (by its fingerprint label) when the finding is new or changed.
            let jira_key = match (&self.jira, tracked.and_then(|t| jira_key_in(&t.body))) {
                (_, Some(key)) => Some(key),
                (Some(jira), None) if changed || self.github.is_some() => {
                    Some(match jira.find(&finding.fingerprint).await? {
                        Some(key) => key,
                        None => {
                            let key = jira.create(finding).await?;
                            report.jira_created.push(key.clone());
                            key
                        }
                    })
                }
                _ => None,
            };
            if let Some(github) = &self.github {
                let (title, body) = issue_text(finding, jira_key.as_deref());
                match tracked {
                    None => report.opened.push(github.open_issue(&title, &body).await?),
                    Some(t) if !t.open => {
                        github.update_issue(t.number, &body, true).await?;
                        github
                            .comment(
                                t.number,
                                "keyward found this drift again; the issue is reopened.",
                            )
                            .await?;
                        report.reopened.push(t.number);
                    }
                    Some(t) if t.body != body => {
                        github.update_issue(t.number, &body, false).await?;
                        report.updated.push(t.number);
                    }
                    Some(_) => report.unchanged += 1,
                }
            }
            // New = never reported, or reported and then verified fixed. Taken from the
            // markers (written only after a successful run), not from GitHub: a retry after
            // a failure still notifies what the failed run could not.
            if seen.as_ref().is_none_or(|m| m.body == "resolved") {
                new_findings.push(finding);
            }
            if changed {
                events.push(drift_event(finding));
                // Written only after the events are published (below): a run that fails before
                // publishing leaves the markers as they were, so its retry reports again.
                reported.push((seen_key, evidence_hash));
            }
        }
        for (fp, issue) in &existing {
            let in_scope = findings::Finding::secret_of(fp)
                .is_some_and(|s| scope.covers(&self.secret_prefix, s));
            if issue.open && in_scope && !findings.iter().any(|f| &f.fingerprint == fp) {
                report.no_longer_detected.push(issue.number);
            }
        }
        report.events = events.len();
        self.publisher
            .publish(&events)
            .await
            .map_err(|e| DriftError::Publish(self.redactor.safe(&e.to_string())))?;
        if let Some(url) = &self.webhook_url
            && !new_findings.is_empty()
        {
            let lines: Vec<String> = new_findings
                .iter()
                .map(|f| format!("• {:?} {} on {}", f.severity, f.kind.slug(), f.secret))
                .collect();
            let text = format!(
                "keyward drift: {} new finding(s)\n{}",
                new_findings.len(),
                lines.join("\n")
            );
            let request = HttpRequest::new(reqwest::Method::POST, url.expose_secret())
                .json(&serde_json::json!({"text": text}))
                .map_err(|e| {
                    DriftError::Tickets(TicketError {
                        service: "webhook",
                        operation: "notify",
                        reason: self.redactor.safe(&e.to_string()),
                    })
                })?;
            self.http.send(request).await.map_err(|e| {
                DriftError::Tickets(TicketError {
                    service: "webhook",
                    operation: "notify",
                    reason: self.redactor.safe(&e.to_string()),
                })
            })?;
            report.notified = new_findings.len();
        }
        for (key, hash) in reported {
            self.state
                .overwrite(&key, &hash)
                .await
                .map_err(|e| DriftError::State(self.redactor.safe(&e.to_string())))?;
        }
        Ok(report)
    }
}

/// Reads everything under `prefix` (narrowed by `scope`), then evaluates. Any read failure
/// fails the whole detection: nothing downstream acts on a half-read state.
#[allow(clippy::too_many_arguments)]
pub async fn detect_in<A: Account, M: MarkerStore>(
    account: &A,
    state: &M,
    prefix: &str,
    scope: &DriftScope,
    check_policies: bool,
    thresholds: &Thresholds,
    redactor: &Redactor,
    now: DateTime<Utc>,
) -> Result<Detection, DriftError> {
    let manifest = account.manifest().await?;
    let env = prefix.split('/').nth(2).unwrap_or_default();
    let declared: Vec<_> = manifest
        .scope(env, None)
        .filter(|d| scope.covers(prefix, &d.name.to_string()))
        .collect();
    let actual: Vec<_> = account
        .list(prefix)
        .await?
        .into_iter()
        .filter(|e| scope.covers(prefix, &e.name))
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
    let policies = if check_policies {
        let all: Vec<(String, String)> = actual
            .iter()
            .filter(|e| e.deleted.is_none())
            .map(|e| (e.name.clone(), e.arn.clone()))
            .collect();
        Some(policies_of(account, &all).await?)
    } else {
        None
    };
    let mut ledgers = BTreeMap::new();
    for d in declared.iter().filter(|d| d.governance.vercel.is_some()) {
        let name = d.name.to_string();
        let marker = state
            .get(&vercel_sync::ledger_key(&name))
            .await
            .map_err(|e| DriftError::State(redactor.safe(&e.to_string())))?;
        if let Some(marker) = marker {
            // A damaged ledger reads as empty: every mapped variable shows as missing.
            ledgers.insert(name, serde_json::from_str(&marker.body).unwrap_or_default());
        }
    }
    let observed = Observed {
        declared: declared.clone(),
        actual: &actual,
        replication: &replication,
        policies: policies.as_ref(),
        ledgers: &ledgers,
    };
    Ok(Detection {
        findings: evaluate(&observed, prefix, now, thresholds),
        secrets_listed: actual.len(),
        declared: declared.len(),
        calls: account.calls(),
        environments: manifest
            .environments
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
    })
}

/// What an input asks to check: a `Scheduled Event` covers the whole prefix;
/// `{"scope": {"service"?, "secret"?}}` (a direct invoke) narrows it.
pub fn input_scope(payload: &str) -> Result<DriftScope, DriftError> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) if v["detail-type"] == "Scheduled Event" => Ok(DriftScope::default()),
        Ok(v) if v.get("scope").is_some() => serde_json::from_value::<OnDemand>(v)
            .map(|o| o.scope)
            .map_err(|_| {
                DriftError::InvalidInput(
                    "on-demand input must be {\"scope\": {\"service\"?: ..., \"secret\"?: ...}}"
                        .into(),
                )
            }),
        Ok(_) => Err(DriftError::InvalidInput(
            "expected a Scheduled Event or {\"scope\": {...}}".into(),
        )),
        Err(e) => Err(DriftError::InvalidInput(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// The Jira key an issue body records (`Jira: KEY-1`).
pub fn jira_key_in(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Jira: "))
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

pub fn drift_event(finding: &Finding) -> DomainEvent {
    DomainEvent::new(
        CorrelationId::new(format!(
            "drift:{}",
            &hex::encode(Sha256::digest(finding.fingerprint.as_bytes()))[..32]
        ))
        .unwrap_or_else(|_| CorrelationId::generate()),
        Actor {
            kind: ActorKind::Schedule,
            id: "keyward.drift-detector".into(),
        },
        Some(SecretRef {
            name: finding.secret.clone(),
            arn: None,
        }),
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: finding.fingerprint.clone(),
            finding: finding.kind.slug().to_owned(),
            severity: finding.severity,
            evidence: finding.evidence.clone(),
        },
    )
}
