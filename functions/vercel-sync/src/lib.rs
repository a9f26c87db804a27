//! vercel-sync: Secrets Manager → Vercel environment variables, with parity.
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

pub mod plan;
pub mod redeploy;
pub mod source;
pub mod vercel;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use keyward_shared::config::{
    CommonConfig, ConfigError, EnvSource, https_or_loopback, parsed_or, required, secret_prefix,
};
use keyward_shared::events::{
    Actor, CorrelationId, DomainEvent, EventData, Outcome, SecretRef, SyncScope,
    VercelTargetResult, VercelTargetStatus,
};
use keyward_shared::governance::VercelMapping;
use keyward_shared::ports::{EventPublisher, MarkerStore};
use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tags;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::plan::{
    Action, Desired, Ledger, LedgerEntry, OrphanAction, PlanInput, Slot, desired_slots,
    plan_orphans, plan_slot, provenance,
};
use crate::redeploy::{RedeployQueue, RedeployRequest};
use crate::source::{SecretSnapshot, SecretSource};
use crate::vercel::{CustomEnvironment, EnvRecord, NewEnv, ProjectRef, VercelApi, VercelError};

pub const LEDGER_PREFIX: &str = "vercel/ledger/";
/// S3 reads in flight while a sweep reads its ledgers ahead.
const LEDGER_READ_CONCURRENCY: usize = 16;
pub const DEFAULT_API_URL: &str = "https://api.vercel.com";
/// SQS's longest message delay.
pub const MAX_DEBOUNCE_SECS: u32 = 900;

/// Secrets Manager API calls after which a secret's variables may need writing.
pub const SYNC_API_CALLS: [&str; 7] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "TagResource",
    "UntagResource",
    "DeleteSecret",
    "RestoreSecret",
];

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_STATE_BUCKET`: the sync ledger and the redeploy debounce markers.
    pub state_bucket: String,
    /// `KEYWARD_SECRET_PREFIX`: `/<org>/<env>/`, the secrets this stack governs.
    pub secret_prefix: String,
    /// `KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN`: `{"token": ..., "deploy_hooks": {project: url}}`.
    pub credentials_secret_arn: String,
    /// `KEYWARD_VERCEL_API_URL` (default `https://api.vercel.com`).
    pub api_url: String,
    /// `KEYWARD_VERCEL_REDEPLOY_QUEUE_URL`: without it, no redeploys.
    pub redeploy_queue_url: Option<String>,
    /// `KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS` (default 60, at most 900).
    pub redeploy_debounce_secs: u32,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let secret_prefix = secret_prefix(env, "KEYWARD_SECRET_PREFIX")?;
        let api_url = env
            .get("KEYWARD_VERCEL_API_URL")
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if !https_or_loopback(&api_url) {
            return Err(ConfigError::Invalid {
                name: "KEYWARD_VERCEL_API_URL",
                reason: "must be an https:// URL (plain http only on 127.0.0.1)".into(),
            });
        }
        let redeploy_debounce_secs = parsed_or(env, "KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS", 60)?;
        if redeploy_debounce_secs > MAX_DEBOUNCE_SECS {
            return Err(ConfigError::Invalid {
                name: "KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS",
                reason: format!(
                    "{redeploy_debounce_secs} exceeds SQS's {MAX_DEBOUNCE_SECS} s delay limit"
                ),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            secret_prefix,
            credentials_secret_arn: required(env, "KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN")?,
            api_url,
            redeploy_queue_url: env
                .get("KEYWARD_VERCEL_REDEPLOY_QUEUE_URL")
                .filter(|url| !url.is_empty()),
            redeploy_debounce_secs,
        })
    }

    /// The `<env>` segment of the prefix.
    pub fn environment(&self) -> &str {
        self.secret_prefix.split('/').nth(2).unwrap_or_default()
    }
}

/// What the credentials secret holds.
pub struct Credentials {
    pub token: SecretString,
    /// Deploy hook URL per project (as the mappings name it). Each URL is a credential.
    pub deploy_hooks: BTreeMap<String, SecretString>,
}

#[derive(Debug, thiserror::Error)]
#[error("the Vercel credentials secret {0}")]
pub struct CredentialsError(&'static str);

/// Parses the credentials secret and registers every credential in it with the redactor.
pub fn credentials_from_secret(
    text: &str,
    redactor: &Redactor,
) -> Result<Credentials, CredentialsError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        token: String,
        #[serde(default)]
        deploy_hooks: BTreeMap<String, String>,
    }
    // serde's messages can quote the input, which is a secret: say what is wrong, not where.
    let raw: Raw = serde_json::from_str(text).map_err(|_| {
        CredentialsError("is not JSON of the form {\"token\": \"...\", \"deploy_hooks\": {\"<project>\": \"<url>\"}}")
    })?;
    if raw.token.trim().is_empty() {
        return Err(CredentialsError("has an empty `token`"));
    }
    let token = SecretString::from(raw.token);
    redactor.register(&token);
    let mut deploy_hooks = BTreeMap::new();
    for (project, url) in raw.deploy_hooks {
        let url = SecretString::from(url);
        redactor.register(&url);
        if !https_or_loopback(url.expose_secret()) {
            return Err(CredentialsError(
                "has a deploy hook that is not an https:// URL",
            ));
        }
        deploy_hooks.insert(project, url);
    }
    Ok(Credentials {
        token,
        deploy_hooks,
    })
}

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
}

impl SyncError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::Source(_) => "SecretsManagerError",
            Self::Incomplete { .. } => "SyncIncomplete",
            Self::Publish(_) => "PublishError",
            Self::Redeploy(_) => "RedeployError",
        }
    }
}

impl From<SyncError> for lambda_runtime::Diagnostic {
    fn from(error: SyncError) -> Self {
        // Built from names, codes and redacted text only.
        lambda_runtime::Diagnostic {
            error_type: error.kind().to_owned(),
            error_message: keyward_shared::redact::error_chain(&error),
        }
    }
}

/// What one secret's sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretOutcome {
    pub secret: String,
    pub version_id: String,
    pub results: Vec<VercelTargetResult>,
    /// Why the secret failed as a whole (bad tags, unreadable value...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SafeText>,
    /// A retry can fix what failed.
    #[serde(skip)]
    pub retryable: bool,
    /// Write calls made (upserts and deletes).
    pub writes: u32,
}

impl SecretOutcome {
    fn in_parity(&self) -> bool {
        self.error.is_none()
            && self.results.iter().all(|r| {
                !matches!(
                    r.status,
                    VercelTargetStatus::Failed | VercelTargetStatus::DriftDetected
                )
            })
    }

    fn changed(&self) -> bool {
        self.results.iter().any(|r| {
            matches!(
                r.status,
                VercelTargetStatus::Created
                    | VercelTargetStatus::Updated
                    | VercelTargetStatus::Deleted
            )
        })
    }

    fn worth_reporting(&self) -> bool {
        !self.in_parity() || self.changed()
    }
}

/// The function's response (and its log line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `secret`, `scope`, `sweep`, `redeploy` or `skipped`.
    pub input: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub secrets: usize,
    pub writes: u32,
    pub changed: Vec<String>,
    pub drift: Vec<String>,
    pub failed: Vec<String>,
    pub events: usize,
    pub redeploys_scheduled: Vec<String>,
    pub redeploys_triggered: Vec<String>,
    /// SQS partial-batch response (`ReportBatchItemFailures`): the messages to redeliver.
    #[serde(rename = "batchItemFailures", skip_serializing_if = "Vec::is_empty")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

pub struct Syncer<S, V, M, P, Q> {
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

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    #[serde(rename = "Records", default)]
    records: Option<Vec<redeploy::SqsRecord>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrailCall {
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    request_parameters: Option<serde_json::Value>,
    #[serde(default)]
    additional_event_data: Option<serde_json::Value>,
}

/// What a trigger asks for.
#[derive(Debug)]
pub(crate) enum Work {
    Secret(String, CorrelationId),
    Scope(SyncScope, CorrelationId),
    Sweep,
    Redeploy(Vec<redeploy::SqsRecord>),
    Skip(String),
}

/// The per-invocation view of Vercel: each project listed once, then kept current with what
/// this invocation wrote.
#[derive(Default)]
struct ProjectCache {
    records: BTreeMap<ProjectRef, Vec<EnvRecord>>,
    custom: BTreeMap<ProjectRef, Vec<CustomEnvironment>>,
    unavailable: BTreeMap<ProjectRef, VercelErrorSummary>,
}

#[derive(Clone)]
struct VercelErrorSummary {
    text: SafeText,
    transient: bool,
}

/// Where a secret's sync ledger lives in the state bucket (read by the drift detector too).
pub fn ledger_key(secret: &str) -> String {
    format!(
        "{LEDGER_PREFIX}{}.json",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

impl<S, V, M, P, Q> Syncer<S, V, M, P, Q>
where
    S: SecretSource,
    V: VercelApi,
    M: MarkerStore,
    P: EventPublisher,
    Q: RedeployQueue,
{
    pub async fn handle(&self, payload: &str) -> Result<Report, SyncError> {
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
                        .run(
                            "secret",
                            Vec::new(),
                            name.into_iter().collect(),
                            correlation,
                            true,
                        )
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
                self.run("secret", vec![snapshot], Vec::new(), correlation, true)
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
                self.run("scope", snapshots, Vec::new(), correlation, true)
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
        self.run("sweep", snapshots, gone, CorrelationId::generate(), false)
            .await
    }

    /// Syncs each secret in turn. Sequential on purpose: Vercel's limits are per account and
    /// endpoint, so parallel writes would only trade calls for 429s, and one project listing
    /// serves every secret mapped to it.
    async fn run(
        &self,
        input: &'static str,
        snapshots: Vec<SecretSnapshot>,
        gone: Vec<String>,
        correlation: CorrelationId,
        targeted: bool,
    ) -> Result<Report, SyncError> {
        let mut cache = ProjectCache::default();
        let mut outcomes = Vec::new();
        // Ledgers are read ahead, concurrently: for a parity sweep they are most of the work.
        let names: Vec<&str> = snapshots
            .iter()
            .map(|s| s.name.as_str())
            .chain(gone.iter().map(String::as_str))
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
        for snapshot in &snapshots {
            let ledger = take(&snapshot.name);
            if let Some(outcome) = self
                .sync_secret(Some(snapshot), &snapshot.name, ledger, &mut cache)
                .await
            {
                outcomes.push((Some(snapshot.arn.clone()), outcome));
            }
        }
        for name in &gone {
            let ledger = take(name);
            if let Some(outcome) = self.sync_secret(None, name, ledger, &mut cache).await {
                outcomes.push((None, outcome));
            }
        }

        let mut report = Report {
            input,
            secrets: outcomes.len(),
            ..Report::default()
        };
        let mut events = Vec::new();
        let mut changed_projects = BTreeSet::new();
        for (arn, outcome) in &outcomes {
            report.writes += outcome.writes;
            if outcome.changed() {
                report.changed.push(outcome.secret.clone());
                for r in &outcome.results {
                    if matches!(
                        r.status,
                        VercelTargetStatus::Created
                            | VercelTargetStatus::Updated
                            | VercelTargetStatus::Deleted
                    ) {
                        changed_projects.insert(r.project.clone());
                    }
                }
            }
            if outcome
                .results
                .iter()
                .any(|r| r.status == VercelTargetStatus::DriftDetected)
            {
                report.drift.push(outcome.secret.clone());
            }
            if outcome.error.is_some()
                || outcome
                    .results
                    .iter()
                    .any(|r| r.status == VercelTargetStatus::Failed)
            {
                report.failed.push(outcome.secret.clone());
            }
            if targeted || outcome.worth_reporting() {
                events.push(self.event(arn.clone(), outcome, correlation.clone()));
            }
        }
        report.events = events.len();
        self.publisher
            .publish(&events)
            .await
            .map_err(|e| SyncError::Publish(self.redactor.safe(&e.to_string())))?;

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

        let retry: Vec<&SecretOutcome> = outcomes
            .iter()
            .map(|(_, o)| o)
            .filter(|o| o.retryable)
            .collect();
        if let Some(first) = retry.first() {
            return Err(SyncError::Incomplete {
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
            });
        }
        if let Some(e) = redeploy_error {
            return Err(SyncError::Redeploy(e));
        }
        Ok(report)
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
        cache: &mut ProjectCache,
    ) -> Option<SecretOutcome> {
        let mut outcome = SecretOutcome {
            secret: name.to_owned(),
            version_id: snapshot
                .and_then(|s| s.current_version.clone())
                .unwrap_or_default(),
            results: Vec::new(),
            error: None,
            retryable: false,
            writes: 0,
        };
        let fail = |mut outcome: SecretOutcome, error: SafeText, retryable: bool| {
            outcome.error = Some(error);
            outcome.retryable = retryable;
            Some(outcome)
        };

        // The mapping: a broken tag set stops here (nothing deleted on a misspelt tag).
        let mapping: Option<VercelMapping> = match snapshot {
            Some(s) if !s.deleted => match tags::decode(&s.tags) {
                Ok(governance) => governance.and_then(|g| g.vercel),
                Err(e) => {
                    return fail(
                        outcome,
                        self.redactor.safe(&format!("tag contract: {e}")),
                        false,
                    );
                }
            },
            _ => None,
        };
        let mut ledger = match ledger {
            Ok(l) => l,
            Err(e) => return fail(outcome, e, true),
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
            return fail(
                outcome,
                SafeText::fixed(
                    "the secret has no AWSCURRENT value yet; it syncs once one is stored",
                ),
                false,
            );
        }

        // Every project the mapping or the ledger touches, listed once per invocation.
        let mut projects: BTreeSet<(ProjectRef, bool)> = BTreeSet::new();
        if let Some(m) = &mapping {
            let custom = m
                .targets
                .iter()
                .any(|t| matches!(t, keyward_shared::governance::VercelTarget::Custom(_)));
            projects.insert((
                ProjectRef {
                    project: m.project.clone(),
                    team: m.team.clone(),
                },
                custom,
            ));
        }
        for entry in &ledger.entries {
            projects.insert((entry.slot.project.clone(), false));
        }
        for (project, custom) in &projects {
            if let Err(e) = self.project_records(cache, project, *custom).await {
                return fail(outcome, e.text, e.transient);
            }
        }

        let (desired, unknown) = match &mapping {
            Some(m) => desired_slots(
                m,
                cache
                    .custom
                    .get(&ProjectRef {
                        project: m.project.clone(),
                        team: m.team.clone(),
                    })
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
        let on_edit = mapping.as_ref().map(|m| m.on_edit).unwrap_or_default();
        let (slot_plans, orphan_plans) = {
            let input = PlanInput {
                secret: name,
                version: &version,
                on_edit,
                orphans,
                ledger: &ledger,
                records: &cache.records,
            };
            let mut all_slots: Vec<Slot> = desired.iter().map(|d| d.slot.clone()).collect();
            // A target whose custom environment vanished keeps its ledger entry until fixed.
            all_slots.extend(unknown.iter().map(|u| u.slot.clone()));
            let orphan_plans = plan_orphans(&input, &all_slots);
            let slot_plans: Vec<_> = desired.into_iter().map(|d| plan_slot(&input, d)).collect();
            (slot_plans, orphan_plans)
        };

        // Writes: the value is read only when something must be written.
        let mut writes: Vec<(Desired, Option<String>, Option<String>, bool)> = Vec::new();
        for p in slot_plans {
            match p.action {
                Action::Unchanged { .. } => outcome.results.push(result(
                    &p.desired.slot,
                    VercelTargetStatus::Unchanged,
                    None,
                )),
                Action::Drift { note } => outcome.results.push(result(
                    &p.desired.slot,
                    VercelTargetStatus::DriftDetected,
                    Some(self.redactor.safe(&note)),
                )),
                Action::Refuse { note } => outcome.results.push(result(
                    &p.desired.slot,
                    VercelTargetStatus::Failed,
                    Some(self.redactor.safe(&note)),
                )),
                Action::Write {
                    create,
                    replace,
                    note,
                } => writes.push((p.desired, replace, note, create)),
            }
        }
        if !writes.is_empty() {
            let snapshot = snapshot.expect("writes are planned only for a mapped, existing secret");
            match self.values(snapshot, &version, &writes).await {
                Err((text, retryable)) => {
                    for (d, ..) in &writes {
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(text.clone()),
                        ));
                    }
                    outcome.retryable |= retryable;
                }
                Ok(values) => {
                    self.write(
                        name,
                        &version,
                        writes,
                        values,
                        cache,
                        &mut ledger,
                        &mut outcome,
                    )
                    .await;
                }
            }
        }

        for orphan in orphan_plans {
            let slot = orphan.entry.slot.clone();
            match orphan.action {
                OrphanAction::Gone => {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Deleted,
                        Some(SafeText::fixed(
                            "no longer mapped; already deleted in Vercel",
                        )),
                    ));
                }
                OrphanAction::Release => {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Unchanged,
                        Some(SafeText::fixed(
                            "no longer mapped; left in Vercel and no longer managed (orphans: keep)",
                        )),
                    ));
                }
                OrphanAction::Drift { note } => outcome.results.push(result(
                    &slot,
                    VercelTargetStatus::DriftDetected,
                    Some(self.redactor.safe(&note)),
                )),
                // A renamed mapping (a project name for its id, a slug for an id) adopts the
                // same record under its new slot: never delete what a slot now holds.
                OrphanAction::Delete { record_id }
                    if ledger
                        .entries
                        .iter()
                        .any(|e| e.record_id == record_id && e.slot != slot) =>
                {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Unchanged,
                        Some(SafeText::fixed(
                            "mapping renamed; the record is kept under its new name",
                        )),
                    ));
                }
                OrphanAction::Delete { record_id } => {
                    outcome.writes += 1;
                    match self.vercel.delete_env(&slot.project, &record_id).await {
                        Ok(()) => {
                            ledger.remove(&slot);
                            if let Some(records) = cache.records.get_mut(&slot.project) {
                                records.retain(|r| r.id != record_id);
                            }
                            outcome.results.push(result(
                                &slot,
                                VercelTargetStatus::Deleted,
                                Some(SafeText::fixed("no longer mapped (orphans: delete)")),
                            ));
                        }
                        Err(e) => {
                            outcome.retryable |= e.is_transient();
                            outcome.results.push(result(
                                &slot,
                                VercelTargetStatus::Failed,
                                Some(self.redactor.safe(&e.to_string())),
                            ));
                        }
                    }
                }
            }
        }

        ledger.orphans = orphans;
        if ledger != original {
            let body = match serde_json::to_string(&ledger) {
                Ok(b) => b,
                Err(_) => {
                    return fail(
                        outcome,
                        SafeText::fixed("the ledger does not serialise"),
                        false,
                    );
                }
            };
            if let Err(e) = self.state.overwrite(&ledger_key(name), &body).await {
                // Vercel holds the writes; the next sync adopts them by their comments.
                return fail(outcome, self.redactor.safe(&e.to_string()), true);
            }
        }
        outcome.results.sort_by(|a, b| {
            (&a.project, a.target.as_str(), &a.git_branch, &a.key).cmp(&(
                &b.project,
                b.target.as_str(),
                &b.git_branch,
                &b.key,
            ))
        });
        Some(outcome)
    }

    /// The value of each written variable: the whole secret, or its JSON fields. Errors name the
    /// field, never the value.
    async fn values(
        &self,
        snapshot: &SecretSnapshot,
        version: &str,
        writes: &[(Desired, Option<String>, Option<String>, bool)],
    ) -> Result<BTreeMap<Option<String>, SecretString>, (SafeText, bool)> {
        let value = self
            .source
            .value(&snapshot.arn, version)
            .await
            .map_err(|e| (self.redactor.safe(&e.to_string()), true))?;
        let fields: BTreeSet<Option<String>> =
            writes.iter().map(|(d, ..)| d.field.clone()).collect();
        let mut out = BTreeMap::new();
        let mut parsed: Option<serde_json::Map<String, serde_json::Value>> = None;
        for field in fields {
            let Some(name) = &field else {
                out.insert(None, value.clone());
                continue;
            };
            if parsed.is_none() {
                parsed = Some(
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                        value.expose_secret(),
                    )
                    .map_err(|_| {
                        (
                            SafeText::fixed(
                                "the mapping names JSON fields but the secret value is not a JSON object",
                            ),
                            false,
                        )
                    })?,
                );
            }
            let object = parsed.as_ref().expect("parsed above");
            let text = match object.get(name) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                Some(_) => {
                    return Err((
                        self.redactor.safe(&format!(
                            "JSON field `{name}` is not a string, number or boolean"
                        )),
                        false,
                    ));
                }
                None => {
                    return Err((
                        self.redactor
                            .safe(&format!("the secret has no JSON field `{name}`")),
                        false,
                    ));
                }
            };
            let text = SecretString::from(text);
            self.redactor.register(&text);
            out.insert(field, text);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        secret: &str,
        version: &str,
        writes: Vec<(Desired, Option<String>, Option<String>, bool)>,
        values: BTreeMap<Option<String>, SecretString>,
        cache: &mut ProjectCache,
        ledger: &mut Ledger,
        outcome: &mut SecretOutcome,
    ) {
        // A type change (sensitive <-> encrypted) is delete + create: Vercel keeps the type on
        // update.
        let mut batch: Vec<(Desired, Option<String>, bool)> = Vec::new();
        for (desired, replace, note, create) in writes {
            if let Some(id) = replace {
                outcome.writes += 1;
                if let Err(e) = self.vercel.delete_env(&desired.slot.project, &id).await {
                    outcome.retryable |= e.is_transient();
                    outcome.results.push(result(
                        &desired.slot,
                        VercelTargetStatus::Failed,
                        Some(self.redactor.safe(&e.to_string())),
                    ));
                    continue;
                }
                if let Some(records) = cache.records.get_mut(&desired.slot.project) {
                    records.retain(|r| r.id != id);
                }
                // The record is gone: if the upsert below fails, the retry must see an empty
                // slot to create, not a variable "deleted by hand" to leave deleted.
                ledger.remove(&desired.slot);
            }
            batch.push((desired, note, create));
        }
        // One upsert per project (a mapping has one project, so one call per secret).
        let mut by_project: BTreeMap<ProjectRef, Vec<(Desired, Option<String>, bool)>> =
            BTreeMap::new();
        for item in batch {
            by_project
                .entry(item.0.slot.project.clone())
                .or_default()
                .push(item);
        }
        let comment = provenance(secret, version);
        for (project, items) in by_project {
            let envs: Vec<NewEnv> = items
                .iter()
                .map(|(d, ..)| NewEnv {
                    key: d.slot.key.clone(),
                    value: values
                        .get(&d.field)
                        .cloned()
                        .unwrap_or_else(|| SecretString::from(String::new())),
                    env_type: d.env_type,
                    target: match &d.scope {
                        plan::Scope::Standard(t) => vec![(*t).to_owned()],
                        plan::Scope::Custom { .. } => Vec::new(),
                    },
                    git_branch: d.slot.git_branch.clone(),
                    custom_environment_ids: match &d.scope {
                        plan::Scope::Custom { id } => vec![id.clone()],
                        plan::Scope::Standard(_) => Vec::new(),
                    },
                    comment: comment.clone(),
                })
                .collect();
            outcome.writes += 1;
            let response = match self.vercel.upsert_envs(&project, &envs).await {
                Ok(r) => r,
                Err(e) => {
                    outcome.retryable |= e.is_transient();
                    let text = self.redactor.safe(&e.to_string());
                    for (d, ..) in &items {
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(text.clone()),
                        ));
                    }
                    continue;
                }
            };
            for (d, note, create) in items {
                let created = response.created.iter().find(|r| covers_exactly(r, &d));
                let failed = response.failed.iter().find(|f| {
                    f.key.as_deref() == Some(d.slot.key.as_str())
                        && (f.target.is_empty()
                            || match &d.scope {
                                plan::Scope::Standard(t) => f.target.iter().any(|x| x == t),
                                plan::Scope::Custom { .. } => true,
                            })
                        && (f.git_branch.is_none() || f.git_branch == d.slot.git_branch)
                });
                match (created, failed) {
                    (Some(record), _) => {
                        ledger.upsert(LedgerEntry {
                            slot: d.slot.clone(),
                            record_id: record.id.clone(),
                            version_id: version.to_owned(),
                            updated_at: record.updated_at,
                            written_by: record.updated_by.clone(),
                            env_type: d.env_type.to_owned(),
                        });
                        if let Some(records) = cache.records.get_mut(&project) {
                            records.retain(|r| r.id != record.id);
                            records.push(record.clone());
                        }
                        outcome.results.push(result(
                            &d.slot,
                            if create {
                                VercelTargetStatus::Created
                            } else {
                                VercelTargetStatus::Updated
                            },
                            note.map(|n| self.redactor.safe(&n)),
                        ));
                    }
                    (None, Some(f)) => {
                        // ENV_CONFLICT and validation codes need a person; anything else may
                        // pass on retry.
                        outcome.retryable |= matches!(
                            f.code.as_str(),
                            "rate_limited" | "internal_server_error" | "UNKNOWN_ERROR"
                        );
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(
                                self.redactor
                                    .safe(&format!("Vercel refused it: {} {}", f.code, f.message)),
                            ),
                        ));
                    }
                    (None, None) => {
                        outcome.retryable = true;
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(SafeText::fixed(
                                "Vercel's answer listed this variable neither as created nor as failed",
                            )),
                        ));
                    }
                }
            }
        }
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

/// What kind of work an input asks for (`secret`, `scope`, `sweep`, `redeploy`, `skip`), or
/// why it is refused: the parser every trigger goes through, exposed for tests and fuzzing.
pub fn input_kind(payload: &str) -> Result<&'static str, SyncError> {
    Ok(match classify(payload)? {
        Work::Secret(..) => "secret",
        Work::Scope(..) => "scope",
        Work::Sweep => "sweep",
        Work::Redeploy(_) => "redeploy",
        Work::Skip(_) => "skip",
    })
}

pub(crate) fn classify(payload: &str) -> Result<Work, SyncError> {
    // serde's messages can quote input; report where, not what.
    let envelope: Envelope<'_> = serde_json::from_str(payload).map_err(|e| {
        SyncError::InvalidEvent(format!(
            "not an EventBridge event or SQS batch (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(records) = envelope.records {
        return Ok(Work::Redeploy(records));
    }
    let detail = envelope.detail.map(RawValue::get).unwrap_or("null");
    match (envelope.source.as_deref(), envelope.detail_type.as_deref()) {
        (Some("aws.events" | "aws.scheduler"), Some("Scheduled Event")) => Ok(Work::Sweep),
        (
            Some("aws.secretsmanager"),
            Some(kind @ ("AWS API Call via CloudTrail" | "AWS Service Event via CloudTrail")),
        ) => {
            let call: TrailCall = serde_json::from_str(detail).map_err(|e| {
                SyncError::InvalidEvent(format!(
                    "the CloudTrail record does not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            let name = call.event_name.unwrap_or_default();
            if let Some(code) = call.error_code {
                return Ok(Work::Skip(format!(
                    "{name} failed ({code}); nothing changed"
                )));
            }
            let id = if kind == "AWS Service Event via CloudTrail" {
                if name != "RotationSucceeded" {
                    return Ok(Work::Skip(format!("service event {name} changes no value")));
                }
                let data = call.additional_event_data.unwrap_or_default();
                ["SecretId", "ARN", "Name"]
                    .iter()
                    .find_map(|k| data.get(k).and_then(|v| v.as_str()).map(str::to_owned))
            } else {
                if !SYNC_API_CALLS.contains(&name.as_str()) {
                    return Ok(Work::Skip(format!("{name} changes no value or mapping")));
                }
                call.request_parameters.and_then(|p| {
                    p.get("secretId")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
            };
            let id = id.ok_or_else(|| {
                SyncError::InvalidEvent(format!("the {name} record names no secret"))
            })?;
            Ok(Work::Secret(id, CorrelationId::generate()))
        }
        (Some(source @ ("keyward.rotation" | "keyward.ci-gateway")), Some(detail_type)) => {
            let detail: serde_json::Value = serde_json::from_str(detail).map_err(|e| {
                SyncError::InvalidEvent(format!(
                    "the event detail does not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            let event = DomainEvent::from_envelope(source, detail_type, &detail)
                .map_err(|e| SyncError::InvalidEvent(e.to_string()))?;
            match event.data {
                EventData::SecretRotated { .. } => {
                    let secret = event.secret.ok_or_else(|| {
                        SyncError::InvalidEvent("SecretRotated names no secret".into())
                    })?;
                    Ok(Work::Secret(
                        secret.arn.unwrap_or(secret.name),
                        event.correlation_id,
                    ))
                }
                EventData::VercelSyncRequested { scope } => {
                    Ok(Work::Scope(scope, event.correlation_id))
                }
                _ => Ok(Work::Skip(format!("{detail_type} asks for no sync"))),
            }
        }
        (source, detail_type) => Err(SyncError::InvalidEvent(format!(
            "unexpected input: source {:?}, detail-type {:?}",
            source.unwrap_or(""),
            detail_type.unwrap_or("")
        ))),
    }
}

fn covers_exactly(record: &EnvRecord, d: &Desired) -> bool {
    record.key == d.slot.key
        && record.git_branch == d.slot.git_branch
        && match &d.scope {
            plan::Scope::Standard(t) => {
                record.target.len() == 1
                    && record.target[0] == *t
                    && record.custom_environment_ids.is_empty()
            }
            plan::Scope::Custom { id } => {
                record.custom_environment_ids.len() == 1
                    && record.custom_environment_ids[0] == *id
                    && record.target.is_empty()
            }
        }
}

fn result(slot: &Slot, status: VercelTargetStatus, detail: Option<SafeText>) -> VercelTargetResult {
    VercelTargetResult {
        // As the mapping names it: the key deploy hooks are configured under.
        project: slot.project.project.clone(),
        target: slot
            .target
            .parse()
            .unwrap_or(keyward_shared::governance::VercelTarget::Custom(
                slot.target.clone(),
            )),
        git_branch: slot.git_branch.clone(),
        key: slot.key.clone(),
        status,
        detail,
    }
}

/// The secret name inside an id that may be an ARN (`...:secret:<name>-<6 chars>`).
fn id_to_name(id: &str) -> Option<String> {
    if let Some(rest) = id.split(":secret:").nth(1) {
        // The random suffix is `-` and six characters.
        let cut = rest.len().checked_sub(7)?;
        (rest.as_bytes().get(cut) == Some(&b'-')).then(|| rest[..cut].to_owned())
    } else {
        Some(id.to_owned())
    }
}

pub use redeploy::SqsRedeployQueue;
