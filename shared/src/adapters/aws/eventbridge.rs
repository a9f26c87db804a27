//! EventBridge: domain events onto the custom bus.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::{LazyClient, SdkConfig, sdk_error_text};
use crate::events::DomainEvent;
use crate::ports::{EventPublisher, PublishError};

/// `PutEvents` takes at most 10 entries per call.
const PUT_EVENTS_BATCH: usize = 10;
/// Entries the bus rejects (throttling, internal failure) are retried this many times.
const PUT_EVENTS_ATTEMPTS: u32 = 3;

/// Publishes domain events to the custom EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: LazyClient<aws_sdk_eventbridge::Client>,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        Self {
            client: client.into(),
            bus_name: bus_name.into(),
        }
    }

    /// A publisher whose client is built on the first publish: an invocation with nothing to
    /// publish never builds it.
    pub fn for_sdk(sdk: &SdkConfig, bus_name: impl Into<String>) -> Self {
        Self {
            client: LazyClient::of(sdk, aws_sdk_eventbridge::Client::new),
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
                    .get()
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
