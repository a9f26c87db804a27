//! Drift settings the detector function and the CI gateway both read at cold start, so a
//! verification judges exactly as the scheduled run does.

use keyward_shared::config::{
    ConfigError, EnvSource, flag, https_or_loopback, parsed_or, required,
};

use crate::detect::DetectionSettings;
use crate::findings::Thresholds;

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraConfig {
    pub base_url: String,
    pub project: String,
    /// `JIRA_ISSUE_TYPE` (default `Task`): the type drift issues are created with.
    pub issue_type: String,
}

/// An https URL variable (plain http only on loopback), without its trailing `/`.
pub fn url_var(
    env: &dyn EnvSource,
    name: &'static str,
    default: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match env
        .get(name)
        .filter(|v| !v.is_empty())
        .or(default.map(str::to_owned))
    {
        Some(url) if https_or_loopback(&url) => Ok(Some(url.trim_end_matches('/').to_owned())),
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "must be an https:// URL (plain http only on 127.0.0.1)".into(),
        }),
        None => Ok(None),
    }
}

/// `KEYWARD_GITHUB_API_URL` (default `https://api.github.com`).
pub fn github_api_url(env: &dyn EnvSource) -> Result<String, ConfigError> {
    Ok(url_var(env, "KEYWARD_GITHUB_API_URL", Some(DEFAULT_GITHUB_API_URL))?.unwrap_or_default())
}

/// `KEYWARD_DRIFT_GITHUB_REPO`: `owner/repo` of the drift issues, if set.
pub fn github_repo(env: &dyn EnvSource) -> Result<Option<String>, ConfigError> {
    let repo = env
        .get("KEYWARD_DRIFT_GITHUB_REPO")
        .filter(|v| !v.is_empty());
    if let Some(repo) = &repo
        && repo.split('/').filter(|p| !p.is_empty()).count() != 2
    {
        return Err(ConfigError::Invalid {
            name: "KEYWARD_DRIFT_GITHUB_REPO",
            reason: format!("`{repo}` is not owner/repo"),
        });
    }
    Ok(repo)
}

/// `ENABLE_JIRA_INTEGRATION` with `KEYWARD_JIRA_URL`, `KEYWARD_JIRA_PROJECT` and
/// `JIRA_ISSUE_TYPE`.
pub fn jira(env: &dyn EnvSource) -> Result<Option<JiraConfig>, ConfigError> {
    if !flag(env, "ENABLE_JIRA_INTEGRATION", false)? {
        return Ok(None);
    }
    Ok(Some(JiraConfig {
        base_url: url_var(env, "KEYWARD_JIRA_URL", None)?
            .ok_or(ConfigError::Missing("KEYWARD_JIRA_URL"))?,
        project: required(env, "KEYWARD_JIRA_PROJECT")?,
        issue_type: env
            .get("JIRA_ISSUE_TYPE")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Task".to_owned()),
    }))
}

/// Workload drift through Argo CD (`ENABLE_ARGOCD_CHECK`); the token is the credentials
/// secret's `argocd_auth_token`, never a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoCdConfig {
    /// `ARGOCD_SERVER`: the API's base URL.
    pub server: String,
    /// `ARGOCD_APP_NAME`: the application that deploys the workloads.
    pub app: String,
    /// `WORKLOAD_NAMESPACE` (default `default`): where a resource without a namespace lives.
    pub namespace: String,
}

pub const DEFAULT_WORKLOAD_NAMESPACE: &str = "default";

/// `ENABLE_ARGOCD_CHECK` (default false) with `ARGOCD_SERVER`, `ARGOCD_APP_NAME` and
/// `WORKLOAD_NAMESPACE`.
pub fn argocd(env: &dyn EnvSource) -> Result<Option<ArgoCdConfig>, ConfigError> {
    if !flag(env, "ENABLE_ARGOCD_CHECK", false)? {
        return Ok(None);
    }
    let app = required(env, "ARGOCD_APP_NAME")?;
    let dns_name = |v: &str| {
        !v.is_empty()
            && v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns_name(&app) {
        return Err(ConfigError::Invalid {
            name: "ARGOCD_APP_NAME",
            reason: format!("`{app}` is not a Kubernetes resource name"),
        });
    }
    let namespace = env
        .get("WORKLOAD_NAMESPACE")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_WORKLOAD_NAMESPACE.to_owned());
    if !dns_name(&namespace) {
        return Err(ConfigError::Invalid {
            name: "WORKLOAD_NAMESPACE",
            reason: format!("`{namespace}` is not a Kubernetes namespace"),
        });
    }
    Ok(Some(ArgoCdConfig {
        server: url_var(env, "ARGOCD_SERVER", None)?
            .ok_or(ConfigError::Missing("ARGOCD_SERVER"))?,
        app,
        namespace,
    }))
}

/// `KEYWARD_DRIFT_UNUSED_DAYS` (default 90, at least 1).
pub fn unused_days(env: &dyn EnvSource) -> Result<i64, ConfigError> {
    let days: i64 = parsed_or(env, "KEYWARD_DRIFT_UNUSED_DAYS", 90)?;
    if days < 1 {
        return Err(ConfigError::Invalid {
            name: "KEYWARD_DRIFT_UNUSED_DAYS",
            reason: format!("{days} is not a number of days (at least 1)"),
        });
    }
    Ok(days)
}

impl DetectionSettings {
    /// `KEYWARD_DRIFT_CHECK_POLICIES` (default true) and `KEYWARD_DRIFT_UNUSED_DAYS`.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(Self {
            check_policies: flag(env, "KEYWARD_DRIFT_CHECK_POLICIES", true)?,
            thresholds: Thresholds {
                unused_days: unused_days(env)?,
                ..Thresholds::default()
            },
        })
    }
}
