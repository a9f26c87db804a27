//! The drift detector's part: the manifest where CI would write it, GitHub (issues in
//! `acme/platform`, the drift fixes' pull requests) and Jira (project SEC) for tickets, the
//! webhook drift notifications go to, Argo CD (the application `keyward-dev` that runs the
//! workloads), and the credentials secret naming them.
//!
//! Workload drift needs a secret the manifest projects into Kubernetes in `dev`: the manifest
//! published here projects the dev session key into namespace `web` (the sample manifest
//! projects only staging and prod secrets), and the application's chart still renders an older
//! `ExternalSecret` for it (refreshed daily, not hourly).

use std::path::Path;

use anyhow::{Context, Result};
use keyward_shared::manifest::{KubernetesDecl, Manifest};
use keyward_shared::projections::external_secret_object;
use keyward_shared::redact::SecretString;

use super::{Part, create_secret};
use crate::fakes::argocd::{FakeArgoCd, ResourceSeed, RunningArgoCd, as_applied};
use crate::fakes::github::{FakeGithub, RunningGithub};
use crate::fakes::jira::{FakeJira, RunningJira};
use crate::fakes::webhook::{FakeWebhook, RunningWebhook};
use crate::moto::{BucketKind, MotoServer};

/// The drift detector's GitHub token and Jira credentials (the fakes accept only these).
pub const GITHUB_TOKEN: &str = "ghp_localstack0123456789abcdef";
pub const JIRA_EMAIL: &str = "keyward@acme.example";
pub const JIRA_TOKEN: &str = "ATATT3xFfGF0localstack";
pub const ARGOCD_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.localstack-argocd.c2lnbmF0dXJl";
/// The Argo CD application the workload drift plays on, and the secret it projects.
pub const ARGOCD_APP: &str = "keyward-dev";
pub const WORKLOAD_SECRET: &str = "/acme/dev/web/session-key";
const WORKLOAD_NAMESPACE: &str = "web";

pub struct Drift {
    pub github: RunningGithub,
    pub jira: RunningJira,
    pub webhook: RunningWebhook,
    pub argocd: RunningArgoCd,
    /// The `ExternalSecret` keyward projects for [`WORKLOAD_SECRET`]: what a fix's chart renders.
    pub projection: serde_json::Value,
    /// Where the manifest lives for the drift detector (`manifest/` in this bucket).
    pub config_bucket: String,
    credentials_arn: String,
}

impl Drift {
    /// `local` rewrites the manifest's text as the local stack needs it (its database and
    /// Auth0 tenant in place of the declared ones) before it is published.
    pub async fn create(
        moto: &MotoServer,
        manifest: &Path,
        declared: &Manifest,
        local: &dyn Fn(String) -> String,
        suffix: &str,
    ) -> Result<Self> {
        let config_bucket = format!("keyward-config-{suffix}");
        moto.create_bucket(&config_bucket, BucketKind::Versioned)
            .await
            .context("create the config bucket")?;
        let published = |text: String| project_into_kubernetes(local(text));
        upload_manifest(moto, manifest, &published, &config_bucket).await?;
        let github = FakeGithub::start(GITHUB_TOKEN).await?;
        github.fake.add_repo("acme", "platform");
        // The reviewers of drift fixes may merge there.
        for login in ["alice", "bob", "carol"] {
            github.fake.grant("acme", "platform", login, "write");
        }
        let jira = FakeJira::start(JIRA_EMAIL, JIRA_TOKEN).await?;
        jira.fake.add_project("SEC");
        let webhook = FakeWebhook::start().await?;
        let projection = workload_projection(declared)?;
        let argocd = FakeArgoCd::start(ARGOCD_TOKEN).await?;
        argocd.fake.add_app(ARGOCD_APP, "platform");
        let mut stale = projection.clone();
        stale["spec"]["refreshInterval"] = "24h".into();
        argocd.fake.put_resource(
            ARGOCD_APP,
            ResourceSeed::external_secret(
                WORKLOAD_NAMESPACE,
                projection["metadata"]["name"].as_str().unwrap_or_default(),
                Some(as_applied(&stale)),
                Some(stale),
            ),
        );
        let credentials = serde_json::json!({
            "github_token": GITHUB_TOKEN,
            "jira_email": JIRA_EMAIL,
            "jira_api_token": JIRA_TOKEN,
            "webhook_url": webhook.url(),
            "argocd_auth_token": ARGOCD_TOKEN,
        });
        let name = format!("keyward-drift-{suffix}");
        let credentials_arn = create_secret(moto, &name, &credentials.to_string())
            .await
            .context("create the drift credentials secret")?;
        Ok(Self {
            github,
            jira,
            webhook,
            argocd,
            projection,
            config_bucket,
            credentials_arn,
        })
    }
}

/// The manifest as published here: the dev web session key also projected into Kubernetes.
fn project_into_kubernetes(text: String) -> String {
    const ANCHOR: &str = "    name: session-key\n";
    text.replacen(
        ANCHOR,
        &format!("{ANCHOR}    kubernetes: {{namespace: {WORKLOAD_NAMESPACE}}}\n"),
        1,
    )
}

/// The `ExternalSecret` keyward projects for the workload secret, as the published manifest
/// declares it.
fn workload_projection(declared: &Manifest) -> Result<serde_json::Value> {
    let secret = declared
        .secrets
        .iter()
        .find(|d| d.name.to_string() == WORKLOAD_SECRET)
        .with_context(|| format!("the manifest declares no {WORKLOAD_SECRET}"))?;
    let k8s = KubernetesDecl {
        namespace: WORKLOAD_NAMESPACE.into(),
        secret_name: None,
        refresh_interval: None,
        properties: Vec::new(),
    };
    Ok(external_secret_object(secret, &k8s))
}

/// The manifest's YAML files under `manifest/` in the bucket, as CI writes them.
async fn upload_manifest(
    moto: &MotoServer,
    manifest: &Path,
    local: &dyn Fn(String) -> String,
    bucket: &str,
) -> Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(manifest)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        files.push((name.to_owned(), local(std::fs::read_to_string(&path)?)));
    }
    moto.put_manifest(bucket, &files).await
}

impl Part for Drift {
    fn env(&self, var: &str) -> Option<String> {
        Some(match var {
            "KEYWARD_MANIFEST_S3_URI" => format!("s3://{}/manifest/", self.config_bucket),
            "KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN" => self.credentials_arn.clone(),
            "KEYWARD_DRIFT_GITHUB_REPO" => "acme/platform".into(),
            "KEYWARD_GITHUB_API_URL" => self.github.api_url(),
            "ENABLE_JIRA_INTEGRATION" => "true".into(),
            "KEYWARD_JIRA_URL" => self.jira.base_url(),
            "KEYWARD_JIRA_PROJECT" => "SEC".into(),
            "JIRA_ISSUE_TYPE" => "Task".into(),
            "ENABLE_DRIFT_NOTIFICATIONS" => "true".into(),
            "KEYWARD_DRIFT_UNUSED_DAYS" => "90".into(),
            "MIN_DRIFT_PR_APPROVALS" => "2".into(),
            "ENABLE_ARGOCD_CHECK" => "true".into(),
            "ARGOCD_SERVER" => self.argocd.base_url(),
            "ARGOCD_APP_NAME" => ARGOCD_APP.into(),
            "WORKLOAD_NAMESPACE" => "default".into(),
            // moto implements no AWS Config compliance API: the adapter is tested with mocks.
            "ENABLE_NATIVE_CHECKS" => "false".into(),
            "NATIVE_CHECKS_AWS_COMMAND" => String::new(),
            _ => return None,
        })
    }

    fn credentials(&self) -> Vec<SecretString> {
        vec![
            SecretString::from(GITHUB_TOKEN.to_owned()),
            SecretString::from(JIRA_TOKEN.to_owned()),
            SecretString::from(self.webhook.url()),
            SecretString::from(ARGOCD_TOKEN.to_owned()),
        ]
    }
}

/// The drift detector's answer: what it found and what it ticketed.
pub(super) fn summarise_run(response: &serde_json::Value) -> String {
    format!(
        "{} finding(s) {}; issues opened {}, updated {}, unchanged {}; Jira {}",
        response
            .get("findings")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        response["by_kind"],
        response["tickets"]["opened"],
        response["tickets"]["updated"],
        response["tickets"]["unchanged"],
        response["tickets"]["jira_created"]
    )
}
