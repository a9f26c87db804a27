//! The posture document: what `keyward posture --json` prints, what the posture function writes
//! under its reports prefix, and what `schemas/posture.schema.json` publishes. Names, figures
//! and states only: nothing here is ever a secret value.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{PostureFigures, Severity};
use crate::governance::{Classification, RotationStrategy};

/// Bumped when a field changes meaning or goes away; new optional fields keep the version.
pub const POSTURE_SCHEMA_VERSION: u32 = 1;

/// The state of a secrets estate at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(title = "keyward posture"))]
pub struct Posture {
    pub schema_version: u32,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub generated_at: DateTime<Utc>,
    /// The organisation (first segment of every governed name).
    pub org: String,
    /// The period alerts, rotations and drift were read over.
    pub window: Window,
    pub headline: Headline,
    /// Each input, and whether it could be read. A failed source leaves its part of the
    /// document empty, never guessed.
    pub sources: Vec<SourceState>,
    /// Worst first: failing states before warnings before healthy secrets.
    pub secrets: Vec<SecretPosture>,
    /// Drift findings opened in the window or still open, newest first.
    pub drift: Vec<DriftItem>,
    pub alerts: AlertSummary,
    pub chain: ChainState,
    pub keys_by_environment: KeysGrid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub from: DateTime<Utc>,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub to: DateTime<Utc>,
}

/// The figures a person reads first: the daily `PostureSnapshot` event's figures and the share
/// within policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Headline {
    #[serde(flatten)]
    pub figures: PostureFigures,
    /// `within_policy` as a percentage of `secrets_governed` (100 when there are none).
    pub within_policy_percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Manifest,
    SecretsManager,
    ResourcePolicies,
    StateBucket,
    AuditBucket,
    AuditChain,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::SecretsManager => "Secrets Manager",
            Self::ResourcePolicies => "resource policies",
            Self::StateBucket => "state bucket",
            Self::AuditBucket => "audit bucket",
            Self::AuditChain => "audit chain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SourceState {
    pub source: SourceKind,
    pub read: bool,
    /// Why it could not be read (redacted text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How bad a row is, for sorting and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Bad,
    Warn,
    Ok,
}

/// Where a secret stands against its rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    /// Rotated within its interval.
    WithinPolicy,
    /// Within its interval, due in 7 days or less.
    DueSoon,
    /// Past its interval since the last rotation.
    Overdue,
    /// No rotation on record and already past its interval since creation.
    NeverRotatedOverdue,
    /// No rotation on record, still within its interval since creation.
    NeverRotated,
    /// Exists without an `AWSCURRENT` value.
    NoValue,
    /// Declared, absent from Secrets Manager.
    Missing,
    /// Not declared: no policy to measure against.
    Undeclared,
}

impl RotationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithinPolicy => "within policy",
            Self::DueSoon => "due soon",
            Self::Overdue => "overdue",
            Self::NeverRotatedOverdue => "never rotated, overdue",
            Self::NeverRotated => "never rotated",
            Self::NoValue => "no value",
            Self::Missing => "missing",
            Self::Undeclared => "undeclared",
        }
    }

    pub fn health(self) -> Health {
        match self {
            Self::WithinPolicy => Health::Ok,
            Self::DueSoon | Self::NeverRotated | Self::Undeclared => Health::Warn,
            Self::Overdue | Self::NeverRotatedOverdue | Self::NoValue | Self::Missing => {
                Health::Bad
            }
        }
    }
}

/// Where the last rotation time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RotationEvidence {
    /// Secrets Manager's `LastRotatedDate`.
    SecretsManager,
    /// A `SecretRotated` audit record.
    AuditRecord,
}

/// One secret, declared or existing or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretPosture {
    pub name: String,
    pub environment: String,
    pub service: String,
    pub declared: bool,
    pub exists: bool,
    pub health: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RotationStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<u32>,
    pub rotation: RotationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_rotated: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_evidence: Option<RotationEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub next_due: Option<DateTime<Utc>>,
    /// Days since the last rotation (or creation, when never rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_days: Option<f64>,
    /// `RotationFailed` records in the window.
    pub rotation_failures: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vercel: Vec<TargetParity>,
    pub open_drift: u64,
    pub readers: Readers,
}

/// Parity of one Vercel variable keyward maintains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetParity {
    /// `team/project` or `project`.
    pub project: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    pub key: String,
    pub state: ParityState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ParityState {
    /// The ledger holds the `AWSCURRENT` version.
    InParity,
    /// The ledger holds an older version.
    Stale,
    /// The mapping asks for it; no sync wrote it.
    NeverSynced,
    /// The last sync of the secret failed or found the variable edited.
    Failed,
    /// No ledgers could be read.
    Unknown,
}

impl ParityState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InParity => "in parity",
            Self::Stale => "stale",
            Self::NeverSynced => "never synced",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// Who may read a secret, and who was seen reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Readers {
    /// Principals the manifest declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared: Vec<String>,
    /// Principals the resource policy's `Allow` statements name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admitted: Vec<String>,
    /// The resource policy allows `*` without a condition (or could not be parsed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Principals CloudTrail saw read the value, with the first sighting the forwarder
    /// remembers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<SeenReader>,
    /// Seen, neither declared nor admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ghost: Vec<String>,
    /// Declared or admitted, never seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unused: Vec<String>,
    /// Distinct principals that can or did read the value: declared, admitted and ghost
    /// readers together. Unbounded when `public`.
    pub exposure: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SeenReader {
    pub principal: String,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub first_seen: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DriftItem {
    pub fingerprint: String,
    pub finding: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub detected: DateTime<Utc>,
    /// When a verified fix closed it; absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub closed: Option<DateTime<Utc>>,
    /// Hours from detection to closure, or to now while open.
    pub age_hours: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AlertSummary {
    pub total: u64,
    pub by_rule: BTreeMap<String, u64>,
    pub by_severity: BTreeMap<String, u64>,
    /// The ten principals with the most alerts, most first.
    pub top_principals: Vec<Count>,
    /// One entry per day of the window, oldest first (`YYYY-MM-DD`).
    pub by_day: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChainVerdict {
    /// Every record and digest verified, and the newest digest is fresh.
    Valid,
    /// Something is modified, missing, unsealed, unsigned or out of chain.
    Broken,
    /// The verifier could not run (no key, unreadable bucket).
    NotVerified,
}

impl ChainVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Broken => "broken",
            Self::NotVerified => "not verified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChainState {
    pub verdict: ChainVerdict,
    /// The verifier's one-line summary, or why it could not run.
    pub summary: String,
    pub digests_checked: u64,
    pub records_checked: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_digest_age_hours: Option<f64>,
    /// The first failures the verifier reported (`<kind> <status> <key>`), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Each service's secret names across the environments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeysGrid {
    pub environments: Vec<String>,
    /// Sorted by service, then name; rows with a gap first.
    pub rows: Vec<KeyRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyRow {
    pub service: String,
    pub name: String,
    /// One cell per environment of the grid, in its order.
    pub cells: Vec<KeyCell>,
    /// The name exists or is declared in some environments and is absent from another.
    pub gap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyCell {
    /// Declared and exists.
    Present,
    /// Declared, absent from Secrets Manager.
    Missing,
    /// Exists, not declared.
    Undeclared,
    /// Neither declared nor existing.
    Absent,
}

impl KeyCell {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Undeclared => "undeclared",
            Self::Absent => "absent",
        }
    }
}

/// A unit enum's name as the document writes it (its serde name).
pub(crate) fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The published JSON Schema of [`Posture`].
#[cfg(feature = "schema")]
pub fn posture_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Posture)).unwrap_or_default()
}
