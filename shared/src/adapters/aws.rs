//! Port adapters over the AWS SDK.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};

use crate::events::DomainEvent;
use crate::ports::{CatalogEntry, CatalogError, EventPublisher, PublishError, SecretCatalog};
use crate::redact::Redactor;
use crate::tags::{self, Tag};

/// `PutEvents` takes at most 10 entries per call.
const PUT_EVENTS_BATCH: usize = 10;
/// Entries the bus rejects (throttling, internal failure) are retried this many times.
const PUT_EVENTS_ATTEMPTS: u32 = 3;

/// Loads region, credentials and endpoint from the default chain (environment, profile,
/// container or instance role). Call once per cold start and share the result.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub(crate) fn to_chrono(dt: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(dt.secs(), dt.subsec_nanos())
}

fn sdk_error_text<E: std::error::Error>(err: &E) -> crate::redact::SafeText {
    Redactor::new().safe(&DisplayErrorContext(err).to_string())
}

/// Publishes domain events to the custom EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }

    fn entry(&self, event: &DomainEvent) -> Result<PutEventsRequestEntry, PublishError> {
        let mut entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(event.source())
            .detail_type(event.detail_type())
            .detail(event.to_detail_json()?)
            .time(aws_smithy_types::DateTime::from_millis(
                event.time.timestamp_millis(),
            ));
        if let Some(arn) = event.secret.as_ref().and_then(|s| s.arn.as_ref()) {
            entry = entry.resources(arn);
        }
        Ok(entry.build())
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PublishError> {
        let entries = events
            .iter()
            .map(|e| self.entry(e))
            .collect::<Result<Vec<_>, _>>()?;
        for batch in entries.chunks(PUT_EVENTS_BATCH) {
            let mut pending: Vec<PutEventsRequestEntry> = batch.to_vec();
            let mut last_codes = String::new();
            for attempt in 0..PUT_EVENTS_ATTEMPTS {
                if attempt > 0 {
                    let backoff = 100u64 << attempt;
                    tokio::time::sleep(std::time::Duration::from_millis(
                        backoff + fastrand::u64(0..backoff),
                    ))
                    .await;
                }
                let output = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| PublishError::Bus(sdk_error_text(&e)))?;
                if output.failed_entry_count() == 0 {
                    pending.clear();
                    break;
                }
                // Result entries line up with request entries; keep only the failed ones.
                let mut retry = Vec::new();
                let mut codes = Vec::new();
                for (entry, result) in pending.iter().zip(output.entries()) {
                    if let Some(code) = result.error_code() {
                        codes.push(code.to_owned());
                        retry.push(entry.clone());
                    }
                }
                last_codes = codes.join(", ");
                pending = retry;
            }
            if !pending.is_empty() {
                return Err(PublishError::Rejected {
                    failed: pending.len(),
                    total: events.len(),
                    codes: last_codes,
                });
            }
        }
        Ok(())
    }
}

/// Lists secrets with `ListSecrets` (which carries tags, rotation and access dates and the KMS
/// key, so no per-secret `DescribeSecret` is needed).
#[derive(Debug, Clone)]
pub struct SecretsManagerCatalog {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerCatalog {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

pub fn tags_from_sdk(tags: &[aws_sdk_secretsmanager::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect()
}

pub fn tags_to_sdk(tags: &[Tag]) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

impl SecretCatalog for SecretsManagerCatalog {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut pages = self
            .client
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .include_planned_deletion(true)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CatalogError(sdk_error_text(&e)))?;
            for s in page.secret_list() {
                let name = s.name().unwrap_or_default();
                // The name filter is a prefix match on AWS; keep the check so a looser
                // implementation cannot leak other secrets into the result.
                if !name.starts_with(prefix) {
                    continue;
                }
                let tags = tags_from_sdk(s.tags());
                out.push(CatalogEntry {
                    arn: s.arn().unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                    governance: tags::decode(&tags),
                    tags,
                    rotation_enabled: s.rotation_enabled().unwrap_or(false),
                    rotation_days: s
                        .rotation_rules()
                        .and_then(|r| r.automatically_after_days()),
                    rotation_lambda_arn: s.rotation_lambda_arn().map(str::to_owned),
                    last_rotated: s.last_rotated_date().and_then(to_chrono),
                    next_rotation: s.next_rotation_date().and_then(to_chrono),
                    last_changed: s.last_changed_date().and_then(to_chrono),
                    last_accessed: s.last_accessed_date().and_then(to_chrono),
                    created: s.created_date().and_then(to_chrono),
                    deleted: s.deleted_date().and_then(to_chrono),
                    kms_key_id: s.kms_key_id().map(str::to_owned),
                    primary_region: s.primary_region().map(str::to_owned),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Actor, CorrelationId, EventData, Outcome, Severity};
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn drift_event(n: usize) -> DomainEvent {
        DomainEvent::new(
            CorrelationId::generate(),
            Actor::service("drift-detector"),
            None,
            Outcome::Detected,
            EventData::DriftDetected {
                fingerprint: format!("f{n}"),
                finding: "rotation-disabled".into(),
                severity: Severity::High,
                evidence: Default::default(),
            },
        )
    }

    #[tokio::test]
    async fn publishes_in_batches_of_ten_and_retries_only_rejected_entries() {
        let ok = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| r.entries().len() == 10)
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let partial = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| r.entries().len() == 2)
            .then_output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(PutEventsResultEntry::builder().event_id("a").build())
                    .entries(
                        PutEventsResultEntry::builder()
                            .error_code("ThrottlingException")
                            .build(),
                    )
                    .build()
            });
        let retry = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| {
                r.entries().len() == 1 && r.entries()[0].event_bus_name() == Some("keyward")
            })
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let client = mock_client!(
            aws_sdk_eventbridge,
            RuleMode::Sequential,
            [&ok, &partial, &retry]
        );
        let publisher = EventBridgePublisher::new(client, "keyward");
        let events: Vec<_> = (0..12).map(drift_event).collect();
        publisher.publish(&events).await.unwrap();
        assert_eq!(
            (ok.num_calls(), partial.num_calls(), retry.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn persistent_rejection_is_an_error_naming_the_code() {
        let rejected = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(1)
                .entries(
                    PutEventsResultEntry::builder()
                        .error_code("InternalFailure")
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&rejected]);
        let err = EventBridgePublisher::new(client, "keyward")
            .publish(&[drift_event(1)])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 of 1 events were not accepted by the bus: InternalFailure"
        );
        assert_eq!(rejected.num_calls(), PUT_EVENTS_ATTEMPTS as usize);
    }
}
