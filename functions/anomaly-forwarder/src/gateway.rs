//! keyward watching itself: the CI gateway's refusals of authenticated workflows (its denied
//! `GatewayDecision` events, routed from keyward's bus) enter the detector as records in the
//! CloudTrail shape the rules read, under the event source `keyward.ci-gateway`. So the same
//! rule language, thresholds, grouping, state and delivery apply to attempts against keyward as
//! to attempts against the secrets it governs.
//!
//! The record carries the repository (name and id) as the actor, the route as the event name,
//! `Forbidden` as the error code, and the refusal reasons; no token or claim beyond those.
//!
//! Refusals of callers without a valid token are not events (an anonymous flood must not flood
//! the audit trail); the gateway logs them with the caller's source address, and a CloudWatch
//! Logs subscription filter on its log group (401s and 403s) delivers those lines here
//! ([`log_records`]): records with the source address and no identity.

use std::io::Read;

use base64::Engine;
use keyward_shared::events::{DomainEvent, EventData, Outcome};
use serde::Deserialize;
use serde_json::json;

/// The event source keyward's own records carry.
pub const EVENT_SOURCE: &str = "keyward.ci-gateway";

/// What a `GatewayDecision` becomes for the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionRecord {
    /// A refusal, as a CloudTrail-shaped record (JSON text).
    Refusal(String),
    /// An allowed decision: nothing to look at.
    Allowed,
}

/// Parses the event's `detail` (checked against the envelope) and shapes a refusal as a record.
pub fn decision_record(detail: &str) -> Result<DecisionRecord, String> {
    let value: serde_json::Value = serde_json::from_str(detail).map_err(|e| {
        format!(
            "the GatewayDecision detail is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let event = DomainEvent::from_envelope(EVENT_SOURCE, "GatewayDecision", &value)
        .map_err(|e| format!("not a keyward GatewayDecision: {e}"))?;
    let EventData::GatewayDecision {
        route,
        claims,
        reasons,
    } = &event.data
    else {
        return Err("not a keyward GatewayDecision".into());
    };
    if event.outcome != Outcome::Denied {
        return Ok(DecisionRecord::Allowed);
    }
    let record = json!({
        "eventVersion": "1.09",
        "eventID": event.event_id.to_string(),
        "eventTime": event.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventSource": EVENT_SOURCE,
        "eventName": route,
        "eventType": "KeywardGatewayDecision",
        "errorCode": "Forbidden",
        "errorMessage": reasons.join("; "),
        "userAgent": "github-actions",
        "userIdentity": {
            "type": "WebIdentityUser",
            // The repository, bound to its id: a renamed or re-created repository is another.
            "userName": format!("{}#{}", claims.repository, claims.repository_id),
            "principalId": claims.repository_id,
        },
        "requestParameters": {
            "repository": claims.repository,
            "repositoryId": claims.repository_id,
            "ref": claims.r#ref,
            "jobWorkflowRef": claims.job_workflow_ref,
        },
    });
    Ok(DecisionRecord::Refusal(record.to_string()))
}

/// Largest decompressed subscription payload read (CloudWatch Logs sends at most 1 MB of
/// compressed log events per invocation; their text is smaller than this).
const MAX_LOG_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// A CloudWatch Logs subscription delivery, decoded (`awslogs.data`: base64 of gzip).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsDelivery {
    message_type: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    id: String,
    timestamp: i64,
    message: String,
}

/// The fields of the gateway's `request` log line the record needs (tracing's JSON layout).
#[derive(Deserialize)]
struct GatewayLine {
    fields: GatewayFields,
}

#[derive(Deserialize)]
struct GatewayFields {
    status: u16,
    #[serde(default)]
    path: String,
    #[serde(default)]
    source_ip: String,
}

/// The gateway's refused requests in one subscription delivery, as records; lines that are not
/// refusals (another line the filter let through, a control message) are skipped.
pub fn log_records(data: &str) -> Result<Vec<String>, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| "the awslogs data is not base64".to_owned())?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(MAX_LOG_PAYLOAD_BYTES)
        .read_to_string(&mut text)
        .map_err(|_| "the awslogs data is not gzip of UTF-8 text".to_owned())?;
    let delivery: LogsDelivery = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the awslogs data is not a subscription delivery (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if delivery.message_type != "DATA_MESSAGE" {
        return Ok(Vec::new());
    }
    Ok(delivery
        .log_events
        .iter()
        .filter_map(|event| {
            let line: GatewayLine = serde_json::from_str(&event.message).ok()?;
            let error_code = match line.fields.status {
                401 => "Unauthorized",
                403 => "Forbidden",
                _ => return None,
            };
            let time = chrono::DateTime::from_timestamp_millis(event.timestamp)?;
            Some(
                json!({
                    "eventVersion": "1.09",
                    "eventID": event.id,
                    "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "eventSource": EVENT_SOURCE,
                    "eventName": "FunctionUrlRequest",
                    "eventType": "KeywardGatewayRequest",
                    "errorCode": error_code,
                    "sourceIPAddress": line.fields.source_ip,
                    "userIdentity": {"type": "Anonymous"},
                    "requestParameters": {"path": line.fields.path},
                })
                .to_string(),
            )
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// A subscription delivery as CloudWatch Logs sends it: base64 of gzip of the JSON.
    pub(crate) fn delivery(lines: &[(&str, &str)]) -> String {
        let events: Vec<serde_json::Value> = lines
            .iter()
            .enumerate()
            .map(|(n, (id, message))| {
                json!({"id": id, "timestamp": 1_795_000_000_000i64 + n as i64 * 1000, "message": message})
            })
            .collect();
        let body = json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/keyward/ci-gateway", "logStream": "2026/11/22/[$LATEST]abc",
            "subscriptionFilters": ["keyward-gateway-refusals"], "logEvents": events,
        });
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(body.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gzip.finish().unwrap())
    }

    #[test]
    fn refused_requests_become_records_with_the_source_address() {
        let refused = r#"{"timestamp":"2026-11-22T12:00:00Z","level":"INFO","fields":{"message":"request","method":"POST","path":"/v1/sync/vercel","status":401,"source_ip":"198.51.100.23"},"target":"ci_gateway"}"#;
        let served = r#"{"level":"INFO","fields":{"message":"request","path":"/v1/preflight","status":200,"source_ip":"198.51.100.23"}}"#;
        let records = log_records(&delivery(&[
            ("e1", refused),
            ("e2", served),
            ("e3", "START RequestId: x"),
        ]))
        .unwrap();
        assert_eq!(records.len(), 1);
        let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
        assert_eq!(record["eventID"], "e1");
        assert_eq!(record["errorCode"], "Unauthorized");
        assert_eq!(record["sourceIPAddress"], "198.51.100.23");
        assert_eq!(record["eventSource"], EVENT_SOURCE);
    }

    #[test]
    fn bad_deliveries_are_refused_clearly() {
        assert!(log_records("not base64!").unwrap_err().contains("base64"));
        let not_gzip = base64::engine::general_purpose::STANDARD.encode(b"plain");
        assert!(log_records(&not_gzip).unwrap_err().contains("gzip"));
        let control = {
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gzip.write_all(br#"{"messageType":"CONTROL_MESSAGE","logEvents":[]}"#)
                .unwrap();
            base64::engine::general_purpose::STANDARD.encode(gzip.finish().unwrap())
        };
        assert_eq!(log_records(&control).unwrap(), Vec::<String>::new());
    }
}
