use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const ROTATED: &str = include_str!("../../../events/audit-writer/secret-rotated.json");
const DRIFT: &str = include_str!("../../../events/audit-writer/drift-detected.json");
const NOT_DOMAIN: &str = include_str!("../../../events/audit-writer/not-a-domain-event.json");

/// A map standing in for the bucket, with S3's conditional-write semantics; it can answer the
/// first N writes with 409 like S3 does under contention.
#[derive(Default)]
struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    conflicts_to_inject: AtomicU32,
    puts: AtomicU32,
}

impl AuditStore for MemoryStore {
    async fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        sha256_b64: &str,
    ) -> Result<PutOutcome, StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            sha256_base64(body),
            sha256_b64,
            "checksum must match the body"
        );
        if self
            .conflicts_to_inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::ConcurrentConflict);
        }
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_owned(), body.to_vec());
        Ok(PutOutcome::Created)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }
}

fn envelope(json: &str) -> EventBridgeEvent<serde_json::Value> {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn writes_one_record_under_a_time_partitioned_key() {
    let store = MemoryStore::default();
    let ack = handle(&store, &envelope(ROTATED)).await.unwrap();
    assert_eq!(ack.outcome, WriteOutcome::Written);
    let id = "019aa6c5-1f4a-7c3e-9b1d-4e2f8a6b0c11";
    // The hour comes from the UUIDv7's own timestamp (2025-11-21T14:..Z), not the envelope time.
    assert_eq!(ack.key, format!("audit/v1/2025/11/21/14/{id}.json"));
    let stored = store.get(&ack.key).await.unwrap().unwrap();
    let record: AuditRecord = serde_json::from_slice(&stored).unwrap();
    assert_eq!(record.source, "keyward.rotation");
    assert_eq!(record.account.as_deref(), Some("123456789012"));
    assert_eq!(ack.sha256, sha256_base64(&stored));
}

#[tokio::test]
async fn redelivery_is_a_successful_no_op() {
    let store = MemoryStore::default();
    let first = handle(&store, &envelope(ROTATED)).await.unwrap();
    // EventBridge may redeliver with the same envelope, or a producer may re-put (new envelope id).
    let mut reput = envelope(ROTATED);
    reput.id = Some("another-envelope-id".into());
    for delivery in [envelope(ROTATED), reput] {
        let again = handle(&store, &delivery).await.unwrap();
        assert_eq!(again.outcome, WriteOutcome::Duplicate);
        assert_eq!(
            (again.key.as_str(), again.sha256.as_str()),
            (first.key.as_str(), first.sha256.as_str())
        );
    }
    assert_eq!(store.objects.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_different_payload_under_the_same_id_is_a_conflict_and_overwrites_nothing() {
    let store = MemoryStore::default();
    let first = handle(&store, &envelope(ROTATED)).await.unwrap();
    let original = store.get(&first.key).await.unwrap();
    let mut forged = envelope(ROTATED);
    forged.detail["outcome"] = "failure".into();
    let err = handle(&store, &forged).await.unwrap_err();
    assert!(matches!(err, AuditError::Conflict { .. }), "{err}");
    assert_eq!(
        keyward_shared::lambda::diagnostic(&err).error_type,
        "AuditConflict"
    );
    assert_eq!(store.get(&first.key).await.unwrap(), original);
}

#[tokio::test]
async fn concurrent_conflicts_are_retried() {
    let store = MemoryStore::default();
    store.conflicts_to_inject.store(2, Ordering::SeqCst);
    let ack = handle(&store, &envelope(DRIFT)).await.unwrap();
    assert_eq!(ack.outcome, WriteOutcome::Written);
    assert_eq!(store.puts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_conflicts_fail_the_invocation() {
    let store = MemoryStore::default();
    store.conflicts_to_inject.store(100, Ordering::SeqCst);
    let err = handle(&store, &envelope(DRIFT)).await.unwrap_err();
    assert!(matches!(err, AuditError::Store(_)));
    assert!(store.objects.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_events_are_rejected_before_anything_is_written() {
    let store = MemoryStore::default();
    let err = handle(&store, &envelope(NOT_DOMAIN)).await.unwrap_err();
    let diagnostic = keyward_shared::lambda::diagnostic(&err);
    assert_eq!(diagnostic.error_type, "InvalidEvent");
    assert!(
        !diagnostic.error_message.contains("should-never-be-stored"),
        "{}",
        diagnostic.error_message
    );
    let mut wrong_source = envelope(ROTATED);
    wrong_source.source = "keyward.vercel-sync".into();
    assert!(handle(&store, &wrong_source).await.is_err());
    let mut extra_field = envelope(ROTATED);
    extra_field.detail["data"]["fields"]["password"] = "hunter2-hunter2".into();
    let err = handle(&store, &extra_field).await.unwrap_err();
    assert!(!err.to_string().contains("hunter2-hunter2"), "{err}");
    assert_eq!(store.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn records_are_byte_identical_across_serialisations() {
    let record = AuditRecord::from_envelope(&envelope(ROTATED)).unwrap();
    let bytes = record.to_bytes().unwrap();
    let reparsed: AuditRecord = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(reparsed.to_bytes().unwrap(), bytes);
}

#[test]
fn config_names_the_missing_bucket() {
    let env: std::collections::HashMap<String, String> = Default::default();
    assert_eq!(
        Config::from_env(&env).unwrap_err().to_string(),
        "environment variable AUDIT_BUCKET is required but not set"
    );
}

/// A publisher-chosen id dated outside the bounded skew of its receipt would land in an hour
/// partition the digest job never seals: refused, nothing written.
#[tokio::test]
async fn ids_dated_far_from_receipt_are_refused() {
    let store = MemoryStore::default();
    for received in [
        "2025-11-21T14:21:00Z",
        "2025-11-21T14:09:00Z",
        "2020-01-01T00:00:00Z",
    ] {
        let mut forged = envelope(ROTATED);
        forged.time = Some(received.parse().unwrap());
        let err = handle(&store, &forged).await.unwrap_err();
        assert!(matches!(err, AuditError::InvalidEvent(_)), "{err}");
        assert!(err.to_string().contains("from its receipt"), "{err}");
    }
    let mut no_time = envelope(ROTATED);
    no_time.time = None;
    assert!(matches!(
        handle(&store, &no_time).await.unwrap_err(),
        AuditError::InvalidEvent(_)
    ));
    assert!(store.objects.lock().unwrap().is_empty());
    // Within the skew (a slow producer, a retried PutEvents) is accepted.
    let mut slow = envelope(ROTATED);
    slow.time = Some("2025-11-21T14:19:00Z".parse().unwrap());
    assert_eq!(
        handle(&store, &slow).await.unwrap().outcome,
        WriteOutcome::Written
    );
}
