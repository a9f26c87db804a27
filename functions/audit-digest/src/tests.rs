use std::collections::BTreeMap;

use chrono::TimeZone;
use keyward_shared::audit::{
    InMemoryAuditBucket, LocalKeySigner, ObjectKind, Status, VerifyOptions, verify,
};

use super::*;

const BUCKET: &str = "audit";

fn config() -> Config {
    Config {
        bucket: BUCKET.into(),
        kms_key_id: "local".into(),
        lookback_hours: 48,
        s3_force_path_style: false,
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap()
}

/// A record for an event at `event_time`, written at `written`.
fn record(
    bucket: &InMemoryAuditBucket,
    event_time: DateTime<Utc>,
    written: DateTime<Utc>,
    n: u32,
) -> String {
    let key = format!("{}rec-{n}.json", record_partition(&event_time));
    bucket.put(
        &key,
        format!("{{\"n\":{n}}}\n").into_bytes(),
        BTreeMap::new(),
        written,
    );
    key
}

async fn verified(
    bucket: &InMemoryAuditBucket,
    signer: &LocalKeySigner,
) -> keyward_shared::audit::VerifyReport {
    let key = signer.public_key_der().await.unwrap();
    verify(bucket, BUCKET, &key, &VerifyOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn digests_chain_and_cover_every_record_including_late_ones() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    let r1 = record(&bucket, at(10, 5), at(10, 6), 1);
    let r2 = record(&bucket, at(10, 40), at(10, 41), 2);
    let first = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap();
    assert!(first.written && first.previous.is_none());
    assert_eq!(first.records, 2);

    // A record whose event happened at 10:30 but that was only written at 11:20 (EventBridge
    // retried it): it belongs to the 10:00 partition, yet the next digest must list it.
    let late = record(&bucket, at(10, 30), at(11, 20), 3);
    let r4 = record(&bucket, at(11, 10), at(11, 11), 4);
    let second = seal_period(&bucket, BUCKET, &signer, &config(), at(12, 0))
        .await
        .unwrap();
    assert_eq!(second.previous.as_deref(), Some(first.key.as_str()));
    assert_eq!(second.records, 2, "{second:?}");

    let report = verified(&bucket, &signer).await;
    assert!(report.ok(), "{}", report.summary());
    for key in [&r1, &r2, &late, &r4] {
        assert!(
            report
                .objects
                .iter()
                .any(|o| &o.key == key && o.status == Status::Valid),
            "{key} not valid: {report:#?}"
        );
    }
    assert_eq!(report.count(ObjectKind::Digest, Status::Valid), 2);
}

#[tokio::test]
async fn a_write_in_flight_at_the_previous_digest_is_caught_once() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    record(&bucket, at(10, 5), at(10, 6), 1);
    seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap();
    // LastModified just before the first digest's end, but invisible when it listed.
    let in_flight = record(&bucket, at(10, 58), at(10, 59), 2);
    let second = seal_period(&bucket, BUCKET, &signer, &config(), at(12, 0))
        .await
        .unwrap();
    assert_eq!(second.records, 1);
    let third = seal_period(&bucket, BUCKET, &signer, &config(), at(13, 0))
        .await
        .unwrap();
    assert_eq!(
        third.records, 0,
        "already covered records are not listed again"
    );
    let report = verified(&bucket, &signer).await;
    assert!(report.ok(), "{}", report.summary());
    assert!(
        report
            .objects
            .iter()
            .any(|o| o.key == in_flight && o.status == Status::Valid)
    );
}

#[tokio::test]
async fn a_period_ending_just_past_the_hour_covers_that_hour() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    let early = record(&bucket, at(11, 0), at(11, 0), 1);
    let just_before_end = record(&bucket, at(11, 1), at(11, 1), 2);
    let sealed = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 2))
        .await
        .unwrap();
    assert_eq!(sealed.records, 2, "{sealed:?}");
    let report = verified(&bucket, &signer).await;
    for key in [&early, &just_before_end] {
        assert!(
            report
                .objects
                .iter()
                .any(|o| &o.key == key && o.status == Status::Valid),
            "{key}: {report:#?}"
        );
    }
}

#[tokio::test]
async fn a_retried_firing_writes_nothing_new() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    record(&bucket, at(10, 5), at(10, 6), 1);
    let first = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap();
    let again = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap();
    assert_eq!(again.key, first.key);
    assert!(!again.written);
    assert_eq!(bucket.list_versions(DIGEST_PREFIX).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_older_period_after_a_newer_digest_is_refused() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    seal_period(&bucket, BUCKET, &signer, &config(), at(12, 0))
        .await
        .unwrap();
    let err = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, DigestError::OutOfOrder { .. }), "{err}");
    assert_eq!(
        keyward_shared::lambda::diagnostic(&err).error_type,
        "DigestOutOfOrder"
    );
}

#[tokio::test]
async fn a_corrupt_previous_digest_stops_the_chain_instead_of_forking_it() {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    let first = seal_period(&bucket, BUCKET, &signer, &config(), at(11, 0))
        .await
        .unwrap();
    bucket.put(&first.key, b"garbage".to_vec(), BTreeMap::new(), at(11, 30));
    let err = seal_period(&bucket, BUCKET, &signer, &config(), at(12, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, DigestError::BrokenPrevious { .. }), "{err}");
    assert_eq!(
        bucket.list_versions(DIGEST_PREFIX).await.unwrap().len(),
        2,
        "nothing new written"
    );
}

#[test]
fn config_is_validated() {
    let env: std::collections::HashMap<String, String> = [
        ("AUDIT_BUCKET", "b"),
        ("DIGEST_KMS_KEY_ID", "k"),
        ("DIGEST_LOOKBACK_HOURS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(
        Config::from_env(&env)
            .unwrap_err()
            .to_string()
            .contains("DIGEST_LOOKBACK_HOURS")
    );
}

#[test]
fn the_period_ends_at_the_firing_time_to_the_second() {
    let event: aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> = serde_json::from_str(
        r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","account":"1","time":"2026-11-22T11:00:07Z","region":"eu-west-1","resources":[],"detail":{}}"#,
    )
    .unwrap();
    assert_eq!(
        period_end_of(&event),
        Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 7).unwrap()
    );
}
