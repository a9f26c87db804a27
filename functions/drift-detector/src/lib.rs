//! drift-detector: what runs against what was declared, on a schedule and on demand.
//!
//! - **Trigger**: an EventBridge schedule (the whole prefix) or a direct invoke
//!   `{"scope": {"service"?, "secret"?}}`.
//! - **Input**: the manifest CI publishes to the config bucket, the account (`ListSecrets`,
//!   `DescribeSecret` for replicas, `GetResourcePolicy`), the Vercel sync ledgers, and with
//!   `ENABLE_ARGOCD_CHECK` the Argo CD application that runs the workloads.
//! - **Events out**: `DriftDetected` for each finding that is new or changed.
//! - **State**: `drift/seen/<sha256(fingerprint)>` markers in the state bucket; GitHub issues
//!   (one per fingerprint), Jira issues, webhook notifications.
//! - **Code**: this crate is configuration and wiring; detection, ticketing and remediation
//!   are the `keyward-drift` library.

pub mod config;

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::Utc;
use keyward_drift::account::{AwsAccount, S3Manifest};
use keyward_drift::credentials::{Credentials, credentials_from_secret};
use keyward_drift::native::aws_native_checks;
use keyward_drift::tickets::{GithubClient, JiraClient};
use keyward_drift::{Detector, DriftError, DriftScope, RunReport};
use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SdkConfig, config_secret_string, s3_client,
};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::redact::Redactor;
use serde::Deserialize;

pub use config::Config;

/// The detector as deployed: manifest from S3, the account through Secrets Manager, tickets
/// through GitHub and Jira.
pub type DeployedDetector =
    Detector<S3Manifest, AwsAccount, GithubClient, JiraClient, S3MarkerStore, EventBridgePublisher>;

/// The function's handler.
pub struct DriftFunction {
    pub detector: DeployedDetector,
}

/// Why the detector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Http(#[from] keyward_shared::adapters::http::HttpError),
}

impl DriftFunction {
    /// Reads the credentials secret once and builds every client.
    pub async fn from_config(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let s3 = s3_client(sdk, config.common.s3_force_path_style);
        let redactor = Redactor::new();
        let credentials = match &config.credentials_secret_arn {
            Some(arn) => {
                let text = config_secret_string(&secrets, arn, "the drift credentials secret")
                    .await
                    .map_err(StartError::Credentials)?;
                credentials_from_secret(&text, &redactor)
                    .map_err(|e| StartError::Credentials(e.to_string()))?
            }
            None => Credentials::default(),
        };
        let http =
            HttpClient::for_function("drift-detector", Duration::from_secs(15), redactor.clone())?;
        let (github, jira) = config.ticket_clients(&credentials, &http)?;
        let detector = Detector {
            manifests: S3Manifest {
                s3: s3.clone().into(),
                bucket: config.manifest_bucket.clone(),
                prefix: config.manifest_prefix.clone(),
            },
            account: AwsAccount::new(secrets),
            github,
            jira,
            state: S3MarkerStore::new(s3, &config.state_bucket),
            publisher: EventBridgePublisher::for_sdk(sdk, &config.common.event_bus_name),
            webhook: credentials
                .webhook(&http, config.notifications)
                .map_err(|e| StartError::Credentials(e.to_string()))?,
            workload: credentials
                .argocd(&http, config.argocd.as_ref())
                .map_err(|e| StartError::Credentials(e.to_string()))?,
            native: config
                .native_rules
                .clone()
                .map(|rules| aws_native_checks(sdk, rules)),
            secret_prefix: config.secret_prefix.clone(),
            settings: config.settings.clone(),
            redactor,
        };
        Ok(Self { detector })
    }
}

/// The detector's failure kinds, as Lambda reports them.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RunError(#[from] pub DriftError);

impl FailureKind for RunError {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
}

impl Handler for DriftFunction {
    type Output = RunReport;
    type Error = RunError;

    /// A scheduled event: the whole prefix. `{"scope": {"service"?, "secret"?}}`: on demand.
    async fn handle(&self, payload: &str) -> Result<RunReport, RunError> {
        let scope = input_scope(payload)?;
        let result = self.detector.run(&scope, Utc::now()).await;
        match &result {
            Ok(r) => tracing::info!(
                findings = r.findings,
                opened = r.tickets.opened.len(),
                updated = r.tickets.updated.len(),
                "drift run"
            ),
            Err(e) => tracing::error!(kind = e.kind(), error = %e, "drift run failed"),
        }
        Ok(result?)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDemand {
    scope: DriftScope,
}

/// What an input asks to check: a `Scheduled Event` covers the whole prefix;
/// `{"scope": {"service"?, "secret"?}}` (a direct invoke) narrows it.
pub fn input_scope(payload: &str) -> Result<DriftScope, DriftError> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) if v["detail-type"] == "Scheduled Event" => Ok(DriftScope::default()),
        Ok(v) if v.get("scope").is_some() => serde_json::from_value::<OnDemand>(v)
            .map(|o| o.scope)
            .map_err(|_| {
                DriftError::InvalidInput(
                    "on-demand input must be {\"scope\": {\"service\"?: ..., \"secret\"?: ...}}"
                        .into(),
                )
            }),
        Ok(_) => Err(DriftError::InvalidInput(
            "expected a Scheduled Event or {\"scope\": {...}}".into(),
        )),
        Err(e) => Err(DriftError::InvalidInput(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}
