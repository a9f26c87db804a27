//! The audit writer and the digest: domain events on the bus reach the audit writer through the
//! template's rule, once, refusing a forged payload and what is not a domain event; at the end
//! the digest seals the trail, the verifier walks it offline, and the dead-letter queue holds
//! exactly the failures.

use anyhow::Result;
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket};
use keyward_shared::audit::{DigestSigner, ObjectKind, Status, VerifyOptions, verify};
use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, SecretRef, Severity,
};

use super::Scenario;

/// A domain event of the drift detector's shape, put on the bus through the production
/// publisher: the routing, redelivery and forgery checks below replay and tamper with it, which
/// they cannot do to an event a function has already delivered.
fn sample_events() -> Vec<DomainEvent> {
    vec![DomainEvent::new(
        CorrelationId::generate(),
        Actor {
            kind: ActorKind::Schedule,
            id: "keyward-drift-hourly".into(),
        },
        Some(SecretRef {
            name: "/acme/prod/payments/stripe-api-key".into(),
            arn: None,
        }),
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: "rotation-overdue:/acme/prod/payments/stripe-api-key".into(),
            finding: "rotation-overdue".into(),
            severity: Severity::High,
            evidence: [("interval_days".to_owned(), "90".to_owned())].into(),
        },
    )]
}

/// Routed and audited; redelivery idempotent; a conflicting payload refused; a non-event
/// rejected.
pub(super) async fn route_events(s: &mut Scenario) -> Result<()> {
    let events = sample_events();
    s.stack.publish(&events).await?;
    let delivered = s.stack.pump().await?;
    let versions = s.stack.audit_versions().await?;
    s.check(
        "events routed and audited",
        delivered == events.len() && versions.len() == events.len(),
        format!("{delivered} deliveries, {} audit objects", versions.len()),
    );

    // At-least-once: the same envelope again writes nothing new.
    let envelope = s.stack.delivered.first().cloned().unwrap_or_default();
    s.stack.deliver(&envelope, "redelivered").await?;
    let after_redelivery = s.stack.audit_versions().await?;
    let duplicate = s.stack.last_outcome().starts_with("duplicate");
    s.check(
        "redelivery is idempotent",
        after_redelivery.len() == versions.len() && duplicate,
        format!("{} objects after redelivery", after_redelivery.len()),
    );

    // A different payload under an existing event id is a conflict: nothing overwritten, DLQ.
    let mut forged = envelope.clone();
    forged["detail"]["outcome"] = "failure".into();
    s.stack
        .deliver(&forged, "forged: same id, other payload")
        .await?;
    let after_forgery = s.stack.audit_versions().await?;
    let outcome = s.stack.last_outcome();
    s.check(
        "conflicting payload refused",
        after_forgery == after_redelivery && outcome.contains("AuditConflict"),
        outcome,
    );
    s.audited = after_forgery.len();

    // Something that is not a domain event fails clearly and is kept in the DLQ.
    let bogus = serde_json::json!({
        "version": "0", "id": "bogus", "detail-type": "SecretRotated", "source": "keyward.rotation",
        "account": "123456789012", "time": "2026-11-22T20:00:00Z", "region": crate::moto::REGION, "resources": [],
        "detail": {"secret": "/acme/prod/payments/db-credentials"}
    });
    s.stack.deliver(&bogus, "not a domain event").await?;
    let outcome = s.stack.last_outcome();
    s.check(
        "invalid event rejected",
        outcome.contains("InvalidEvent"),
        outcome,
    );
    Ok(())
}

/// The digest schedule seals the trail; the verifier walks it offline with the public key;
/// the dead-letter queue holds the two failures above.
pub(super) async fn seal_and_verify(s: &mut Scenario) -> Result<()> {
    // Wait out the current second: S3 LastModified has one-second resolution, and the digest
    // covers records written before its period end.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sealed = s
        .stack
        .tick("AuditDigestFunction.Seal", chrono::Utc::now())
        .await?;
    let stack = &s.stack;
    let kms = aws_sdk_kms::Client::new(&stack.moto.sdk_config());
    let public_key = KmsDigestSigner::new(kms, &stack.audit.digest_key_id)
        .public_key_der()
        .await?;
    let bucket = S3AuditBucket::new(stack.moto.s3(), &stack.audit.bucket);
    let options = VerifyOptions::default();
    let verification = verify(&bucket, &stack.audit.bucket, &public_key, &options).await?;
    let audited = s.audited;
    let sealed_records = sealed["records"].as_u64().unwrap_or(0) as usize;
    s.check(
        "digest seals every record",
        sealed_records == audited,
        format!(
            "{sealed_records} of {audited} records in {}",
            sealed["key"].as_str().unwrap_or("?")
        ),
    );
    s.check(
        "audit verify: trail valid",
        verification.ok() && verification.count(ObjectKind::Record, Status::Valid) == audited,
        verification.summary(),
    );
    if s.verbose {
        println!("\naudit verify: {}", verification.summary());
    }
    let dlq = s.stack.dlq_depth().await?;
    s.check(
        "dead-letter queue holds the failures",
        dlq == 2,
        format!("{dlq} messages"),
    );
    Ok(())
}
