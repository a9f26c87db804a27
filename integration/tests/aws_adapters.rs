//! The production adapters against moto: the audit writer's S3 store, the EventBridge publisher
//! and the Secrets Manager catalog with the tag contract. Written to hold on real AWS too.

use keyward_integration::support::{self, secret_tag};
use std::sync::Arc;

use audit_writer::s3::S3AuditStore;
use audit_writer::{AuditError, WriteOutcome, handle};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use keyward_integration::moto::{BucketKind, MotoServer};
use keyward_integration::samples::{drift_detected, typed_envelope};
use keyward_shared::adapters::aws::{EventBridgePublisher, SecretsManagerCatalog, tags_to_sdk};
use keyward_shared::events::DomainEvent;
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::{EventPublisher, SecretCatalog};
use keyward_shared::tags::{self, TagContractError};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", support::unique())
}

async fn locked_bucket(moto: &MotoServer) -> String {
    let bucket = unique("audit");
    moto.create_bucket(&bucket, BucketKind::ObjectLockCompliance { days: 365 })
        .await
        .unwrap();
    bucket
}

fn drift_envelope() -> EventBridgeEvent<serde_json::Value> {
    typed_envelope(&drift_detected(&unique("fp")))
}

#[tokio::test]
async fn audit_records_are_locked_checksummed_and_written_once() {
    let moto = MotoServer::shared().await;
    let bucket = locked_bucket(moto).await;
    let store = S3AuditStore::new(moto.s3(), &bucket);
    let envelope = drift_envelope();
    let ack = handle(&store, &envelope).await.unwrap();
    assert_eq!(ack.outcome, WriteOutcome::Written);

    let head = moto
        .s3()
        .head_object()
        .bucket(&bucket)
        .key(&ack.key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode(),
        Some(&aws_sdk_s3::types::ObjectLockMode::Compliance)
    );
    assert!(head.object_lock_retain_until_date().is_some());
    assert_eq!(head.checksum_sha256(), Some(ack.sha256.as_str()));

    assert_eq!(
        handle(&store, &envelope).await.unwrap().outcome,
        WriteOutcome::Duplicate
    );
    let mut forged = envelope.clone();
    forged.detail["outcome"] = "success".into();
    assert!(matches!(
        handle(&store, &forged).await,
        Err(AuditError::Conflict { .. })
    ));

    // COMPLIANCE: deleting the locked version is refused.
    let versions = moto
        .s3()
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions().len(),
        1,
        "one version: nothing was overwritten"
    );
    let version_id = versions.versions()[0].version_id().unwrap().to_owned();
    let delete = moto
        .s3()
        .delete_object()
        .bucket(&bucket)
        .key(&ack.key)
        .version_id(version_id)
        .send()
        .await;
    assert!(
        delete.is_err(),
        "a COMPLIANCE-locked version must not be deletable"
    );
}

#[tokio::test]
async fn eight_concurrent_writers_of_one_event_leave_one_object() {
    let moto = MotoServer::shared().await;
    let bucket = locked_bucket(moto).await;
    let store = Arc::new(S3AuditStore::new(moto.s3(), &bucket));
    let envelope = Arc::new(drift_envelope());
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (store, envelope) = (store.clone(), envelope.clone());
            tokio::spawn(async move { handle(store.as_ref(), &envelope).await })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        match writer.await.unwrap().unwrap().outcome {
            WriteOutcome::Written => written += 1,
            WriteOutcome::Duplicate => {}
        }
    }
    assert_eq!(written, 1);
    let versions = moto
        .s3()
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1);
}

#[tokio::test]
async fn published_events_arrive_on_the_bus_intact() {
    let moto = MotoServer::shared().await;
    let sdk = moto.sdk_config();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = unique("bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("q"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("all")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":[{"prefix":"keyward."}]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("all")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let event = serde_json::from_value::<DomainEvent>(drift_envelope().detail).unwrap();
    EventBridgePublisher::new(events, &bus)
        .publish(std::slice::from_ref(&event))
        .await
        .unwrap();
    let messages = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(messages.messages()[0].body().unwrap()).unwrap();
    assert_eq!(body["source"], "keyward.drift-detector");
    assert_eq!(body["detail-type"], "DriftDetected");
    let back =
        DomainEvent::from_envelope("keyward.drift-detector", "DriftDetected", &body["detail"])
            .unwrap();
    assert_eq!(back, event);
}

#[tokio::test]
async fn the_catalog_reads_governance_from_list_secrets_alone() {
    let moto = MotoServer::shared().await;
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let manifest =
        Manifest::load(&keyward_integration::repo_root().join("infra/config/manifest")).unwrap();
    // A unique org prefix isolates this test's secrets on the shared moto.
    let org = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for declared in &manifest.secrets {
        let name = declared
            .name
            .to_string()
            .replacen("/acme/", &format!("/{org}/"), 1);
        client
            .create_secret()
            .name(name)
            .secret_string("placeholder-value")
            .set_tags(Some(tags_to_sdk(
                &tags::encode(&declared.governance).unwrap(),
            )))
            .send()
            .await
            .unwrap();
    }
    // One hand-made secret with a misspelt governance tag, and one ungoverned secret.
    client
        .create_secret()
        .name(format!("/{org}/prod/legacy/typo"))
        .secret_string("x")
        .tags(secret_tag("keyward:contract", "1"))
        .tags(secret_tag("keyward:ownr", "bob"))
        .send()
        .await
        .unwrap();
    client
        .create_secret()
        .name(format!("/{org}/prod/legacy/untagged"))
        .secret_string("x")
        .send()
        .await
        .unwrap();

    let listed = SecretsManagerCatalog::new(client)
        .list(&format!("/{org}/"))
        .await
        .unwrap();
    assert_eq!(listed.len(), manifest.secrets.len() + 2);
    for declared in &manifest.secrets {
        let name = declared
            .name
            .to_string()
            .replacen("/acme/", &format!("/{org}/"), 1);
        let entry = listed.iter().find(|e| e.name == name).unwrap();
        assert_eq!(
            entry.governance.as_ref().unwrap().as_ref(),
            Some(&declared.governance),
            "{name}"
        );
        assert!(entry.arn.starts_with("arn:aws:secretsmanager:"));
    }
    let typo = listed.iter().find(|e| e.name.ends_with("/typo")).unwrap();
    assert!(
        matches!(
            &typo.governance,
            Err(TagContractError::Missing { .. } | TagContractError::Unknown { .. })
        ),
        "{:?}",
        typo.governance
    );
    let untagged = listed
        .iter()
        .find(|e| e.name.ends_with("/untagged"))
        .unwrap();
    assert!(matches!(untagged.governance, Ok(None)));
}
