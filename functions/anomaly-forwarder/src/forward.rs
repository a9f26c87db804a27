//! Where alerts go: Grafana Loki (push API) and a Slack-compatible webhook.
//!
//! Loki (grafana/loki `docs/sources/reference/loki-http-api.md`): `POST /loki/api/v1/push`, JSON
//! `{"streams":[{"stream":{labels},"values":[["<ns epoch as a string>","<line>",{metadata}]]}]}`,
//! gzip-encoded; `X-Scope-OrgID` names the tenant; 204 on success. Labels stay low-cardinality
//! (`service`, `severity`, `rule`, `region`); who and which secret ride as structured metadata.
//! Entries are stamped with the processing time, with the event's time in the line: CloudTrail
//! files arrive minutes late and Loki refuses entries too far behind a stream.
//!
//! Retries: 429 and 5xx are retried by the shared HTTP client and then fail the delivery, so the
//! invocation fails and EventBridge (or the S3 notification's retry) tries again; any other 4xx
//! means the request itself is wrong and is reported, not retried.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use keyward_shared::adapters::http::Method;
use keyward_shared::adapters::http::header::{CONTENT_ENCODING, HeaderName, HeaderValue};
use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest, Idempotency};
use keyward_shared::events::Severity;
use serde_json::{Value, json};

use keyward_shared::events::{
    Actor, AnomalyGroup, CorrelationId, DomainEvent, EventData, EventId, Outcome, SecretRef,
};
use keyward_shared::ports::{EventPublisher, PublishError};
use keyward_shared::redact::Redactor;

use crate::rules::Alert;
use keyward_shared::events::GroupRole;

pub const SERVICE_LABEL: &str = "keyward-anomaly-forwarder";

/// An alert on its way out, with the identity it keeps across retries of the invocation that
/// raised it (both are stored in the delivery ledger before anything is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub alert: Alert,
    /// The `AnomalyDetected` event's id: a retry publishes the same id, which the audit writer
    /// recognises as a duplicate.
    pub event_id: EventId,
    /// The Loki timestamp.
    pub processed_at: DateTime<Utc>,
}

impl Outgoing {
    /// A first attempt: a fresh event id, stamped now.
    pub fn new(alert: Alert) -> Self {
        let event_id = EventId::new();
        Self {
            alert,
            processed_at: event_id.timestamp(),
            event_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LokiTarget {
    /// Full push URL, e.g. `https://logs-prod-eu-west-0.grafana.net/loki/api/v1/push`.
    pub push_url: String,
    /// `X-Scope-OrgID`, for multi-tenant Loki.
    pub tenant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Worth retrying: rate limited or the server failed (after the client's own retries).
    #[error("{target} is unavailable: {source}")]
    Unavailable {
        target: &'static str,
        #[source]
        source: HttpError,
    },
    /// The request was refused as malformed or unauthorised: retrying will not help.
    #[error("{target} refused the alerts: {source}")]
    Refused {
        target: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("encoding the {0} request failed")]
    Encoding(&'static str),
}

impl ForwardError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    fn classify(target: &'static str, err: HttpError) -> Self {
        match err.status() {
            Some(status) if status.is_client_error() && status.as_u16() != 429 => Self::Refused {
                target,
                source: err,
            },
            _ => Self::Unavailable {
                target,
                source: err,
            },
        }
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// One line saying what a group is so far, for people.
fn group_sentence(group: &AnomalyGroup) -> String {
    let span = format!(
        "{} to {}",
        group.first.format("%Y-%m-%d %H:%M:%SZ"),
        group.last.format("%H:%M:%SZ")
    );
    let shown = group.members.join(", ");
    match group.role {
        GroupRole::Opened if group.count <= 1 => format!("first of its group ({span})"),
        GroupRole::Opened => format!("{} matches, {span}: {shown}", group.count),
        GroupRole::Updated => format!("update: {} matches now, {span}; new: {shown}", group.count),
    }
}

/// The push body: one stream per label set, one entry per alert.
pub fn loki_body(outgoing: &[&Outgoing]) -> Value {
    let mut streams: BTreeMap<(String, &'static str, String), Vec<Value>> = BTreeMap::new();
    for out in outgoing {
        let alert = &out.alert;
        let region = alert.evidence.get("region").cloned().unwrap_or_default();
        let line = json!({
            "alert_id": alert.alert_id,
            "rule": alert.rule,
            "severity": severity_label(alert.severity),
            "summary": alert.summary,
            "event_time": alert.event_time.to_rfc3339(),
            "evidence": alert.evidence.as_ref(),
            "group": alert.group.as_ref().map(|delivery| &delivery.group),
        })
        .to_string();
        let mut metadata = serde_json::Map::new();
        for key in ["actor", "secret", "source_ip", "event_id", "principal_arn"] {
            if let Some(value) = alert.evidence.get(key) {
                metadata.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        metadata.insert("alert_id".into(), Value::String(alert.alert_id.clone()));
        if let Some(group) = &alert.group {
            metadata.insert("group_id".into(), Value::String(group.id.clone()));
        }
        let ts = out
            .processed_at
            .timestamp_nanos_opt()
            .unwrap_or(0)
            .to_string();
        streams
            .entry((alert.rule.clone(), severity_label(alert.severity), region))
            .or_default()
            .push(json!([ts, line, metadata]));
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|((rule, severity, region), values)| {
            let mut stream = json!({"service": SERVICE_LABEL, "rule": rule, "severity": severity});
            if !region.is_empty() {
                stream["region"] = Value::String(region);
            }
            json!({"stream": stream, "values": values})
        })
        .collect();
    json!({ "streams": streams })
}

pub async fn push_to_loki(
    http: &HttpClient,
    target: &LokiTarget,
    outgoing: &[&Outgoing],
) -> Result<(), ForwardError> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let body =
        serde_json::to_vec(&loki_body(outgoing)).map_err(|_| ForwardError::Encoding("Loki"))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(&body)
        .map_err(|_| ForwardError::Encoding("Loki"))?;
    let gzipped = encoder
        .finish()
        .map_err(|_| ForwardError::Encoding("Loki"))?;
    // A push that failed with 5xx may have stored some entries; it is retried as it was (same
    // timestamps, same lines), and Loki drops an entry identical to the last one of its stream.
    // Across invocations, the delivery ledger keeps a delivered alert from being pushed again.
    let mut request = HttpRequest::new(Method::POST, &target.push_url)
        .body("application/json", gzipped)
        .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
        .idempotency(Idempotency::Idempotent);
    if let Some(tenant) = &target.tenant {
        let value = HeaderValue::from_str(tenant).map_err(|_| ForwardError::Encoding("Loki"))?;
        request = request.header(HeaderName::from_static("x-scope-orgid"), value);
    }
    http.send(request)
        .await
        .map(|_| ())
        .map_err(|e| ForwardError::classify("Loki", e))
}

/// The `AnomalyDetected` domain event of an alert (→ the audit trail). Evidence values pass
/// through the redactor: CloudTrail never records secret values, but a user agent or an error
/// message can carry anything.
pub fn anomaly_event(outgoing: &Outgoing, redactor: &Redactor) -> DomainEvent {
    let alert = &outgoing.alert;
    let evidence = alert
        .evidence
        .iter()
        .map(|(k, v)| (k.clone(), redactor.safe(v).as_str().to_owned()))
        .collect();
    let get = |key: &str| alert.evidence.get(key).cloned().unwrap_or_default();
    let secret = alert.evidence.get("secret").map(|id| SecretRef {
        name: match keyward_shared::naming::SecretName::name_from_arn(id) {
            Ok(name) => name.to_owned(),
            Err(_) => id.clone(),
        },
        arn: id.starts_with("arn:").then(|| id.clone()),
    });
    // Everything one CloudTrail record caused shares its event id as the correlation id.
    let correlation = alert
        .evidence
        .get("event_id")
        .and_then(|id| CorrelationId::new(format!("cloudtrail:{id}")).ok())
        .unwrap_or_else(CorrelationId::generate);
    let mut event = DomainEvent::new(
        correlation,
        Actor::service("anomaly-forwarder"),
        secret,
        Outcome::Detected,
        EventData::AnomalyDetected {
            rule: alert.rule.clone(),
            severity: alert.severity,
            cloudtrail_event_id: get("event_id"),
            event_name: get("event_name"),
            principal: alert
                .evidence
                .get("principal_arn")
                .cloned()
                .unwrap_or_else(|| get("actor")),
            evidence,
            group: alert.group.as_ref().map(|delivery| AnomalyGroup {
                id: redactor.safe(&delivery.id).as_str().to_owned(),
                members: delivery
                    .members
                    .iter()
                    .map(|m| redactor.safe(m).as_str().to_owned())
                    .collect(),
                ..delivery.group.clone()
            }),
        },
    );
    event.event_id = outgoing.event_id;
    event.time = outgoing.event_id.timestamp();
    event
}

pub async fn publish_alerts(
    publisher: &impl EventPublisher,
    outgoing: &[&Outgoing],
    redactor: &Redactor,
) -> Result<(), PublishError> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let events: Vec<DomainEvent> = outgoing
        .iter()
        .map(|o| anomaly_event(o, redactor))
        .collect();
    publisher.publish(&events).await
}

/// A Slack-compatible incoming-webhook message: a `text` fallback and one section per alert.
pub fn webhook_body(outgoing: &[&Outgoing]) -> Value {
    let text = match outgoing {
        [one] => format!(
            "[{}] {}: {}{}",
            severity_label(one.alert.severity),
            one.alert.rule,
            one.alert.summary,
            one.alert
                .group
                .as_ref()
                .map(|g| format!(" ({})", group_sentence(g)))
                .unwrap_or_default()
        ),
        many => format!("{} keyward alerts", many.len()),
    };
    let blocks: Vec<Value> = outgoing
        .iter()
        .map(|out| {
            let alert = &out.alert;
            let fields: Vec<String> = [
                "actor",
                "secret",
                "event_name",
                "source_ip",
                "event_time",
                "event_id",
            ]
            .iter()
            .filter_map(|k| alert.evidence.get(*k).map(|v| format!("*{k}*: `{v}`")))
            .collect();
            json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!(
                    "*[{}] {}*: {}\n{}{}",
                    severity_label(alert.severity), alert.rule, alert.summary,
                    alert.group.as_ref().map(|g| format!("_{}_\n", group_sentence(g))).unwrap_or_default(),
                    fields.join("\n")
                )}
            })
        })
        .collect();
    json!({"text": text, "blocks": blocks})
}

pub async fn post_webhook(
    http: &HttpClient,
    url: &str,
    outgoing: &[&Outgoing],
) -> Result<(), ForwardError> {
    if outgoing.is_empty() {
        return Ok(());
    }
    // Not idempotent (a chat message): retried only on 429 and failures to connect.
    let request = HttpRequest::new(Method::POST, url)
        .json(&webhook_body(outgoing))
        .map_err(|_| ForwardError::Encoding("webhook"))?
        .idempotency(Idempotency::NotIdempotent);
    http.send(request)
        .await
        .map(|_| ())
        .map_err(|e| ForwardError::classify("webhook", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, severity: Severity, region: &str) -> Alert {
        Alert {
            rule: rule.into(),
            severity,
            summary: "summary".into(),
            event_time: "2026-11-01T10:00:00Z".parse().unwrap(),
            alert_id: format!("{rule}|x"),
            evidence: std::sync::Arc::new(
                [
                    ("actor".to_owned(), "mallory".to_owned()),
                    ("region".to_owned(), region.to_owned()),
                    (
                        "secret".to_owned(),
                        "/acme/prod/payments/db-credentials".to_owned(),
                    ),
                ]
                .into(),
            ),
            grouping: None,
            requires: None,
            group: None,
        }
    }

    fn outgoing(alert: Alert, at: DateTime<Utc>) -> Outgoing {
        Outgoing {
            alert,
            event_id: EventId::new(),
            processed_at: at,
        }
    }

    #[test]
    fn loki_streams_have_low_cardinality_labels_and_string_timestamps() {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let later = now + chrono::Duration::milliseconds(5);
        let batch = [
            outgoing(alert("bulk-secret-read", Severity::High, "eu-west-1"), now),
            outgoing(
                alert("bulk-secret-read", Severity::High, "eu-west-1"),
                later,
            ),
            outgoing(alert("root-activity", Severity::High, "us-east-1"), now),
        ];
        let body = loki_body(&batch.iter().collect::<Vec<_>>());
        let streams = body["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        let labels = streams[0]["stream"].as_object().unwrap();
        assert_eq!(labels.len(), 4, "{labels:?}");
        assert!(!labels.contains_key("actor") && !labels.contains_key("secret"));
        let entry = &streams[0]["values"][0];
        // Each entry carries its own recorded processing time, as a string of nanoseconds.
        assert_eq!(entry[0], now.timestamp_nanos_opt().unwrap().to_string());
        assert_eq!(
            streams[0]["values"][1][0],
            later.timestamp_nanos_opt().unwrap().to_string()
        );
        let line: Value = serde_json::from_str(entry[1].as_str().unwrap()).unwrap();
        assert_eq!(line["event_time"], "2026-11-01T10:00:00+00:00");
        assert_eq!(entry[2]["actor"], "mallory");
    }

    #[tokio::test]
    async fn alerts_become_valid_anomaly_events_with_redacted_evidence() {
        let mut a = alert("unlisted-reader", Severity::High, "eu-west-1");
        let evidence = std::sync::Arc::make_mut(&mut a.evidence);
        evidence.insert("event_id".into(), "e-1".into());
        evidence.insert("event_name".into(), "GetSecretValue".into());
        evidence.insert(
            "secret".into(),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/payments/db-credentials-AbCdEf".into(),
        );
        evidence.insert("user_agent".into(), "curl/8 token=abcdef0123456789".into());
        let publisher = keyward_shared::ports::InMemoryEventPublisher::default();
        let out = outgoing(a, Utc::now());
        publish_alerts(&publisher, &[&out], &Redactor::new())
            .await
            .unwrap();
        let events = publisher.published.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        // The recorded id, so a retry publishes the same event.
        assert_eq!(event.event_id, out.event_id);
        assert_eq!(event.correlation_id.as_str(), "cloudtrail:e-1");
        assert_eq!(event.source(), "keyward.anomaly-forwarder");
        assert_eq!(
            event.secret.as_ref().unwrap().name,
            "/acme/prod/payments/db-credentials"
        );
        let json = event.to_detail_json().unwrap();
        assert!(json.contains("\"cloudtrail_event_id\":\"e-1\""), "{json}");
        assert!(!json.contains("abcdef0123456789"), "{json}");
        assert!(json.contains("\"principal\":\"mallory\""), "{json}");
    }

    #[test]
    fn webhook_messages_summarise() {
        let now = Utc::now();
        let one = webhook_body(&[&outgoing(
            alert("root-activity", Severity::High, "eu-west-1"),
            now,
        )]);
        assert_eq!(one["text"], "[high] root-activity: summary");
        assert!(
            one["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("`mallory`")
        );
        let many = webhook_body(&[
            &outgoing(alert("a", Severity::Low, "r"), now),
            &outgoing(alert("b", Severity::Low, "r"), now),
        ]);
        assert_eq!(many["text"], "2 keyward alerts");
    }
}
