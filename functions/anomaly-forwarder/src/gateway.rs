//! keyward watching itself: the CI gateway's refusals of authenticated workflows (its denied
//! `GatewayDecision` events, routed from keyward's bus) enter the detector as records in the
//! CloudTrail shape the rules read, under the event source `keyward.ci-gateway`. So the same
//! rule language, thresholds, grouping, state and delivery apply to attempts against keyward as
//! to attempts against the secrets it governs.
//!
//! The record carries the repository (name and id) as the actor, the route as the event name,
//! `Forbidden` as the error code, and the refusal reasons; no token or claim beyond those.

use keyward_shared::events::{DomainEvent, EventData, Outcome};
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
