//! Alerts to the fake Loki and the fake Slack webhook over real HTTP: what arrives, once, through
//! rate limits and server errors, and what a refused request reports.

use std::time::Duration;

use anomaly_forwarder::forward::{LokiTarget, SERVICE_LABEL, post_webhook, push_to_loki};
use anomaly_forwarder::rules::{Alert, DEFAULT_RULES, Detector, Environment, MemoryState};
use keyward_integration::fakes::loki::FakeLoki;
use keyward_integration::fakes::webhook::FakeWebhook;
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::redact::Redactor;
use serde_json::json;

fn http() -> HttpClient {
    HttpClient::new(
        "keyward-anomaly-forwarder-test",
        Duration::from_secs(5),
        RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        Redactor::new(),
    )
    .unwrap()
}

/// Alerts from a burst of reads a month ago: 20 distinct secrets (bulk read), each first seen.
fn alerts() -> Vec<Alert> {
    let detector = Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap();
    let mut state = MemoryState::default();
    let mut alerts = Vec::new();
    for n in 0..20 {
        let record = json!({
            "eventVersion": "1.09", "eventID": format!("evt-{n}"), "eventTime": "2026-10-20T09:15:00Z",
            "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
            "eventType": "AwsApiCall", "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.9",
            "userAgent": "stratus-red-team", "recipientAccountId": "123456789012",
            "userIdentity": {"type": "IAMUser", "userName": "mallory", "arn": "arn:aws:iam::123456789012:user/mallory"},
            "requestParameters": {"secretId": format!("/acme/prod/svc/secret-{n}")},
        });
        alerts.extend(detector.evaluate(&record.to_string(), &mut state).unwrap());
    }
    alerts
}

#[tokio::test]
async fn alerts_reach_loki_once_through_rate_limits_and_server_errors() {
    let loki = FakeLoki::start(true).await.unwrap();
    let target = LokiTarget {
        push_url: loki.push_url(),
        tenant: Some("keyward".into()),
    };
    let alerts = alerts();
    assert_eq!(alerts.len(), 21, "20 first-seen and one bulk read");
    loki.fake.throttle_next(1);
    loki.fake.fail_next(1);
    push_to_loki(&http(), &target, &alerts, chrono::Utc::now())
        .await
        .unwrap();
    let entries = loki.fake.entries();
    assert_eq!(entries.len(), 21, "each alert stored once");
    let (requests, gzipped) = loki.fake.requests();
    assert_eq!(
        (requests, gzipped),
        (3, 1),
        "429, 500, then the gzip push that was stored"
    );
    let bulk = entries
        .iter()
        .find(|e| e.labels["rule"] == "bulk-secret-read")
        .unwrap();
    assert_eq!(bulk.labels["service"], SERVICE_LABEL);
    assert_eq!(bulk.labels["severity"], "high");
    assert_eq!(bulk.metadata["actor"], "mallory");
    assert_eq!(bulk.tenant.as_deref(), Some("keyward"));
    // A month-old event is accepted: entries carry the processing time, the line the event's.
    let line: serde_json::Value = serde_json::from_str(&bulk.line).unwrap();
    assert_eq!(line["event_time"], "2026-10-20T09:15:00+00:00");

    // The same push again (a retried invocation) stores nothing new: identical entries.
    let processed_at = chrono::Utc::now();
    let retry_target = LokiTarget {
        push_url: loki.push_url(),
        tenant: Some("keyward".into()),
    };
    push_to_loki(&http(), &retry_target, &alerts[..1], processed_at)
        .await
        .unwrap();
    push_to_loki(&http(), &retry_target, &alerts[..1], processed_at)
        .await
        .unwrap();
    assert_eq!(loki.fake.entries().len(), 22);
}

#[tokio::test]
async fn a_refused_push_is_reported_and_not_retried() {
    let loki = FakeLoki::start(true).await.unwrap();
    let no_tenant = LokiTarget {
        push_url: loki.push_url(),
        tenant: None,
    };
    let err = push_to_loki(&http(), &no_tenant, &alerts(), chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("401") && err.to_string().contains("no org id"),
        "{err}"
    );
    assert_eq!(loki.fake.requests().0, 1, "no retry of a refusal");
    assert!(loki.fake.entries().is_empty());

    // Still unavailable after the client's retries: retryable, so the invocation fails.
    let tenant = LokiTarget {
        push_url: loki.push_url(),
        tenant: Some("t".into()),
    };
    loki.fake.fail_next(10);
    let err = push_to_loki(&http(), &tenant, &alerts(), chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn the_webhook_gets_one_message_through_a_rate_limit() {
    let hook = FakeWebhook::start().await.unwrap();
    let alerts = alerts();
    let bulk: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.rule == "bulk-secret-read")
        .cloned()
        .collect();
    hook.fake.throttle_next(1);
    post_webhook(&http(), &hook.url(), &bulk).await.unwrap();
    let messages = hook.fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["text"],
        "[high] bulk-secret-read: One principal read many distinct secrets in a short window"
    );
    let wrong = format!("{}/services/T0/B0/nope", hook.server.base_url());
    let err = post_webhook(&http(), &wrong, &bulk).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("no_service"),
        "{err}"
    );
}
