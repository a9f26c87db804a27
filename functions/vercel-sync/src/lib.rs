//! vercel-sync: Secrets Manager → Vercel environment variables, with parity.
//!
//! - **Trigger**: Secrets Manager writes and `RotationSucceeded` (default bus), `SecretRotated`
//!   and `VercelSyncRequested` (keyward bus), the parity-sweep schedule, the redeploy queue.
//! - **Input**: one classifier for every trigger ([`trigger::classify`]).
//! - **Events out**: `VercelSyncCompleted` or `VercelSyncFailed` per secret, with per-target
//!   results.
//! - **State**: the sync ledgers (`keyward_shared::vercel_ledger`) and redeploy markers in the
//!   state bucket; the SQS redeploy queue.
//! - **Code**: [`config`], [`trigger`], [`plan`], `apply`, [`redeploy`], [`source`],
//!   [`vercel`], [`report`].
//!
//! Inputs (one handler, [`Syncer::handle`]):
//! - `AWS API Call via CloudTrail` from `aws.secretsmanager` (`PutSecretValue`, `UpdateSecret`,
//!   `UpdateSecretVersionStage`, `TagResource`, `UntagResource`, `DeleteSecret`,
//!   `RestoreSecret`) and `AWS Service Event via CloudTrail` `RotationSucceeded`: sync that secret;
//! - `SecretRotated` (keyward.rotation) and `VercelSyncRequested` (keyward.ci-gateway, a scope):
//!   sync those secrets;
//! - `Scheduled Event`: the parity sweep over every secret under the stack's prefix, and over
//!   every ledger whose secret is gone;
//! - SQS records from the redeploy queue: the debounced deploy-hook calls ([`redeploy`]).
//!
//! Per secret: the mapping comes from the tag contract, the plan from [`plan`], the writes are
//! one batch upsert per secret, and the ledger (`vercel/ledger/<sha256(name)>.json` in the state
//! bucket) records what was written so the next sync needs no value read back. One
//! `VercelSyncCompleted` or `VercelSyncFailed` event per secret that a trigger named, or that a
//! sweep found anything to do or report for. An unchanged secret costs no write call.

mod apply;
pub mod config;
pub mod plan;
pub mod redeploy;
pub mod report;
pub mod source;
pub mod trigger;
pub mod vercel;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3Manifest, S3MarkerStore, SdkConfig, config_secret_string, s3_client,
};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::events::{
    Actor, CorrelationId, DomainEvent, EventData, Outcome, SecretRef, VercelTargetStatus,
};
use keyward_shared::governance::VercelMapping;
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::ports::{EventPublisher, ManifestSource, MarkerStore};
use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tags;
pub use keyward_shared::vercel_ledger::{LEDGER_PREFIX, ledger_key};
use secrecy::SecretString;

use crate::apply::WriteTarget;
use crate::plan::{
    Ledger, OrphanPlan, PlanInput, Slot, SlotPlan, desired_slots, plan_orphans, plan_slot,
};
use crate::redeploy::{RedeployQueue, RedeployRequest};
use crate::report::result;
pub use crate::report::{BatchItemFailure, Report, SecretOutcome};
use crate::source::{SecretSnapshot, SecretSource, SecretsManagerSource};
use crate::trigger::{Work, classify, id_to_name};
use crate::vercel::{CustomEnvironment, EnvRecord, HttpVercel, ProjectRef, VercelApi, VercelError};

pub use crate::config::{Config, Credentials, CredentialsError, credentials_from_secret};
pub use crate::redeploy::SqsRedeployQueue;
pub use crate::trigger::{SYNC_API_CALLS, input_kind};

/// S3 reads in flight while a sweep reads its ledgers ahead.
const LEDGER_READ_CONCURRENCY: usize = 16;
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("listing secrets: {0}")]
    Source(SafeText),
    /// Some targets failed for reasons a retry can fix (throttling, outages); the events name
    /// them, and the retry writes only what is still missing.
    #[error("sync incomplete for {secrets:?}: {first}")]
    Incomplete {
        secrets: Vec<String>,
        first: SafeText,
    },
    #[error("publishing sync events: {0}")]
    Publish(SafeText),
    #[error("redeploy: {0}")]
    Redeploy(SafeText),
    /// Without the declared manifest nothing is synced: a retry may find it.
    #[error("reading the declared manifest: {0}")]
    Manifest(SafeText),
}

impl FailureKind for SyncError {
    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::Source(_) => "SecretsManagerError",
            Self::Incomplete { .. } => "SyncIncomplete",
            Self::Publish(_) => "PublishError",
            Self::Redeploy(_) => "RedeployError",
            Self::Manifest(_) => "ManifestError",
        }
    }
}

pub struct Syncer<S, V, M, P, Q, D> {
    /// The declared manifest: the only authority on what goes to Vercel.
    pub manifests: D,
    pub source: S,
    pub vercel: V,
    pub state: M,
    pub publisher: P,
    /// Absent: no redeploys.
    pub redeploy: Option<Q>,
    pub deploy_hooks: BTreeMap<String, SecretString>,
    pub secret_prefix: String,
    pub debounce_secs: u32,
    pub redactor: Redactor,
}

/// The per-invocation view of Vercel: each project listed once, then kept current with what
/// this invocation wrote.
/// Which secrets of a batch get an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reporting {
    /// Every secret a trigger named.
    EverySecret,
    /// Only secrets with something to say (a sweep).
    Noteworthy,
}

/// The secrets one invocation syncs.
struct Batch {
    /// `secret`, `scope` or `sweep`: the report's `input`.
    input: &'static str,
    snapshots: Vec<SecretSnapshot>,
    /// Secrets deleted for good, named by their ledgers: their records are orphans.
    gone: Vec<String>,
    correlation: CorrelationId,
    reporting: Reporting,
}

/// The function as deployed.
pub type DeployedSyncer = Syncer<
    SecretsManagerSource,
    HttpVercel,
    S3MarkerStore,
    EventBridgePublisher,
    SqsRedeployQueue,
    S3Manifest,
>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    CredentialsSecret(String),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Http(#[from] keyward_shared::adapters::http::HttpError),
}

impl DeployedSyncer {
    /// Reads the credentials secret once (every credential registered with the redactor) and
    /// builds every client.
    pub async fn from_config(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let redactor = Redactor::new();
        let credentials = config_secret_string(
            &secrets,
            &config.credentials_secret_arn,
            "the Vercel credentials secret",
        )
        .await
        .map_err(StartError::CredentialsSecret)?;
        let credentials = credentials_from_secret(&credentials, &redactor)?;
        let http =
            HttpClient::for_function("vercel-sync", Duration::from_secs(15), redactor.clone())?;
        let s3 = s3_client(sdk, config.common.s3_force_path_style);
        Ok(Syncer {
            manifests: S3Manifest {
                s3: s3.clone().into(),
                bucket: config.manifest_bucket.clone(),
                prefix: config.manifest_prefix.clone(),
            },
            source: SecretsManagerSource::new(secrets, redactor.clone()),
            vercel: HttpVercel::new(http, &config.api_url, credentials.token),
            state: S3MarkerStore::new(s3, &config.state_bucket),
            publisher: EventBridgePublisher::for_sdk(sdk, &config.common.event_bus_name),
            redeploy: config
                .redeploy_queue_url
                .clone()
                .map(|queue_url| SqsRedeployQueue {
                    client: aws_sdk_sqs::Client::new(sdk),
                    queue_url,
                }),
            deploy_hooks: credentials.deploy_hooks,
            secret_prefix: config.secret_prefix.clone(),
            debounce_secs: config.redeploy_debounce_secs,
            redactor,
        })
    }
}

impl<S, V, M, P, Q, D> Handler for Syncer<S, V, M, P, Q, D>
where
    S: SecretSource,
    V: VercelApi,
    M: MarkerStore,
    P: EventPublisher,
    Q: RedeployQueue,
    D: ManifestSource,
{
    type Output = Report;
    type Error = SyncError;

    async fn handle(&self, payload: &str) -> Result<Report, SyncError> {
        let result = self.dispatch(payload).await;
        match &result {
            Ok(report) => tracing::info!(
                input = report.input,
                secrets = report.secrets,
                writes = report.writes,
                changed = report.changed.len(),
                drift = report.drift.len(),
                failed = report.failed.len(),
                "synced"
            ),
            Err(err) => tracing::error!(kind = err.kind(), error = %err, "invocation failed"),
        }
        result
    }
}

#[derive(Default)]
pub(crate) struct ProjectCache {
    pub(crate) records: BTreeMap<ProjectRef, Vec<EnvRecord>>,
    custom: BTreeMap<ProjectRef, Vec<CustomEnvironment>>,
    unavailable: BTreeMap<ProjectRef, VercelErrorSummary>,
}

#[derive(Clone)]
struct VercelErrorSummary {
    text: SafeText,
    transient: bool,
}

impl<S, V, M, P, Q, D> Syncer<S, V, M, P, Q, D>
where
    S: SecretSource,
    V: VercelApi,
    M: MarkerStore,
    P: EventPublisher,
    Q: RedeployQueue,
    D: ManifestSource,
{
    async fn dispatch(&self, payload: &str) -> Result<Report, SyncError> {
        match classify(payload)? {
            Work::Skip(reason) => {
                tracing::info!(reason = %reason, "nothing to sync");
                Ok(Report {
                    input: "skipped",
                    skipped: Some(reason),
                    ..Report::default()
                })
            }
            Work::Redeploy(records) => self.fire_redeploys(records).await,
            Work::Secret(id, correlation) => {
                let Some(snapshot) = self
                    .source
                    .describe(&id)
                    .await
                    .map_err(|e| SyncError::Source(self.redactor.safe(&e.to_string())))?
                else {
                    // Deleted for good: whatever keyward wrote for it is an orphan.
                    let name = id_to_name(&id);
                    return self
                        .run(Batch {
                            input: "secret",
                            snapshots: Vec::new(),
                            gone: name.into_iter().collect(),
                            correlation,
                            reporting: Reporting::EverySecret,
                        })
                        .await;
                };
                if !snapshot.name.starts_with(&self.secret_prefix) {
                    return Ok(Report {
                        input: "skipped",
                        skipped: Some(format!(
                            "{} is outside this stack's {}",
                            snapshot.name, self.secret_prefix
                        )),
                        ..Report::default()
                    });
                }
                self.run(Batch {
                    input: "secret",
                    snapshots: vec![snapshot],
                    gone: Vec::new(),
                    correlation,
                    reporting: Reporting::EverySecret,
                })
                .await
            }
            Work::Scope(scope, correlation) => {
                let environment = self.secret_prefix.split('/').nth(2).unwrap_or_default();
                if scope.environment != environment {
                    return Ok(Report {
                        input: "skipped",
                        skipped: Some(format!(
                            "the request is for {}, this stack governs {}",
                            scope.environment, environment
                        )),
                        ..Report::default()
                    });
                }
                let prefix = match (&scope.secret, &scope.service) {
                    (Some(secret), _) => secret.clone(),
                    (None, Some(service)) => format!("{}{service}/", self.secret_prefix),
                    (None, None) => self.secret_prefix.clone(),
                };
                if !prefix.starts_with(&self.secret_prefix) {
                    return Err(SyncError::InvalidEvent(format!(
                        "the scope names {prefix}, outside {}",
                        self.secret_prefix
                    )));
                }
                let snapshots: Vec<SecretSnapshot> = self
                    .source
                    .list(&prefix)
                    .await
                    .map_err(|e| SyncError::Source(self.redactor.safe(&e.to_string())))?
                    .into_iter()
                    // `ListSecrets`' name filter is a prefix match: a secret scope must not
                    // pull in `/acme/prod/web/key-old` beside `/acme/prod/web/key`.
                    .filter(|s| scope.secret.is_none() || Some(&s.name) == scope.secret.as_ref())
                    .collect();
                self.run(Batch {
                    input: "scope",
                    snapshots,
                    gone: Vec::new(),
                    correlation,
                    reporting: Reporting::EverySecret,
                })
                .await
            }
            Work::Sweep => {
                let snapshots = self
                    .source
                    .list(&self.secret_prefix)
                    .await
                    .map_err(|e| SyncError::Source(self.redactor.safe(&e.to_string())))?;
                let listed: BTreeSet<String> =
                    snapshots.iter().map(|s| ledger_key(&s.name)).collect();
                // Ledgers whose secret is gone: their records are orphans.
                let gone: Vec<String> = self
                    .state
                    .list(LEDGER_PREFIX)
                    .await
                    .map_err(|e| SyncError::Source(self.redactor.safe(&e.to_string())))?
                    .into_iter()
                    .filter(|k| !listed.contains(k))
                    .collect();
                self.run_sweep(snapshots, gone).await
            }
        }
    }

    async fn load_ledger(&self, secret: &str) -> Result<Ledger, SafeText> {
        let marker = self
            .state
            .get(&ledger_key(secret))
            .await
            .map_err(|e| self.redactor.safe(&e.to_string()))?;
        match marker {
            None => Ok(Ledger {
                secret: secret.to_owned(),
                ..Ledger::default()
            }),
            Some(marker) => serde_json::from_str(&marker.body).map_err(|e| {
                self.redactor.safe(&format!(
                    "the sync ledger {} is damaged ({e}); delete it to let the next sync adopt keyward's records by their comments",
                    ledger_key(secret)
                ))
            }),
        }
    }

    async fn run_sweep(
        &self,
        snapshots: Vec<SecretSnapshot>,
        gone_ledgers: Vec<String>,
    ) -> Result<Report, SyncError> {
        // Gone secrets are named by their ledgers.
        let mut gone = Vec::new();
        for key in gone_ledgers {
            match self.state.get(&key).await {
                Ok(Some(marker)) => match serde_json::from_str::<Ledger>(&marker.body) {
                    Ok(ledger) if !ledger.entries.is_empty() => gone.push(ledger.secret),
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!(ledger = %key, "damaged ledger of a gone secret left as it is")
                    }
                },
                Ok(None) => {}
                Err(e) => return Err(SyncError::Source(self.redactor.safe(&e.to_string()))),
            }
        }
        self.run(Batch {
            input: "sweep",
            snapshots,
            gone,
            correlation: CorrelationId::generate(),
            reporting: Reporting::Noteworthy,
        })
        .await
    }

    /// Syncs each secret in turn. Sequential on purpose: Vercel's limits are per account and
    /// endpoint, so parallel writes would only trade calls for 429s, and one project listing
    /// serves every secret mapped to it.
    async fn run(&self, batch: Batch) -> Result<Report, SyncError> {
        let manifest = self
            .manifests
            .manifest()
            .await
            .map_err(|e| SyncError::Manifest(self.redactor.safe(&e.to_string())))?;
        let declared = Declared::new(&manifest, &self.secret_prefix);
        let outcomes = self.sync_all(&batch, &declared).await;
        let mut report = Report {
            input: batch.input,
            secrets: outcomes.len(),
            ..Report::default()
        };
        let mut events = Vec::new();
        for (arn, outcome) in &outcomes {
            report.add(outcome);
            if batch.reporting == Reporting::EverySecret || outcome.worth_reporting() {
                events.push(self.event(arn.clone(), outcome, batch.correlation.clone()));
            }
        }
        report.events = events.len();
        self.publisher
            .publish(&events)
            .await
            .map_err(|e| SyncError::Publish(self.redactor.safe(&e.to_string())))?;
        let redeploy_error = self.schedule_redeploys(&outcomes, &mut report).await;
        if let Some(incomplete) = incomplete(&outcomes) {
            return Err(incomplete);
        }
        if let Some(e) = redeploy_error {
            return Err(SyncError::Redeploy(e));
        }
        Ok(report)
    }

    /// Each secret of the batch in turn, its ledger read ahead: concurrently, since for a parity
    /// sweep the ledgers are most of the work. Secrets with nothing to do or say are left out.
    async fn sync_all(
        &self,
        batch: &Batch,
        declared: &Declared<'_>,
    ) -> Vec<(Option<String>, SecretOutcome)> {
        let mut cache = ProjectCache::default();
        let names: Vec<&str> = batch
            .snapshots
            .iter()
            .map(|s| s.name.as_str())
            .chain(batch.gone.iter().map(String::as_str))
            .collect();
        let mut ledgers: BTreeMap<String, Result<Ledger, SafeText>> = futures::stream::iter(
            names
                .into_iter()
                .map(|name| async move { (name.to_owned(), self.load_ledger(name).await) }),
        )
        .buffer_unordered(LEDGER_READ_CONCURRENCY)
        .collect()
        .await;
        let mut take = |name: &str| {
            ledgers
                .remove(name)
                .unwrap_or_else(|| Err(SafeText::fixed("the ledger was not read")))
        };
        let mut outcomes = Vec::new();
        for snapshot in &batch.snapshots {
            let ledger = take(&snapshot.name);
            if let Some(outcome) = self
                .sync_secret(Some(snapshot), &snapshot.name, ledger, declared, &mut cache)
                .await
            {
                outcomes.push((Some(snapshot.arn.clone()), outcome));
            }
        }
        for name in &batch.gone {
            let ledger = take(name);
            if let Some(outcome) = self
                .sync_secret(None, name, ledger, declared, &mut cache)
                .await
            {
                outcomes.push((None, outcome));
            }
        }
        outcomes
    }

    /// One redeploy per project whose variables changed; the first failure, if any (the others
    /// are still tried, and logged).
    async fn schedule_redeploys(
        &self,
        outcomes: &[(Option<String>, SecretOutcome)],
        report: &mut Report,
    ) -> Option<SafeText> {
        let changed_projects: BTreeSet<String> = outcomes
            .iter()
            .flat_map(|(_, o)| o.changed_projects())
            .collect();
        let mut redeploy_error = None;
        for project in changed_projects {
            match self.schedule_redeploy(&project).await {
                Ok(true) => report.redeploys_scheduled.push(project),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(project = %project, error = %e, "redeploy not scheduled");
                    redeploy_error.get_or_insert(e);
                }
            }
        }
        redeploy_error
    }

    fn event(
        &self,
        arn: Option<String>,
        outcome: &SecretOutcome,
        correlation: CorrelationId,
    ) -> DomainEvent {
        let secret = Some(SecretRef {
            name: outcome.secret.clone(),
            arn,
        });
        if outcome.in_parity() {
            DomainEvent::new(
                correlation,
                Actor::service("vercel-sync"),
                secret,
                Outcome::Success,
                EventData::VercelSyncCompleted {
                    version_id: outcome.version_id.clone(),
                    results: outcome.results.clone(),
                },
            )
        } else {
            let failed = outcome
                .results
                .iter()
                .filter(|r| r.status == VercelTargetStatus::Failed)
                .count();
            let drift = outcome
                .results
                .iter()
                .filter(|r| r.status == VercelTargetStatus::DriftDetected)
                .count();
            let error = outcome.error.clone().unwrap_or_else(|| {
                self.redactor.safe(&format!(
                    "{failed} target(s) failed, {drift} target(s) drifted from what keyward wrote"
                ))
            });
            DomainEvent::new(
                correlation,
                Actor::service("vercel-sync"),
                secret,
                Outcome::Failure,
                EventData::VercelSyncFailed {
                    version_id: outcome.version_id.clone(),
                    results: outcome.results.clone(),
                    error,
                },
            )
        }
    }

    async fn project_records(
        &self,
        cache: &mut ProjectCache,
        project: &ProjectRef,
        custom: bool,
    ) -> Result<(), VercelErrorSummary> {
        if let Some(err) = cache.unavailable.get(project) {
            return Err(err.clone());
        }
        let summary = |e: VercelError| VercelErrorSummary {
            transient: e.is_transient(),
            text: self.redactor.safe(&e.to_string()),
        };
        if !cache.records.contains_key(project) {
            match self.vercel.list_envs(project).await {
                Ok(records) => {
                    cache.records.insert(project.clone(), records);
                }
                Err(e) => {
                    let s = summary(e);
                    cache.unavailable.insert(project.clone(), s.clone());
                    return Err(s);
                }
            }
        }
        if custom && !cache.custom.contains_key(project) {
            match self.vercel.custom_environments(project).await {
                Ok(envs) => {
                    cache.custom.insert(project.clone(), envs);
                }
                Err(e) => return Err(summary(e)),
            }
        }
        Ok(())
    }

    /// One secret: `None` when there is nothing to do or say (never mapped, no ledger).
    async fn sync_secret(
        &self,
        snapshot: Option<&SecretSnapshot>,
        name: &str,
        ledger: Result<Ledger, SafeText>,
        declared: &Declared<'_>,
        cache: &mut ProjectCache,
    ) -> Option<SecretOutcome> {
        let mut outcome = SecretOutcome::new(
            name,
            snapshot
                .and_then(|s| s.current_version.clone())
                .unwrap_or_default(),
        );
        // The mapping: a broken tag set stops here (nothing deleted on a misspelt tag).
        let mapping = match self.mapping_of(snapshot, name, declared) {
            Ok(mapping) => mapping,
            Err(e) => return Some(outcome.failed(e, false)),
        };
        let mut ledger = match ledger {
            Ok(l) => l,
            Err(e) => return Some(outcome.failed(e, true)),
        };
        if mapping.is_none() && ledger.entries.is_empty() {
            return None;
        }
        let original = ledger.clone();
        let orphans = mapping
            .as_ref()
            .map(|m| m.orphans)
            .unwrap_or(ledger.orphans);
        let version = outcome.version_id.clone();
        if mapping.is_some() && version.is_empty() {
            return Some(outcome.failed(
                SafeText::fixed(
                    "the secret has no AWSCURRENT value yet; it syncs once one is stored",
                ),
                false,
            ));
        }
        if let Err(e) = self.list_projects(cache, mapping.as_ref(), &ledger).await {
            return Some(outcome.failed(e.text, e.transient));
        }

        let (slot_plans, orphan_plans) = {
            let input = PlanInput {
                secret: name,
                version: &version,
                on_edit: mapping.as_ref().map(|m| m.on_edit).unwrap_or_default(),
                orphans,
                ledger: &ledger,
                records: &cache.records,
            };
            self.plan(&input, mapping.as_ref(), cache, &mut outcome)
        };
        let writes = self.record_unwritten(slot_plans, &mut outcome);
        if !writes.is_empty() {
            let snapshot = snapshot.expect("writes are planned only for a mapped, existing secret");
            let target = WriteTarget {
                secret: name,
                version: &version,
                snapshot,
            };
            self.apply_writes(&target, writes, cache, &mut ledger, &mut outcome)
                .await;
        }
        self.apply_orphans(orphan_plans, cache, &mut ledger, &mut outcome)
            .await;
        ledger.orphans = orphans;
        if ledger != original
            && let Err((e, retryable)) = self.save_ledger(name, &ledger).await
        {
            return Some(outcome.failed(e, retryable));
        }
        outcome.sort_results();
        Some(outcome)
    }

    /// The secret's Vercel mapping: the manifest's, and only when the secret's tags say the
    /// same. A mapping the tags make and the manifest does not (or one they disagree on, or a
    /// classification they disagree on) is refused before anything is read or sent.
    fn mapping_of(
        &self,
        snapshot: Option<&SecretSnapshot>,
        name: &str,
        declared: &Declared<'_>,
    ) -> Result<Option<VercelMapping>, SafeText> {
        let tagged = match snapshot {
            Some(s) if !s.deleted => tags::decode(&s.tags)
                .map_err(|e| self.redactor.safe(&format!("tag contract: {e}")))?,
            _ => return Ok(None),
        };
        let declaration = declared.secret(name);
        let refuse = |why: &str| {
            tracing::warn!(secret = %name, reason = why, "Vercel mapping refused");
            Err(self.redactor.safe(&format!("refused, nothing sent: {why}")))
        };
        match (
            tagged.as_ref().and_then(|g| g.vercel.as_ref()),
            declaration.and_then(|d| d.governance.vercel.as_ref()),
        ) {
            (None, None) => Ok(None),
            (Some(_), None) => {
                refuse("the secret's tags map it to Vercel but the declared manifest does not")
            }
            (None, Some(_)) => refuse(
                "the declared manifest maps the secret to Vercel but its tags do not (apply the declaration)",
            ),
            (Some(tag), Some(manifest)) if tag != manifest => {
                refuse("the secret's tags map it to Vercel differently from the declared manifest")
            }
            (Some(_), Some(manifest)) => {
                let declaration = declaration.expect("a declared mapping has a declaration");
                let classification = declaration.governance.classification;
                if tagged.as_ref().map(|g| g.classification) != Some(classification) {
                    return refuse(
                        "the secret's classification tag differs from the declared manifest",
                    );
                }
                if let Err(e) = manifest.permits(classification) {
                    return refuse(&e.to_string());
                }
                Ok(Some(manifest.clone()))
            }
        }
    }

    /// Every project the mapping or the ledger touches, listed once per invocation.
    async fn list_projects(
        &self,
        cache: &mut ProjectCache,
        mapping: Option<&VercelMapping>,
        ledger: &Ledger,
    ) -> Result<(), VercelErrorSummary> {
        let mut projects: BTreeSet<(ProjectRef, bool)> = BTreeSet::new();
        if let Some(m) = mapping {
            let custom = m
                .targets
                .iter()
                .any(|t| matches!(t, keyward_shared::governance::VercelTarget::Custom(_)));
            projects.insert((project_of(m), custom));
        }
        for entry in &ledger.entries {
            projects.insert((entry.slot.project.clone(), false));
        }
        for (project, custom) in &projects {
            self.project_records(cache, project, *custom).await?;
        }
        Ok(())
    }

    /// The plan of every slot the mapping asks for and of every orphan; a custom environment
    /// the project lacks is reported as failed.
    fn plan(
        &self,
        input: &PlanInput<'_>,
        mapping: Option<&VercelMapping>,
        cache: &ProjectCache,
        outcome: &mut SecretOutcome,
    ) -> (Vec<SlotPlan>, Vec<OrphanPlan>) {
        let (desired, unknown) = match mapping {
            Some(m) => desired_slots(
                m,
                cache
                    .custom
                    .get(&project_of(m))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            ),
            None => (Vec::new(), Vec::new()),
        };
        for u in &unknown {
            outcome.results.push(result(
                &u.slot,
                VercelTargetStatus::Failed,
                Some(self.redactor.safe(&format!(
                    "custom environment `{}` does not exist in Vercel project {}",
                    u.slot.target, u.slot.project
                ))),
            ));
        }
        let mut all_slots: Vec<Slot> = desired.iter().map(|d| d.slot.clone()).collect();
        // A target whose custom environment vanished keeps its ledger entry until fixed.
        all_slots.extend(unknown.iter().map(|u| u.slot.clone()));
        let orphan_plans = plan_orphans(input, &all_slots);
        let slot_plans = desired.into_iter().map(|d| plan_slot(input, d)).collect();
        (slot_plans, orphan_plans)
    }

    /// Writes the ledger; a failure leaves Vercel holding the writes, which the next sync adopts
    /// by their comments. The flag says whether a retry can fix it.
    async fn save_ledger(&self, secret: &str, ledger: &Ledger) -> Result<(), (SafeText, bool)> {
        let body = serde_json::to_string(ledger)
            .map_err(|_| (SafeText::fixed("the ledger does not serialise"), false))?;
        self.state
            .overwrite(&ledger_key(secret), &body)
            .await
            .map_err(|e| (self.redactor.safe(&e.to_string()), true))
    }

    async fn schedule_redeploy(&self, project: &str) -> Result<bool, SafeText> {
        let (Some(queue), Some(_)) = (&self.redeploy, self.deploy_hooks.get(project)) else {
            return Ok(false);
        };
        let request = RedeployRequest::new(project);
        redeploy::schedule(queue, &self.state, &request, self.debounce_secs)
            .await
            .map_err(|e| self.redactor.safe(&e))?;
        Ok(true)
    }

    async fn fire_redeploys(&self, records: Vec<redeploy::SqsRecord>) -> Result<Report, SyncError> {
        let mut report = Report {
            input: "redeploy",
            ..Report::default()
        };
        for record in records {
            match redeploy::fire(&self.vercel, &self.state, &self.deploy_hooks, &record).await {
                Ok(Some(project)) => report.redeploys_triggered.push(project),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(message = %record.message_id, error = %self.redactor.safe(&e), "redeploy failed");
                    report.batch_item_failures.push(BatchItemFailure {
                        item_identifier: record.message_id.clone(),
                    });
                }
            }
        }
        Ok(report)
    }
}

/// The project a mapping names.
fn project_of(mapping: &VercelMapping) -> ProjectRef {
    ProjectRef {
        project: mapping.project.clone(),
        team: mapping.team.clone(),
    }
}

/// The declared secrets of this stack's environment, by name.
pub(crate) struct Declared<'a> {
    by_name: BTreeMap<String, &'a keyward_shared::manifest::DeclaredSecret>,
}

impl<'a> Declared<'a> {
    /// The manifest's secrets under the stack's prefix (`/<org>/<env>/`): a manifest of another
    /// organisation declares nothing here.
    fn new(manifest: &'a keyward_shared::manifest::Manifest, secret_prefix: &str) -> Self {
        Self {
            by_name: manifest
                .secrets
                .iter()
                .map(|d| (d.name.to_string(), d))
                .filter(|(name, _)| name.starts_with(secret_prefix))
                .collect(),
        }
    }

    fn secret(&self, name: &str) -> Option<&'a keyward_shared::manifest::DeclaredSecret> {
        self.by_name.get(name).copied()
    }
}

/// The secrets a retry can fix, as the invocation's error (the first one's reason).
fn incomplete(outcomes: &[(Option<String>, SecretOutcome)]) -> Option<SyncError> {
    let retry: Vec<&SecretOutcome> = outcomes
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.retryable)
        .collect();
    let first = retry.first()?;
    Some(SyncError::Incomplete {
        secrets: retry.iter().map(|o| o.secret.clone()).collect(),
        first: first
            .error
            .clone()
            .or_else(|| {
                first
                    .results
                    .iter()
                    .find(|r| r.status == VercelTargetStatus::Failed)
                    .and_then(|r| r.detail.clone())
            })
            .unwrap_or_else(|| SafeText::fixed("a target failed")),
    })
}
