//! The verifier against an in-memory versioned bucket, with every tamper drill. The bucket here
//! enforces nothing, like an attacker who got past Object Lock: the verifier must catch it all.

use chrono::{Duration, TimeZone};

use super::*;

type Bucket = InMemoryAuditBucket;

trait CurrentExt {
    fn current_id(&self, key: &str) -> String;
}

impl CurrentExt for Bucket {
    fn current_id(&self, key: &str) -> String {
        self.current_version(key).unwrap()
    }
}

const BUCKET: &str = "audit-bucket";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

struct Trail {
    bucket: Bucket,
    public_key: Vec<u8>,
    digests: Vec<SealedDigest>,
    records: Vec<String>,
}

/// Three hourly periods with two records each, each period sealed by a chained digest.
async fn trail() -> Trail {
    let bucket = Bucket::default();
    let signer = LocalKeySigner::generate().unwrap();
    let public_key = signer.public_key_der().await.unwrap();
    let mut digests: Vec<SealedDigest> = Vec::new();
    let mut records = Vec::new();
    for period in 0..3 {
        let start = t0() + Duration::hours(period);
        let end = start + Duration::hours(1);
        let mut entries = Vec::new();
        for n in 0..2 {
            let at = start + Duration::minutes(10 + n * 20);
            let key = format!("{}{}.json", record_partition(&at), uuid::Uuid::now_v7());
            let body = format!("{{\"record\":{period}{n}}}\n").into_bytes();
            bucket.put(&key, body.clone(), BTreeMap::new(), at);
            let version_id = Some(bucket.current_id(&key));
            entries.push(DigestEntry {
                key: key.clone(),
                version_id,
                sha256: sha256_hex(&body),
            });
            records.push(key);
        }
        let document = DigestDocument {
            digest_version: DIGEST_VERSION,
            bucket: BUCKET.into(),
            key: digest_key(&end),
            period_start: start,
            period_end: end,
            records: entries,
            previous: digests.last().map(SealedDigest::as_previous),
            public_key_fingerprint: key_fingerprint(&public_key),
            signature_algorithm: SIGNATURE_ALGORITHM.into(),
        };
        let sealed = seal(&signer, document).await.unwrap();
        let metadata = BTreeMap::from([(META_SIGNATURE.to_owned(), sealed.signature_b64.clone())]);
        bucket.put(
            &sealed.document.key,
            sealed.bytes.clone(),
            metadata,
            end + Duration::seconds(5),
        );
        digests.push(sealed);
    }
    Trail {
        bucket,
        public_key,
        digests,
        records,
    }
}

async fn run(trail: &Trail) -> VerifyReport {
    verify(
        &trail.bucket,
        BUCKET,
        &trail.public_key,
        &VerifyOptions::default(),
    )
    .await
    .unwrap()
}

fn status_of(report: &VerifyReport, key: &str) -> Status {
    report
        .objects
        .iter()
        .filter(|o| o.key == key)
        .map(|o| o.status)
        .max()
        .unwrap_or_else(|| panic!("{key} not in the report: {report:#?}"))
}

#[tokio::test]
async fn an_untouched_trail_verifies() {
    let trail = trail().await;
    let report = run(&trail).await;
    assert!(report.ok(), "{}", report.summary());
    assert_eq!((report.digests_checked, report.records_checked), (3, 6));
    assert_eq!(report.count(ObjectKind::Record, Status::Valid), 6);
    assert!(report.summary().starts_with("VALID"));
}

#[tokio::test]
async fn a_record_written_after_the_newest_digest_is_pending_not_a_failure() {
    let trail = trail().await;
    let late = t0() + Duration::hours(3) + Duration::minutes(1);
    let key = format!("{}{}.json", record_partition(&late), uuid::Uuid::now_v7());
    trail
        .bucket
        .put(&key, b"{}".to_vec(), BTreeMap::new(), late);
    let report = run(&trail).await;
    assert_eq!(status_of(&report, &key), Status::Pending);
    assert!(report.ok());
}

#[tokio::test]
async fn drill_modify_a_record() {
    let trail = trail().await;
    let key = &trail.records[2];
    trail.bucket.put(
        key,
        b"{\"record\":\"rewritten\"}\n".to_vec(),
        BTreeMap::new(),
        t0() + Duration::hours(5),
    );
    let report = run(&trail).await;
    assert_eq!(status_of(&report, key), Status::Modified);
    assert_eq!(report.failures().count(), 1, "{report:#?}");
}

#[tokio::test]
async fn drill_overwrite_a_record_with_identical_bytes_is_still_caught() {
    let trail = trail().await;
    let key = &trail.records[0];
    let same = trail.bucket.current_bytes(key).unwrap();
    trail
        .bucket
        .put(key, same, BTreeMap::new(), t0() + Duration::hours(5));
    assert_eq!(status_of(&run(&trail).await, key), Status::Modified);
}

#[tokio::test]
async fn drill_delete_a_record() {
    let trail = trail().await;
    trail
        .bucket
        .delete(&trail.records[1], t0() + Duration::hours(5));
    trail.bucket.purge(&trail.records[4]);
    let report = run(&trail).await;
    assert_eq!(status_of(&report, &trail.records[1]), Status::Missing);
    assert_eq!(status_of(&report, &trail.records[4]), Status::Missing);
    assert_eq!(report.failures().count(), 2);
}

#[tokio::test]
async fn drill_add_an_unlisted_record() {
    let trail = trail().await;
    let at = t0() + Duration::minutes(30);
    let key = format!("{}{}.json", record_partition(&at), uuid::Uuid::now_v7());
    trail
        .bucket
        .put(&key, b"{\"forged\":true}\n".to_vec(), BTreeMap::new(), at);
    let report = run(&trail).await;
    assert_eq!(status_of(&report, &key), Status::NotCovered);
    assert_eq!(report.failures().count(), 1);
}

#[tokio::test]
async fn drill_modify_a_digest() {
    let trail = trail().await;
    let target = &trail.digests[1];
    let mut doc = target.document.clone();
    doc.records.pop();
    let metadata = BTreeMap::from([(META_SIGNATURE.to_owned(), target.signature_b64.clone())]);
    trail.bucket.put(
        &doc.key,
        doc.to_bytes(),
        metadata,
        t0() + Duration::hours(6),
    );
    let report = run(&trail).await;
    assert_eq!(
        status_of(&report, &target.document.key),
        Status::SignatureFailure
    );
    assert_eq!(
        status_of(&report, &trail.digests[2].document.key),
        Status::ChainBreak
    );
    // The record dropped from the digest is no longer covered.
    assert_eq!(status_of(&report, &trail.records[3]), Status::NotCovered);
}

#[tokio::test]
async fn drill_delete_a_digest() {
    let trail = trail().await;
    trail
        .bucket
        .delete(&trail.digests[1].document.key, t0() + Duration::hours(6));
    let report = run(&trail).await;
    assert_eq!(
        status_of(&report, &trail.digests[1].document.key),
        Status::Missing
    );
    let next = report
        .objects
        .iter()
        .find(|o| o.key == trail.digests[2].document.key)
        .unwrap();
    assert_eq!(next.status, Status::ChainBreak);
    assert!(next.detail.contains("is missing"), "{}", next.detail);
    // Its records lost their only digest.
    assert_eq!(status_of(&report, &trail.records[2]), Status::NotCovered);
}

#[tokio::test]
async fn drill_delete_a_digest_version_entirely() {
    let trail = trail().await;
    trail.bucket.purge(&trail.digests[0].document.key);
    let report = run(&trail).await;
    assert_eq!(
        status_of(&report, &trail.digests[0].document.key),
        Status::Missing
    );
    assert_eq!(
        status_of(&report, &trail.digests[1].document.key),
        Status::ChainBreak
    );
}

#[tokio::test]
async fn drill_swap_two_digests() {
    let trail = trail().await;
    let (a, b) = (&trail.digests[0], &trail.digests[1]);
    let meta =
        |s: &SealedDigest| BTreeMap::from([(META_SIGNATURE.to_owned(), s.signature_b64.clone())]);
    trail.bucket.put(
        &a.document.key,
        b.bytes.clone(),
        meta(b),
        t0() + Duration::hours(6),
    );
    trail.bucket.put(
        &b.document.key,
        a.bytes.clone(),
        meta(a),
        t0() + Duration::hours(6),
    );
    let report = run(&trail).await;
    for key in [&a.document.key, &b.document.key] {
        let entry = report
            .objects
            .iter()
            .find(|o| &o.key == key && o.kind == ObjectKind::Digest)
            .unwrap();
        assert_eq!(entry.status, Status::SignatureFailure, "{entry:?}");
        assert!(
            entry.detail.contains("moved or swapped"),
            "{}",
            entry.detail
        );
    }
    assert!(!report.ok());
}

#[tokio::test]
async fn drill_forge_a_signature_with_another_key() {
    let trail = trail().await;
    let forger = LocalKeySigner::generate().unwrap();
    let mut doc = trail.digests[2].document.clone();
    doc.records.clear();
    let forged = seal(&forger, doc).await.unwrap();
    let metadata = BTreeMap::from([(META_SIGNATURE.to_owned(), forged.signature_b64.clone())]);
    trail.bucket.put(
        &forged.document.key,
        forged.bytes.clone(),
        metadata,
        t0() + Duration::hours(6),
    );
    let report = run(&trail).await;
    let entry = report
        .objects
        .iter()
        .find(|o| o.key == forged.document.key)
        .unwrap();
    assert_eq!(entry.status, Status::SignatureFailure);
    assert!(
        entry.detail.contains("signature verification failed"),
        "{}",
        entry.detail
    );
    // Even with the forger's key as "the" key, the chain and the original key's fingerprint fail.
    let forger_key = forger.public_key_der().await.unwrap();
    let report = verify(
        &trail.bucket,
        BUCKET,
        &forger_key,
        &VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert!(!report.ok());
}

#[tokio::test]
async fn a_corrupt_digest_is_reported_not_a_panic() {
    let trail = trail().await;
    let key = trail.digests[0].document.key.clone();
    trail.bucket.put(
        &key,
        b"\x00garbage".to_vec(),
        BTreeMap::new(),
        t0() + Duration::hours(6),
    );
    let report = run(&trail).await;
    assert_eq!(status_of(&report, &key), Status::SignatureFailure);
}

#[tokio::test]
async fn ranges_limit_what_is_checked() {
    let trail = trail().await;
    let options = VerifyOptions {
        from: Some(t0() + Duration::hours(1) + Duration::minutes(30)),
        to: Some(t0() + Duration::hours(1) + Duration::minutes(30)),
        ..VerifyOptions::default()
    };
    let report = verify(&trail.bucket, BUCKET, &trail.public_key, &options)
        .await
        .unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert!(report.records_checked < 6, "{}", report.records_checked);
}

#[tokio::test]
async fn drill_delete_a_record_before_any_digest_lists_it() {
    let trail = trail().await;
    let at = t0() + Duration::hours(3) + Duration::minutes(2);
    let key = format!("{}{}.json", record_partition(&at), uuid::Uuid::now_v7());
    trail.bucket.put(&key, b"{}".to_vec(), BTreeMap::new(), at);
    trail.bucket.delete(&key, at + Duration::minutes(1));
    let report = run(&trail).await;
    assert_eq!(status_of(&report, &key), Status::Missing);
}

#[test]
fn keys_sort_by_time_and_parse_back() {
    let a = digest_key(&t0());
    let b = digest_key(&(t0() + Duration::hours(1)));
    assert!(a < b);
    assert_eq!(a, "digests/v1/2026/11/22/10/20261122T100000Z.json");
    assert_eq!(record_hour("audit/v1/2026/11/22/10/x.json"), Some(t0()));
    assert_eq!(record_hour("audit/v1/2026/11/x.json"), None);
    assert_eq!(record_hour("elsewhere/2026/11/22/10/x.json"), None);
}

#[tokio::test]
async fn signatures_bind_location_and_content() {
    let signer = LocalKeySigner::generate().unwrap();
    let key = signer.public_key_der().await.unwrap();
    let message = signing_string(&t0(), "b", "k", b"digest");
    let signature = signer.sign(&message).await.unwrap();
    assert!(verify_signature(&key, &message, &signature));
    assert!(!verify_signature(
        &key,
        &signing_string(&t0(), "b", "other", b"digest"),
        &signature
    ));
    assert!(!verify_signature(
        &key,
        &signing_string(&t0(), "b", "k", b"digest!"),
        &signature
    ));
    assert!(!verify_signature(b"not a key", &message, &signature));
}

fn fresh_at(now: DateTime<Utc>) -> VerifyOptions {
    VerifyOptions {
        freshness: Some(Freshness {
            now,
            max_age: Duration::hours(2),
        }),
        ..VerifyOptions::default()
    }
}

#[tokio::test]
async fn a_fresh_chain_passes_the_freshness_check() {
    let trail = trail().await;
    // The newest digest ends at t0 + 3h.
    let report = verify(
        &trail.bucket,
        BUCKET,
        &trail.public_key,
        &fresh_at(t0() + Duration::hours(4)),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{}", report.summary());
}

/// The digest job stopped (or its newest digests were removed): records after the newest digest
/// would pass as pending for ever. Stale is a failure.
#[tokio::test]
async fn a_chain_older_than_the_schedule_allows_is_stale() {
    let trail = trail().await;
    let late = t0() + Duration::hours(3) + Duration::minutes(10);
    let key = format!("{}{}.json", record_partition(&late), uuid::Uuid::now_v7());
    trail
        .bucket
        .put(&key, b"{}\n".to_vec(), BTreeMap::new(), late);
    let report = verify(
        &trail.bucket,
        BUCKET,
        &trail.public_key,
        &fresh_at(t0() + Duration::hours(9)),
    )
    .await
    .unwrap();
    assert!(!report.ok(), "{}", report.summary());
    let newest = &trail.digests.last().unwrap().document.key;
    assert_eq!(status_of(&report, newest), Status::Stale);
    assert_eq!(status_of(&report, &key), Status::Pending);
}

/// Truncation: the newest digest is deleted (a delete marker) and the one before is now the end.
#[tokio::test]
async fn a_truncated_tail_is_stale_and_missing() {
    let trail = trail().await;
    let newest = trail.digests.last().unwrap().document.key.clone();
    trail.bucket.delete(&newest, t0() + Duration::hours(5));
    let report = verify(
        &trail.bucket,
        BUCKET,
        &trail.public_key,
        &fresh_at(t0() + Duration::hours(5)),
    )
    .await
    .unwrap();
    assert!(!report.ok(), "{}", report.summary());
    assert_eq!(status_of(&report, &newest), Status::Missing);
    let previous = &trail.digests[1].document.key;
    assert_eq!(status_of(&report, previous), Status::Stale);
}

#[tokio::test]
async fn records_with_no_digest_at_all_are_stale_once_one_was_due() {
    let bucket = Bucket::default();
    let public_key = LocalKeySigner::generate()
        .unwrap()
        .public_key_der()
        .await
        .unwrap();
    let at = t0();
    let key = format!("{}{}.json", record_partition(&at), uuid::Uuid::now_v7());
    bucket.put(&key, b"{}\n".to_vec(), BTreeMap::new(), at);
    let early = verify(
        &bucket,
        BUCKET,
        &public_key,
        &fresh_at(at + Duration::hours(1)),
    )
    .await
    .unwrap();
    assert!(early.ok(), "{}", early.summary());
    let late = verify(
        &bucket,
        BUCKET,
        &public_key,
        &fresh_at(at + Duration::hours(3)),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&late, DIGEST_PREFIX), Status::Stale);
}

/// A digest overwritten in a bucket without Object Lock keeps both versions: flagged even when
/// the current one is the original bytes.
#[tokio::test]
async fn several_versions_of_one_digest_are_a_failure() {
    let trail = trail().await;
    let sealed = &trail.digests[1];
    let metadata = BTreeMap::from([(META_SIGNATURE.to_owned(), sealed.signature_b64.clone())]);
    trail.bucket.put(
        &sealed.document.key,
        sealed.bytes.clone(),
        metadata,
        t0() + Duration::hours(4),
    );
    let report = run(&trail).await;
    assert!(!report.ok(), "{}", report.summary());
    assert_eq!(status_of(&report, &sealed.document.key), Status::Modified);
}
