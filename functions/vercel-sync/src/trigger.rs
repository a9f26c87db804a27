//! What a trigger asks for: every input (CloudTrail calls, rotation and sync-request events,
//! the sweep schedule, SQS redeploy batches) goes through [`classify`].

use keyward_shared::events::{CorrelationId, DomainEvent, EventData, SyncScope};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::SyncError;
use crate::redeploy;

/// Secrets Manager API calls after which a secret's variables may need writing.
pub const SYNC_API_CALLS: [&str; 7] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "TagResource",
    "UntagResource",
    "DeleteSecret",
    "RestoreSecret",
];

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    #[serde(rename = "Records", default)]
    records: Option<Vec<redeploy::SqsRecord>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrailCall {
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    request_parameters: Option<serde_json::Value>,
    #[serde(default)]
    additional_event_data: Option<serde_json::Value>,
}

/// What a trigger asks for.
#[derive(Debug)]
pub enum Work {
    Secret(String, CorrelationId),
    Scope(SyncScope, CorrelationId),
    Sweep,
    Redeploy(Vec<redeploy::SqsRecord>),
    Skip(String),
}

/// What kind of work an input asks for (`secret`, `scope`, `sweep`, `redeploy`, `skip`), or
/// why it is refused: the parser every trigger goes through, exposed for tests and fuzzing.
pub fn input_kind(payload: &str) -> Result<&'static str, SyncError> {
    Ok(match classify(payload)? {
        Work::Secret(..) => "secret",
        Work::Scope(..) => "scope",
        Work::Sweep => "sweep",
        Work::Redeploy(_) => "redeploy",
        Work::Skip(_) => "skip",
    })
}

pub fn classify(payload: &str) -> Result<Work, SyncError> {
    // serde's messages can quote input; report where, not what.
    let envelope: Envelope<'_> = serde_json::from_str(payload).map_err(|e| {
        SyncError::InvalidEvent(format!(
            "not an EventBridge event or SQS batch (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(records) = envelope.records {
        return Ok(Work::Redeploy(records));
    }
    let detail = envelope.detail.map(RawValue::get).unwrap_or("null");
    match (envelope.source.as_deref(), envelope.detail_type.as_deref()) {
        (Some("aws.events" | "aws.scheduler"), Some("Scheduled Event")) => Ok(Work::Sweep),
        (
            Some("aws.secretsmanager"),
            Some(kind @ ("AWS API Call via CloudTrail" | "AWS Service Event via CloudTrail")),
        ) => {
            let call: TrailCall = serde_json::from_str(detail).map_err(|e| {
                SyncError::InvalidEvent(format!(
                    "the CloudTrail record does not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            let name = call.event_name.unwrap_or_default();
            if let Some(code) = call.error_code {
                return Ok(Work::Skip(format!(
                    "{name} failed ({code}); nothing changed"
                )));
            }
            let id = if kind == "AWS Service Event via CloudTrail" {
                if name != "RotationSucceeded" {
                    return Ok(Work::Skip(format!("service event {name} changes no value")));
                }
                let data = call.additional_event_data.unwrap_or_default();
                ["SecretId", "ARN", "Name"]
                    .iter()
                    .find_map(|k| data.get(k).and_then(|v| v.as_str()).map(str::to_owned))
            } else {
                if !SYNC_API_CALLS.contains(&name.as_str()) {
                    return Ok(Work::Skip(format!("{name} changes no value or mapping")));
                }
                call.request_parameters.and_then(|p| {
                    p.get("secretId")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
            };
            let id = id.ok_or_else(|| {
                SyncError::InvalidEvent(format!("the {name} record names no secret"))
            })?;
            Ok(Work::Secret(id, CorrelationId::generate()))
        }
        (Some(source @ ("keyward.rotation" | "keyward.ci-gateway")), Some(detail_type)) => {
            let detail: serde_json::Value = serde_json::from_str(detail).map_err(|e| {
                SyncError::InvalidEvent(format!(
                    "the event detail does not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            let event = DomainEvent::from_envelope(source, detail_type, &detail)
                .map_err(|e| SyncError::InvalidEvent(e.to_string()))?;
            match event.data {
                EventData::SecretRotated { .. } => {
                    let secret = event.secret.ok_or_else(|| {
                        SyncError::InvalidEvent("SecretRotated names no secret".into())
                    })?;
                    Ok(Work::Secret(
                        secret.arn.unwrap_or(secret.name),
                        event.correlation_id,
                    ))
                }
                EventData::VercelSyncRequested { scope } => {
                    Ok(Work::Scope(scope, event.correlation_id))
                }
                _ => Ok(Work::Skip(format!("{detail_type} asks for no sync"))),
            }
        }
        (source, detail_type) => Err(SyncError::InvalidEvent(format!(
            "unexpected input: source {:?}, detail-type {:?}",
            source.unwrap_or(""),
            detail_type.unwrap_or("")
        ))),
    }
}

/// The secret name inside an id that may be an ARN (`...:secret:<name>-<6 chars>`).
pub(crate) fn id_to_name(id: &str) -> Option<String> {
    if let Some(rest) = id.split(":secret:").nth(1) {
        // The random suffix is `-` and six characters.
        let cut = rest.len().checked_sub(7)?;
        (rest.as_bytes().get(cut) == Some(&b'-')).then(|| rest[..cut].to_owned())
    } else {
        Some(id.to_owned())
    }
}
