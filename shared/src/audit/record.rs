//! One audit record: the domain event as the audit writer stores it, and as every reader of the
//! trail (the verifier's callers, posture, evidence bundles) parses it back.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Datelike as _, DurationRound as _, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use super::{AuditReader, RECORD_PREFIX, ReadError, record_partition, sha256_hex};
use crate::events::DomainEvent;

/// Records fetched at once.
const READ_CONCURRENCY: usize = 16;

/// Version of the audit record layout (also the `v1` in the key).
pub const RECORD_VERSION: u32 = 1;

/// How far an event id's own time may be from the time EventBridge received the event. The id
/// fixes the record's hour partition (so a re-put of the same event lands on the same key), and
/// the digest job seals partitions near receipt: an id dated elsewhere would never be sealed.
pub const MAX_ID_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Why an envelope cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

/// What is stored: the validated domain event and the envelope fields that do not change when
/// EventBridge redelivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub record_version: u32,
    pub source: String,
    pub detail_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub event: DomainEvent,
}

impl AuditRecord {
    pub fn from_envelope(
        envelope: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<Self, RecordError> {
        let event =
            DomainEvent::from_envelope(&envelope.source, &envelope.detail_type, &envelope.detail)
                .map_err(|e| RecordError(e.to_string()))?;
        let received = envelope.time.ok_or_else(|| {
            RecordError("the envelope has no time (EventBridge always sets it)".into())
        })?;
        let minted = event.event_id.timestamp();
        if (minted - received).abs() > MAX_ID_SKEW {
            return Err(RecordError(format!(
                "event id {} is dated {minted}, more than {} min from its receipt at {received}",
                event.event_id,
                MAX_ID_SKEW.num_minutes()
            )));
        }
        Ok(Self {
            record_version: RECORD_VERSION,
            source: envelope.source.clone(),
            detail_type: envelope.detail_type.clone(),
            account: envelope.account.clone(),
            region: envelope.region.clone(),
            event,
        })
    }

    /// The record of an event that reached the writer without an envelope's account and
    /// region (tools and tests that write records themselves).
    pub fn of(event: DomainEvent) -> Self {
        Self {
            record_version: RECORD_VERSION,
            source: event.source().into(),
            detail_type: event.detail_type().into(),
            account: None,
            region: None,
            event,
        }
    }

    /// `audit/v1/YYYY/MM/DD/HH/<event-id>.json`: lists by time, and fixed by the id alone.
    pub fn key(&self) -> String {
        let id = &self.event.event_id;
        format!("{}{id}.json", record_partition(&id.timestamp()))
    }

    /// The stored bytes: compact JSON in the struct's fixed field order, so the same event always
    /// serialises to the same bytes (and the same SHA-256).
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut bytes = serde_json::to_vec(self).map_err(|e| RecordError(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// One record as stored: where, its bytes' SHA-256 (what a digest lists), and what it says.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: String,
    pub sha256: String,
    pub record: AuditRecord,
}

/// The records of a period, and the keys whose bytes are not a keyward audit record (the
/// chain's verdict says whether they were tampered with).
#[derive(Debug, Clone, Default)]
pub struct RecordsRead {
    /// Oldest first (event time, then key).
    pub records: Vec<StoredRecord>,
    pub unreadable: Vec<String>,
}

/// The current version of every record whose event falls between `from` and `to`, read from
/// the month partitions that can hold them (one listing per month, not per day or hour: each
/// listing is a round trip), keeping the hours of the period.
pub async fn records_between<A: AuditReader>(
    audit: &A,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RecordsRead, ReadError> {
    // A key's hour is its event id's, which may be up to MAX_ID_SKEW from the event's time:
    // an hour's slack each side, then the event time decides.
    let first_hour = from
        .duration_trunc(chrono::TimeDelta::hours(1))
        .unwrap_or(from)
        - chrono::TimeDelta::hours(1);
    let last_hour = to + chrono::TimeDelta::hours(1);
    let in_period =
        |key: &str| super::record_hour(key).is_some_and(|h| h >= first_hour && h <= last_hour);
    let mut keys = Vec::new();
    let mut month = first_hour.date_naive().with_day(1);
    while let Some(m) = month.filter(|m| *m <= last_hour.date_naive()) {
        let prefix = format!("{RECORD_PREFIX}{}/", m.format("%Y/%m"));
        keys.extend(
            audit
                .list_versions(&prefix)
                .await?
                .into_iter()
                .filter(|v| v.is_latest && !v.is_delete_marker && in_period(&v.key))
                .map(|v| v.key),
        );
        month = m.checked_add_months(chrono::Months::new(1));
    }
    let fetched: Vec<(String, Option<Vec<u8>>)> = futures::stream::iter(keys)
        .map(|key| async move {
            let object = audit.get(&key).await?;
            Ok::<_, ReadError>((key, object.map(|o| o.bytes)))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut read = RecordsRead::default();
    for (key, bytes) in fetched {
        let Some(bytes) = bytes else {
            // Deleted between the listing and the read: the verifier reports it.
            continue;
        };
        match serde_json::from_slice::<AuditRecord>(&bytes) {
            Ok(record) if record.event.time >= from && record.event.time <= to => {
                read.records.push(StoredRecord {
                    key,
                    sha256: sha256_hex(&bytes),
                    record,
                });
            }
            // At a partition's edge, outside the period.
            Ok(_) => {}
            Err(_) => read.unreadable.push(key),
        }
    }
    read.records
        .sort_by(|a, b| (a.record.event.time, &a.key).cmp(&(b.record.event.time, &b.key)));
    read.unreadable.sort();
    Ok(read)
}
