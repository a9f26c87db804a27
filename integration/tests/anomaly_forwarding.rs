//! Alerts to the fake Loki and the fake Slack webhook over real HTTP: what arrives, once, through
//! rate limits and server errors, and what a refused request reports.

use keyward_integration::support::http_client;
use keyward_shared::lambda::FailureKind;
use std::time::Duration;

use anomaly_forwarder::forward::{LokiTarget, Outgoing, SERVICE_LABEL, post_webhook, push_to_loki};
use anomaly_forwarder::rules::{Alert, DEFAULT_RULES, Detector, Environment, MemoryState};
use keyward_integration::fakes::loki::FakeLoki;
use keyward_integration::fakes::webhook::FakeWebhook;
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::redact::Redactor;
use serde_json::json;

fn http() -> HttpClient {
    http_client(
        "keyward-anomaly-forwarder-test",
        Duration::from_secs(5),
        RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
    )
}

/// Alerts from a burst of reads a month ago by a principal never seen before: 20 distinct secrets
/// (bulk read), each first seen, by a new client from a new network (ungrouped: in memory).
fn outgoing(alerts: &[Alert]) -> Vec<Outgoing> {
    alerts.iter().cloned().map(Outgoing::new).collect()
}

fn refs(outgoing: &[Outgoing]) -> Vec<&Outgoing> {
    outgoing.iter().collect()
}

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
    assert_eq!(
        alerts.len(),
        24,
        "20 first-seen reads, a new client and a new network, the bulk read and its novel-client twin"
    );
    let batch = outgoing(&alerts);
    loki.fake.throttle_next(1);
    loki.fake.fail_next(1);
    push_to_loki(&http(), &target, &refs(&batch)).await.unwrap();
    let entries = loki.fake.entries();
    assert_eq!(entries.len(), 24, "each alert stored once");
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
    assert_eq!(bulk.labels["severity"], "medium");
    assert_eq!(bulk.metadata["actor"], "mallory");
    assert_eq!(bulk.tenant.as_deref(), Some("keyward"));
    // A month-old event is accepted: entries carry the processing time, the line the event's.
    let line: serde_json::Value = serde_json::from_str(&bulk.line).unwrap();
    assert_eq!(line["event_time"], "2026-10-20T09:15:00+00:00");

    // The latest entry of a stream pushed again (a retried request) is dropped by Loki; across
    // invocations the delivery ledger keeps alerts from being pushed twice (see below).
    let last = refs(&batch)
        .into_iter()
        .filter(|o| o.alert.rule == "bulk-secret-read")
        .collect::<Vec<_>>();
    push_to_loki(&http(), &target, &last).await.unwrap();
    assert_eq!(loki.fake.entries().len(), 24);
}

#[tokio::test]
async fn a_refused_push_is_reported_and_not_retried() {
    let loki = FakeLoki::start(true).await.unwrap();
    let no_tenant = LokiTarget {
        push_url: loki.push_url(),
        tenant: None,
    };
    let batch = outgoing(&alerts());
    let err = push_to_loki(&http(), &no_tenant, &refs(&batch))
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
    let err = push_to_loki(&http(), &tenant, &refs(&batch))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn the_webhook_gets_one_message_through_a_rate_limit() {
    let hook = FakeWebhook::start().await.unwrap();
    let alerts = alerts();
    let bulk = outgoing(
        &alerts
            .into_iter()
            .filter(|a| a.rule == "bulk-secret-read")
            .collect::<Vec<_>>(),
    );
    let bulk = refs(&bulk);
    hook.fake.throttle_next(1);
    post_webhook(&http(), &hook.url(), &bulk).await.unwrap();
    let messages = hook.fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["text"],
        "[medium] bulk-secret-read: One principal read many distinct secrets in a short window"
    );
    let wrong = format!("{}/services/T0/B0/nope", hook.server.base_url());
    let err = post_webhook(&http(), &wrong, &bulk).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("no_service"),
        "{err}"
    );
}

// ------------------------------------------------------------------ the function's handler
// moto's S3 holds the trail bucket (log files streamed from it) and the state bucket (the
// detection state and the delivery ledger, through the production S3 adapter); the fakes play
// Loki and the webhook; the bus is in memory (its adapter is tested in aws_adapters).

use std::sync::Arc;

use anomaly_forwarder::handler::{Forwarder, HandlerError, S3LogFiles, webhook_url_from_secret};
use keyward_integration::moto::{BucketKind, MotoServer};
use keyward_shared::adapters::aws::S3MarkerStore;
use keyward_shared::ports::InMemoryEventPublisher;

const LOG_KEY: &str = "AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/20/123456789012_CloudTrail_eu-west-1_20261120T1020Z_Kp3vX8sQw2LmN4aB.json.gz";
const PLANTED: &str = "Bearer plantedtoken0123456789abcdef";

fn gzip(records: &[serde_json::Value]) -> Vec<u8> {
    use std::io::Write;
    let body = json!({ "Records": records }).to_string();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// A burst of 20 distinct reads by one user (now, so Loki accepts them), one of them with a
/// token in its user agent, and a root login.
fn burst() -> Vec<serde_json::Value> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut records: Vec<serde_json::Value> = (0..20)
        .map(|n| {
            json!({
                "eventVersion": "1.09", "eventID": uuid::Uuid::new_v4().to_string(), "eventTime": now,
                "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
                "eventType": "AwsApiCall", "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.9",
                "userAgent": if n == 0 { format!("curl/8 Authorization: {PLANTED}") } else { "aws-cli/2".into() },
                "recipientAccountId": "123456789012",
                "userIdentity": {"type": "IAMUser", "userName": "mallory",
                                 "arn": "arn:aws:iam::123456789012:user/mallory"},
                "requestParameters": {"secretId": format!("/acme/prod/svc/secret-{n}")},
            })
        })
        .collect();
    records.push(json!({
        "eventVersion": "1.09", "eventID": uuid::Uuid::new_v4().to_string(), "eventTime": now,
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "recipientAccountId": "123456789012",
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"},
        "responseElements": {"ConsoleLogin": "Success"},
    }));
    records
}

fn object_created(bucket: &str, key: &str) -> String {
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            keyward_integration::repo_root().join("events/anomaly-forwarder/log-file-created.json"),
        )
        .unwrap(),
    )
    .unwrap();
    event["detail"]["bucket"]["name"] = bucket.into();
    event["detail"]["object"]["key"] = key.into();
    event.to_string()
}

struct World {
    forwarder: Forwarder<S3MarkerStore, InMemoryEventPublisher, S3LogFiles>,
    trail: String,
    loki: keyward_integration::fakes::loki::RunningLoki,
    hook: keyward_integration::fakes::webhook::RunningWebhook,
}

async fn world() -> World {
    let moto = MotoServer::shared().await;
    let trail = format!("trail-{}", uuid::Uuid::new_v4().simple());
    let state = format!("state-{}", uuid::Uuid::new_v4().simple());
    moto.create_bucket(&trail, BucketKind::Versioned)
        .await
        .unwrap();
    moto.create_bucket(&state, BucketKind::Versioned)
        .await
        .unwrap();
    let loki = FakeLoki::start(true).await.unwrap();
    let hook = FakeWebhook::start().await.unwrap();
    let redactor = Redactor::new();
    let webhook_url = webhook_url_from_secret(&hook.url(), &redactor).unwrap();
    let forwarder = Forwarder {
        detector: Arc::new(Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap()),
        state: S3MarkerStore::new(moto.s3(), &state),
        log_files: S3LogFiles { client: moto.s3() },
        publisher: InMemoryEventPublisher::default(),
        http: HttpClient::new(
            "keyward-anomaly-forwarder-test",
            Duration::from_secs(5),
            RetryPolicy {
                base_delay: Duration::from_millis(10),
                max_attempts: 2,
                ..RetryPolicy::default()
            },
            redactor.clone(),
        )
        .unwrap(),
        loki: Some(LokiTarget {
            push_url: loki.push_url(),
            tenant: Some("keyward".into()),
        }),
        webhook_url: Some(webhook_url),
        redactor,
    };
    World {
        forwarder,
        trail,
        loki,
        hook,
    }
}

#[tokio::test]
async fn a_log_file_is_streamed_from_s3_and_each_alert_reaches_each_sink_once_across_a_failed_attempt()
 {
    let w = world().await;
    MotoServer::shared()
        .await
        .s3()
        .put_object()
        .bucket(&w.trail)
        .key(LOG_KEY)
        .body(gzip(&burst()).into())
        .send()
        .await
        .unwrap();
    let event = object_created(&w.trail, LOG_KEY);

    // Loki is down for the whole first attempt: the webhook and the bus get the alerts, the
    // invocation fails (so it is retried), and the error names the sink.
    w.loki.fake.fail_next(100);
    let err = w.forwarder.handle(&event).await.unwrap_err();
    assert!(matches!(err, HandlerError::Delivery(_)), "{err}");
    assert!(err.to_string().contains("loki"), "{err}");
    assert!(w.loki.fake.entries().is_empty());
    let messages = w.hook.fake.messages().len();
    let events = w.forwarder.publisher.published.lock().unwrap().len();
    assert!(messages >= 1);
    // 20 first-seen reads in one group, the new client and network (one group each), the bulk
    // read and its novel-client twin, one root login (its group).
    assert_eq!(events, 6);

    // The retry: only Loki is missing, and only Loki is sent to.
    w.loki.fake.fail_next(0);
    let outcome = w.forwarder.handle(&event).await.unwrap();
    assert_eq!(outcome.input, "log-file");
    assert_eq!((outcome.records, outcome.rejected), (21, 0));
    assert_eq!(outcome.alerts, 6);
    assert_eq!(outcome.sent, [6, 0, 0], "{outcome:?}");
    assert_eq!(outcome.already, [0, 6, 6], "{outcome:?}");
    assert_eq!(w.loki.fake.entries().len(), 6);
    assert_eq!(w.hook.fake.messages().len(), messages);
    let published = w.forwarder.publisher.published.lock().unwrap().clone();
    assert_eq!(published.len(), 6);

    // A third delivery of the same file (S3 and EventBridge deliver at least once): nothing.
    let outcome = w.forwarder.handle(&event).await.unwrap();
    assert_eq!(outcome.sent, [0, 0, 0]);
    assert_eq!(w.loki.fake.entries().len(), 6);

    // Exactly one bulk-read alert, and the token in a user agent reached no sink.
    let bulk = w
        .loki
        .fake
        .entries()
        .into_iter()
        .filter(|e| e.labels["rule"] == "bulk-secret-read")
        .count();
    assert_eq!(bulk, 1);
    let everything = format!(
        "{:?}{:?}{}",
        w.loki.fake.entries(),
        w.hook.fake.messages(),
        published
            .iter()
            .map(|e| e.to_detail_json().unwrap())
            .collect::<String>()
    );
    assert!(!everything.contains("plantedtoken0123456789abcdef"));
}

#[tokio::test]
async fn stream_events_digest_files_and_bad_input() {
    let w = world().await;
    let sample = |name: &str| {
        std::fs::read_to_string(
            keyward_integration::repo_root().join(format!("events/anomaly-forwarder/{name}")),
        )
        .unwrap()
    };
    // The stream: one denied read from EventBridge.
    let outcome = w
        .forwarder
        .handle(&sample("get-secret-value-denied.json"))
        .await
        .unwrap();
    assert_eq!(outcome.input, "record");
    let rules: Vec<String> = w
        .loki
        .fake
        .entries()
        .into_iter()
        .map(|e| e.labels["rule"].clone())
        .collect();
    assert!(
        rules.contains(&"denied-secret-access".to_owned()),
        "{rules:?}"
    );

    // A digest file is not a log file.
    let outcome = w
        .forwarder
        .handle(&sample("digest-file-created.json"))
        .await
        .unwrap();
    assert_eq!(outcome.input, "skipped");

    // Not an event we take, not JSON, a missing object, a damaged file: each a clear error.
    let err = w
        .forwarder
        .handle(r#"{"source":"aws.ec2","detail-type":"x","detail":{}}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "InvalidEvent");
    assert!(err.to_string().contains("aws.ec2"), "{err}");
    let err = w.forwarder.handle("{not json").await.unwrap_err();
    assert_eq!(err.kind(), "InvalidEvent");
    let err = w
        .forwarder
        .handle(&object_created(&w.trail, LOG_KEY))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "LogFileUnreadable", "{err}");

    let mut damaged = gzip(&burst());
    damaged.truncate(damaged.len() / 2);
    let key = LOG_KEY.replace("Kp3vX8sQw2LmN4aB", "Damaged000000000");
    MotoServer::shared()
        .await
        .s3()
        .put_object()
        .bucket(&w.trail)
        .key(&key)
        .body(damaged.into())
        .send()
        .await
        .unwrap();
    let err = w
        .forwarder
        .handle(&object_created(&w.trail, &key))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "LogFileDamaged", "{err}");
}

#[tokio::test]
async fn a_refused_webhook_never_prints_its_url() {
    let w = world().await;
    let redactor = Redactor::new();
    let wrong = format!(
        "{}/services/T0KEYWARD/B0ALERTS/secrettokenpart0123456789",
        w.hook.server.base_url()
    );
    let url = webhook_url_from_secret(&format!("  {wrong}\n"), &redactor).unwrap();
    let http = HttpClient::new(
        "test",
        Duration::from_secs(5),
        RetryPolicy::default(),
        redactor.clone(),
    )
    .unwrap();
    let batch = outgoing(&alerts()[..1]);
    let err = post_webhook(&http, &url, &refs(&batch)).await.unwrap_err();
    let text = keyward_shared::redact::error_chain(&err);
    assert!(text.contains("no_service"), "{text}");
    assert!(!text.contains("secrettokenpart0123456789"), "{text}");
    assert!(webhook_url_from_secret("http://hooks.example/x", &redactor).is_err());
}
