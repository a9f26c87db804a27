use std::sync::Mutex;

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyward_shared::audit::{InMemoryAuditBucket, LocalKeySigner};
use keyward_shared::config::env_of;
use keyward_shared::events::EventData;
use keyward_shared::lambda::Handler;
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::{
    CatalogEntry, InMemoryEventPublisher, InMemoryMarkerStore, InMemoryReportStore,
    InMemorySecretCatalog, Marker, MarkerError, MarkerStore, ReportStore, StaticManifest,
};

use super::*;
use crate::reminders::{REMINDER_PREFIX, ReminderSink};

const ENUMS: &str = "version: 1
secret_types:
  api-key: {rotation: [random, manual]}
domains: [payments]
owners: [team-payments]
rotation: [random, manual]
";

const SECRETS: &str = "version: 1
org: acme
environments: [prod]
secrets:
  - service: payments
    name: stripe-api-key
    type: api-key
    domain: payments
    owner: team-payments
    classification: restricted
    rotation: {strategy: manual, days: 90}
    environments: [prod]
  - service: payments
    name: webhook-signing
    type: api-key
    domain: payments
    owner: team-payments
    classification: confidential
    rotation: {strategy: random, days: 30}
    environments: [prod]
";

const STRIPE: &str = "/acme/prod/payments/stripe-api-key";

fn firing() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 6, 0, 0).unwrap()
}

fn payload(at: DateTime<Utc>) -> String {
    serde_json::json!({
        "version": "0", "id": "f-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": at.to_rfc3339(), "region": "eu-west-1",
        "resources": [], "detail": {}
    })
    .to_string()
}

fn entry(name: &str, created_days_ago: i64) -> CatalogEntry {
    CatalogEntry {
        arn: format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf"),
        name: name.to_owned(),
        tags: Vec::new(),
        governance: Ok(None),
        rotation_enabled: false,
        rotation_days: None,
        rotation_lambda_arn: None,
        last_rotated: None,
        next_rotation: None,
        last_changed: None,
        last_accessed: None,
        created: Some(firing() - Duration::days(created_days_ago)),
        deleted: None,
        kms_key_id: None,
        primary_region: None,
        current_version: Some("v1".into()),
    }
}

/// The state bucket: markers and reports in one place, as in S3.
#[derive(Default)]
struct State {
    markers: InMemoryMarkerStore,
    reports: InMemoryReportStore,
}

impl MarkerStore for State {
    async fn create_or_get(&self, key: &str, body: &str) -> Result<Marker, MarkerError> {
        self.markers.create_or_get(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Marker>, MarkerError> {
        self.markers.get(key).await
    }
    async fn overwrite(&self, key: &str, body: &str) -> Result<(), MarkerError> {
        self.markers.overwrite(key, body).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, MarkerError> {
        self.markers.list(prefix).await
    }
    async fn count(&self, prefix: &str, at_least: u64) -> Result<u64, MarkerError> {
        self.markers.count(prefix, at_least).await
    }
}

impl ReportStore for State {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), MarkerError> {
        self.reports.put(key, bytes, content_type).await
    }
}

/// A chat that records what it was sent, and fails while told to.
#[derive(Default)]
struct Chat {
    sent: Mutex<Vec<String>>,
    fail: Mutex<bool>,
}

impl ReminderSink for Chat {
    async fn send(&self, text: &str) -> Result<(), String> {
        if *self.fail.lock().unwrap() {
            return Err("503 from the webhook".into());
        }
        self.sent.lock().unwrap().push(text.to_owned());
        Ok(())
    }
}

fn config() -> Config {
    Config::from_env(&env_of(&[
        ("KEYWARD_EVENT_BUS", "keyward"),
        ("KEYWARD_SECRET_PREFIX", "/acme/prod/"),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config/manifest/"),
        ("KEYWARD_STATE_BUCKET", "state"),
        ("AUDIT_BUCKET", "audit"),
        ("DIGEST_KMS_KEY_ID", "alias/digest"),
    ]))
    .unwrap()
}

type TestReport = PostureReport<
    StaticManifest,
    InMemorySecretCatalog,
    State,
    InMemoryAuditBucket,
    LocalKeySigner,
    InMemoryEventPublisher,
    Chat,
>;

/// The stripe key (manual, 90 days) was created 87 days before the firing: due in 3 days.
fn report(webhook: Option<Chat>) -> TestReport {
    PostureReport {
        manifests: StaticManifest(
            Manifest::from_sources(&[("payments.yaml", SECRETS)], ("enums.yaml", ENUMS)).unwrap(),
        ),
        secrets: InMemorySecretCatalog {
            entries: vec![
                entry(STRIPE, 87),
                entry("/acme/prod/payments/webhook-signing", 2),
            ],
        },
        state: State::default(),
        audit: InMemoryAuditBucket::default(),
        digest_key: LocalKeySigner::generate().unwrap(),
        bus: InMemoryEventPublisher::default(),
        webhook,
        config: config(),
    }
}

#[tokio::test]
async fn a_firing_writes_the_report_puts_one_snapshot_and_reminds_once() {
    let report = report(Some(Chat::default()));
    let outcome = report.handle(&payload(firing())).await.unwrap();
    assert_eq!(
        outcome.report_key,
        "reports/posture/2026/12/04/posture-20261204T060000Z.json"
    );
    assert_eq!(outcome.figures.secrets_governed, 2);
    assert!(outcome.snapshot_published);
    assert_eq!(outcome.reminders.sent, 1);
    let objects = report.state.reports.objects.lock().unwrap().clone();
    let (json, content_type) = &objects[&outcome.report_key];
    assert_eq!(*content_type, "application/json");
    let stored: Posture = serde_json::from_slice(json).unwrap();
    assert_eq!(stored.headline.figures, outcome.figures);
    assert_eq!(objects["reports/posture/latest.json"].0, *json);
    let (page, page_type) = &objects[&outcome.page_key];
    assert!(page_type.starts_with("text/html"));
    assert!(String::from_utf8_lossy(page).contains(STRIPE));

    let published = report.bus.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    let EventData::PostureSnapshot {
        figures,
        report_key,
        report_sha256,
    } = &published[0].data
    else {
        panic!("not a snapshot: {:?}", published[0].data);
    };
    assert_eq!(figures, &outcome.figures);
    assert_eq!(report_key, &outcome.report_key);
    assert_eq!(report_sha256, &sha256_hex(json));
    // Figures only: no secret is named in the event.
    let detail = published[0].to_detail_json().unwrap();
    assert!(!detail.contains("/acme/"), "{detail}");

    let sent = report
        .webhook
        .as_ref()
        .unwrap()
        .sent
        .lock()
        .unwrap()
        .clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(STRIPE) && sent[0].contains("team-payments"));
    assert!(
        sent[0].contains("due on 2026-12-07 (in 3 day(s))"),
        "{}",
        sent[0]
    );

    // A retry of the same firing: same report, no second snapshot, no second reminder.
    let again = report.handle(&payload(firing())).await.unwrap();
    assert_eq!(again.report_key, outcome.report_key);
    assert!(!again.snapshot_published);
    assert_eq!(again.reminders.already_sent, 1);
    assert_eq!(report.bus.published.lock().unwrap().len(), 1);
    assert_eq!(
        report.webhook.as_ref().unwrap().sent.lock().unwrap().len(),
        1
    );

    // The next day's run: a new snapshot, still no second reminder for the same due date.
    let next = report
        .handle(&payload(firing() + Duration::days(1)))
        .await
        .unwrap();
    assert!(next.snapshot_published);
    assert_eq!(next.reminders.already_sent, 1);
    assert_eq!(
        report.webhook.as_ref().unwrap().sent.lock().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_reminder_that_failed_fails_the_firing_and_the_retry_sends_it_once() {
    let report = report(Some(Chat::default()));
    *report.webhook.as_ref().unwrap().fail.lock().unwrap() = true;
    let err = report.handle(&payload(firing())).await.unwrap_err();
    assert_eq!(err.kind(), "ReminderDeliveryError");
    // The report and the snapshot were written before the reminders.
    assert_eq!(report.bus.published.lock().unwrap().len(), 1);
    *report.webhook.as_ref().unwrap().fail.lock().unwrap() = false;
    let retry = report.handle(&payload(firing())).await.unwrap();
    assert_eq!(retry.reminders.sent, 1);
    assert!(!retry.snapshot_published);
    assert_eq!(
        report.webhook.as_ref().unwrap().sent.lock().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_claim_that_never_reported_back_is_not_sent_again() {
    let report = report(Some(Chat::default()));
    let reminder = reminders::Reminder {
        secret: STRIPE.into(),
        owner: "team-payments".into(),
        due: firing() - Duration::days(87) + Duration::days(90),
    };
    assert!(reminder.key().starts_with(REMINDER_PREFIX));
    report
        .state
        .create_or_get(&reminder.key(), "pending")
        .await
        .unwrap();
    let outcome = report.handle(&payload(firing())).await.unwrap();
    assert_eq!(outcome.reminders.unconfirmed, 1);
    assert!(
        report
            .webhook
            .as_ref()
            .unwrap()
            .sent
            .lock()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn without_a_webhook_reminders_are_counted_not_sent() {
    let report = report(None);
    let outcome = report.handle(&payload(firing())).await.unwrap();
    assert_eq!(outcome.reminders.due, 1);
    assert_eq!(outcome.reminders.no_webhook, 1);
}

#[tokio::test]
async fn a_bad_event_is_refused_and_nothing_is_written() {
    let report = report(None);
    let err = report.handle("{not json").await.unwrap_err();
    assert_eq!(err.kind(), "InvalidEvent");
    assert!(report.state.reports.objects.lock().unwrap().is_empty());
    assert!(report.bus.published.lock().unwrap().is_empty());
}

#[test]
fn configuration_defaults_and_bounds() {
    let c = config();
    assert_eq!(c.org, "acme");
    assert_eq!(c.reports_prefix, "reports/posture/");
    assert_eq!((c.window_days, c.history_days), (7, 30));
    assert_eq!(c.max_digest_age_hours, 2);
    assert!(c.webhook_secret_arn.is_none());
    let base = [
        ("KEYWARD_EVENT_BUS", "keyward"),
        ("KEYWARD_SECRET_PREFIX", "/acme/prod/"),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config/manifest/"),
        ("KEYWARD_STATE_BUCKET", "state"),
        ("AUDIT_BUCKET", "audit"),
        ("DIGEST_KMS_KEY_ID", "alias/digest"),
    ];
    for (name, value, message) in [
        ("POSTURE_WINDOW_DAYS", "0", "outside 1..=90"),
        ("POSTURE_HISTORY_DAYS", "3", "outside 7..=400"),
        ("POSTURE_REPORTS_PREFIX", "/reports", "must be a key prefix"),
    ] {
        let mut pairs = base.to_vec();
        pairs.push((name, value));
        let err = Config::from_env(&env_of(&pairs)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(message), "{err}");
    }
}

/// The sample in `events/posture-report/` is the schedule's event: its time names the report.
#[tokio::test]
async fn the_sample_event_names_the_report_by_its_time() {
    let sample = include_str!("../../../events/posture-report/scheduled.json");
    let outcome = report(None).handle(sample).await.unwrap();
    assert_eq!(
        outcome.report_key,
        "reports/posture/2026/11/23/posture-20261123T060000Z.json"
    );
    assert_eq!(
        outcome.page_key,
        "reports/posture/2026/11/23/posture-20261123T060000Z.html"
    );
}
