//! The posture report's configuration, read once at cold start.

use keyward_shared::config::{
    CommonConfig, ConfigError, EnvSource, parsed_or, required, s3_location, secret_prefix,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub common: CommonConfig,
    /// The organisation, from `KEYWARD_SECRET_PREFIX` (`/<org>/<env>/`): posture covers every
    /// environment of it.
    pub org: String,
    /// `KEYWARD_MANIFEST_S3_URI`: where CI publishes the manifest.
    pub manifest_bucket: String,
    pub manifest_prefix: String,
    /// `KEYWARD_STATE_BUCKET`: ledgers and reader sightings (read), reminder markers and the
    /// reports (written).
    pub state_bucket: String,
    /// `AUDIT_BUCKET` and `DIGEST_KMS_KEY_ID`: the trail read and verified.
    pub audit_bucket: String,
    pub digest_kms_key_id: String,
    /// `POSTURE_REPORTS_PREFIX` (default `reports/posture/`).
    pub reports_prefix: String,
    /// `POSTURE_WINDOW_DAYS` (default 7): alerts are counted over it.
    pub window_days: i64,
    /// `POSTURE_HISTORY_DAYS` (default 30): rotation, sync and drift records read back.
    pub history_days: i64,
    /// `POSTURE_MAX_DIGEST_AGE_HOURS` (default 2): the newest digest must be this recent.
    pub max_digest_age_hours: i64,
    /// `DIGEST_LOOKBACK_HOURS` (default 48), as the digest job has it.
    pub digest_lookback_hours: i64,
    /// `KEYWARD_ALERT_WEBHOOK_SECRET_ARN`: the webhook owners are reminded through; empty or
    /// unset, no reminders are sent (they are still counted).
    pub webhook_secret_arn: Option<String>,
}

fn bounded(
    env: &dyn EnvSource,
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    let value = parsed_or(env, name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let prefix = secret_prefix(env, "KEYWARD_SECRET_PREFIX")?;
        let org = prefix.split('/').nth(1).unwrap_or_default().to_owned();
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        let window_days = bounded(env, "POSTURE_WINDOW_DAYS", 7, 1..=90)?;
        let reports_prefix = env
            .get("POSTURE_REPORTS_PREFIX")
            .unwrap_or_else(|| "reports/posture/".into());
        if !reports_prefix.ends_with('/') || reports_prefix.starts_with('/') {
            return Err(ConfigError::Invalid {
                name: "POSTURE_REPORTS_PREFIX",
                reason: format!("`{reports_prefix}` must be a key prefix ending in `/`"),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            org,
            manifest_bucket,
            manifest_prefix,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            audit_bucket: required(env, "AUDIT_BUCKET")?,
            digest_kms_key_id: required(env, "DIGEST_KMS_KEY_ID")?,
            reports_prefix,
            window_days,
            history_days: bounded(env, "POSTURE_HISTORY_DAYS", 30, window_days..=400)?,
            max_digest_age_hours: bounded(env, "POSTURE_MAX_DIGEST_AGE_HOURS", 2, 1..=24 * 31)?,
            digest_lookback_hours: bounded(env, "DIGEST_LOOKBACK_HOURS", 48, 1..=24 * 31)?,
            webhook_secret_arn: env
                .get("KEYWARD_ALERT_WEBHOOK_SECRET_ARN")
                .filter(|v| !v.is_empty()),
        })
    }
}
