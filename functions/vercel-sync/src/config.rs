//! The function's configuration, read once at cold start, and its credentials secret.

use std::collections::BTreeMap;

use keyward_shared::config::{
    CommonConfig, ConfigError, EnvSource, https_or_loopback, parsed_or, required, s3_location,
    secret_prefix,
};
use keyward_shared::redact::Redactor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_API_URL: &str = "https://api.vercel.com";
/// SQS's longest message delay.
pub const MAX_DEBOUNCE_SECS: u32 = 900;

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_STATE_BUCKET`: the sync ledger and the redeploy debounce markers.
    pub state_bucket: String,
    /// `KEYWARD_SECRET_PREFIX`: `/<org>/<env>/`, the secrets this stack governs.
    pub secret_prefix: String,
    /// `KEYWARD_MANIFEST_S3_URI`: `s3://<bucket>/<prefix>/`, the declared manifest CI
    /// publishes. Only what it maps goes to Vercel.
    pub manifest_bucket: String,
    pub manifest_prefix: String,
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
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            manifest_bucket,
            manifest_prefix,
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
