//! The detector's configuration, read once at cold start, and what it asks of the credentials
//! secret.

use keyward_drift::DetectionSettings;
use keyward_drift::credentials::Credentials;
use keyward_drift::settings::{self, ArgoCdConfig, JiraConfig};
use keyward_drift::tickets::{GithubClient, JiraClient};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::{
    CommonConfig, ConfigError, EnvSource, flag, required, s3_location, secret_prefix,
};

use crate::StartError;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_SECRET_PREFIX`: `/<org>/<env>/`, the secrets this stack governs.
    pub secret_prefix: String,
    /// `KEYWARD_MANIFEST_S3_URI`: `s3://<bucket>/<prefix>/`, where CI writes the manifest files
    /// and `enums.yaml`.
    pub manifest_bucket: String,
    pub manifest_prefix: String,
    /// `KEYWARD_STATE_BUCKET`: Vercel sync ledgers (read) and the reported-finding markers.
    pub state_bucket: String,
    /// `KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN`: `{"github_token", "jira_email",
    /// "jira_api_token", "webhook_url", "argocd_auth_token"}` (each optional). Without it:
    /// events only.
    pub credentials_secret_arn: Option<String>,
    /// `KEYWARD_DRIFT_GITHUB_REPO`: `owner/repo` of the drift issues.
    pub github_repo: Option<String>,
    /// `KEYWARD_GITHUB_API_URL` (default `https://api.github.com`).
    pub github_api_url: String,
    /// `ENABLE_JIRA_INTEGRATION`, `KEYWARD_JIRA_URL`, `KEYWARD_JIRA_PROJECT`.
    pub jira: Option<JiraConfig>,
    /// `ENABLE_DRIFT_NOTIFICATIONS`: post new findings to the credentials' `webhook_url`.
    pub notifications: bool,
    /// `KEYWARD_DRIFT_CHECK_POLICIES` (default true), `KEYWARD_DRIFT_UNUSED_DAYS` (default 90).
    pub settings: DetectionSettings,
    /// `ENABLE_ARGOCD_CHECK` with `ARGOCD_SERVER`, `ARGOCD_APP_NAME`, `WORKLOAD_NAMESPACE`:
    /// workload drift (the token is the credentials' `argocd_auth_token`).
    pub argocd: Option<ArgoCdConfig>,
    /// `ENABLE_NATIVE_CHECKS`, `CLOUD_PROVIDER`, `NATIVE_CHECKS_AWS_COMMAND`: the AWS Config
    /// rules whose verdicts are findings.
    pub native_rules: Option<Vec<String>>,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let secret_prefix = secret_prefix(env, "KEYWARD_SECRET_PREFIX")?;
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        let jira = settings::jira(env)?;
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            secret_prefix,
            manifest_bucket,
            manifest_prefix,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            credentials_secret_arn: env
                .get("KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN")
                .filter(|v| !v.is_empty()),
            github_repo: settings::github_repo(env)?,
            github_api_url: settings::github_api_url(env)?,
            jira,
            notifications: flag(env, "ENABLE_DRIFT_NOTIFICATIONS", false)?,
            settings: DetectionSettings::from_env(env)?,
            argocd: settings::argocd(env)?,
            native_rules: keyward_drift::native::native_rules(env)?,
        })
    }

    pub fn environment(&self) -> &str {
        self.secret_prefix.split('/').nth(2).unwrap_or_default()
    }

    /// GitHub when a repository is configured, Jira when enabled; each needs its credentials.
    pub(crate) fn ticket_clients(
        &self,
        credentials: &Credentials,
        http: &HttpClient,
    ) -> Result<(Option<GithubClient>, Option<JiraClient>), StartError> {
        let github = match &self.github_repo {
            Some(repo) => Some(
                credentials
                    .github(http, &self.github_api_url, repo)
                    .map_err(|e| {
                        StartError::Credentials(format!("KEYWARD_DRIFT_GITHUB_REPO is set but {e}"))
                    })?,
            ),
            None => None,
        };
        let jira = credentials
            .jira(http, self.jira.as_ref())
            .map_err(|e| StartError::Credentials(e.to_string()))?;
        Ok((github, jira))
    }
}
