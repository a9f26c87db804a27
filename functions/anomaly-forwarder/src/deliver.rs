//! Alert delivery, once per sink across retries: a ledger of create-once markers in the state
//! bucket.
//!
//! 1. Every alert first gets its identity recorded (`alerts/<hash>`: the `AnomalyDetected`
//!    event id and the processing time). A retry reads it back, so the event keeps its id (the
//!    audit writer drops the repeat) and Loki entries keep their timestamp.
//! 2. Each sink (Loki, webhook, bus) receives only the alerts without a
//!    `delivered/<sink>/<hash>` marker, and the markers are written as soon as the sink
//!    accepted them. A sink that fails does not stop the others; the invocation then fails, so
//!    EventBridge (or the async-invoke retry) tries again and only what is missing is sent.
//! 3. A sink that refuses a request as malformed (a 4xx other than 429) will refuse it again:
//!    the refusal is logged with the reason, recorded as `refused`, and not retried, so the
//!    other sinks and the audit trail still carry the alert.
//!
//! What remains: a crash between a sink's acceptance and its marker sends that batch again on
//! retry. Loki drops a repeated entry only when it matches its stream's latest; a chat webhook
//! has no idempotency key. The window is one request wide.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::events::EventId;
use keyward_shared::ports::{EventPublisher, MarkerError, MarkerStore};
use keyward_shared::redact::{Redactor, SafeText};
use serde::{Deserialize, Serialize};

use crate::forward::{self, ForwardError, LokiTarget, Outgoing};
use crate::group::ChatNotice;
use crate::rules::Alert;
use crate::state::key_hash;

const CONCURRENCY: usize = 16;
/// Entries per Loki push (well under Loki's request size limits).
const LOKI_BATCH: usize = 500;
/// Alerts per chat message: one section block each, under Slack's 50 blocks.
const WEBHOOK_BATCH: usize = 20;
/// Events per `PutEvents` round (the publisher splits into 10s).
const EVENT_BATCH: usize = 100;

/// Where alerts go. Loki and the webhook are optional; the bus is not (the audit trail).
pub struct Sinks<'a, P> {
    pub http: &'a HttpClient,
    pub loki: Option<&'a LokiTarget>,
    /// A credential in itself (Slack's URL carries the token): registered with the redactor.
    pub webhook_url: Option<&'a str>,
    pub publisher: &'a P,
    pub redactor: &'a Redactor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sink {
    Loki,
    Webhook,
    Bus,
}

impl Sink {
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Loki => "loki",
            Sink::Webhook => "webhook",
            Sink::Bus => "bus",
        }
    }
}

/// What one delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub alerts: usize,
    /// Alerts sent now, per sink (Loki, webhook, bus).
    pub sent: [usize; 3],
    /// Alerts a sink already had from an earlier attempt, per sink.
    pub already: [usize; 3],
    /// Alerts a sink refused for good, per sink.
    pub refused: [usize; 3],
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Ledger(#[from] MarkerError),
    /// Some sinks did not take every alert; the rest were delivered and recorded.
    #[error("alerts not delivered to {}", .0.join("; "))]
    Incomplete(Vec<String>),
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    event_id: String,
    processed_at: DateTime<Utc>,
}

struct Entry {
    hash: String,
    outgoing: Outgoing,
}

/// Delivers `alerts` to every sink, each alert at most once per sink across retries.
pub async fn deliver<S: MarkerStore, P: EventPublisher>(
    alerts: Vec<Alert>,
    ledger: &S,
    sinks: &Sinks<'_, P>,
) -> Result<DeliveryReport, DeliveryError> {
    let mut report = DeliveryReport {
        alerts: alerts.len(),
        ..Default::default()
    };
    if alerts.is_empty() {
        return Ok(report);
    }
    let entries: Vec<Entry> = futures::stream::iter(alerts)
        .map(|alert| identify(ledger, alert))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;

    let mut failures = Vec::new();
    let mut sinks_in_use = vec![Sink::Bus];
    if sinks.loki.is_some() {
        sinks_in_use.push(Sink::Loki);
    }
    if sinks.webhook_url.is_some() {
        sinks_in_use.push(Sink::Webhook);
    }
    sinks_in_use.sort();
    for sink in sinks_in_use {
        let slot = sink as usize;
        let mut pending = undelivered(ledger, sink, &entries).await?;
        report.already[slot] = entries.len() - pending.len();
        if sink == Sink::Webhook {
            // People hear of a group when it opens and when it reaches a new size step; Loki
            // and the audit trail hear of every update.
            pending.retain(|entry| {
                entry
                    .outgoing
                    .alert
                    .group
                    .as_ref()
                    .is_none_or(|group| group.chat == ChatNotice::Send)
            });
        }
        let batch = match sink {
            Sink::Loki => LOKI_BATCH,
            Sink::Webhook => WEBHOOK_BATCH,
            Sink::Bus => EVENT_BATCH,
        };
        for chunk in pending.chunks(batch) {
            let outgoing: Vec<&Outgoing> = chunk.iter().map(|e| &e.outgoing).collect();
            match send(sink, sinks, &outgoing).await {
                Ok(()) => {
                    mark(ledger, sink, chunk, "delivered").await?;
                    report.sent[slot] += chunk.len();
                }
                Err(SendError::Refused(reason)) => {
                    tracing::error!(
                        sink = sink.as_str(),
                        alerts = chunk.len(),
                        reason = %reason,
                        "a sink refused alerts; not retrying (the other sinks and the audit trail carry them)"
                    );
                    mark(ledger, sink, chunk, "refused").await?;
                    report.refused[slot] += chunk.len();
                }
                Err(SendError::Unavailable(reason)) => {
                    tracing::warn!(sink = sink.as_str(), alerts = chunk.len(), reason = %reason, "sink unavailable; the invocation will be retried");
                    failures.push(format!("{}: {reason}", sink.as_str()));
                    // Later chunks to the same sink would most likely fail too.
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(DeliveryError::Incomplete(failures))
    }
}

/// Records (or reads back) the alert's event id and processing time.
async fn identify<S: MarkerStore>(ledger: &S, alert: Alert) -> Result<Entry, MarkerError> {
    let hash = key_hash(&alert.alert_id);
    let fresh = Outgoing::new(alert);
    let body = serde_json::to_string(&Identity {
        event_id: fresh.event_id.to_string(),
        processed_at: fresh.processed_at,
    })
    .map_err(|_| MarkerError(SafeText::fixed("encoding an alert identity failed")))?;
    let stored = ledger
        .create_or_get(&format!("alerts/{hash}"), &body)
        .await?;
    let outgoing = if stored.created {
        fresh
    } else {
        let identity: Identity = serde_json::from_str(&stored.body).map_err(|_| {
            MarkerError(SafeText::fixed(
                "an alert identity in the ledger is unreadable",
            ))
        })?;
        Outgoing {
            event_id: identity.event_id.parse::<EventId>().map_err(|_| {
                MarkerError(SafeText::fixed(
                    "an alert identity in the ledger is unreadable",
                ))
            })?,
            processed_at: identity.processed_at,
            alert: fresh.alert,
        }
    };
    Ok(Entry { hash, outgoing })
}

async fn undelivered<'e, S: MarkerStore>(
    ledger: &S,
    sink: Sink,
    entries: &'e [Entry],
) -> Result<Vec<&'e Entry>, MarkerError> {
    let found: Vec<Option<&Entry>> = futures::stream::iter(entries)
        .map(|entry| async move {
            let key = format!("delivered/{}/{}", sink.as_str(), entry.hash);
            Ok::<_, MarkerError>(ledger.get(&key).await?.is_none().then_some(entry))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn mark<S: MarkerStore>(
    ledger: &S,
    sink: Sink,
    entries: &[&Entry],
    outcome: &'static str,
) -> Result<(), MarkerError> {
    futures::stream::iter(entries)
        .map(|entry| async move {
            let key = format!("delivered/{}/{}", sink.as_str(), entry.hash);
            ledger.create_or_get(&key, outcome).await.map(|_| ())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

enum SendError {
    Refused(SafeText),
    Unavailable(SafeText),
}

async fn send<P: EventPublisher>(
    sink: Sink,
    sinks: &Sinks<'_, P>,
    outgoing: &[&Outgoing],
) -> Result<(), SendError> {
    let forwarded = |result: Result<(), ForwardError>| {
        result.map_err(|e| {
            let reason = sinks.redactor.safe(&e.to_string());
            if e.is_retryable() {
                SendError::Unavailable(reason)
            } else {
                SendError::Refused(reason)
            }
        })
    };
    match sink {
        Sink::Loki => match sinks.loki {
            Some(target) => forwarded(forward::push_to_loki(sinks.http, target, outgoing).await),
            None => Ok(()),
        },
        Sink::Webhook => match sinks.webhook_url {
            Some(url) => forwarded(forward::post_webhook(sinks.http, url, outgoing).await),
            None => Ok(()),
        },
        Sink::Bus => forward::publish_alerts(sinks.publisher, outgoing, sinks.redactor)
            .await
            // The bus is ours: any failure is worth a retry (an oversized event cannot occur,
            // evidence values are capped).
            .map_err(|e| SendError::Unavailable(sinks.redactor.safe(&e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use keyward_shared::events::Severity;
    use keyward_shared::ports::{InMemoryEventPublisher, InMemoryMarkerStore};

    use super::*;

    fn alert(n: u32) -> Alert {
        Alert {
            rule: "root-activity".into(),
            severity: Severity::High,
            summary: "root used".into(),
            event_time: "2026-11-20T10:00:00Z".parse().unwrap(),
            alert_id: format!("root-activity|evt-{n}"),
            evidence: std::sync::Arc::new([("event_id".to_owned(), format!("evt-{n}"))].into()),
            grouping: None,
            requires: None,
            group: None,
        }
    }

    use crate::test_support::BusOnly;

    #[tokio::test]
    async fn a_crash_anywhere_in_delivery_then_a_retry_publishes_each_alert_once_with_one_id() {
        let alerts: Vec<Alert> = (0..3).map(alert).collect();
        let bus_only = BusOnly::new();
        for budget in 0..10 {
            let ledger = InMemoryMarkerStore::default();
            let publisher = InMemoryEventPublisher::default();
            let sinks = bus_only.sinks(&publisher);
            *ledger.fail_after_writes.lock().unwrap() = Some(budget);
            let first = deliver(alerts.clone(), &ledger, &sinks).await;
            *ledger.fail_after_writes.lock().unwrap() = None;
            let retry = deliver(alerts.clone(), &ledger, &sinks).await.unwrap();
            let again = deliver(alerts.clone(), &ledger, &sinks).await.unwrap();
            assert_eq!(
                again.sent,
                [0, 0, 0],
                "nothing left after a complete delivery"
            );
            assert_eq!(again.already[Sink::Bus as usize], 3);

            let published = publisher.published.lock().unwrap().clone();
            let mut ids: Vec<_> = published.iter().map(|e| e.event_id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 3, "one event id per alert (budget {budget})");
            // Published more than once only when the crash fell between the bus accepting
            // the events and the ledger recording it; then with the same ids (the audit writer
            // drops the repeat).
            if first.is_ok() {
                assert_eq!(published.len(), 3);
                assert_eq!(retry.sent, [0, 0, 0]);
            } else {
                assert!(published.len() <= 6, "{budget}: {}", published.len());
            }
        }
    }

    #[tokio::test]
    async fn nothing_to_deliver_touches_nothing() {
        let ledger = InMemoryMarkerStore::default();
        let publisher = InMemoryEventPublisher::default();
        let bus_only = BusOnly::new();
        let report = deliver(Vec::new(), &ledger, &bus_only.sinks(&publisher))
            .await
            .unwrap();
        assert_eq!(report, DeliveryReport::default());
        assert!(ledger.keys().is_empty());
    }
}
