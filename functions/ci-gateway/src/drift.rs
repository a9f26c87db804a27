//! The drift-remediation routes, `POST /v1/drift/pre-merge` and `/v1/drift/post-merge` (body
//! `{"pull_number": n}`), and the gateway's drift settings.
//!
//! The pull request is in the caller's own repository; a `pull_request` token may only name the
//! pull request it runs for. The guard answers 200 (passed) or 422 with every reason; the
//! verification 200 (verified: issue closed, `DriftRemediated` audited), 409 (still detected:
//! commented on the issue, also audited) or 422 (not a governed remediation).

use std::time::Duration;

use keyward_drift::DetectionSettings;
use keyward_drift::account::{AwsAccount, S3Manifest};
use keyward_drift::credentials::credentials_from_secret;
use keyward_drift::findings::Finding;
use keyward_drift::remediation::{
    DriftRemediation, Remediation, RemediationError, Verdict, VerifyOutcome,
};
use keyward_drift::settings::{self, ArgoCdConfig, JiraConfig};
use keyward_drift::tickets::{GithubClient, JiraClient};
use keyward_shared::adapters::aws::{S3MarkerStore, SdkConfig, config_secret_string, s3_client};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::{ConfigError, EnvSource, parsed_or, required, s3_location};
use keyward_shared::events::{DomainEvent, EventData, Outcome, SecretRef};
use keyward_shared::ports::{EventPublisher, MarkerStore, SecretCatalog};
use keyward_shared::redact::Redactor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::jwks::JwksFetcher;
use crate::policy::{self, Action, Scope, pull_request_number};
use crate::token::GithubClaims;
use crate::{Gateway, Response, workflow_origin};

/// The gateway's drift settings; `None` from [`RemediationConfig::from_env`] when
/// `KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN` or `KEYWARD_DRIFT_GITHUB_REPO` is unset (the routes
/// then answer 503).
#[derive(Debug, Clone)]
pub struct RemediationConfig {
    pub credentials_secret_arn: String,
    pub github_repo: String,
    pub github_api_url: String,
    pub manifest_bucket: String,
    pub manifest_prefix: String,
    pub state_bucket: String,
    /// `MIN_DRIFT_PR_APPROVALS` (default 1, as the platform teams' workflow sets it).
    pub min_approvals: usize,
    pub jira: Option<JiraConfig>,
    /// `ENABLE_DRIFT_NOTIFICATIONS`: announce verified fixes on the credentials' webhook.
    pub notifications: bool,
    /// The detector's own settings, so verification judges as the scheduled run does.
    pub settings: DetectionSettings,
    /// `ENABLE_ARGOCD_CHECK` and the application: verifies `Drift Type: workload` fixes.
    pub argocd: Option<ArgoCdConfig>,
    /// `ENABLE_NATIVE_CHECKS`: verification re-reads AWS Config's verdicts as detection does.
    pub native_rules: Option<Vec<String>>,
}

impl RemediationConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Option<Self>, ConfigError> {
        // Both are needed to act on drift issues (credentials alone may serve the detector's
        // notifications).
        let credentials_secret_arn = env
            .get("KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN")
            .filter(|v| !v.is_empty());
        let (Some(credentials_secret_arn), Some(github_repo)) =
            (credentials_secret_arn, settings::github_repo(env)?)
        else {
            return Ok(None);
        };
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        let min_approvals: usize = parsed_or(env, "MIN_DRIFT_PR_APPROVALS", 1)?;
        if min_approvals == 0 {
            return Err(ConfigError::Invalid {
                name: "MIN_DRIFT_PR_APPROVALS",
                reason: "a drift fix needs at least one approval besides its author".into(),
            });
        }
        Ok(Some(Self {
            credentials_secret_arn,
            github_repo,
            github_api_url: settings::github_api_url(env)?,
            manifest_bucket,
            manifest_prefix,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            min_approvals,
            jira: settings::jira(env)?,
            notifications: keyward_shared::config::flag(env, "ENABLE_DRIFT_NOTIFICATIONS", false)?,
            settings: DetectionSettings::from_env(env)?,
            argocd: settings::argocd(env)?,
            native_rules: keyward_drift::native::native_rules(env)?,
        }))
    }
}

/// Remediation as deployed.
pub type DeployedRemediation =
    Remediation<S3Manifest, AwsAccount, GithubClient, JiraClient, S3MarkerStore>;

/// Builds the remediation backend: its credentials read once, at cold start.
pub async fn remediation(
    config: &RemediationConfig,
    sdk: &SdkConfig,
    force_path_style: bool,
) -> Result<DeployedRemediation, String> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let redactor = Redactor::new();
    let text = config_secret_string(
        &secrets,
        &config.credentials_secret_arn,
        "the drift credentials secret",
    )
    .await?;
    let credentials = credentials_from_secret(&text, &redactor).map_err(|e| e.to_string())?;
    let http = HttpClient::for_function("ci-gateway", Duration::from_secs(10), redactor.clone())
        .map_err(|e| e.to_string())?;
    let s3 = s3_client(sdk, force_path_style);
    Ok(Remediation {
        manifests: S3Manifest {
            s3: s3.clone().into(),
            bucket: config.manifest_bucket.clone(),
            prefix: config.manifest_prefix.clone(),
        },
        account: AwsAccount::new(secrets),
        github: credentials
            .github(&http, &config.github_api_url, &config.github_repo)
            .map_err(|e| e.to_string())?,
        jira: credentials
            .jira(&http, config.jira.as_ref())
            .map_err(|e| e.to_string())?,
        notify: credentials
            .webhook(&http, config.notifications)
            .map_err(|e| e.to_string())?,
        state: S3MarkerStore::new(s3, &config.state_bucket),
        min_approvals: config.min_approvals,
        settings: config.settings.clone(),
        workload: credentials
            .argocd(&http, config.argocd.as_ref())
            .map_err(|e| e.to_string())?,
        native: config
            .native_rules
            .clone()
            .map(|rules| keyward_drift::native::aws_native_checks(sdk, rules)),
        redactor,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullBody {
    /// Optional for post-merge on a `push`: the token's merge commit names the pull request.
    #[serde(default)]
    pull_number: Option<u64>,
}

fn backend_unavailable(e: RemediationError) -> Response {
    tracing::error!(error = %e, "drift remediation failed");
    match e {
        RemediationError::NotConfigured => Response::unavailable(
            "drift_not_configured",
            "drift remediation is not configured on this gateway",
        ),
        RemediationError::Drift(_) => Response::unavailable(
            "drift_backend_unavailable",
            "GitHub, Jira or AWS could not be read; retry",
        ),
    }
}

fn environment_scope(environment: &str) -> Scope {
    Scope {
        environment: environment.to_owned(),
        service: None,
    }
}

impl<K, C, M, P, D> Gateway<K, C, M, P, D>
where
    K: JwksFetcher,
    C: SecretCatalog,
    M: MarkerStore,
    P: EventPublisher,
    D: DriftRemediation,
{
    /// Both drift routes: the caller's checks first, then the guard or the verification.
    pub(crate) async fn drift(
        &self,
        claims: &GithubClaims,
        action: Action,
        body: &[u8],
    ) -> Result<Response, Response> {
        let body: PullBody = Self::body(body)?;
        let own = pull_request_number(&claims.r#ref);
        if let (Some(own), Some(asked)) = (own, body.pull_number)
            && own != asked
        {
            return Err(Response::error(
                403,
                "forbidden",
                format!("this token runs for pull request #{own}, not #{asked}"),
            ));
        }
        let Some(drift) = &self.drift else {
            return Err(backend_unavailable(RemediationError::NotConfigured));
        };
        self.permitted_somewhere(claims, action).await?;
        let pull_number = match body.pull_number.or(own) {
            Some(number) => number,
            None if action == Action::DriftVerify => self.merged_pull(drift, claims).await?,
            None => {
                return Err(Response::error(
                    400,
                    "invalid_request",
                    "`pull_number` is required outside a pull request's workflow",
                ));
            }
        };
        match action {
            Action::DriftGuard => self.drift_guard(drift, claims, pull_number).await,
            _ => self.drift_verify(drift, claims, pull_number).await,
        }
    }

    /// The pull request the token's own commit merged (a `push` after a merge): the number is
    /// the signed token's, never the caller's to choose.
    async fn merged_pull(&self, drift: &D, claims: &GithubClaims) -> Result<u64, Response> {
        let Some(sha) = claims
            .sha
            .as_deref()
            .filter(|_| claims.event_name == "push")
        else {
            return Err(Response::error(
                400,
                "invalid_request",
                "`pull_number` is required unless the workflow runs on the push of a merge",
            ));
        };
        match drift.merged_pull(&claims.repository, sha).await {
            Ok(Some(number)) => Ok(number),
            Ok(None) => Err(Response::error(
                422,
                "no_merged_pull_request",
                format!(
                    "commit {sha} merged no pull request of {}",
                    claims.repository
                ),
            )),
            Err(e) => Err(backend_unavailable(e)),
        }
    }

    /// Nothing is read for a caller no binding lets do this anywhere (the refusal is audited).
    async fn permitted_somewhere(
        &self,
        claims: &GithubClaims,
        action: Action,
    ) -> Result<(), Response> {
        if self.loaded.policy.permits_any(claims, action) {
            return Ok(());
        }
        let denied = policy::Decision {
            allowed: false,
            reasons: vec![format!(
                "no binding grants {} to this workflow",
                action.as_str()
            )],
        };
        self.record(claims, action, &environment_scope(""), &denied)
            .await?;
        Err(Response::error(403, "forbidden", denied.reasons.join("; ")).audited())
    }

    /// The guard: 200 when it passes, 422 with every reason otherwise.
    async fn drift_guard(
        &self,
        drift: &D,
        claims: &GithubClaims,
        pull_number: u64,
    ) -> Result<Response, Response> {
        let outcome = drift
            .pre_merge(&claims.repository, pull_number)
            .await
            .map_err(backend_unavailable)?;
        if let Some(fields) = &outcome.fields {
            self.authorize(
                claims,
                Action::DriftGuard,
                &[environment_scope(&fields.environment)],
            )
            .await?;
        }
        let status = if outcome.passed { 200 } else { 422 };
        Ok(Response::json(
            status,
            serde_json::to_value(&outcome).unwrap_or(Value::Null),
        ))
    }

    /// The verification, authorised on the environment the pull request names: the guard's
    /// read is repeated first (the description may have changed since the guard ran).
    async fn drift_verify(
        &self,
        drift: &D,
        claims: &GithubClaims,
        pull_number: u64,
    ) -> Result<Response, Response> {
        let guard = drift
            .pre_merge(&claims.repository, pull_number)
            .await
            .map_err(backend_unavailable)?;
        let Some(fields) = guard.fields.clone() else {
            return Ok(Response::json(
                422,
                json!({"verified": false, "reasons": guard.reasons}),
            ));
        };
        // A merge that bypassed the guard (an admin merge, a changed description) is not a
        // governed remediation. A closed issue is fine here: verification may be re-run.
        let unmet = guard.unmet();
        if !unmet.is_empty() {
            return Ok(Response::json(
                422,
                json!({"verified": false, "reasons": unmet}),
            ));
        }
        self.authorize(
            claims,
            Action::DriftVerify,
            &[environment_scope(&fields.environment)],
        )
        .await?;
        let outcome = drift
            .post_merge(&claims.repository, pull_number, &guard)
            .await
            .map_err(backend_unavailable)?;
        // A re-run after the issue was closed records nothing new.
        let receipt = if outcome.already_verified {
            None
        } else {
            self.record_remediation(claims, pull_number, &outcome)
                .await?
        };
        let status = match outcome.verdict {
            Verdict::Verified => 200,
            Verdict::StillDetected => 409,
            Verdict::Refused => 422,
        };
        let mut body = serde_json::to_value(&outcome).unwrap_or(Value::Null);
        if let (Some(receipt), Some(object)) = (receipt, body.as_object_mut()) {
            object.insert(
                "audit".into(),
                serde_json::to_value(receipt).unwrap_or(Value::Null),
            );
        }
        Ok(Response::json(status, body))
    }

    /// `DriftRemediated` on the bus (→ the audit trail), verified or not; the receipt says where
    /// the audit writer keeps it. An unrecorded remediation is answered with 503 so the
    /// workflow retries.
    async fn record_remediation(
        &self,
        claims: &GithubClaims,
        pull_number: u64,
        outcome: &VerifyOutcome,
    ) -> Result<Option<AuditReceipt>, Response> {
        let (Some(fields), Some(fingerprint)) = (&outcome.fields, &outcome.fingerprint) else {
            return Ok(None);
        };
        let (correlation, actor) = workflow_origin(claims);
        let event = DomainEvent::new(
            correlation,
            actor,
            // An Argo CD application's own drift is about the estate (`/<org>/<env>/`), not a
            // secret: the record names none.
            Finding::secret_of(fingerprint)
                .filter(|name| !name.ends_with('/'))
                .map(|name| SecretRef {
                    name: name.to_owned(),
                    arn: None,
                }),
            if outcome.verified() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            EventData::DriftRemediated {
                fingerprint: fingerprint.clone(),
                drift_issue: format!("#{}", fields.drift_issue),
                change_request_id: fields.change_request_id.clone(),
                jira_key: fields.jira_key.clone(),
                environment: fields.environment.clone(),
                cloud_provider: fields.cloud_provider.clone(),
                pull_request: format!("{}#{}", claims.repository, pull_number),
                merge_commit: outcome.merge_commit.clone().unwrap_or_default(),
                verified: outcome.verified(),
                remaining: outcome.remaining.clone(),
            },
        );
        let unavailable = || {
            Response::unavailable(
                "audit_unavailable",
                "the remediation could not be recorded; retry",
            )
        };
        let detail = event.to_detail_json().map_err(|_| unavailable())?;
        self.publisher
            .publish(std::slice::from_ref(&event))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not record the remediation");
                unavailable()
            })?;
        let verified = Verified { outcome, fields };
        Ok(Some(AuditReceipt::of(
            &event,
            &detail,
            &verified,
            claims,
            pull_number,
        )))
    }
}

/// What the post-merge workflow keeps as `.artifacts/drift-audit-pr-<N>.json`: the fields the
/// platform teams' workflow names, and where the audit trail holds the same event (the key the
/// audit writer uses, and the SHA-256 of the event's detail as published).
#[derive(Debug, Clone, Serialize)]
struct AuditReceipt {
    pull_request: u64,
    drift_issue: String,
    change_request_id: String,
    jira_key: Option<String>,
    environment: String,
    cloud_provider: String,
    /// The workflow run that verified (`<job_workflow_ref>@<run_id>`).
    actor: String,
    merge_commit: String,
    verification: &'static str,
    event_id: String,
    audit_record_key: String,
    detail_sha256: String,
}

impl AuditReceipt {
    fn of(
        event: &DomainEvent,
        detail: &str,
        verified: &Verified<'_>,
        claims: &GithubClaims,
        pull_request: u64,
    ) -> Self {
        let fields = verified.fields;
        Self {
            pull_request,
            drift_issue: format!("#{}", fields.drift_issue),
            change_request_id: fields.change_request_id.clone(),
            jira_key: fields.jira_key.clone(),
            environment: fields.environment.clone(),
            cloud_provider: fields.cloud_provider.clone(),
            actor: format!("{}@{}", claims.job_workflow_ref, claims.run_id),
            merge_commit: verified.outcome.merge_commit.clone().unwrap_or_default(),
            verification: if verified.outcome.verified() {
                "verified"
            } else {
                "still-detected"
            },
            event_id: event.event_id.to_string(),
            audit_record_key: format!(
                "{}{}.json",
                keyward_shared::audit::record_partition(&event.event_id.timestamp()),
                event.event_id
            ),
            detail_sha256: keyward_shared::audit::sha256_hex(detail.as_bytes()),
        }
    }
}

/// A verification outcome with the fields it was judged on.
struct Verified<'a> {
    outcome: &'a VerifyOutcome,
    fields: &'a keyward_drift::remediation::RemediationFields,
}
