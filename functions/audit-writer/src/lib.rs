//! audit-writer: one immutable, checksummed audit record per keyward domain event.
//!
//! - **Trigger**: rule `AllDomainEvents` on the keyward bus (`source` prefix `keyward.`).
//! - **Input**: an EventBridge envelope whose `detail` is a `DomainEvent` of its `source` and
//!   `detail-type`; anything else fails with `InvalidEvent` and nothing is written.
//! - **Events out**: none; answers `{key, sha256, outcome}`.
//! - **State**: one create-only object per event in the Object Lock audit bucket.
//! - **Code**: this crate ([`AuditWriter`]); record formats in `keyward_shared::audit`.
//!
//! Input: every event on the keyward bus (rule `AllDomainEvents`, `source` prefix `keyward.`).
//! Output: `s3://$AUDIT_BUCKET/audit/v1/YYYY/MM/DD/HH/<event-id>.json` in a bucket with S3 Object
//! Lock (COMPLIANCE, default retention from the template).
//!
//! Idempotent under EventBridge's at-least-once delivery: the key derives from the event's UUIDv7
//! alone (its embedded time gives the hour partition), the write is conditional
//! (`If-None-Match: *`), and the record holds only what is stable across redeliveries (not the
//! envelope id, which changes when a producer re-puts). A redelivery finds the same bytes and
//! succeeds without writing; different bytes under the same id are a conflict and an error, so
//! the event goes to the dead-letter queue for a person to look at.

use std::future::Future;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
pub use keyward_shared::audit::record::{AuditRecord, MAX_ID_SKEW, RECORD_VERSION};
use keyward_shared::config::{self, ConfigError, EnvSource};
use keyward_shared::redact::SafeText;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

pub mod s3;

/// S3 answers a concurrent conditional write with 409 `ConditionalRequestConflict`: retry it.
const CONFLICT_RETRIES: u32 = 3;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub s3_force_path_style: bool,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            bucket: config::required(env, "AUDIT_BUCKET")?,
            s3_force_path_style: config::flag(env, "KEYWARD_S3_FORCE_PATH_STYLE", false)?,
        })
    }
}

pub fn sha256_base64(bytes: &[u8]) -> String {
    BASE64.encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An object already exists under the key (HTTP 412).
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// HTTP 409: another writer's conditional write to the same key is in flight.
    #[error("a concurrent conditional write to the same key is in flight")]
    ConcurrentConflict,
    #[error("{0}")]
    Other(SafeText),
}

/// Where audit records go. S3 in production ([`s3::S3AuditStore`]); a map in unit tests.
pub trait AuditStore: Send + Sync {
    /// Writes only if nothing exists under `key`, with the body's SHA-256 for the store to check.
    fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        sha256_b64: &str,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    Written,
    /// A redelivery: the identical record was already stored.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAck {
    pub key: String,
    pub sha256: String,
    pub outcome: WriteOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Not a keyward domain event (or not this build's schema): retrying cannot help.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A different record already holds this event id. Nothing was overwritten.
    #[error(
        "conflict: {key} already holds a different record for this event id (stored sha256 {stored}, received {received})"
    )]
    Conflict {
        key: String,
        stored: String,
        received: String,
    },
    #[error("audit store error: {0}")]
    Store(SafeText),
}

impl From<keyward_shared::audit::record::RecordError> for AuditError {
    fn from(error: keyward_shared::audit::record::RecordError) -> Self {
        Self::InvalidEvent(error.0)
    }
}

impl keyward_shared::lambda::FailureKind for AuditError {
    fn kind(&self) -> &'static str {
        match self {
            AuditError::InvalidEvent(_) => "InvalidEvent",
            AuditError::Conflict { .. } => "AuditConflict",
            AuditError::Store(_) => "AuditStoreError",
        }
    }
}

/// The function's handler: one EventBridge delivery per invocation.
pub struct AuditWriter<S> {
    pub store: S,
}

impl AuditWriter<s3::S3AuditStore> {
    pub fn from_config(config: &Config, sdk: &keyward_shared::adapters::aws::SdkConfig) -> Self {
        Self {
            store: s3::S3AuditStore::new(
                keyward_shared::adapters::aws::s3_client(sdk, config.s3_force_path_style),
                &config.bucket,
            ),
        }
    }
}

impl<S: AuditStore> keyward_shared::lambda::Handler for AuditWriter<S> {
    type Output = AuditAck;
    type Error = AuditError;

    async fn handle(&self, payload: &str) -> Result<AuditAck, AuditError> {
        // serde's messages can quote the input: say where, not what.
        let envelope: EventBridgeEvent<serde_json::Value> =
            serde_json::from_str(payload).map_err(|e| {
                AuditError::InvalidEvent(format!(
                    "not an EventBridge event (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
        handle(&self.store, &envelope).await
    }
}

/// Handles one EventBridge delivery.
pub async fn handle<S: AuditStore>(
    store: &S,
    envelope: &EventBridgeEvent<serde_json::Value>,
) -> Result<AuditAck, AuditError> {
    let record = AuditRecord::from_envelope(envelope)?;
    let key = record.key();
    let bytes = record.to_bytes()?;
    let sha256 = sha256_base64(&bytes);
    let span = keyward_shared::telemetry::correlation_span(record.event.correlation_id.as_str());
    store_record(store, &record, key, bytes, sha256)
        .instrument(span)
        .await
}

async fn store_record<S: AuditStore>(
    store: &S,
    record: &AuditRecord,
    key: String,
    bytes: Vec<u8>,
    sha256: String,
) -> Result<AuditAck, AuditError> {
    let mut attempt = 0;
    let outcome = loop {
        match store.put_if_absent(&key, &bytes, &sha256).await {
            Ok(outcome) => break outcome,
            Err(StoreError::ConcurrentConflict) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            Err(StoreError::ConcurrentConflict) => {
                return Err(AuditError::Store(SafeText::fixed(
                    "conditional write kept conflicting with a concurrent writer",
                )));
            }
            Err(other) => return Err(other.into()),
        }
    };
    let outcome = match outcome {
        PutOutcome::Created => WriteOutcome::Written,
        PutOutcome::AlreadyExists => {
            let stored = store.get(&key).await?.ok_or_else(|| {
                AuditError::Store(SafeText::fixed(
                    "the store refused the write but holds no record under the key",
                ))
            })?;
            let stored_sha = sha256_base64(&stored);
            if stored_sha != sha256 {
                tracing::error!(key = %key, "audit conflict: a different record holds this event id");
                return Err(AuditError::Conflict {
                    key,
                    stored: stored_sha,
                    received: sha256,
                });
            }
            WriteOutcome::Duplicate
        }
    };
    tracing::info!(
        key = %key,
        outcome = ?outcome,
        source = %record.source,
        detail_type = %record.detail_type,
        event_id = %record.event.event_id,
        "audit record stored"
    );
    Ok(AuditAck {
        key,
        sha256,
        outcome,
    })
}

impl From<StoreError> for AuditError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Other(text) => AuditError::Store(text),
            StoreError::ConcurrentConflict => AuditError::Store(SafeText::fixed(
                "a concurrent write to the same key is in flight",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
