//! The drift credentials secret (`{"github_token", "jira_email", "jira_api_token",
//! "webhook_url", "argocd_auth_token"}`, each optional) and the ticketing clients built from it. Every credential
//! is registered with the redactor as it is read.

use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::https_or_loopback;
use keyward_shared::redact::Redactor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use std::sync::Arc;

use crate::argocd::ArgoCdClient;
use crate::settings::{ArgoCdConfig, JiraConfig};
use crate::tickets::{ChatWebhook, GithubClient, JiraClient};
use crate::workload::WorkloadCheck;

#[derive(Default)]
pub struct Credentials {
    pub github_token: Option<SecretString>,
    pub jira_email: Option<String>,
    pub jira_api_token: Option<SecretString>,
    pub webhook_url: Option<SecretString>,
    pub argocd_auth_token: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
#[error("the drift credentials secret {0}")]
pub struct CredentialsError(&'static str);

pub fn credentials_from_secret(
    text: &str,
    redactor: &Redactor,
) -> Result<Credentials, CredentialsError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        github_token: Option<String>,
        jira_email: Option<String>,
        jira_api_token: Option<String>,
        webhook_url: Option<String>,
        argocd_auth_token: Option<String>,
    }
    // serde quotes input in its messages, and the input is a secret.
    let raw: Raw = serde_json::from_str(text).map_err(|_| {
        CredentialsError(
            "is not JSON with only github_token, jira_email, jira_api_token, webhook_url and argocd_auth_token",
        )
    })?;
    let secret = |v: Option<String>| {
        v.filter(|s| !s.trim().is_empty()).map(|s| {
            let s = SecretString::from(s);
            redactor.register(&s);
            s
        })
    };
    let creds = Credentials {
        github_token: secret(raw.github_token),
        jira_email: raw.jira_email,
        jira_api_token: secret(raw.jira_api_token),
        webhook_url: secret(raw.webhook_url),
        argocd_auth_token: secret(raw.argocd_auth_token),
    };
    if creds
        .webhook_url
        .as_ref()
        .is_some_and(|u| !https_or_loopback(u.expose_secret()))
    {
        return Err(CredentialsError(
            "has a webhook_url that is not an https:// URL",
        ));
    }
    Ok(creds)
}

impl Credentials {
    /// The GitHub client for `repo`'s drift issues.
    pub fn github(
        &self,
        http: &HttpClient,
        api_url: &str,
        repo: &str,
    ) -> Result<GithubClient, CredentialsError> {
        let token = self
            .github_token
            .clone()
            .ok_or(CredentialsError("has no github_token"))?;
        Ok(GithubClient {
            http: http.clone(),
            api_url: api_url.to_owned(),
            repo: repo.to_owned(),
            token,
        })
    }

    /// Workload detection when `ENABLE_ARGOCD_CHECK` is on: then the credentials must hold
    /// `argocd_auth_token`.
    pub fn argocd(
        &self,
        http: &HttpClient,
        config: Option<&ArgoCdConfig>,
    ) -> Result<Option<WorkloadCheck>, CredentialsError> {
        let Some(config) = config else {
            return Ok(None);
        };
        let token = self.argocd_auth_token.clone().ok_or(CredentialsError(
            "has no argocd_auth_token, which ENABLE_ARGOCD_CHECK needs",
        ))?;
        Ok(Some(WorkloadCheck {
            argocd: Arc::new(ArgoCdClient {
                http: http.clone(),
                server: config.server.clone(),
                token,
            }),
            app: config.app.clone(),
            namespace: config.namespace.clone(),
        }))
    }

    /// The chat webhook for new findings and verified fixes, when `enabled`
    /// (`ENABLE_DRIFT_NOTIFICATIONS`).
    pub fn webhook(
        &self,
        http: &HttpClient,
        enabled: bool,
    ) -> Result<Option<ChatWebhook>, CredentialsError> {
        match (enabled, &self.webhook_url) {
            (true, Some(url)) => Ok(Some(ChatWebhook {
                http: http.clone(),
                url: url.clone(),
            })),
            (true, None) => Err(CredentialsError(
                "has no webhook_url, which ENABLE_DRIFT_NOTIFICATIONS needs",
            )),
            (false, _) => Ok(None),
        }
    }

    /// The Jira client when Jira is enabled: then the credentials must hold its login.
    pub fn jira(
        &self,
        http: &HttpClient,
        config: Option<&JiraConfig>,
    ) -> Result<Option<JiraClient>, CredentialsError> {
        let Some(jira) = config else {
            return Ok(None);
        };
        match (&self.jira_email, &self.jira_api_token) {
            (Some(email), Some(api_token)) => Ok(Some(JiraClient {
                http: http.clone(),
                base_url: jira.base_url.clone(),
                project: jira.project.clone(),
                issue_type: jira.issue_type.clone(),
                email: email.clone(),
                api_token: api_token.clone(),
            })),
            _ => Err(CredentialsError(
                "lacks jira_email or jira_api_token, which ENABLE_JIRA_INTEGRATION needs",
            )),
        }
    }
}
