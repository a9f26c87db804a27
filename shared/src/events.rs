//! The domain event catalogue: every event a keyward function puts on the custom EventBridge bus.
//!
//! On the bus an event is `source = keyward.<function>`, `detail-type = <EventData variant>`,
//! `detail = DomainEvent` (JSON, `schema_version` 1). Consumers (above all the audit writer)
//! parse `detail` back into [`DomainEvent`], which rejects unknown fields: nothing can ride along
//! in an event that the catalogue does not name.
//!
//! Events never carry secret values. That is enforced by the types: the catalogue holds names,
//! ARNs, version ids, enums, numbers and [`SafeText`] (redacted, capped free text), and the
//! value types keyward handles (`SecretString`) cannot be serialised at all.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::governance::{RotationStrategy, VercelTarget};
use crate::redact::SafeText;

pub const SCHEMA_VERSION: u32 = 1;
/// EventBridge rejects entries over 256 KB (`PutEvents` counts the whole entry).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// A UUIDv7: unique, and ordered by the time it was minted, so audit keys derived from it list
/// by time and a retried event always lands on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The instant embedded in the id (millisecond precision).
    pub fn timestamp(&self) -> DateTime<Utc> {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .map(|ts| ts.to_unix())
            .unwrap_or((0, 0));
        Utc.timestamp_opt(secs as i64, nanos)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::parse_str(s).map_err(|e| format!("event id `{s}` is not a UUID: {e}"))?;
        if uuid.get_version_num() != 7 {
            return Err(format!("event id `{s}` is not a UUIDv7"));
        }
        Ok(Self(uuid))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Ties together every event caused by one trigger (a rotation, a CI call, a CloudTrail record).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= 128
            && value.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@')
            });
        if ok {
            Ok(Self(value))
        } else {
            Err(format!(
                "correlation id must be 1 to 128 of A-Z a-z 0-9 - _ . : / @ (got {} characters)",
                value.len()
            ))
        }
    }

    /// A fresh id for a trigger that carries none.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CorrelationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Who caused the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Actor {
    pub kind: ActorKind,
    /// A function name, a workflow ref, an IAM ARN or a schedule name.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    /// A keyward function acting on its own schedule or trigger.
    Service,
    /// A GitHub Actions workflow authenticated by OIDC.
    GithubWorkflow,
    /// An AWS principal (from CloudTrail or Secrets Manager).
    AwsPrincipal,
    /// An EventBridge schedule.
    Schedule,
}

impl Actor {
    pub fn service(function: &str) -> Self {
        Self {
            kind: ActorKind::Service,
            id: format!("keyward.{function}"),
        }
    }
}

/// The secret an event is about. The name may be ungoverned (drift reports secrets that do not
/// follow the naming convention), so it is kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Allowed,
    Denied,
    Detected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationStep {
    #[serde(rename = "createSecret")]
    CreateSecret,
    #[serde(rename = "setSecret")]
    SetSecret,
    #[serde(rename = "testSecret")]
    TestSecret,
    #[serde(rename = "finishSecret")]
    FinishSecret,
}

impl RotationStep {
    pub const ALL: [RotationStep; 4] = [
        Self::CreateSecret,
        Self::SetSecret,
        Self::TestSecret,
        Self::FinishSecret,
    ];

    /// The name Secrets Manager sends in `Step` (and the serialised form).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateSecret => "createSecret",
            Self::SetSecret => "setSecret",
            Self::TestSecret => "testSecret",
            Self::FinishSecret => "finishSecret",
        }
    }
}

/// Result of syncing one Vercel target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VercelTargetResult {
    pub project: String,
    pub target: VercelTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    pub key: String,
    pub status: VercelTargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<SafeText>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VercelTargetStatus {
    Created,
    Updated,
    Unchanged,
    Deleted,
    DriftDetected,
    Failed,
}

/// What the sync was asked to cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SyncScope {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The OIDC claims that decided a gateway request (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowClaims {
    pub repository_owner_id: String,
    pub repository_id: String,
    pub repository: String,
    pub r#ref: String,
    pub event_name: String,
    pub job_workflow_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub runner_environment: String,
    pub run_id: String,
    pub jti: String,
}

/// Alerts of one rule folded together (same dimensions, one window): the first delivery opens
/// the group, later ones update it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyGroup {
    /// `<rule>|<hash of the dimension values>|<window index>`.
    pub id: String,
    pub role: GroupRole,
    /// Member alerts so far.
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// What this delivery's members concern (secret names, else call names), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// Which delivery of a group an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// The group's first delivery: a new alert.
    Opened,
    /// More members of a group already delivered.
    Updated,
}

/// The estate's figures at one moment: counts only, never a name or a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PostureFigures {
    /// Declared in the manifest and present in Secrets Manager.
    pub secrets_governed: u64,
    pub secrets_declared: u64,
    /// Under the organisation's prefix in Secrets Manager, declared or not.
    pub secrets_existing: u64,
    /// Governed secrets whose current value is younger than their rotation interval.
    pub within_policy: u64,
    pub overdue: u64,
    pub never_rotated: u64,
    pub no_value: u64,
    /// Declared, absent from Secrets Manager.
    pub missing: u64,
    /// Present under the prefix, not declared.
    pub undeclared: u64,
    pub vercel_targets: u64,
    pub vercel_targets_in_parity: u64,
    pub open_drift: u64,
    pub alerts_in_window: u64,
    /// Principals seen reading a secret that neither the manifest nor its policy names.
    pub ghost_readers: u64,
    pub chain: crate::posture::ChainVerdict,
}

/// The payload of each event type. The variant name is the EventBridge `detail-type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "fields", deny_unknown_fields)]
pub enum EventData {
    /// keyward.rotation: a rotation finished and the new version is AWSCURRENT.
    SecretRotated {
        strategy: RotationStrategy,
        version_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_version_id: Option<String>,
    },
    /// keyward.rotation: a rotation step failed; AWSCURRENT is untouched.
    RotationFailed {
        /// Absent when the failure came before the strategy was known (bad governance tags).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strategy: Option<RotationStrategy>,
        step: RotationStep,
        version_id: String,
        error: SafeText,
    },
    /// keyward.ci-gateway: an authorised workflow asked for a Vercel sync.
    VercelSyncRequested { scope: SyncScope },
    /// keyward.vercel-sync: every target of a secret is in parity.
    VercelSyncCompleted {
        version_id: String,
        results: Vec<VercelTargetResult>,
    },
    /// keyward.vercel-sync: not in parity: a target failed or drifted from what keyward wrote,
    /// or the secret could not be synced at all (`error` says which; the targets are listed
    /// as they ended).
    VercelSyncFailed {
        version_id: String,
        results: Vec<VercelTargetResult>,
        error: SafeText,
    },
    /// keyward.anomaly-forwarder: a detection rule fired on a CloudTrail record.
    AnomalyDetected {
        rule: String,
        severity: Severity,
        cloudtrail_event_id: String,
        event_name: String,
        principal: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        evidence: BTreeMap<String, String>,
        /// For a grouped rule: the group this alert opened or updated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<AnomalyGroup>,
    },
    /// keyward.drift-detector: what runs differs from what was declared.
    DriftDetected {
        fingerprint: String,
        finding: String,
        severity: Severity,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        evidence: BTreeMap<String, String>,
    },
    /// keyward.ci-gateway: a drift finding's fix was merged through a reviewed pull request and
    /// verified by re-running detection for its scope (the post-merge route).
    DriftRemediated {
        fingerprint: String,
        drift_issue: String,
        change_request_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jira_key: Option<String>,
        environment: String,
        cloud_provider: String,
        pull_request: String,
        merge_commit: String,
        verified: bool,
        /// What detection still found when `verified` is false.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remaining: Vec<String>,
    },
    /// keyward.ci-gateway: an authorisation decision on a CI request.
    GatewayDecision {
        route: String,
        claims: WorkflowClaims,
        reasons: Vec<String>,
    },
    /// keyward.posture: the daily posture report was written; its figures, and where the
    /// report lies with its SHA-256 so the sealed trail vouches for it.
    PostureSnapshot {
        figures: PostureFigures,
        report_key: String,
        report_sha256: String,
    },
}

impl EventData {
    /// Every (source, detail-type) pair in the catalogue.
    pub const CATALOGUE: &'static [(&'static str, &'static str)] = &[
        ("keyward.rotation", "SecretRotated"),
        ("keyward.rotation", "RotationFailed"),
        ("keyward.ci-gateway", "VercelSyncRequested"),
        ("keyward.vercel-sync", "VercelSyncCompleted"),
        ("keyward.vercel-sync", "VercelSyncFailed"),
        ("keyward.anomaly-forwarder", "AnomalyDetected"),
        ("keyward.drift-detector", "DriftDetected"),
        ("keyward.ci-gateway", "DriftRemediated"),
        ("keyward.ci-gateway", "GatewayDecision"),
        ("keyward.posture", "PostureSnapshot"),
    ];

    pub fn detail_type(&self) -> &'static str {
        match self {
            Self::SecretRotated { .. } => "SecretRotated",
            Self::RotationFailed { .. } => "RotationFailed",
            Self::VercelSyncRequested { .. } => "VercelSyncRequested",
            Self::VercelSyncCompleted { .. } => "VercelSyncCompleted",
            Self::VercelSyncFailed { .. } => "VercelSyncFailed",
            Self::AnomalyDetected { .. } => "AnomalyDetected",
            Self::DriftDetected { .. } => "DriftDetected",
            Self::DriftRemediated { .. } => "DriftRemediated",
            Self::GatewayDecision { .. } => "GatewayDecision",
            Self::PostureSnapshot { .. } => "PostureSnapshot",
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            Self::SecretRotated { .. } | Self::RotationFailed { .. } => "keyward.rotation",
            Self::VercelSyncRequested { .. } | Self::GatewayDecision { .. } => "keyward.ci-gateway",
            Self::VercelSyncCompleted { .. } | Self::VercelSyncFailed { .. } => {
                "keyward.vercel-sync"
            }
            Self::AnomalyDetected { .. } => "keyward.anomaly-forwarder",
            Self::DriftDetected { .. } => "keyward.drift-detector",
            Self::DriftRemediated { .. } => "keyward.ci-gateway",
            Self::PostureSnapshot { .. } => "keyward.posture",
        }
    }
}

/// One domain event: the `detail` of an EventBridge entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEvent {
    pub schema_version: u32,
    pub event_id: EventId,
    pub time: DateTime<Utc>,
    pub correlation_id: CorrelationId,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    pub outcome: Outcome,
    pub data: EventData,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event detail is not a keyward domain event: {0}")]
    Malformed(String),
    #[error("event schema version {found} is not supported (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("event says source `{envelope}` but its data `{data_type}` belongs to `{expected}`")]
    SourceMismatch {
        envelope: String,
        data_type: &'static str,
        expected: &'static str,
    },
    #[error("event says detail-type `{envelope}` but its data is `{data_type}`")]
    DetailTypeMismatch {
        envelope: String,
        data_type: &'static str,
    },
    #[error("event is {size} bytes; EventBridge accepts at most {MAX_EVENT_BYTES}")]
    TooLarge { size: usize },
}

impl DomainEvent {
    /// A new event stamped now with a fresh UUIDv7.
    pub fn new(
        correlation_id: CorrelationId,
        actor: Actor,
        secret: Option<SecretRef>,
        outcome: Outcome,
        data: EventData,
    ) -> Self {
        let event_id = EventId::new();
        Self {
            schema_version: SCHEMA_VERSION,
            time: event_id.timestamp(),
            event_id,
            correlation_id,
            actor,
            secret,
            outcome,
            data,
        }
    }

    pub fn source(&self) -> &'static str {
        self.data.source()
    }

    pub fn detail_type(&self) -> &'static str {
        self.data.detail_type()
    }

    /// The `detail` JSON as sent to EventBridge; fails if it exceeds EventBridge's size limit.
    pub fn to_detail_json(&self) -> Result<String, EventError> {
        let json = serde_json::to_string(self).map_err(|e| EventError::Malformed(e.to_string()))?;
        if json.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { size: json.len() });
        }
        Ok(json)
    }

    /// Parses a received `detail` and checks it against the envelope's source and detail-type.
    pub fn from_envelope(
        source: &str,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> Result<Self, EventError> {
        // Read the version first so an event from a newer producer says so, rather than failing
        // on whatever field it added.
        if let Some(found) = detail
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            && found != u64::from(SCHEMA_VERSION)
        {
            return Err(EventError::UnsupportedVersion {
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        let event: DomainEvent = serde_path_to_error::deserialize(detail)
            .map_err(|e| EventError::Malformed(format!("{}: {}", e.path(), e.inner())))?;
        if event.detail_type() != detail_type {
            return Err(EventError::DetailTypeMismatch {
                envelope: detail_type.to_owned(),
                data_type: event.detail_type(),
            });
        }
        if event.source() != source {
            return Err(EventError::SourceMismatch {
                envelope: source.to_owned(),
                data_type: event.detail_type(),
                expected: event.source(),
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{Redactor, SecretString};

    fn rotated() -> DomainEvent {
        DomainEvent::new(
            CorrelationId::new("rotation:abc").unwrap(),
            Actor::service("rotation"),
            Some(SecretRef {
                name: "/acme/prod/payments/db-credentials".into(),
                arn: Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/payments/db-credentials-AbC123".into()),
            }),
            Outcome::Success,
            EventData::SecretRotated {
                strategy: RotationStrategy::PostgresAlternatingUsers,
                version_id: "00000000-0000-4000-8000-000000000001".into(),
                previous_version_id: None,
            },
        )
    }

    #[test]
    fn step_names_are_the_serialised_names() {
        for step in RotationStep::ALL {
            assert_eq!(
                serde_json::to_value(step).unwrap(),
                serde_json::Value::String(step.as_str().into())
            );
        }
    }

    #[test]
    fn round_trips_through_the_envelope() {
        let event = rotated();
        let detail: serde_json::Value =
            serde_json::from_str(&event.to_detail_json().unwrap()).unwrap();
        assert_eq!(detail["data"]["type"], "SecretRotated");
        let back =
            DomainEvent::from_envelope("keyward.rotation", "SecretRotated", &detail).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn catalogue_lists_every_variant_with_its_source() {
        let samples = [
            rotated().data,
            EventData::VercelSyncRequested {
                scope: SyncScope {
                    environment: "prod".into(),
                    service: None,
                    secret: None,
                },
            },
            EventData::DriftDetected {
                fingerprint: "f".into(),
                finding: "rotation-disabled".into(),
                severity: Severity::High,
                evidence: BTreeMap::new(),
            },
        ];
        for data in samples {
            assert!(EventData::CATALOGUE.contains(&(data.source(), data.detail_type())));
        }
        let sources: std::collections::BTreeSet<_> =
            EventData::CATALOGUE.iter().map(|(s, _)| *s).collect();
        assert!(sources.iter().all(|s| s.starts_with("keyward.")));
    }

    #[test]
    fn envelope_mismatches_and_unknown_fields_are_rejected() {
        let event = rotated();
        let detail = serde_json::to_value(&event).unwrap();
        let err = DomainEvent::from_envelope("keyward.vercel-sync", "SecretRotated", &detail)
            .unwrap_err();
        assert!(
            err.to_string().contains("belongs to `keyward.rotation`"),
            "{err}"
        );
        let err =
            DomainEvent::from_envelope("keyward.rotation", "RotationFailed", &detail).unwrap_err();
        assert!(
            err.to_string().contains("detail-type `RotationFailed`"),
            "{err}"
        );

        let mut smuggled = detail.clone();
        smuggled["data"]["fields"]["secret_value"] = "hunter2".into();
        let err =
            DomainEvent::from_envelope("keyward.rotation", "SecretRotated", &smuggled).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `secret_value`"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"));

        let mut top = detail.clone();
        top["password"] = "hunter2".into();
        assert!(DomainEvent::from_envelope("keyward.rotation", "SecretRotated", &top).is_err());

        let mut newer = detail;
        newer["schema_version"] = 2.into();
        assert!(matches!(
            DomainEvent::from_envelope("keyward.rotation", "SecretRotated", &newer),
            Err(EventError::UnsupportedVersion { found: 2 })
        ));
    }

    #[test]
    fn event_ids_must_be_v7_and_carry_their_time() {
        let id = EventId::new();
        let age = Utc::now() - id.timestamp();
        assert!(age.num_seconds().abs() < 5);
        assert!(
            "9a4a2f9e-0c5e-4c1a-9f3e-0a1b2c3d4e5f"
                .parse::<EventId>()
                .is_err()
        );
        assert!("nope".parse::<EventId>().is_err());
    }

    #[test]
    fn failure_messages_are_redacted_before_they_reach_an_event() {
        let redactor = Redactor::new();
        let password = SecretString::from("Sup3r-S3cret-Pa55");
        redactor.register(&password);
        let db_error = "password authentication failed: tried Sup3r-S3cret-Pa55 via postgres://app:Sup3r-S3cret-Pa55@db/x";
        let event = DomainEvent::new(
            CorrelationId::generate(),
            Actor::service("rotation"),
            None,
            Outcome::Failure,
            EventData::RotationFailed {
                strategy: Some(RotationStrategy::PostgresSingleUser),
                step: RotationStep::SetSecret,
                version_id: "v".into(),
                error: redactor.safe(db_error),
            },
        );
        let json = event.to_detail_json().unwrap();
        assert!(!json.contains("Sup3r-S3cret-Pa55"), "{json}");
        assert!(json.contains("password authentication failed"));
    }

    #[test]
    fn arbitrary_details_never_panic() {
        let mut rng = fastrand::Rng::with_seed(5);
        let good = serde_json::to_value(rotated()).unwrap();
        let values = [
            serde_json::Value::Null,
            serde_json::json!(""),
            serde_json::json!(-1),
            serde_json::json!(1e300),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!("019aa6c5-1f4a-7c3e-9b1d-4e2f8a6b0c11"),
            serde_json::json!({"type": "SecretRotated"}),
            serde_json::json!(true),
        ];
        for _ in 0..5000 {
            let mut detail = good.clone();
            // (parent JSON pointer, field) pairs to overwrite with junk.
            let fields: &[(&str, &str)] = &[
                ("", "schema_version"),
                ("", "event_id"),
                ("", "time"),
                ("", "correlation_id"),
                ("", "actor"),
                ("/actor", "kind"),
                ("", "secret"),
                ("", "outcome"),
                ("", "data"),
                ("/data", "type"),
                ("/data", "fields"),
                ("/data/fields", "strategy"),
            ];
            for _ in 0..rng.usize(1..4) {
                let (parent, field) = fields[rng.usize(0..fields.len())];
                let junk = values[rng.usize(0..values.len())].clone();
                if let Some(object) = detail.pointer_mut(parent).and_then(|v| v.as_object_mut()) {
                    object.insert(field.to_owned(), junk);
                }
            }
            let _ = DomainEvent::from_envelope("keyward.rotation", "SecretRotated", &detail);
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut evidence = BTreeMap::new();
        evidence.insert("blob".to_owned(), "x".repeat(MAX_EVENT_BYTES));
        let event = DomainEvent::new(
            CorrelationId::generate(),
            Actor::service("drift-detector"),
            None,
            Outcome::Detected,
            EventData::DriftDetected {
                fingerprint: "f".into(),
                finding: "x".into(),
                severity: Severity::Low,
                evidence,
            },
        );
        assert!(matches!(
            event.to_detail_json(),
            Err(EventError::TooLarge { .. })
        ));
    }
}
