//! posture-report: the state of the secrets estate, once a day, written down and sealed.
//!
//! - **Trigger**: schedule `Daily` (`PostureSchedule`, default `cron(0 6 * * ? *)`).
//! - **Input**: the `Scheduled Event`; the manifest CI publishes, Secrets Manager metadata and
//!   resource policies, the state bucket (Vercel ledgers, reader sightings), the audit bucket
//!   (records and digests, verified with the digest key's public key). Never a secret value.
//! - **Events out**: `PostureSnapshot` (figures, the report's key and SHA-256), once per
//!   firing.
//! - **State**: `reports/posture/YYYY/MM/DD/posture-<time>.{json,html}` and `latest.{json,html}`
//!   in the state bucket; `state/reminders/<sha256(secret)>/<due date>` claims.
//! - **Code**: this crate is wiring and reminders; the posture is `keyward_shared::posture`.

pub mod config;
pub mod reminders;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use keyward_shared::adapters::aws::{
    EventBridgePublisher, KmsDigestSigner, S3AuditBucket, S3Manifest, S3MarkerStore, SdkConfig,
    SecretsManagerCatalog, config_secret_string, s3_client,
};
use keyward_shared::adapters::http::{ChatWebhook, HttpClient, webhook_url_from_secret};
use keyward_shared::audit::{AuditReader, DigestSigner, sha256_hex};
use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, PostureFigures,
};
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::ports::{
    EventPublisher, ManifestSource, MarkerError, MarkerStore, PublishError, ReportStore,
    ResourcePolicies, SecretCatalog,
};
use keyward_shared::posture::{self, Posture, PostureRequest, PostureSources};
use keyward_shared::redact::{Redactor, SafeText};
use serde::Serialize;

pub use config::Config;
use reminders::{ReminderSink, ReminderTally};

/// The handler: every source behind a port, so tests run it on in-memory ones.
pub struct PostureReport<S, C, M, A, K, B, W> {
    pub manifests: S,
    pub secrets: C,
    pub state: M,
    pub audit: A,
    /// The digest key; only its public key is used.
    pub digest_key: K,
    pub bus: B,
    pub webhook: Option<W>,
    pub config: Config,
}

pub type DeployedReport = PostureReport<
    S3Manifest,
    SecretsManagerCatalog,
    S3MarkerStore,
    S3AuditBucket,
    KmsDigestSigner,
    EventBridgePublisher,
    ChatWebhook,
>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Webhook(String),
    #[error(transparent)]
    Http(#[from] keyward_shared::adapters::http::HttpError),
}

impl DeployedReport {
    /// Builds every client once; reads the webhook URL once.
    pub async fn from_config(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let s3 = s3_client(sdk, config.common.s3_force_path_style);
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let redactor = Redactor::new();
        let webhook = match &config.webhook_secret_arn {
            Some(arn) => {
                let value = config_secret_string(&secrets, arn, "the webhook secret")
                    .await
                    .map_err(StartError::Webhook)?;
                let url = webhook_url_from_secret(&value, &redactor)
                    .map_err(|e| StartError::Webhook(e.into()))?;
                let http = HttpClient::for_function(
                    "posture-report",
                    std::time::Duration::from_secs(10),
                    redactor,
                )?;
                Some(ChatWebhook { http, url })
            }
            None => None,
        };
        Ok(Self {
            manifests: S3Manifest {
                s3: s3.clone().into(),
                bucket: config.manifest_bucket.clone(),
                prefix: config.manifest_prefix.clone(),
            },
            secrets: SecretsManagerCatalog::new(secrets),
            state: S3MarkerStore::new(s3.clone(), &config.state_bucket),
            audit: S3AuditBucket::new(s3, &config.audit_bucket),
            digest_key: KmsDigestSigner::new(
                aws_sdk_kms::Client::new(sdk),
                &config.digest_kms_key_id,
            ),
            bus: EventBridgePublisher::for_sdk(sdk, &config.common.event_bus_name),
            webhook,
            config: config.clone(),
        })
    }
}

/// What one firing did.
#[derive(Debug, Clone, Serialize)]
pub struct ReportOutcome {
    pub report_key: String,
    pub page_key: String,
    pub figures: PostureFigures,
    /// Sources that could not be read: the report shows them as such.
    pub sources_not_read: Vec<String>,
    /// False when an earlier attempt of this firing had already published it.
    pub snapshot_published: bool,
    pub reminders: ReminderTally,
}

#[derive(Debug, thiserror::Error)]
pub enum PostureError {
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("writing the report: {0}")]
    Report(MarkerError),
    #[error("publishing the snapshot: {0}")]
    Publish(#[from] PublishError),
    /// The report and snapshot are written; a retry sends only the reminders that failed.
    #[error("{failed} owner reminder(s) could not be delivered")]
    Reminders { failed: usize },
}

impl FailureKind for PostureError {
    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::Report(_) => "ReportWriteError",
            Self::Publish(_) => "PublishError",
            Self::Reminders { .. } => "ReminderDeliveryError",
        }
    }
}

/// The firing's time, to the second: a retry of the same firing names the same report.
fn firing_time(payload: &str) -> Result<DateTime<Utc>, PostureError> {
    let event: aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(payload).map_err(|e| {
            PostureError::InvalidEvent(format!(
                "not an EventBridge event (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
    let time = event.time.unwrap_or_else(Utc::now);
    Ok(DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time))
}

impl<S, C, M, A, K, B, W> PostureReport<S, C, M, A, K, B, W>
where
    S: ManifestSource,
    C: SecretCatalog + ResourcePolicies,
    M: MarkerStore + ReportStore,
    A: AuditReader,
    K: DigestSigner,
    B: EventPublisher,
    W: ReminderSink,
{
    /// Reads every source and computes the posture at `now`; a failing source is in the
    /// document, never an error.
    pub async fn posture(&self, now: DateTime<Utc>) -> Posture {
        let request = PostureRequest {
            org: self.config.org.clone(),
            now,
            window_days: self.config.window_days,
            history_days: self.config.history_days,
            max_digest_age: Duration::hours(self.config.max_digest_age_hours),
            digest_lookback: Duration::hours(self.config.digest_lookback_hours),
        };
        let sources = PostureSources {
            manifest: self.manifests.manifest().await.map_err(|e| e.to_string()),
            secrets: &self.secrets,
            state: &self.state,
            audit: &self.audit,
            audit_bucket: &self.config.audit_bucket,
            public_key: self
                .digest_key
                .public_key_der()
                .await
                .map_err(|e| e.to_string()),
        };
        posture::compute(&posture::gather(&request, sources).await)
    }

    async fn run(&self, now: DateTime<Utc>) -> Result<ReportOutcome, PostureError> {
        let posture = self.posture(now).await;
        let stamp = now.format("%Y%m%dT%H%M%SZ");
        let day = now.format("%Y/%m/%d");
        let prefix = &self.config.reports_prefix;
        let report_key = format!("{prefix}{day}/posture-{stamp}.json");
        let page_key = format!("{prefix}{day}/posture-{stamp}.html");
        let json = serde_json::to_vec_pretty(&posture).map_err(|_| {
            PostureError::Report(MarkerError(SafeText::fixed("encoding the posture failed")))
        })?;
        let page = posture::html::render(&posture).into_bytes();
        let report_sha256 = sha256_hex(&json);
        for (key, bytes, content_type) in [
            (&report_key, json.clone(), "application/json"),
            (&page_key, page.clone(), "text/html; charset=utf-8"),
            (&format!("{prefix}latest.json"), json, "application/json"),
            (
                &format!("{prefix}latest.html"),
                page,
                "text/html; charset=utf-8",
            ),
        ] {
            self.state
                .put(key, bytes, content_type)
                .await
                .map_err(PostureError::Report)?;
        }
        let figures = posture.headline.figures.clone();
        let snapshot_published = self
            .publish_once(&stamp.to_string(), &report_key, &report_sha256, &figures)
            .await?;
        let due = reminders::due(&posture, now);
        let tally = reminders::remind(&self.state, self.webhook.as_ref(), &due, now)
            .await
            .map_err(PostureError::Report)?;
        tracing::info!(
            report = %report_key,
            governed = figures.secrets_governed,
            overdue = figures.overdue,
            chain = figures.chain.as_str(),
            reminders_sent = tally.sent,
            "posture report written"
        );
        if tally.failed > 0 {
            return Err(PostureError::Reminders {
                failed: tally.failed,
            });
        }
        Ok(ReportOutcome {
            report_key,
            page_key,
            figures,
            sources_not_read: posture
                .sources
                .iter()
                .filter(|s| !s.read)
                .map(|s| s.source.as_str().to_owned())
                .collect(),
            snapshot_published,
            reminders: tally,
        })
    }

    /// One `PostureSnapshot` per firing: a marker written after the event is put keeps a
    /// retry of the same firing from putting it again.
    async fn publish_once(
        &self,
        stamp: &str,
        report_key: &str,
        report_sha256: &str,
        figures: &PostureFigures,
    ) -> Result<bool, PostureError> {
        let marker = format!("{}published/{stamp}", self.config.reports_prefix);
        if self
            .state
            .get(&marker)
            .await
            .map_err(PostureError::Report)?
            .is_some()
        {
            return Ok(false);
        }
        let event = DomainEvent::new(
            CorrelationId::generate(),
            Actor {
                kind: ActorKind::Schedule,
                id: "keyward-posture-daily".into(),
            },
            None,
            Outcome::Success,
            EventData::PostureSnapshot {
                figures: figures.clone(),
                report_key: report_key.to_owned(),
                report_sha256: report_sha256.to_owned(),
            },
        );
        self.bus.publish(&[event]).await?;
        self.state
            .create_or_get(&marker, report_sha256)
            .await
            .map_err(PostureError::Report)?;
        Ok(true)
    }
}

impl<S, C, M, A, K, B, W> Handler for PostureReport<S, C, M, A, K, B, W>
where
    S: ManifestSource,
    C: SecretCatalog + ResourcePolicies,
    M: MarkerStore + ReportStore,
    A: AuditReader,
    K: DigestSigner,
    B: EventPublisher,
    W: ReminderSink,
{
    type Output = ReportOutcome;
    type Error = PostureError;

    async fn handle(&self, payload: &str) -> Result<ReportOutcome, PostureError> {
        self.run(firing_time(payload)?).await
    }
}
