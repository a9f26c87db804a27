//! The drift rules: declared (the manifest) against actual (one `ListSecrets` walk, plus
//! replication status and resource policies where a rule needs them, plus the Vercel sync
//! ledgers). Pure: every input is gathered before evaluation, so a run either sees the whole
//! account or reports nothing.
//!
//! Each finding has a stable fingerprint (`<kind>:<secret>[:<detail>]`): the same drift found on
//! the next run is the same finding, so it maps to the same ticket.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use keyward_shared::events::Severity;
use keyward_shared::governance::{Governance, MAX_ROTATION_DAYS, RotationStrategy};
use keyward_shared::manifest::DeclaredSecret;
use keyward_shared::ports::CatalogEntry;
use keyward_shared::vercel_ledger::{Ledger, Slot, mapped_slots};
use serde::Serialize;

/// Every kind of drift, with its slug (fingerprints, labels, `DriftDetected.finding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    DeclaredMissing,
    NoValue,
    Undeclared,
    TagContractBroken,
    GovernanceMismatch,
    RotationDisabled,
    RotationIntervalOverPolicy,
    RotationOverdue,
    NeverRotated,
    AwsManagedKey,
    ScheduledForDeletion,
    ReplicaMissing,
    ReplicaFailing,
    PolicyPublic,
    PolicyUndeclaredReader,
    Unused,
    VercelMissing,
    VercelStale,
    WorkloadOutOfSync,
    WorkloadDegraded,
    ExternalSecretMissing,
    ExternalSecretSpecDrift,
    ExternalSecretNotSynced,
    NativeNonCompliant,
}

impl FindingKind {
    pub const ALL: [FindingKind; 24] = [
        Self::DeclaredMissing,
        Self::NoValue,
        Self::Undeclared,
        Self::TagContractBroken,
        Self::GovernanceMismatch,
        Self::RotationDisabled,
        Self::RotationIntervalOverPolicy,
        Self::RotationOverdue,
        Self::NeverRotated,
        Self::AwsManagedKey,
        Self::ScheduledForDeletion,
        Self::ReplicaMissing,
        Self::ReplicaFailing,
        Self::PolicyPublic,
        Self::PolicyUndeclaredReader,
        Self::Unused,
        Self::VercelMissing,
        Self::VercelStale,
        Self::WorkloadOutOfSync,
        Self::WorkloadDegraded,
        Self::ExternalSecretMissing,
        Self::ExternalSecretSpecDrift,
        Self::ExternalSecretNotSynced,
        Self::NativeNonCompliant,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Self::DeclaredMissing => "declared-missing",
            Self::NoValue => "no-value",
            Self::Undeclared => "undeclared",
            Self::TagContractBroken => "tag-contract-broken",
            Self::GovernanceMismatch => "governance-mismatch",
            Self::RotationDisabled => "rotation-disabled",
            Self::RotationIntervalOverPolicy => "rotation-interval-over-policy",
            Self::RotationOverdue => "rotation-overdue",
            Self::NeverRotated => "never-rotated",
            Self::AwsManagedKey => "aws-managed-key",
            Self::ScheduledForDeletion => "scheduled-for-deletion",
            Self::ReplicaMissing => "replica-missing",
            Self::ReplicaFailing => "replica-failing",
            Self::PolicyPublic => "policy-public",
            Self::PolicyUndeclaredReader => "policy-undeclared-reader",
            Self::Unused => "unused",
            Self::VercelMissing => "vercel-missing",
            Self::VercelStale => "vercel-stale",
            Self::WorkloadOutOfSync => "workload-out-of-sync",
            Self::WorkloadDegraded => "workload-degraded",
            Self::ExternalSecretMissing => "external-secret-missing",
            Self::ExternalSecretSpecDrift => "external-secret-spec-drift",
            Self::ExternalSecretNotSynced => "external-secret-not-synced",
            Self::NativeNonCompliant => "native-non-compliant",
        }
    }

    /// The `Drift Type` a fix of this kind declares: what the workloads run (Argo CD's
    /// applications and the `ExternalSecret`s in them), or the infrastructure (Secrets Manager,
    /// its policies, Vercel's copies,).
    pub fn drift_type(self) -> DriftType {
        match self {
            Self::WorkloadOutOfSync
            | Self::WorkloadDegraded
            | Self::ExternalSecretMissing
            | Self::ExternalSecretSpecDrift
            | Self::ExternalSecretNotSynced => DriftType::Workload,
            _ => DriftType::Infra,
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::PolicyPublic => Severity::Critical,
            Self::DeclaredMissing
            | Self::NoValue
            | Self::RotationDisabled
            | Self::RotationIntervalOverPolicy
            | Self::RotationOverdue
            | Self::ScheduledForDeletion
            | Self::ReplicaMissing
            | Self::ReplicaFailing
            | Self::PolicyUndeclaredReader
            | Self::WorkloadOutOfSync
            | Self::WorkloadDegraded
            | Self::ExternalSecretMissing
            | Self::ExternalSecretNotSynced => Severity::High,
            Self::Undeclared
            | Self::TagContractBroken
            | Self::GovernanceMismatch
            | Self::NeverRotated
            | Self::AwsManagedKey
            | Self::VercelMissing
            | Self::VercelStale
            | Self::ExternalSecretSpecDrift
            | Self::NativeNonCompliant => Severity::Medium,
            Self::Unused => Severity::Low,
        }
    }
}

/// The platform teams' two drift types: what the cloud holds, and what the workloads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftType {
    Infra,
    Workload,
}

impl DriftType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infra => "infra",
            Self::Workload => "workload",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Infra, Self::Workload]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub secret: String,
    pub fingerprint: String,
    pub severity: Severity,
    /// Names, dates, regions, principals, tag values: never a secret value (none is read).
    pub evidence: BTreeMap<String, String>,
}

impl Finding {
    pub(crate) fn new(kind: FindingKind, secret: &str, detail: Option<&str>) -> Self {
        let fingerprint = match detail {
            Some(d) => format!("{}:{secret}:{d}", kind.slug()),
            None => format!("{}:{secret}", kind.slug()),
        };
        Self {
            kind,
            secret: secret.to_owned(),
            fingerprint,
            severity: kind.severity(),
            evidence: BTreeMap::new(),
        }
    }

    pub(crate) fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.evidence.insert(key.to_owned(), value.to_string());
        self
    }

    /// The secret a fingerprint names.
    pub fn secret_of(fingerprint: &str) -> Option<&str> {
        let (_, rest) = fingerprint.split_once(':')?;
        // Names start with `/` and hold no `:`; a detail follows after the next `:`.
        Some(rest.split_once(':').map_or(rest, |(name, _)| name))
    }
}

/// A replica as `DescribeSecret` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub region: String,
    /// `InSync`, `InProgress` or `Failed`.
    pub status: String,
    pub message: Option<String>,
}

pub use keyward_shared::policy::PolicyGrants;

/// Everything gathered for one run.
pub struct Observed<'a> {
    pub declared: Vec<&'a DeclaredSecret>,
    pub actual: &'a [CatalogEntry],
    /// By secret name; only for declared secrets with replicas.
    pub replication: &'a BTreeMap<String, Vec<ReplicaStatus>>,
    /// By secret name; absent when policies were not read.
    pub policies: Option<&'a BTreeMap<String, Option<PolicyGrants>>>,
    /// By secret name; only for declared secrets with a Vercel mapping. `None`: Vercel parity
    /// is not checked.
    pub ledgers: Option<&'a BTreeMap<String, Ledger>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    pub unused_days: i64,
    /// How long past `NextRotationDate` before it counts as missed (the docs: dates may lag).
    pub rotation_grace: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            unused_days: 90,
            rotation_grace: Duration::days(1),
        }
    }
}

fn date(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The fields of two governance records that differ, by name.
fn governance_diff(
    declared: &Governance,
    actual: &Governance,
) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, d: String, a: String| {
        if d != a {
            out.push((field, d, a));
        }
    };
    cmp(
        "type",
        declared.secret_type.to_string(),
        actual.secret_type.to_string(),
    );
    cmp(
        "domain",
        declared.domain.to_string(),
        actual.domain.to_string(),
    );
    cmp(
        "owner",
        declared.owner.to_string(),
        actual.owner.to_string(),
    );
    cmp(
        "classification",
        format!("{:?}", declared.classification),
        format!("{:?}", actual.classification),
    );
    cmp(
        "rotation",
        format!(
            "{} / {} days",
            declared.rotation.strategy,
            declared.rotation.interval.days()
        ),
        format!(
            "{} / {} days",
            actual.rotation.strategy,
            actual.rotation.interval.days()
        ),
    );
    cmp(
        "password policy",
        format!("{:?}", declared.rotation.password),
        format!("{:?}", actual.rotation.password),
    );
    let join = |v: Vec<String>| v.join(",");
    cmp(
        "replicas",
        join(
            declared
                .replicas
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        ),
        join(
            actual
                .replicas
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        ),
    );
    cmp(
        "readers",
        join(
            declared
                .readers
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        ),
        join(
            actual
                .readers
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        ),
    );
    // A keyward:ci-read tag set by hand grants the CI reader role a value the manifest keeps
    // from it: that is drift like any other.
    cmp(
        "ci_read",
        declared.ci_read.to_string(),
        actual.ci_read.to_string(),
    );
    cmp(
        "vercel",
        format!("{:?}", declared.vercel),
        format!("{:?}", actual.vercel),
    );
    out
}

/// Evaluates every rule. `prefix` is the managed prefix (`/<org>/<env>/`): only secrets under
/// it can be undeclared.
pub fn evaluate(
    observed: &Observed<'_>,
    prefix: &str,
    now: DateTime<Utc>,
    t: &Thresholds,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let by_name: BTreeMap<&str, &CatalogEntry> = observed
        .actual
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let declared_names: BTreeSet<String> = observed
        .declared
        .iter()
        .map(|d| d.name.to_string())
        .collect();

    for declared in &observed.declared {
        let name = declared.name.to_string();
        let Some(entry) = by_name.get(name.as_str()) else {
            findings.push(
                Finding::new(FindingKind::DeclaredMissing, &name, None)
                    .with("declared_in", declared.origin.file.clone()),
            );
            continue;
        };
        let checked = Declared {
            name: &name,
            governance: &declared.governance,
            entry,
        };
        // A container without a value (the Terraform module creates secrets so): a deploy
        // that reads it would fail.
        if entry.current_version.is_none() {
            findings.push(
                Finding::new(FindingKind::NoValue, &name, None)
                    .with("detail", "no version is labelled AWSCURRENT"),
            );
        }
        if let Some(deleted) = entry.deleted {
            findings.push(
                Finding::new(FindingKind::ScheduledForDeletion, &name, None)
                    .with("deletion_date", date(deleted)),
            );
        }
        tag_findings(&checked, &mut findings);
        rotation_findings(&checked, now, t, &mut findings);
        key_findings(&checked, &mut findings);
        replica_findings(&checked, observed, &mut findings);
        reader_findings(&checked, observed, &mut findings);
        usage_findings(&checked, now, t, &mut findings);
        vercel_findings(&checked, observed, &mut findings);
    }

    // Public policies matter whether or not the secret is declared.
    for entry in observed.actual {
        if !entry.name.starts_with(prefix) {
            continue;
        }
        if let Some(Some(Some(grants))) = observed.policies.map(|p| p.get(&entry.name))
            && grants.public
        {
            findings.push(
                Finding::new(FindingKind::PolicyPublic, &entry.name, None)
                    .with("statement", "Allow to Principal * without a condition"),
            );
        }
        if !declared_names.contains(&entry.name) && entry.deleted.is_none() {
            findings.push(
                Finding::new(FindingKind::Undeclared, &entry.name, None)
                    .with("created", entry.created.map(date).unwrap_or_default()),
            );
        }
    }
    findings.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    findings
}

/// A declared secret that exists: its name, its declared governance and what the account shows.
struct Declared<'a> {
    name: &'a str,
    governance: &'a Governance,
    entry: &'a CatalogEntry,
}

/// The tag contract: readable, present, and saying what the manifest declares.
fn tag_findings(d: &Declared<'_>, findings: &mut Vec<Finding>) {
    let (name, g, entry) = (d.name, d.governance, d.entry);
    match &entry.governance {
        Err(e) => findings.push(
            Finding::new(FindingKind::TagContractBroken, name, None).with("error", e.to_string()),
        ),
        Ok(None) => findings.push(
            Finding::new(FindingKind::GovernanceMismatch, name, None)
                .with("tags", "no keyward tags on the secret"),
        ),
        Ok(Some(actual)) => {
            let diff = governance_diff(g, actual);
            if !diff.is_empty() {
                let mut f = Finding::new(FindingKind::GovernanceMismatch, name, None).with(
                    "fields",
                    diff.iter().map(|d| d.0).collect::<Vec<_>>().join(","),
                );
                for (field, d, a) in diff {
                    f = f
                        .with(&format!("{field}.declared"), d)
                        .with(&format!("{field}.actual"), a);
                }
                findings.push(f);
            }
        }
    }
}

/// Rotation: no secret goes more than 90 days unrotated, and never more than declared.
fn rotation_findings(
    d: &Declared<'_>,
    now: DateTime<Utc>,
    t: &Thresholds,
    findings: &mut Vec<Finding>,
) {
    let (name, g, entry) = (d.name, d.governance, d.entry);
    let interval = i64::from(g.rotation.interval.days()).min(i64::from(MAX_ROTATION_DAYS));
    let automatic = g.rotation.strategy != RotationStrategy::Manual;
    if automatic && !entry.rotation_enabled {
        findings.push(
            Finding::new(FindingKind::RotationDisabled, name, None)
                .with("declared_strategy", g.rotation.strategy.to_string()),
        );
    }
    if entry.rotation_enabled
        && let Some(days) = entry.rotation_days
        && days > interval
    {
        findings.push(
            Finding::new(FindingKind::RotationIntervalOverPolicy, name, None)
                .with("rotation_days", days)
                .with("allowed_days", interval),
        );
    }
    match entry.last_rotated {
        Some(last) => {
            let age = (now - last).num_days();
            let missed = entry.rotation_enabled
                && entry
                    .next_rotation
                    .is_some_and(|next| next + t.rotation_grace < now);
            if missed || now - last > Duration::days(interval) + t.rotation_grace {
                let mut f = Finding::new(FindingKind::RotationOverdue, name, None)
                    .with("last_rotated", date(last))
                    .with("days_since_rotation", age)
                    .with("allowed_days", interval);
                if let Some(next) = entry.next_rotation {
                    f = f.with("next_rotation", date(next));
                }
                findings.push(f);
            }
        }
        None => {
            if let Some(created) = entry.created
                && now - created > Duration::days(interval) + t.rotation_grace
            {
                findings.push(
                    Finding::new(FindingKind::NeverRotated, name, None)
                        .with("created", date(created))
                        .with("allowed_days", interval),
                );
            }
        }
    }
}

/// The key: a customer-managed one, not Secrets Manager's AWS-managed key.
fn key_findings(d: &Declared<'_>, findings: &mut Vec<Finding>) {
    let (name, entry) = (d.name, d.entry);
    if entry
        .kms_key_id
        .as_deref()
        .is_none_or(|k| k.ends_with("alias/aws/secretsmanager"))
    {
        findings.push(
            Finding::new(FindingKind::AwsManagedKey, name, None).with(
                "kms_key",
                entry
                    .kms_key_id
                    .clone()
                    .unwrap_or_else(|| "aws/secretsmanager".into()),
            ),
        );
    }
}

/// Replicas: every declared region, in sync.
fn replica_findings(d: &Declared<'_>, observed: &Observed<'_>, findings: &mut Vec<Finding>) {
    let (name, g) = (d.name, d.governance);
    if !g.replicas.is_empty() {
        let statuses = observed
            .replication
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for region in &g.replicas {
            match statuses.iter().find(|s| s.region == region.as_str()) {
                None => findings.push(
                    Finding::new(FindingKind::ReplicaMissing, name, Some(region.as_str()))
                        .with("region", region.as_str()),
                ),
                Some(s) if s.status == "Failed" => findings.push(
                    Finding::new(FindingKind::ReplicaFailing, name, Some(region.as_str()))
                        .with("region", region.as_str())
                        .with("message", s.message.clone().unwrap_or_default()),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Readers: the resource policy admits only declared readers.
fn reader_findings(d: &Declared<'_>, observed: &Observed<'_>, findings: &mut Vec<Finding>) {
    let (name, g) = (d.name, d.governance);
    if let Some(Some(Some(grants))) = observed.policies.map(|p| p.get(name)) {
        let allowed: BTreeSet<&str> = g.readers.iter().map(|r| r.as_str()).collect();
        for principal in &grants.principals {
            if !allowed.contains(principal.as_str()) {
                findings.push(
                    Finding::new(FindingKind::PolicyUndeclaredReader, name, Some(principal))
                        .with("principal", principal),
                );
            }
        }
    }
}

/// Use: read within the threshold (or, never read, created within it).
fn usage_findings(
    d: &Declared<'_>,
    now: DateTime<Utc>,
    t: &Thresholds,
    findings: &mut Vec<Finding>,
) {
    let (name, entry) = (d.name, d.entry);
    let unused_for = Duration::days(t.unused_days);
    let idle_since = entry.last_accessed.or(entry.created);
    if let Some(since) = idle_since
        && now - since > unused_for
    {
        findings.push(
            Finding::new(FindingKind::Unused, name, None)
                .with(
                    if entry.last_accessed.is_some() {
                        "last_accessed"
                    } else {
                        "created_never_read"
                    },
                    date(since),
                )
                .with("threshold_days", t.unused_days),
        );
    }
}

/// Vercel parity: every variable the mapping implies holds the current version.
fn vercel_findings(d: &Declared<'_>, observed: &Observed<'_>, findings: &mut Vec<Finding>) {
    let (name, g, entry) = (d.name, d.governance, d.entry);
    if let (Some(ledgers), Some(mapping), Some(version)) =
        (observed.ledgers, &g.vercel, &entry.current_version)
    {
        let ledger = ledgers.get(name);
        let mut slots: Vec<Slot> = mapped_slots(mapping).into_iter().map(|m| m.slot).collect();
        slots.sort();
        for slot in slots {
            let detail = format!("{}/{}/{}", slot.project.project, slot.target, slot.key);
            match ledger.and_then(|l| l.entry(&slot)) {
                None => findings.push(
                    Finding::new(FindingKind::VercelMissing, name, Some(&detail))
                        .with("project", &slot.project.project)
                        .with("target", &slot.target)
                        .with("key", &slot.key),
                ),
                Some(e) if &e.version_id != version => findings.push(
                    Finding::new(FindingKind::VercelStale, name, Some(&detail))
                        .with("project", &slot.project.project)
                        .with("target", &slot.target)
                        .with("key", &slot.key)
                        .with("synced_version", &e.version_id)
                        .with("current_version", version),
                ),
                Some(_) => {}
            }
        }
    }
}
