//! keyward's CI gateway: the HTTPS endpoints GitHub Actions workflows call with their OIDC token.
//!
//! - **Trigger**: its Function URL (payload 2.0), called by GitHub Actions workflows.
//! - **Input**: `POST` with a GitHub OIDC token to `/v1/preflight`, `/v1/sync/vercel`,
//!   `/v1/secret-requests/validate`, `/v1/drift/pre-merge`, `/v1/drift/post-merge`.
//! - **Events out**: `GatewayDecision` for every authenticated decision,
//!   `VercelSyncRequested`, `DriftRemediated`.
//! - **State**: used token ids (`replay/`) in the state bucket.
//! - **Code**: this crate; the drift guard and verification in `keyward-drift`.
//!
//! - [`token`]: the token verifier (jsonwebtoken for the signature and registered claims, this
//!   crate's wrapper for everything else);
//! - [`jwt_crypto`]: RS256 for jsonwebtoken over ring;
//! - [`jwks`]: the issuers' keys, cached across warm invocations;
//! - [`policy`]: which workflows (by immutable ids) may do what, deny by default;
//! - [`preflight`]: the checklist behind `POST /v1/preflight`;
//! - [`Gateway::handle`]: routing, the stable error shape, replay protection and the
//!   `GatewayDecision` audit event of every authenticated decision.

pub mod drift;
pub mod jwks;
pub mod jwt_crypto;
pub mod policy;
pub mod preflight;
pub mod serve;
pub mod token;

use std::path::Path;

use chrono::{DateTime, Utc};
use keyward_shared::config::{CommonConfig, ConfigError, EnvSource, https_or_loopback, required};
use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, SecretRef, SyncScope,
};
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::{EventPublisher, MarkerStore, SecretCatalog};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::jwks::{JwksCache, JwksFetcher};
use crate::policy::{Action, Policy, Scope};
use crate::token::{Expectations, GithubClaims, TokenError};
pub use keyward_drift::remediation::{Disabled, DriftRemediation, RemediationError};

/// github.com's Actions issuer; GHE issuers are added by configuration, never by prefix.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Request bodies larger than this are refused (413) before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Where used `jti`s are recorded in the state bucket. The bucket's lifecycle rule expires
/// them after a day, far longer than any token lives (`exp` is at most 10 minutes after `iat`).
pub const REPLAY_PREFIX: &str = "replay/";

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_OIDC_AUDIENCE`: this endpoint's own audience (never GitHub's default).
    pub audience: String,
    /// `KEYWARD_OIDC_ISSUERS`: extra trusted issuers (GHE), comma-separated, exact.
    pub issuers: Vec<String>,
    /// `KEYWARD_STATE_BUCKET`: where used `jti`s are recorded.
    pub state_bucket: String,
    /// `KEYWARD_CONFIG_DIR`: `manifest/` and `gateway-policy.yaml`.
    pub config_dir: std::path::PathBuf,
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let audience = required(env, "KEYWARD_OIDC_AUDIENCE")?;
        if audience.starts_with("https://github.com/") {
            return Err(ConfigError::Invalid {
                name: "KEYWARD_OIDC_AUDIENCE",
                reason: "GitHub's default audience is shared by every relying party; use one of this endpoint's own".into(),
            });
        }
        let mut issuers = vec![GITHUB_ISSUER.to_owned()];
        for extra in env
            .get("KEYWARD_OIDC_ISSUERS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // Plain http only on loopback (the local stack's fake issuer).
            if !https_or_loopback(extra) || extra.ends_with('/') {
                return Err(ConfigError::Invalid {
                    name: "KEYWARD_OIDC_ISSUERS",
                    reason: format!(
                        "`{extra}` must be an https:// issuer without a trailing slash"
                    ),
                });
            }
            issuers.push(extra.to_owned());
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            audience,
            issuers,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            config_dir: required(env, "KEYWARD_CONFIG_DIR")?.into(),
        })
    }

    /// Each issuer and its JWKS URL (fixed, not discovered).
    pub fn jwks_urls(&self) -> Vec<(String, String)> {
        self.issuers
            .iter()
            .map(|iss| (iss.clone(), format!("{iss}/.well-known/jwks")))
            .collect()
    }
}

/// What the gateway loads from the config directory at cold start.
pub struct Loaded {
    pub manifest: Manifest,
    /// The manifest's files as text, for validating a secret request alongside them.
    pub manifest_sources: Vec<(String, String)>,
    pub enums_source: (String, String),
    pub policy: Policy,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Manifest(#[from] keyward_shared::manifest::ManifestError),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}

pub fn load(config_dir: &Path) -> Result<Loaded, LoadError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| LoadError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let manifest_dir = config_dir.join("manifest");
    let manifest = Manifest::load(&manifest_dir)?;
    let mut manifest_sources = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&manifest_dir)
        .map_err(|e| LoadError::File {
            path: manifest_dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut enums_source = (String::new(), String::new());
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = read(&path)?;
        if name == "enums.yaml" {
            enums_source = (name, text);
        } else {
            manifest_sources.push((name, text));
        }
    }
    let policy = Policy::from_yaml(&read(&config_dir.join("gateway-policy.yaml"))?)?;
    Ok(Loaded {
        manifest,
        manifest_sources,
        enums_source,
        policy,
    })
}

/// The HTTP request as the gateway sees it (built from the Lambda payload by `main`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The caller's address (the Function URL's `requestContext.http.sourceIp`): logged with
    /// every request, so refusals without an identity can still be told apart by source.
    pub source_ip: Option<String>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// JSON out, with the status and the headers that matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    /// A refusal whose decision is already on the bus (the policy's 403s).
    audited: bool,
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            audited: false,
        }
    }

    /// The one error shape every route uses.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            json!({"error": {"code": code, "message": message.into()}}),
        )
    }

    /// Marks a refusal whose decision is already recorded.
    fn audited(mut self) -> Self {
        self.audited = true;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 401 with the RFC 6750 challenge naming the problem; the token itself is never echoed.
    fn invalid_token(error: &TokenError) -> Self {
        Self::error(401, "invalid_token", error.to_string()).header(
            "www-authenticate",
            format!(
                "Bearer realm=\"keyward\", error=\"invalid_token\", error_description=\"{error}\""
            ),
        )
    }

    /// 503 for an outage on our side (never a 401): the caller retries.
    fn unavailable(code: &str, message: &str) -> Self {
        Self::error(503, code, message).header("retry-after", "5")
    }
}

/// `POST /v1/preflight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightBody {
    pub environment: String,
    #[serde(default)]
    pub service: Option<String>,
}

/// `POST /v1/sync/vercel`: one of `service` or `secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    pub environment: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

/// `POST /v1/secret-requests/validate`: one manifest entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    pub request: Value,
}

pub struct Gateway<K, C, M, P, D = Disabled> {
    pub keys: JwksCache<K>,
    pub audience: String,
    pub loaded: Loaded,
    pub catalog: C,
    pub replay: M,
    pub publisher: P,
    /// Drift remediation (pre-merge guard, post-merge verification); `None`: not configured.
    pub drift: Option<D>,
}

/// The scope of a refusal that names none.
fn no_scope() -> Scope {
    Scope {
        environment: String::new(),
        service: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Who a workflow's events come from, and what ties them together: its run.
fn workflow_origin(claims: &GithubClaims) -> (CorrelationId, Actor) {
    (
        CorrelationId::new(format!("github-run:{}", claims.run_id))
            .unwrap_or_else(|_| CorrelationId::generate()),
        Actor {
            kind: ActorKind::GithubWorkflow,
            id: format!("{}@{}", claims.job_workflow_ref, claims.run_id),
        },
    )
}

impl<K, C, M, P, D> Gateway<K, C, M, P, D>
where
    K: JwksFetcher,
    C: SecretCatalog,
    M: MarkerStore,
    P: EventPublisher,
    D: DriftRemediation,
{
    /// Handles one request. Never fails: every outcome is a response.
    pub async fn handle(&self, request: &Request) -> Response {
        let response = self.route(request).await.unwrap_or_else(|refused| refused);
        // The log group's subscription filter sends 401s and 403s to the anomaly forwarder,
        // which reads `status`, `path` and `source_ip` from this line.
        tracing::info!(
            method = %request.method,
            path = %request.path,
            status = response.status,
            source_ip = request.source_ip.as_deref().unwrap_or(""),
            "request"
        );
        response
    }

    /// Every refusal of an authenticated caller is audited. The cheap refusals (no route, wrong
    /// method, oversized body) cost an anonymous caller no signature check and no key fetch;
    /// with a token, the token is verified first so the refusal names who was refused.
    async fn route(&self, request: &Request) -> Result<Response, Response> {
        let routed = Self::action_for(request);
        if let Err(refused) = &routed
            && request.authorization.is_none()
        {
            tracing::warn!(status = refused.status, path = %request.path, "anonymous request refused");
            return Err(refused.clone());
        }
        let claims = self.authenticate(request).await?;
        let action = match routed {
            Ok(action) => action,
            Err(refused) => return Err(self.audit_refusal(&claims, None, refused).await),
        };
        let result = match action {
            Action::Preflight => self.preflight(&claims, &request.body).await,
            Action::SyncVercel => self.sync(&claims, &request.body).await,
            Action::ValidateRequest => self.validate(&claims, &request.body).await,
            Action::DriftGuard | Action::DriftVerify => {
                self.drift(&claims, action, &request.body).await
            }
        };
        match result {
            Err(refused) if (400..500).contains(&refused.status) && !refused.audited => {
                Err(self.audit_refusal(&claims, Some(action), refused).await)
            }
            other => other,
        }
    }

    /// The route, or the cheap refusal: no such route, wrong method, body too large.
    fn action_for(request: &Request) -> Result<Action, Response> {
        let action = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/v1/preflight") => Action::Preflight,
            ("POST", "/v1/sync/vercel") => Action::SyncVercel,
            ("POST", "/v1/secret-requests/validate") => Action::ValidateRequest,
            ("POST", "/v1/drift/pre-merge") => Action::DriftGuard,
            ("POST", "/v1/drift/post-merge") => Action::DriftVerify,
            (
                _,
                "/v1/preflight"
                | "/v1/sync/vercel"
                | "/v1/secret-requests/validate"
                | "/v1/drift/pre-merge"
                | "/v1/drift/post-merge",
            ) => {
                return Err(
                    Response::error(405, "method_not_allowed", "use POST").header("allow", "POST")
                );
            }
            _ => return Err(Response::error(404, "not_found", "no such route")),
        };
        if request.body.len() > MAX_BODY_BYTES {
            return Err(Response::error(
                413,
                "payload_too_large",
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            ));
        }
        Ok(action)
    }

    /// Records a refusal of an authenticated caller as a denied `GatewayDecision` (the route,
    /// or the path it asked for, and why); the refusal stands, or 503 when it cannot be recorded.
    async fn audit_refusal(
        &self,
        claims: &GithubClaims,
        action: Option<Action>,
        refused: Response,
    ) -> Response {
        let reason = refused.body["error"]["message"]
            .as_str()
            .unwrap_or("refused")
            .to_owned();
        let denied = policy::Decision {
            allowed: false,
            reasons: vec![format!("{} {reason}", refused.status)],
        };
        let route = action.map_or("unknown", Action::as_str);
        match self.record_route(claims, route, &no_scope(), &denied).await {
            Ok(()) => refused,
            Err(unavailable) => unavailable,
        }
    }

    async fn authenticate(&self, request: &Request) -> Result<GithubClaims, Response> {
        let Some(token) = request
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(Response::error(
                401,
                "missing_token",
                "send the workflow's OIDC token as `Authorization: Bearer <token>`",
            )
            .header("www-authenticate", "Bearer realm=\"keyward\""));
        };
        let result = async {
            let unverified = token::parse(token)?;
            let key = self.keys.key(&unverified.issuer, &unverified.kid).await?;
            token::verify(
                &unverified,
                &key,
                &Expectations {
                    audience: self.audience.clone(),
                    now: now().timestamp(),
                },
            )
        }
        .await;
        result.map_err(|e| {
            if e.is_unavailable() {
                tracing::error!(error = %e, "token keys unavailable");
                Response::unavailable(
                    "keys_unavailable",
                    "the token issuer's keys are unavailable; retry",
                )
            } else {
                tracing::warn!(error = %e, "token refused");
                Response::invalid_token(&e)
            }
        })
    }

    fn body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
        // Location only: serde's messages can quote the body.
        serde_json::from_slice(body).map_err(|e| {
            Response::error(
                400,
                "invalid_request",
                format!(
                    "the body does not match this route's schema ({:?} at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Decides `action` on every scope (all must be granted), records the one decision on the
    /// bus, and returns a 403 when denied.
    async fn authorize(
        &self,
        claims: &GithubClaims,
        action: Action,
        scopes: &[Scope],
    ) -> Result<(), Response> {
        let mut decision = policy::Decision {
            allowed: true,
            reasons: Vec::new(),
        };
        for scope in scopes {
            let one = self.loaded.policy.decide(claims, action, scope);
            decision.allowed &= one.allowed;
            for reason in one.reasons {
                if !decision.reasons.contains(&reason) {
                    decision.reasons.push(reason);
                }
            }
        }
        self.record(claims, action, &scopes[0], &decision).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(Response::error(403, "forbidden", decision.reasons.join("; ")).audited())
        }
    }

    /// Puts the decision on the bus (→ the audit trail). An unrecorded decision is not made.
    async fn record(
        &self,
        claims: &GithubClaims,
        action: Action,
        scope: &Scope,
        decision: &policy::Decision,
    ) -> Result<(), Response> {
        self.record_route(claims, action.as_str(), scope, decision)
            .await
    }

    async fn record_route(
        &self,
        claims: &GithubClaims,
        route: &str,
        scope: &Scope,
        decision: &policy::Decision,
    ) -> Result<(), Response> {
        let (correlation, actor) = workflow_origin(claims);
        let mut event = DomainEvent::new(
            correlation,
            actor,
            None,
            if decision.allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            EventData::GatewayDecision {
                route: route.to_owned(),
                claims: claims.workflow(),
                reasons: decision.reasons.clone(),
            },
        );
        if let Some(service) = &scope.service {
            event.secret = Some(SecretRef {
                name: format!(
                    "/{}/{}/{service}",
                    self.loaded.manifest.org, scope.environment
                ),
                arn: None,
            });
        }
        self.publisher.publish(&[event]).await.map_err(|e| {
            tracing::error!(error = %e, "could not record the gateway decision");
            Response::unavailable(
                "audit_unavailable",
                "the decision could not be recorded; retry",
            )
        })
    }

    fn known_environment(&self, environment: &str) -> Result<(), Response> {
        if self
            .loaded
            .manifest
            .environments
            .iter()
            .any(|e| e.as_str() == environment)
        {
            Ok(())
        } else {
            Err(Response::error(
                400,
                "unknown_environment",
                format!("`{environment}` is not an environment of the manifest"),
            ))
        }
    }

    async fn preflight(&self, claims: &GithubClaims, body: &[u8]) -> Result<Response, Response> {
        let body: PreflightBody = Self::body(body)?;
        self.known_environment(&body.environment)?;
        let scope = Scope {
            environment: body.environment.clone(),
            service: body.service.clone(),
        };
        self.authorize(claims, Action::Preflight, &[scope]).await?;
        let prefix = format!("/{}/{}/", self.loaded.manifest.org, body.environment);
        let entries = self.catalog.list(&prefix).await.map_err(|e| {
            tracing::error!(error = %e, "ListSecrets failed");
            Response::unavailable(
                "catalog_unavailable",
                "Secrets Manager could not be listed; retry",
            )
        })?;
        let items = preflight::checklist(
            &self.loaded.manifest,
            &entries,
            &body.environment,
            body.service.as_deref(),
            now(),
        );
        let failing: Vec<&preflight::Item> = items.iter().filter(|i| !i.ok).collect();
        let status = if failing.is_empty() { 200 } else { 412 };
        Ok(Response::json(
            status,
            json!({
                "environment": body.environment,
                "service": body.service,
                "ready": failing.is_empty(),
                "missing": failing,
                "checklist": items,
            }),
        ))
    }

    async fn sync(&self, claims: &GithubClaims, body: &[u8]) -> Result<Response, Response> {
        let body: SyncBody = Self::body(body)?;
        self.known_environment(&body.environment)?;
        // One of service or secret; a secret must be declared.
        let service = match (&body.service, &body.secret) {
            (Some(service), None) => service.clone(),
            (None, Some(secret)) => self
                .loaded
                .manifest
                .scope(&body.environment, None)
                .find(|d| d.name.to_string() == *secret)
                .map(|d| d.name.service().as_str().to_owned())
                .ok_or_else(|| {
                    Response::error(
                        404,
                        "unknown_secret",
                        format!("`{secret}` is not declared for {}", body.environment),
                    )
                })?,
            _ => {
                return Err(Response::error(
                    400,
                    "invalid_request",
                    "give exactly one of `service` or `secret`",
                ));
            }
        };
        let scope = Scope {
            environment: body.environment.clone(),
            service: Some(service),
        };
        // Mutating: the token works once. The marker outlives the token (lifecycle rule); a
        // replay is refused and recorded like any other denial.
        let marker = format!(
            "{REPLAY_PREFIX}{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                format!("{}|{}", claims.iss, claims.jti).as_bytes()
            ))
        );
        let first_use = self
            .replay
            .create_or_get(&marker, &claims.run_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "replay store unavailable");
                Response::unavailable("replay_store_unavailable", "retry with a new token")
            })?
            .created;
        if !first_use {
            let replayed = policy::Decision {
                allowed: false,
                reasons: vec![TokenError::Replayed.to_string()],
            };
            self.record(claims, Action::SyncVercel, &scope, &replayed)
                .await?;
            return Err(Response::invalid_token(&TokenError::Replayed));
        }
        self.authorize(claims, Action::SyncVercel, &[scope]).await?;
        let sync_scope = SyncScope {
            environment: body.environment.clone(),
            service: body.service.clone(),
            secret: body.secret.clone(),
        };
        let (correlation, actor) = workflow_origin(claims);
        let event = DomainEvent::new(
            correlation,
            actor,
            body.secret.as_ref().map(|name| SecretRef {
                name: name.clone(),
                arn: None,
            }),
            Outcome::Success,
            EventData::VercelSyncRequested {
                scope: sync_scope.clone(),
            },
        );
        let event_id = event.event_id;
        self.publisher.publish(&[event]).await.map_err(|e| {
            tracing::error!(error = %e, "could not request the sync");
            Response::unavailable(
                "bus_unavailable",
                "the sync could not be requested; retry with a new token",
            )
        })?;
        Ok(Response::json(
            202,
            json!({"requested": sync_scope, "event_id": event_id.to_string()}),
        ))
    }

    async fn validate(&self, claims: &GithubClaims, body: &[u8]) -> Result<Response, Response> {
        let body: ValidateBody = Self::body(body)?;
        // Every environment the request names must be granted (a map of overrides or a list).
        let environments: Vec<String> = match body.request.get("environments") {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let service = body
            .request
            .get("service")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // A request without environments is still decided (and denied) on an empty scope, so
        // the attempt is audited; the manifest validation would reject it anyway.
        let scopes: Vec<Scope> = if environments.is_empty() {
            vec![Scope {
                environment: String::new(),
                service,
            }]
        } else {
            environments
                .into_iter()
                .map(|environment| Scope {
                    environment,
                    service: service.clone(),
                })
                .collect()
        };
        self.authorize(claims, Action::ValidateRequest, &scopes)
            .await?;
        let document = json!({"version": 1, "secrets": [body.request]});
        let text = serde_yaml_ng::to_string(&document)
            .map_err(|_| Response::error(400, "invalid_request", "the request cannot be read"))?;
        let mut sources: Vec<(&str, &str)> = self
            .loaded
            .manifest_sources
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        sources.push(("request.yaml", text.as_str()));
        let enums = (
            self.loaded.enums_source.0.as_str(),
            self.loaded.enums_source.1.as_str(),
        );
        Ok(match Manifest::from_sources(&sources, enums) {
            Ok(manifest) => {
                let new: Vec<&keyward_shared::manifest::DeclaredSecret> = manifest
                    .secrets
                    .iter()
                    .filter(|s| self.loaded.manifest.secret(&s.name).is_none())
                    .collect();
                let declared: Vec<String> = new.iter().map(|s| s.name.to_string()).collect();
                // The same projections `keyward render` writes, for just these secrets.
                let mut terraform: std::collections::BTreeMap<
                    String,
                    std::collections::BTreeMap<
                        String,
                        keyward_shared::projections::TerraformSecret,
                    >,
                > = Default::default();
                let mut kubernetes = Vec::new();
                for secret in &new {
                    // Declared secrets passed the tag contract, so this cannot fail.
                    if let Ok(tf) = keyward_shared::projections::terraform_secret(secret) {
                        terraform
                            .entry(secret.name.env().to_string())
                            .or_default()
                            .insert(keyward_shared::projections::terraform_key(secret), tf);
                    }
                    if let Some(k8s) = &secret.kubernetes {
                        kubernetes.push(json!({
                            "environment": secret.name.env().to_string(),
                            "namespace": k8s.namespace,
                            "manifest": keyward_shared::projections::external_secret(secret, k8s),
                        }));
                    }
                }
                Response::json(
                    200,
                    json!({
                        "valid": true,
                        "secrets": declared,
                        "projections": {"terraform": terraform, "kubernetes": kubernetes},
                    }),
                )
            }
            Err(e) => {
                let problems: Vec<Value> = e
                    .issues
                    .iter()
                    .map(|i| json!({"file": i.file, "path": i.path, "message": i.message}))
                    .collect();
                Response::json(422, json!({"valid": false, "problems": problems}))
            }
        })
    }
}

#[cfg(test)]
mod tests;
