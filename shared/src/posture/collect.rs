//! Reading posture's sources through the ports: the same calls from the CLI (against any
//! account, or the local stack's moto) and from the posture function.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt as _, TryStreamExt as _};

use super::compute::{Gathered, secret_name_of};
use super::model::*;
use super::readers::{READER_SIGHTINGS_PREFIX, Sighting};
use crate::audit::record::records_between;
use crate::audit::{
    AuditReader, FetchedObject, Freshness, ObjectKind, ObjectVersion, ReadError, Status,
    VerifyOptions, verify,
};
use crate::manifest::Manifest;
use crate::policy::PolicyGrants;
use crate::ports::{CatalogEntry, MarkerStore, ResourcePolicies, SecretCatalog};
use crate::vercel_ledger::{Ledger, ledger_key};

/// Calls in flight at once against one service (Secrets Manager's `GetResourcePolicy` shares
/// a 50 TPS quota with the other functions; S3 takes far more).
const POLICY_CONCURRENCY: usize = 8;
const S3_CONCURRENCY: usize = 16;
/// Failures the chain state lists at most.
const CHAIN_FAILURES_SHOWN: usize = 20;

/// What to compute and over which periods.
#[derive(Debug, Clone)]
pub struct PostureRequest {
    pub org: String,
    pub now: DateTime<Utc>,
    /// Alerts are counted over the last `window_days`.
    pub window_days: i64,
    /// Rotation, sync and drift records are read over the last `history_days` (at least the
    /// window).
    pub history_days: i64,
    /// The newest digest must be at most this old for the chain to count as valid.
    pub max_digest_age: Duration,
    /// The digest job's `DIGEST_LOOKBACK_HOURS`.
    pub digest_lookback: Duration,
}

/// Where posture reads from. The manifest and public key are read by the caller (from disk or
/// S3, from a file or KMS); a failure there is passed in as its reason.
pub struct PostureSources<'a, C, M, A> {
    pub manifest: Result<Manifest, String>,
    /// Secrets Manager: `ListSecrets` and `GetResourcePolicy`.
    pub secrets: &'a C,
    /// The state bucket: Vercel ledgers and the forwarder's reader sightings.
    pub state: &'a M,
    pub audit: &'a A,
    pub audit_bucket: &'a str,
    /// The digest key's public key (DER), or why it could not be had.
    pub public_key: Result<Vec<u8>, String>,
}

pub async fn gather<C, M, A>(
    request: &PostureRequest,
    sources: PostureSources<'_, C, M, A>,
) -> Gathered
where
    C: SecretCatalog + ResourcePolicies,
    M: MarkerStore,
    A: AuditReader,
{
    let now = request.now;
    let window = Window {
        from: now - Duration::days(request.window_days),
        to: now,
    };
    let history_from = now - Duration::days(request.history_days.max(request.window_days));
    let mut states = Vec::new();
    fn note(states: &mut Vec<SourceState>, source: SourceKind, result: Result<(), String>) {
        states.push(SourceState {
            source,
            read: result.is_ok(),
            error: result.err(),
        });
    }

    let manifest = sources.manifest;
    note(
        &mut states,
        SourceKind::Manifest,
        manifest.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let manifest = manifest.ok();

    let catalog = sources
        .secrets
        .list(&format!("/{}/", request.org))
        .await
        .map_err(|e| e.to_string());
    note(
        &mut states,
        SourceKind::SecretsManager,
        catalog.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let catalog = catalog.ok();

    let policies = match &catalog {
        Some(entries) => {
            let read = policies_of(sources.secrets, entries).await;
            note(
                &mut states,
                SourceKind::ResourcePolicies,
                read.as_ref().map(|_| ()).map_err(Clone::clone),
            );
            read.ok()
        }
        None => {
            note(
                &mut states,
                SourceKind::ResourcePolicies,
                Err("not read: Secrets Manager could not be listed".into()),
            );
            None
        }
    };

    let state = state_of(sources.state, manifest.as_ref()).await;
    note(
        &mut states,
        SourceKind::StateBucket,
        state.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let (ledgers, readers_seen) = match state {
        Ok(StateRead { ledgers, readers }) => (Some(ledgers), Some(readers)),
        Err(_) => (None, None),
    };

    // The verifier reads every record again: it gets them from this cache, not the bucket.
    let audit = ReadOnce::new(sources.audit);
    let events = records_between(&audit, history_from, now)
        .await
        .map_err(|e| e.to_string());
    match &events {
        // Read, with records that are not keyward's named: the chain verdict says whether they
        // were tampered with.
        Ok(read) if !read.unreadable.is_empty() => states.push(SourceState {
            source: SourceKind::AuditBucket,
            read: true,
            error: Some(format!(
                "{} record(s) are not keyward audit records: {}",
                read.unreadable.len(),
                read.unreadable.join(", ")
            )),
        }),
        other => note(
            &mut states,
            SourceKind::AuditBucket,
            other.as_ref().map(|_| ()).map_err(Clone::clone),
        ),
    }
    let events = events
        .ok()
        .map(|read| read.records.into_iter().map(|r| r.record.event).collect());

    let options = VerifyOptions {
        from: Some(history_from),
        to: Some(now),
        lookback: request.digest_lookback,
        freshness: Some(Freshness {
            now,
            max_age: request.max_digest_age,
        }),
    };
    let chain = chain_state(
        sources.audit,
        sources.audit_bucket,
        &sources.public_key,
        &options,
        now,
    )
    .await;
    note(
        &mut states,
        SourceKind::AuditChain,
        match chain.verdict {
            ChainVerdict::NotVerified => Err(chain.summary.clone()),
            _ => Ok(()),
        },
    );

    Gathered {
        org: request.org.clone(),
        now,
        window,
        manifest,
        catalog,
        policies,
        ledgers,
        readers_seen,
        events,
        chain,
        sources: states,
    }
}

/// An audit reader that fetches each object once per posture: the records read for the
/// history are the ones the verifier hashes, so it is handed the same bytes.
struct ReadOnce<'a, A> {
    inner: &'a A,
    fetched: std::sync::Mutex<BTreeMap<String, Option<FetchedObject>>>,
}

impl<'a, A> ReadOnce<'a, A> {
    fn new(inner: &'a A) -> Self {
        Self {
            inner,
            fetched: std::sync::Mutex::new(BTreeMap::new()),
        }
    }
}

impl<A: AuditReader> AuditReader for ReadOnce<'_, A> {
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, ReadError> {
        self.inner.list_versions(prefix).await
    }

    async fn get(&self, key: &str) -> Result<Option<FetchedObject>, ReadError> {
        let cached = self
            .fetched
            .lock()
            .map_err(|_| ReadError("the read cache was poisoned".into()))?
            .get(key)
            .cloned();
        if let Some(object) = cached {
            return Ok(object);
        }
        let object = self.inner.get(key).await?;
        self.fetched
            .lock()
            .map_err(|_| ReadError("the read cache was poisoned".into()))?
            .insert(key.to_owned(), object.clone());
        Ok(object)
    }
}

/// Every live secret's resource policy: all or nothing, so a half-read set never shows as
/// "no policy".
async fn policies_of<P: ResourcePolicies>(
    policies: &P,
    entries: &[CatalogEntry],
) -> Result<BTreeMap<String, Option<PolicyGrants>>, String> {
    futures::stream::iter(entries.iter().filter(|e| e.deleted.is_none()))
        .map(|entry| async move {
            let text = policies
                .policy(&entry.arn)
                .await
                .map_err(|e| e.to_string())?;
            let grants = text.as_deref().map(PolicyGrants::parse_or_public);
            Ok::<_, String>((entry.name.clone(), grants))
        })
        .buffer_unordered(POLICY_CONCURRENCY)
        .try_collect()
        .await
}

struct StateRead {
    ledgers: BTreeMap<String, Ledger>,
    readers: BTreeMap<String, Vec<SeenReader>>,
}

async fn state_of<M: MarkerStore>(
    store: &M,
    manifest: Option<&Manifest>,
) -> Result<StateRead, String> {
    let mapped: Vec<String> = manifest
        .iter()
        .flat_map(|m| m.secrets.iter())
        .filter(|d| d.governance.vercel.is_some())
        .map(|d| d.name.to_string())
        .collect();
    let ledgers: Vec<Option<(String, Ledger)>> = futures::stream::iter(mapped)
        .map(|name| async move {
            let key = ledger_key(&name);
            let Some(marker) = store.get(&key).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let ledger: Ledger = serde_json::from_str(&marker.body)
                .map_err(|e| format!("{key} is not a sync ledger ({e})"))?;
            Ok::<_, String>(Some((name, ledger)))
        })
        .buffer_unordered(S3_CONCURRENCY)
        .try_collect()
        .await?;
    let keys = store
        .list(READER_SIGHTINGS_PREFIX)
        .await
        .map_err(|e| e.to_string())?;
    let sightings: Vec<Option<Sighting>> = futures::stream::iter(keys)
        .map(|key| async move {
            let marker = store.get(&key).await.map_err(|e| e.to_string())?;
            // A marker written before sightings named their reader says nothing to list.
            Ok::<_, String>(marker.and_then(|m| serde_json::from_str::<Sighting>(&m.body).ok()))
        })
        .buffer_unordered(S3_CONCURRENCY)
        .try_collect()
        .await?;
    let mut readers: BTreeMap<String, Vec<SeenReader>> = BTreeMap::new();
    for sighting in sightings.into_iter().flatten() {
        let (Some(principal), Some(secret)) = (sighting.principal_arn, sighting.secret) else {
            continue;
        };
        let secret = secret_name_of(&secret);
        readers.entry(secret).or_default().push(SeenReader {
            principal,
            first_seen: sighting.event_time,
        });
    }
    Ok(StateRead {
        ledgers: ledgers.into_iter().flatten().collect(),
        readers,
    })
}

async fn chain_state<A: AuditReader>(
    audit: &A,
    bucket: &str,
    public_key: &Result<Vec<u8>, String>,
    options: &VerifyOptions,
    now: DateTime<Utc>,
) -> ChainState {
    let not_verified = |summary: String| ChainState {
        verdict: ChainVerdict::NotVerified,
        summary,
        digests_checked: 0,
        records_checked: 0,
        last_digest: None,
        last_digest_age_hours: None,
        failures: Vec::new(),
    };
    let key = match public_key {
        Ok(key) => key,
        Err(reason) => return not_verified(format!("no public key: {reason}")),
    };
    let report = match verify(audit, bucket, key, options).await {
        Ok(report) => report,
        Err(e) => return not_verified(e.to_string()),
    };
    let last_digest = report
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Digest && o.status == Status::Valid)
        .map(|o| o.key.clone())
        .max();
    let last_digest_age_hours = last_digest
        .as_deref()
        .and_then(crate::audit::digest_end)
        .map(|end| ((now - end).num_minutes() as f64 / 6.0).round() / 10.0);
    ChainState {
        verdict: if report.ok() {
            ChainVerdict::Valid
        } else {
            ChainVerdict::Broken
        },
        summary: report.summary(),
        digests_checked: report.digests_checked as u64,
        records_checked: report.records_checked as u64,
        last_digest,
        last_digest_age_hours,
        failures: report
            .failures()
            .take(CHAIN_FAILURES_SHOWN)
            .map(|o| format!("{} {} {}", wire_name(&o.kind), wire_name(&o.status), o.key))
            .collect(),
    }
}
