//! The whole audit trail against moto: records written by the audit writer's S3 adapter, sealed
//! by the digest job with a KMS key, verified by the `keyward audit verify` CLI, and the tamper
//! drills done through the real S3 API. The bucket here is versioned but *not* locked: it plays
//! an attacker who got past Object Lock (moto does not enforce every COMPLIANCE rule either), so
//! every drill is caught by the verifier, not refused by the store.

use std::process::Command;

use audit_digest::{Config, seal_period};
use audit_writer::handle;
use audit_writer::s3::S3AuditStore;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_s3::primitives::ByteStream;
use keyward_integration::moto::{BucketKind, MotoServer};
use keyward_integration::samples::{drift_detected, typed_envelope};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket};
use keyward_shared::audit::{
    DigestSigner, ObjectKind, Status, VerifyOptions, VerifyReport, verify,
};

struct Trail {
    moto: &'static MotoServer,
    bucket: String,
    key_id: String,
    records: Vec<String>,
    digests: Vec<String>,
}

fn envelope(n: usize) -> EventBridgeEvent<serde_json::Value> {
    typed_envelope(&drift_detected(&format!("fp-{n}")))
}

async fn tick() {
    // S3 LastModified has one-second resolution; digests cover what was written before their end.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// Two digests over four records, signed by a KMS key in moto.
async fn trail() -> Trail {
    let moto = MotoServer::shared().await;
    let s3 = moto.s3();
    let bucket = format!("trail-{}", uuid::Uuid::new_v4().simple());
    moto.create_bucket(&bucket, BucketKind::Versioned)
        .await
        .unwrap();
    let key_id = moto.create_signing_key().await.unwrap();
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config());
    let signer = KmsDigestSigner::new(kms, &key_id);
    let store = S3AuditStore::new(s3.clone(), &bucket);
    let reader = S3AuditBucket::new(s3, &bucket);
    let config = Config {
        bucket: bucket.clone(),
        kms_key_id: key_id.clone(),
        lookback_hours: 2,
        s3_force_path_style: true,
    };
    let mut records = Vec::new();
    let mut digests = Vec::new();
    for batch in 0..2 {
        for n in 0..2 {
            records.push(handle(&store, &envelope(batch * 2 + n)).await.unwrap().key);
        }
        tick().await;
        let end = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
        let outcome = seal_period(&reader, &bucket, &signer, &config, end)
            .await
            .unwrap();
        assert_eq!(outcome.records, 2, "{outcome:?}");
        digests.push(outcome.key);
        tick().await;
    }
    Trail {
        moto,
        bucket,
        key_id,
        records,
        digests,
    }
}

async fn check(trail: &Trail) -> VerifyReport {
    let public_key = KmsDigestSigner::new(
        aws_sdk_kms::Client::new(&trail.moto.sdk_config()),
        &trail.key_id,
    )
    .public_key_der()
    .await
    .unwrap();
    let reader = S3AuditBucket::new(trail.moto.s3(), &trail.bucket);
    verify(
        &reader,
        &trail.bucket,
        &public_key,
        &VerifyOptions::default(),
    )
    .await
    .unwrap()
}

fn status(report: &VerifyReport, key: &str) -> Status {
    report
        .objects
        .iter()
        .filter(|o| o.key == key)
        .map(|o| o.status)
        .max()
        .unwrap_or_else(|| panic!("{key} missing from {report:#?}"))
}

async fn put(trail: &Trail, key: &str, body: Vec<u8>, signature: Option<String>) {
    let mut request = trail
        .moto
        .s3()
        .put_object()
        .bucket(&trail.bucket)
        .key(key)
        .body(ByteStream::from(body));
    if let Some(signature) = signature {
        request = request.metadata("signature", signature);
    }
    request.send().await.unwrap();
}

async fn get(trail: &Trail, key: &str) -> (Vec<u8>, Option<String>) {
    let out = trail
        .moto
        .s3()
        .get_object()
        .bucket(&trail.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let signature = out.metadata().and_then(|m| m.get("signature").cloned());
    (
        out.body.collect().await.unwrap().into_bytes().to_vec(),
        signature,
    )
}

#[tokio::test]
async fn a_sealed_trail_verifies_then_each_tamper_drill_is_reported_precisely() {
    let trail = trail().await;
    let report = check(&trail).await;
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.count(ObjectKind::Record, Status::Valid), 4);
    assert_eq!(report.count(ObjectKind::Digest, Status::Valid), 2);

    // Modify a record.
    put(
        &trail,
        &trail.records[0],
        b"{\"rewritten\":true}\n".to_vec(),
        None,
    )
    .await;
    // Delete a record (a delete marker over its version).
    trail
        .moto
        .s3()
        .delete_object()
        .bucket(&trail.bucket)
        .key(&trail.records[3])
        .send()
        .await
        .unwrap();
    let report = check(&trail).await;
    assert_eq!(status(&report, &trail.records[0]), Status::Modified);
    assert_eq!(status(&report, &trail.records[3]), Status::Missing);
    assert_eq!(status(&report, &trail.records[1]), Status::Valid);
    assert_eq!(report.failures().count(), 2, "{report:#?}");
}

#[tokio::test]
async fn drill_modify_and_delete_digests() {
    let trail = trail().await;
    let (bytes, signature) = get(&trail, &trail.digests[0]).await;
    let mut tampered = String::from_utf8(bytes).unwrap();
    tampered = tampered.replacen(
        "\"records\":[{",
        "\"records\":[{\"key\":\"audit/v1/x\",\"sha256\":\"00\"},{",
        1,
    );
    put(&trail, &trail.digests[0], tampered.into_bytes(), signature).await;
    let report = check(&trail).await;
    assert_eq!(status(&report, &trail.digests[0]), Status::SignatureFailure);
    assert_eq!(status(&report, &trail.digests[1]), Status::ChainBreak);

    trail
        .moto
        .s3()
        .delete_object()
        .bucket(&trail.bucket)
        .key(&trail.digests[0])
        .send()
        .await
        .unwrap();
    let report = check(&trail).await;
    assert_eq!(status(&report, &trail.digests[0]), Status::Missing);
    assert_eq!(status(&report, &trail.digests[1]), Status::ChainBreak);
    // Its records lost their digest. Written seconds ago, they are inside the next digest's
    // overlap window, so they read as pending rather than not covered (the in-memory drills,
    // which control time, assert NotCovered); either way they are no longer valid.
    assert!(matches!(
        status(&report, &trail.records[0]),
        Status::Pending | Status::NotCovered
    ));
}

#[tokio::test]
async fn drill_swap_digests_and_forge_a_signature() {
    let trail = trail().await;
    let (a, sig_a) = get(&trail, &trail.digests[0]).await;
    let (b, sig_b) = get(&trail, &trail.digests[1]).await;
    put(&trail, &trail.digests[0], b, sig_b).await;
    put(&trail, &trail.digests[1], a.clone(), sig_a).await;
    let report = check(&trail).await;
    for key in &trail.digests {
        assert_eq!(status(&report, key), Status::SignatureFailure);
    }

    // Forge: restore digest 0, then re-sign digest 1 with another KMS key.
    let trail = self::trail().await;
    let kms = aws_sdk_kms::Client::new(&trail.moto.sdk_config());
    let other = trail.moto.create_signing_key().await.unwrap();
    let forger = KmsDigestSigner::new(kms, other);
    let (bytes, _) = get(&trail, &trail.digests[1]).await;
    let document: keyward_shared::audit::DigestDocument = serde_json::from_slice(&bytes).unwrap();
    let forged = keyward_shared::audit::seal(&forger, document)
        .await
        .unwrap();
    put(
        &trail,
        &trail.digests[1],
        forged.bytes,
        Some(forged.signature_b64),
    )
    .await;
    let report = check(&trail).await;
    let digest = report
        .objects
        .iter()
        .find(|o| o.key == trail.digests[1])
        .unwrap();
    assert_eq!(digest.status, Status::SignatureFailure);
    assert!(
        digest.detail.contains("signature verification failed"),
        "{}",
        digest.detail
    );
}

#[tokio::test]
async fn the_cli_exits_by_verdict_and_prints_json() {
    let trail = trail().await;
    let binary = keyward_integration::target_dir().join("debug/keyward");
    assert!(
        binary.exists(),
        "{} missing: `cargo build --workspace --bins` first",
        binary.display()
    );
    let run = |extra: &[&str]| {
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .envs(trail.moto.function_env())
            .args([
                "audit",
                "verify",
                "--bucket",
                &trail.bucket,
                "--kms-key-id",
                &trail.key_id,
            ])
            .args(extra);
        command.output().unwrap()
    };
    let ok = run(&[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("VALID: 2 digests and 4 records checked"));

    put(&trail, &trail.records[1], b"{}".to_vec(), None).await;
    let bad = run(&["--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let modified: Vec<&serde_json::Value> = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "modified")
        .collect();
    assert_eq!(modified.len(), 1);
    assert_eq!(modified[0]["key"], trail.records[1].as_str());

    let usage = Command::new(&binary)
        .args(["audit", "verify", "--bucket", "b"])
        .output()
        .unwrap();
    assert_eq!(
        usage.status.code(),
        Some(2),
        "missing key source is a usage error"
    );
    let bad_time = Command::new(&binary)
        .args([
            "audit",
            "verify",
            "--bucket",
            "b",
            "--kms-key-id",
            "k",
            "--from",
            "yesterday",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("is not an RFC 3339 time"));
}
