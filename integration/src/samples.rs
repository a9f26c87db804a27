//! Sample domain events, their EventBridge envelopes and governance tags, for tests, the
//! scenario and the bench.

use keyward_shared::events::{Actor, CorrelationId, DomainEvent, EventData, Outcome, Severity};
use keyward_shared::tags::Tag;

/// The tag contract of a restricted payments credential rotated every 30 days by `strategy`,
/// plus `extra` tags (e.g. a password policy).
pub fn governance_tags(strategy: &str, extra: &[(&str, &str)]) -> Vec<Tag> {
    let mut tags = vec![
        Tag::new("keyward:contract", "1"),
        Tag::new("keyward:type", "credentials"),
        Tag::new("keyward:domain", "payments"),
        Tag::new("keyward:owner", "team-payments"),
        Tag::new("keyward:classification", "restricted"),
        Tag::new("keyward:rotation", strategy),
        Tag::new("keyward:rotation-days", "30"),
    ];
    tags.extend(extra.iter().map(|(k, v)| Tag::new(*k, *v)));
    tags
}

/// A `DriftDetected` event (fresh id) with the given fingerprint.
pub fn drift_detected(fingerprint: &str) -> DomainEvent {
    DomainEvent::new(
        CorrelationId::generate(),
        Actor::service("drift-detector"),
        None,
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: fingerprint.to_owned(),
            finding: "rotation-disabled".into(),
            severity: Severity::Low,
            evidence: Default::default(),
        },
    )
}

/// The envelope EventBridge delivers for `event`.
pub fn envelope(event: &DomainEvent) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": event.detail_type(),
        "source": event.source(),
        "account": "123456789012",
        "time": event.time.to_rfc3339(),
        "region": crate::moto::REGION,
        "resources": [],
        "detail": serde_json::to_value(event).unwrap_or_default(),
    })
}

/// A typed envelope, as a function's handler receives it.
pub fn typed_envelope(
    event: &DomainEvent,
) -> aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> {
    serde_json::from_value(envelope(event)).expect("a sample envelope is a valid EventBridge event")
}
