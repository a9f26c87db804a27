//! What the crate's tests share: an HTTP client for sinks on loopback, and one invocation's
//! resolution (records observed into a tally, resolved against a store).

use std::time::Duration;

use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::ports::{MarkerError, MarkerStore};
use keyward_shared::redact::Redactor;

use crate::deliver::Sinks;
use crate::rules::{Alert, Detector};
use crate::state::Tally;

pub(crate) fn http() -> HttpClient {
    HttpClient::new(
        "test",
        Duration::from_secs(1),
        RetryPolicy::default(),
        Redactor::new(),
    )
    .expect("a test HTTP client")
}

/// What delivery needs when the bus is its only sink (no Loki, no webhook).
pub(crate) struct BusOnly {
    http: HttpClient,
    redactor: Redactor,
}

impl BusOnly {
    pub(crate) fn new() -> Self {
        Self {
            http: http(),
            redactor: Redactor::new(),
        }
    }

    pub(crate) fn sinks<'a, P>(&'a self, publisher: &'a P) -> Sinks<'a, P> {
        Sinks {
            http: &self.http,
            loki: None,
            webhook_url: None,
            publisher,
            redactor: &self.redactor,
        }
    }
}

/// The alerts one invocation over `records` raises (a store failure fails it, as in the
/// function).
pub(crate) async fn resolve_records<S: MarkerStore>(
    detector: &Detector,
    store: &S,
    records: &[String],
) -> Result<Vec<Alert>, MarkerError> {
    let mut tally = Tally::default();
    for raw in records {
        detector
            .observe(raw)
            .expect("a test record")
            .into_iter()
            .for_each(|f| tally.add(f));
    }
    tally.resolve(store).await
}
