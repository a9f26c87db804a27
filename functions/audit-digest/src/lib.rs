//! audit-digest: seals the audit trail.
//!
//! - **Trigger**: schedule `Seal` (`DigestSchedule`, default hourly).
//! - **Input**: the `Scheduled Event`; its `time` (to the second) ends the period sealed.
//! - **Events out**: none; answers `{key, records, previous, written}`.
//! - **State**: the signed digest chain `digests/v1/...` in the audit bucket.
//! - **Code**: this crate ([`AuditDigest`], [`seal_period`]); formats in `keyward_shared::audit`.
//!
//! Input: the EventBridge schedule (`rate(1 hour)` by default). Output:
//! `s3://$AUDIT_BUCKET/digests/v1/YYYY/MM/DD/HH/<end>.json`, signed with the KMS key
//! `$DIGEST_KMS_KEY_ID`, listing every record written since the previous digest with its SHA-256,
//! and naming the previous digest's key, hash and signature.
//!
//! Late records are never lost: records are found by when they were *written* (S3
//! LastModified), in the hour partitions of the last `$DIGEST_LOOKBACK_HOURS`, so a record whose
//! event happened hours ago but arrived after the previous digest lands in this one. The window
//! overlaps the previous one by five minutes (excluding what the previous digest already lists),
//! so a write still in flight when the previous digest listed the bucket is caught here.
//! A retry of the same schedule firing finds its digest already written and succeeds.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Months, Utc};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, SdkConfig, s3_client};
use keyward_shared::audit::{
    self, AuditReader, DIGEST_PREFIX, DIGEST_VERSION, DigestDocument, DigestEntry, DigestSigner,
    DigestWriter, SIGNATURE_ALGORITHM, key_fingerprint, record_partition, sha256_hex,
};
use keyward_shared::config::{self, ConfigError, EnvSource};
use serde::{Deserialize, Serialize};

/// How far back the previous digest is searched month by month before a full listing.
const PREVIOUS_SEARCH_MONTHS: u32 = 24;
/// Overlap with the previous window, for writes in flight when it listed the bucket.
const OVERLAP_MINUTES: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub kms_key_id: String,
    /// How late (after its event) a record may be written and still be found.
    pub lookback_hours: i64,
    pub s3_force_path_style: bool,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let lookback_hours = config::parsed_or(env, "DIGEST_LOOKBACK_HOURS", 48i64)?;
        if !(1..=24 * 31).contains(&lookback_hours) {
            return Err(ConfigError::Invalid {
                name: "DIGEST_LOOKBACK_HOURS",
                reason: format!("{lookback_hours} is outside 1..=744"),
            });
        }
        Ok(Self {
            bucket: config::required(env, "AUDIT_BUCKET")?,
            kms_key_id: config::required(env, "DIGEST_KMS_KEY_ID")?,
            lookback_hours,
            s3_force_path_style: config::flag(env, "KEYWARD_S3_FORCE_PATH_STYLE", false)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestOutcome {
    pub key: String,
    pub records: usize,
    pub previous: Option<String>,
    /// False when this period's digest already existed (a retried schedule).
    pub written: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("{0}")]
    Read(#[from] audit::ReadError),
    #[error("{0}")]
    Sign(#[from] audit::SignError),
    #[error(
        "the previous digest {key} is unreadable or not a digest; the chain cannot be extended safely"
    )]
    BrokenPrevious { key: String },
    #[error(
        "the newest digest {newest} ends after this period ({period_end}); refusing to write out of order"
    )]
    OutOfOrder { newest: String, period_end: String },
    #[error("invalid event: {0}")]
    InvalidEvent(String),
}

impl keyward_shared::lambda::FailureKind for DigestError {
    fn kind(&self) -> &'static str {
        match self {
            DigestError::Read(_) => "AuditReadError",
            DigestError::Sign(_) => "SigningError",
            DigestError::BrokenPrevious { .. } => "BrokenDigestChain",
            DigestError::OutOfOrder { .. } => "DigestOutOfOrder",
            DigestError::InvalidEvent(_) => "InvalidEvent",
        }
    }
}

/// The newest existing digest key at or before `key`, searching month partitions back from
/// `from`.
async fn newest_digest_before<B: AuditReader>(
    bucket: &B,
    from: &DateTime<Utc>,
    key: &str,
) -> Result<Option<String>, DigestError> {
    let newest_in = |versions: Vec<audit::ObjectVersion>| {
        versions
            .into_iter()
            .filter(|v| v.is_latest && !v.is_delete_marker && v.key.as_str() <= key)
            .map(|v| v.key)
            .max()
    };
    for back in 0..=PREVIOUS_SEARCH_MONTHS {
        let Some(month) = from.checked_sub_months(Months::new(back)) else {
            break;
        };
        let prefix = format!("{DIGEST_PREFIX}{}/", month.format("%Y/%m"));
        if let Some(found) = newest_in(bucket.list_versions(&prefix).await?) {
            return Ok(Some(found));
        }
    }
    Ok(newest_in(bucket.list_versions(DIGEST_PREFIX).await?))
}

/// Writes the digest for the period ending at `period_end`.
pub async fn seal_period<B, S>(
    bucket: &B,
    bucket_name: &str,
    signer: &S,
    config: &Config,
    period_end: DateTime<Utc>,
) -> Result<DigestOutcome, DigestError>
where
    B: AuditReader + DigestWriter,
    S: DigestSigner,
{
    let key = audit::digest_key(&period_end);
    // Keys sort by period end, so the newest key is the chain's head.
    let newest =
        newest_digest_before(bucket, &(period_end + Months::new(1)), "digests/v1/~").await?;
    let previous_key = match newest {
        Some(newest) if newest == key => {
            return Ok(DigestOutcome {
                key,
                records: 0,
                previous: None,
                written: false,
            });
        }
        Some(newest) if newest > key => {
            return Err(DigestError::OutOfOrder {
                newest,
                period_end: period_end.to_rfc3339(),
            });
        }
        other => other,
    };
    let previous = match &previous_key {
        None => None,
        Some(prev_key) => {
            let object =
                bucket
                    .get(prev_key)
                    .await?
                    .ok_or_else(|| DigestError::BrokenPrevious {
                        key: prev_key.clone(),
                    })?;
            let signature = object
                .metadata
                .get(audit::META_SIGNATURE)
                .cloned()
                .ok_or_else(|| DigestError::BrokenPrevious {
                    key: prev_key.clone(),
                })?;
            let document: DigestDocument =
                serde_json::from_slice(&object.bytes).map_err(|_| DigestError::BrokenPrevious {
                    key: prev_key.clone(),
                })?;
            Some((
                document,
                audit::PreviousDigest {
                    key: prev_key.clone(),
                    sha256: sha256_hex(&object.bytes),
                    signature,
                },
            ))
        }
    };

    let period_start = previous
        .as_ref()
        .map(|(d, _)| d.period_end)
        .unwrap_or(period_end - Duration::hours(config.lookback_hours));
    let window_start = period_start - Duration::minutes(OVERLAP_MINUTES);
    let already: BTreeSet<&str> = previous
        .iter()
        .flat_map(|(d, _)| d.records.iter().map(|r| r.key.as_str()))
        .collect();

    // Every hour partition a record written in the window can sit in.
    let mut entries = Vec::new();
    // Step through whole hours: stepping from an unaligned instant (say hh:56) would skip the
    // hour of `period_end` whenever it ends a few minutes past the hour.
    let first = window_start - Duration::hours(config.lookback_hours);
    let mut hour = first - Duration::seconds(first.timestamp().rem_euclid(3600));
    let mut partitions = BTreeSet::new();
    while hour <= period_end {
        partitions.insert(record_partition(&hour));
        hour += Duration::hours(1);
    }
    for partition in partitions {
        for version in bucket.list_versions(&partition).await? {
            let written = version.last_modified.unwrap_or(period_end);
            if !version.is_latest
                || version.is_delete_marker
                || written < window_start
                || written >= period_end
                || already.contains(version.key.as_str())
            {
                continue;
            }
            // Hash what is stored now, so the digest attests the bytes actually in the bucket.
            let Some(object) = bucket.get(&version.key).await? else {
                continue;
            };
            entries.push(DigestEntry {
                key: version.key,
                version_id: version.version_id,
                sha256: sha256_hex(&object.bytes),
            });
        }
    }

    let public_key = signer.public_key_der().await?;
    let document = DigestDocument {
        digest_version: DIGEST_VERSION,
        bucket: bucket_name.to_owned(),
        key: key.clone(),
        period_start,
        period_end,
        records: entries,
        previous: previous.map(|(_, link)| link),
        public_key_fingerprint: key_fingerprint(&public_key),
        signature_algorithm: SIGNATURE_ALGORITHM.to_owned(),
    };
    let records = document.records.len();
    let sealed = audit::seal(signer, document).await?;
    let written = bucket.put_digest(&sealed).await?;
    tracing::info!(key = %key, records, written, previous = ?previous_key, "audit digest sealed");
    Ok(DigestOutcome {
        key,
        records,
        previous: previous_key,
        written,
    })
}

/// The period a schedule firing seals: it ends at the firing's time (to the second), so a retry
/// of the same firing names the same digest.
pub fn period_end_of(
    event: &aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
) -> DateTime<Utc> {
    let time = event.time.unwrap_or_else(Utc::now);
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// The function's handler: one schedule firing per invocation.
pub struct AuditDigest<B, S> {
    pub bucket: B,
    pub signer: S,
    pub config: Config,
}

impl AuditDigest<S3AuditBucket, KmsDigestSigner> {
    pub fn from_config(config: &Config, sdk: &SdkConfig) -> Self {
        Self {
            bucket: S3AuditBucket::new(s3_client(sdk, config.s3_force_path_style), &config.bucket),
            signer: KmsDigestSigner::new(aws_sdk_kms::Client::new(sdk), &config.kms_key_id),
            config: config.clone(),
        }
    }
}

impl<B: AuditReader + DigestWriter, S: DigestSigner> keyward_shared::lambda::Handler
    for AuditDigest<B, S>
{
    type Output = DigestOutcome;
    type Error = DigestError;

    async fn handle(&self, payload: &str) -> Result<DigestOutcome, DigestError> {
        let event = serde_json::from_str(payload).map_err(|e| {
            DigestError::InvalidEvent(format!(
                "not an EventBridge event (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let end = period_end_of(&event);
        seal_period(
            &self.bucket,
            &self.config.bucket,
            &self.signer,
            &self.config,
            end,
        )
        .await
    }
}

#[cfg(test)]
mod tests;
