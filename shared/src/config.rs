//! Typed configuration, read once at start-up from the environment. A missing or malformed
//! variable fails the cold start with a message naming it, not the first invocation.

use std::collections::HashMap;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where configuration comes from: the process environment in functions, a map in tests.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

/// An environment from `(name, value)` pairs: configuration read in tests, and by callers that
/// hold their settings already.
pub fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned().filter(|v| !v.is_empty())
    }
}

pub fn required(env: &dyn EnvSource, name: &'static str) -> Result<String, ConfigError> {
    env.get(name).ok_or(ConfigError::Missing(name))
}

pub fn parsed_or<T: FromStr>(
    env: &dyn EnvSource,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.get(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("`{raw}`: {e}"),
        }),
    }
}

pub fn flag(env: &dyn EnvSource, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env
        .get(name)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => Ok(default),
        Some("true" | "1" | "yes" | "y" | "on") => Ok(true),
        Some("false" | "0" | "no" | "n" | "off") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            reason: format!("`{other}` is not a boolean (true/false)"),
        }),
    }
}

/// Whether `url` may carry credentials or alerts: `https://`, or plain `http://` to
/// `127.0.0.1:<port>` only (the local stack's fakes). `http://127.0.0.1.example` is not loopback.
pub fn https_or_loopback(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://127.0.0.1:")
}

/// `name` holding the secret prefix a stack governs: `/<org>/<env>/`.
pub fn secret_prefix(env: &dyn EnvSource, name: &'static str) -> Result<String, ConfigError> {
    let prefix = required(env, name)?;
    let segments: Vec<&str> = prefix.split('/').collect();
    let ok = segments.len() == 4
        && segments[0].is_empty()
        && !segments[1].is_empty()
        && !segments[2].is_empty()
        && segments[3].is_empty();
    if ok {
        Ok(prefix)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("`{prefix}` is not of the form /<org>/<env>/"),
        })
    }
}

/// `name` holding an S3 location `s3://<bucket>/<prefix>`, as (bucket, prefix).
pub fn s3_location(
    env: &dyn EnvSource,
    name: &'static str,
) -> Result<(String, String), ConfigError> {
    let uri = required(env, name)?;
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, _)| !bucket.is_empty())
        .map(|(b, p)| (b.to_owned(), p.to_owned()))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("`{uri}` is not s3://<bucket>/<prefix>/"),
        })
}

/// Settings every function shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// The custom EventBridge bus keyward's domain events go to (`KEYWARD_EVENT_BUS`).
    pub event_bus_name: String,
    /// Address S3 buckets by path rather than virtual host (`KEYWARD_S3_FORCE_PATH_STYLE`), for
    /// S3-compatible endpoints that have no per-bucket DNS names.
    pub s3_force_path_style: bool,
}

impl CommonConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            event_bus_name: required(env, "KEYWARD_EVENT_BUS")?,
            s3_force_path_style: flag(env, "KEYWARD_S3_FORCE_PATH_STYLE", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::env_of as env;

    #[test]
    fn reads_common_config() {
        let cfg = CommonConfig::from_env(&env(&[
            ("KEYWARD_EVENT_BUS", "keyward"),
            ("KEYWARD_S3_FORCE_PATH_STYLE", "TRUE"),
        ]))
        .unwrap();
        assert_eq!(cfg.event_bus_name, "keyward");
        assert!(cfg.s3_force_path_style);
    }

    #[test]
    fn names_the_missing_or_bad_variable() {
        assert_eq!(
            CommonConfig::from_env(&env(&[])).unwrap_err().to_string(),
            "environment variable KEYWARD_EVENT_BUS is required but not set"
        );
        let err = CommonConfig::from_env(&env(&[
            ("KEYWARD_EVENT_BUS", "b"),
            ("KEYWARD_S3_FORCE_PATH_STYLE", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable KEYWARD_S3_FORCE_PATH_STYLE is invalid: `maybe` is not a boolean (true/false)"
        );
        let err = parsed_or::<u32>(&env(&[("N", "x")]), "N", 1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable N is invalid: `x`")
        );
    }
}
