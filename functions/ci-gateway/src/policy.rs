//! Who may do what: a declarative file (`infra/config/gateway-policy.yaml`, in the config layer)
//! binding workflows, by their immutable identity, to actions and scopes. Deny by default.
//!
//! ```yaml
//! version: 1
//! bindings:
//!   - name: payments-deploy
//!     issuer: https://token.actions.githubusercontent.com   # the default; GHE issuers by name
//!     repository_owner_id: "1000001"     # ids, never names: a renamed or recreated repository
//!     repository_id: "2000002"           # keeps its name, not its id
//!     refs: [refs/heads/main]            # exact
//!     event_names: [push, workflow_dispatch]
//!     environments: [staging, prod]      # the token's `environment` claim; omit = any or none
//!     job_workflow_refs: ["acme/payments/.github/workflows/deploy.yml@refs/heads/main"]
//!     runner_environment: github-hosted  # the default
//!     allow:
//!       - action: preflight
//!         workflows: ["acme/payments/.github/workflows/deploy.yml@refs/heads/main"]
//!         environments: [staging, prod]
//!         services: [payments]
//! ```
//!
//! A binding is keyed by the token's issuer as well as the ids (two GitHub Enterprise servers
//! number their repositories independently), and each grant names which of the binding's
//! workflows may use it: a workflow listed for one action gets no other.
//!
//! Whatever a binding says, `pull_request_target` tokens are refused (the base branch's token
//! running a pull request's code), and exact matching leaves no glob to widen.

use serde::Deserialize;

use crate::token::GithubClaims;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Preflight,
    SyncVercel,
    ValidateRequest,
    /// The pre-merge check of a drift-fix pull request.
    DriftGuard,
    /// The post-merge verification of a drift fix.
    DriftVerify,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Preflight => "preflight",
            Action::SyncVercel => "sync-vercel",
            Action::ValidateRequest => "validate-request",
            Action::DriftGuard => "drift-guard",
            Action::DriftVerify => "drift-verify",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: u32,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub name: String,
    /// The token issuer the ids belong to (default github.com's Actions issuer).
    #[serde(default = "github_issuer")]
    pub issuer: String,
    pub repository_owner_id: String,
    pub repository_id: String,
    pub refs: Vec<String>,
    pub event_names: Vec<String>,
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    pub job_workflow_refs: Vec<String>,
    #[serde(default = "github_hosted")]
    pub runner_environment: String,
    /// Also accept `pull_request` (and `pull_request_review`) tokens, whose ref is
    /// `refs/pull/<number>/merge` (the one
    /// ref form that is not listed exactly: each pull request has its own). Routes that act on
    /// a pull request then only accept that number.
    #[serde(default)]
    pub pull_requests: bool,
    pub allow: Vec<Grant>,
}

fn github_hosted() -> String {
    "github-hosted".into()
}

fn github_issuer() -> String {
    crate::GITHUB_ISSUER.into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub action: Action,
    /// The binding's `job_workflow_refs` that may use this grant.
    pub workflows: Vec<String>,
    /// keyward environments (`/<org>/<env>/...`) the action may touch.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Services within them; empty = every service.
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("gateway policy: not a policy file (line {line}, column {column})")]
    Yaml { line: usize, column: usize },
    #[error("gateway policy: version {0} is not supported (this build reads 1)")]
    Version(u32),
    #[error("gateway policy: binding `{binding}`: {message}")]
    Invalid { binding: String, message: String },
}

/// The number in a pull request's merge ref `refs/pull/<number>/merge`.
pub fn pull_request_number(r#ref: &str) -> Option<u64> {
    let number = r#ref.strip_prefix("refs/pull/")?.strip_suffix("/merge")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// What a request asks to touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub environment: String,
    pub service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The binding that allowed it, or why each candidate did not.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    bindings: Vec<Binding>,
}

impl Policy {
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        // serde's messages can quote the input; a location is enough.
        let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e.location();
            PolicyError::Yaml {
                line: at.as_ref().map(|l| l.line()).unwrap_or(0),
                column: at.as_ref().map(|l| l.column()).unwrap_or(0),
            }
        })?;
        if file.version != 1 {
            return Err(PolicyError::Version(file.version));
        }
        for binding in &file.bindings {
            let invalid = |message: &str| PolicyError::Invalid {
                binding: binding.name.clone(),
                message: message.into(),
            };
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !numeric(&binding.repository_owner_id) || !numeric(&binding.repository_id) {
                return Err(invalid(
                    "repository_owner_id and repository_id are numeric ids (names can be reused)",
                ));
            }
            if binding.refs.is_empty()
                || binding.event_names.is_empty()
                || binding.job_workflow_refs.is_empty()
                || binding.allow.is_empty()
            {
                return Err(invalid(
                    "refs, event_names, job_workflow_refs and allow must each list something",
                ));
            }
            let globbed = binding
                .refs
                .iter()
                .chain(&binding.job_workflow_refs)
                .any(|r| r.contains('*'));
            if globbed {
                return Err(invalid(
                    "refs and job_workflow_refs are matched exactly; `*` is not a wildcard here",
                ));
            }
            if binding
                .event_names
                .iter()
                .any(|e| e == "pull_request_target")
            {
                return Err(invalid(
                    "pull_request_target runs a pull request's code with the base branch's token; it is never allowed",
                ));
            }
            if binding.pull_requests && !binding.event_names.iter().any(|e| e == "pull_request") {
                return Err(invalid(
                    "pull_requests: true needs `pull_request` in event_names",
                ));
            }
            if binding.allow.iter().any(|g| g.environments.is_empty()) {
                return Err(invalid("each grant names its environments"));
            }
            for grant in &binding.allow {
                if grant.workflows.is_empty() {
                    return Err(invalid(&format!(
                        "grant {} names no workflows: each grant lists the job_workflow_refs that may use it",
                        grant.action.as_str()
                    )));
                }
                if let Some(stray) = grant
                    .workflows
                    .iter()
                    .find(|w| !binding.job_workflow_refs.contains(w))
                {
                    return Err(invalid(&format!(
                        "grant {} names {stray}, which is not in job_workflow_refs",
                        grant.action.as_str()
                    )));
                }
            }
        }
        Ok(Self {
            bindings: file.bindings,
        })
    }

    /// Whether some binding would let `claims` perform `action` in at least one environment:
    /// the check before a route reads anything on the caller's behalf, when the environment
    /// is only known from what it reads.
    pub fn permits_any(&self, claims: &GithubClaims, action: Action) -> bool {
        let environments: std::collections::BTreeSet<&String> = self
            .bindings
            .iter()
            .flat_map(|b| b.allow.iter())
            .filter(|g| g.action == action)
            .flat_map(|g| g.environments.iter())
            .collect();
        environments.into_iter().any(|environment| {
            self.decide(
                claims,
                action,
                &Scope {
                    environment: environment.clone(),
                    service: None,
                },
            )
            .allowed
        })
    }

    /// Decides whether `claims` may perform `action` on `scope`.
    pub fn decide(&self, claims: &GithubClaims, action: Action, scope: &Scope) -> Decision {
        let deny = |reasons: Vec<String>| Decision {
            allowed: false,
            reasons,
        };
        if claims.event_name == "pull_request_target" {
            return deny(vec!["pull_request_target tokens are never accepted".into()]);
        }
        let candidates: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| {
                b.issuer == claims.iss
                    && b.repository_owner_id == claims.repository_owner_id
                    && b.repository_id == claims.repository_id
            })
            .collect();
        if candidates.is_empty() {
            return deny(vec![format!(
                "no binding for repository id {} of owner id {} from issuer {}",
                claims.repository_id, claims.repository_owner_id, claims.iss
            )]);
        }
        let mut reasons = Vec::new();
        for binding in candidates {
            let mut misses = Vec::new();
            // `pull_request_review` runs carry the same merge ref: a guard re-run when an
            // approval arrives.
            let pull_ref = binding.pull_requests
                && matches!(
                    claims.event_name.as_str(),
                    "pull_request" | "pull_request_review"
                )
                && pull_request_number(&claims.r#ref).is_some();
            if !pull_ref && !binding.refs.contains(&claims.r#ref) {
                misses.push(format!("ref {} not allowed", claims.r#ref));
            }
            if !binding.event_names.contains(&claims.event_name) {
                misses.push(format!("event {} not allowed", claims.event_name));
            }
            if let Some(environments) = &binding.environments {
                match &claims.environment {
                    Some(env) if environments.contains(env) => {}
                    Some(env) => misses.push(format!("GitHub environment {env} not allowed")),
                    None => misses.push("the job has no GitHub environment".into()),
                }
            }
            if !binding.job_workflow_refs.contains(&claims.job_workflow_ref) {
                misses.push(format!("workflow {} not allowed", claims.job_workflow_ref));
            }
            if binding.runner_environment != claims.runner_environment {
                misses.push(format!("runner {} not allowed", claims.runner_environment));
            }
            let granted = binding.allow.iter().any(|grant| {
                grant.action == action
                    && grant.workflows.contains(&claims.job_workflow_ref)
                    && grant.environments.contains(&scope.environment)
                    && (grant.services.is_empty()
                        || scope
                            .service
                            .as_ref()
                            .is_some_and(|s| grant.services.contains(s)))
            });
            if !granted {
                misses.push(format!(
                    "{} on {}{} not granted",
                    action.as_str(),
                    scope.environment,
                    scope
                        .service
                        .as_deref()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default()
                ));
            }
            if misses.is_empty() {
                return Decision {
                    allowed: true,
                    reasons: vec![format!("allowed by binding {}", binding.name)],
                };
            }
            reasons.push(format!("binding {}: {}", binding.name, misses.join("; ")));
        }
        deny(reasons)
    }
}
