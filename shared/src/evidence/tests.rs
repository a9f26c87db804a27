use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::audit::record::AuditRecord;
use crate::audit::{DigestSigner, LocalKeySigner, verify_signature};
use crate::events::{Actor, CorrelationId, DomainEvent, Outcome, SecretRef};
use crate::governance::RotationStrategy;
use crate::posture::ChainVerdict;

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 0).unwrap()
}

fn stored(hour: u32, secret: Option<&str>, data: EventData) -> StoredRecord {
    let mut event = DomainEvent::new(
        CorrelationId::generate(),
        Actor::service("test"),
        secret.map(|name| SecretRef {
            name: name.into(),
            arn: None,
        }),
        Outcome::Success,
        data,
    );
    event.time = at(hour);
    let record = AuditRecord::of(event);
    let bytes = record.to_bytes().unwrap();
    StoredRecord {
        key: record.key(),
        sha256: sha256_hex(&bytes),
        record,
    }
}

fn records() -> Vec<StoredRecord> {
    vec![
        stored(
            1,
            Some("/acme/prod/web/session-key"),
            EventData::SecretRotated {
                strategy: RotationStrategy::Random,
                version_id: "v2".into(),
                previous_version_id: Some("v1".into()),
            },
        ),
        stored(
            2,
            Some("/acme/prod/web/session-key"),
            EventData::RotationFailed {
                strategy: Some(RotationStrategy::Random),
                step: crate::events::RotationStep::TestSecret,
                version_id: "v3".into(),
                error: crate::redact::SafeText::fixed("test failed"),
            },
        ),
        stored(
            3,
            None,
            EventData::PostureSnapshot {
                figures: PostureFigures {
                    secrets_governed: 2,
                    secrets_declared: 2,
                    secrets_existing: 2,
                    within_policy: 2,
                    overdue: 0,
                    never_rotated: 1,
                    no_value: 0,
                    missing: 0,
                    undeclared: 0,
                    vercel_targets: 2,
                    vercel_targets_in_parity: 2,
                    open_drift: 0,
                    alerts_in_window: 0,
                    ghost_readers: 0,
                    chain: ChainVerdict::Valid,
                },
                report_key: "reports/posture/2026/12/01/posture-20261201T030000Z.json".into(),
                report_sha256: "ab".repeat(32),
            },
        ),
        stored(
            4,
            Some("/acme/prod/web/session-key"),
            EventData::DriftDetected {
                fingerprint: "f".into(),
                finding: "rotation-disabled".into(),
                severity: crate::events::Severity::High,
                evidence: Default::default(),
            },
        ),
    ]
}

struct Written {
    records: Vec<StoredRecord>,
    dir: tempfile::TempDir,
    signer: LocalKeySigner,
    public_key: Vec<u8>,
}

async fn written() -> Written {
    let manifest = crate::test_fixtures::web_manifest();
    let records = records();
    let verification = VerifyReport::default();
    let signer = LocalKeySigner::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = BundleInput {
        org: "acme",
        from: at(0),
        to: at(23),
        now: at(23),
        manifest: &manifest,
        records: &records,
        verification: &verification,
    };
    let index = write_bundle(&dir.path().join("bundle"), &input, &signer)
        .await
        .unwrap();
    assert_eq!(index.files.len(), 5);
    let public_key = signer.public_key_spki().unwrap();
    Written {
        records,
        dir,
        signer,
        public_key,
    }
}

impl Written {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("bundle")
    }
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(file)).unwrap()
    }
}

#[tokio::test]
async fn a_bundle_holds_the_register_the_rotations_and_the_snapshots_and_verifies() {
    let w = written().await;
    let verdict = verify_bundle(&w.path(), &w.public_key).unwrap();
    assert!(verdict.ok(), "{verdict:?}");
    assert_eq!(verdict.files_checked, 5);

    let register: serde_json::Value = serde_json::from_str(&w.read("asset-register.json")).unwrap();
    assert_eq!(register.as_array().unwrap().len(), 4);
    assert_eq!(register[0]["name"], "/acme/prod/web/session-key");
    assert_eq!(
        register[0]["vercel_targets"],
        serde_json::json!(["production"])
    );
    assert_eq!(
        register[0]["readers"],
        serde_json::json!(["arn:aws:iam::123456789012:role/web-app"])
    );
    let csv = w.read("asset-register.csv");
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.contains("\"/acme/prod/web/stripe-key\",\"prod\",\"web\",\"api-key\""));

    let rotations: serde_json::Value =
        serde_json::from_str(&w.read("rotation-evidence.json")).unwrap();
    let events: Vec<&str> = rotations
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["SecretRotated", "RotationFailed"]);
    assert_eq!(rotations[0]["record_sha256"], w.records[0].sha256.as_str());
    assert_eq!(rotations[0]["record_key"], w.records[0].key.as_str());
    let snapshots: serde_json::Value =
        serde_json::from_str(&w.read("posture-snapshots.json")).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_eq!(snapshots[0]["figures"]["secrets_governed"], 2);
}

#[tokio::test]
async fn a_changed_removed_or_added_file_is_named() {
    let w = written().await;
    std::fs::write(w.path().join("asset-register.csv"), "name\r\n").unwrap();
    std::fs::remove_file(w.path().join("posture-snapshots.json")).unwrap();
    std::fs::write(w.path().join("extra.json"), "{}").unwrap();
    let verdict = verify_bundle(&w.path(), &w.public_key).unwrap();
    assert!(verdict.signature_valid);
    assert_eq!(verdict.changed, ["asset-register.csv"]);
    assert_eq!(verdict.removed, ["posture-snapshots.json"]);
    assert_eq!(verdict.added, ["extra.json"]);
    assert!(!verdict.ok());
}

#[tokio::test]
async fn an_edited_index_or_another_key_fails_the_signature() {
    let w = written().await;
    // Widening the period in the index breaks the signature.
    let index = w
        .read(BUNDLE_FILE)
        .replace("2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z");
    std::fs::write(w.path().join(BUNDLE_FILE), index).unwrap();
    let verdict = verify_bundle(&w.path(), &w.public_key).unwrap();
    assert!(!verdict.signature_valid && !verdict.ok());

    let w = written().await;
    let other = LocalKeySigner::generate()
        .unwrap()
        .public_key_spki()
        .unwrap();
    let verdict = verify_bundle(&w.path(), &other).unwrap();
    assert!(!verdict.signature_valid);
    assert!(
        verdict
            .problems
            .iter()
            .any(|p| p.contains("not this public key")),
        "{verdict:?}"
    );
}

/// The padding separates the two uses of the one key: an evidence signature never passes as a
/// digest's, and a digest signature never as evidence.
#[tokio::test]
async fn evidence_and_digest_signatures_do_not_stand_in_for_each_other() {
    let w = written().await;
    let message = signing_string(w.read(BUNDLE_FILE).as_bytes());
    let pss = w.signer.sign_pss(&message).await.unwrap();
    assert!(!verify_signature(&w.public_key, &message, &pss));
    let pkcs1 = DigestSigner::sign(&w.signer, &message).await.unwrap();
    std::fs::write(w.path().join(SIGNATURE_FILE), BASE64.encode(pkcs1) + "\n").unwrap();
    let verdict = verify_bundle(&w.path(), &w.public_key).unwrap();
    assert!(!verdict.signature_valid);
}

#[tokio::test]
async fn evidence_is_never_written_over_an_existing_directory() {
    let w = written().await;
    let manifest = crate::test_fixtures::web_manifest();
    let verification = VerifyReport::default();
    let input = BundleInput {
        org: "acme",
        from: at(0),
        to: at(23),
        now: at(23),
        manifest: &manifest,
        records: &[],
        verification: &verification,
    };
    let before = w.read(BUNDLE_FILE);
    let err = write_bundle(&w.path(), &input, &w.signer)
        .await
        .unwrap_err();
    assert!(matches!(err, EvidenceError::NotEmpty(_)), "{err}");
    assert_eq!(w.read(BUNDLE_FILE), before);
}

/// A bundle is outside input: whatever its index and signature files hold, verification answers
/// with a verdict or an error, never a panic, and never "intact".
#[tokio::test]
async fn mangled_index_and_signature_never_pass_or_panic() {
    let w = written().await;
    let index = w.read(BUNDLE_FILE);
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..300 {
        let mut bytes = index.clone().into_bytes();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(0..bytes.len());
            match rng.u8(0..3) {
                0 => bytes[at] = rng.u8(..),
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, rng.u8(..)),
            }
        }
        std::fs::write(w.path().join(BUNDLE_FILE), &bytes).unwrap();
        if round % 3 == 0 {
            let sig: Vec<u8> = (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect();
            std::fs::write(w.path().join(SIGNATURE_FILE), sig).unwrap();
        }
        if let Ok(verdict) = verify_bundle(&w.path(), &w.public_key) {
            assert!(!verdict.ok() || bytes == index.as_bytes(), "round {round}");
        }
    }
}
