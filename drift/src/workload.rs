//! Workload drift: what Argo CD reports for the application that deploys the workloads, against
//! the `ExternalSecret`s keyward projects from the manifest (`keyward render`).
//!
//! The application must be `Synced` and not `Degraded` or `Missing`; each projected
//! `ExternalSecret` must be among its managed resources, live in the cluster, with every field
//! of the projection's `spec` as rendered (the cluster may add fields: defaults the API server
//! or the operator fills in are not drift), and with its `Ready` condition's reason
//! `SecretSynced`. Evaluation is pure; [`read`] gathers its input through the [`ArgoCd`] port.
//!
//! Fingerprints: `<kind>:<secret>:<app>` for an `ExternalSecret`'s drift, and
//! `<kind>:/<org>/<env>/:<app>` for the application's own state (it is about the estate's
//! workloads, not one secret; the environment is still the second path segment).

use std::sync::Arc;

use futures::future::BoxFuture;
use keyward_shared::manifest::Manifest;
use keyward_shared::projections::{external_secret_name, external_secret_object};
use keyward_shared::redact::SafeText;
use serde_json::Value;

use crate::detect::{DriftScope, Estate};
use crate::findings::{Finding, FindingKind};

/// The API group and kind of an External Secrets Operator `ExternalSecret`.
pub const EXTERNAL_SECRET_GROUP: &str = "external-secrets.io";
pub const EXTERNAL_SECRET_KIND: &str = "ExternalSecret";
/// The reason the operator's `Ready` condition gives once the Kubernetes Secret is written.
pub const SECRET_SYNCED: &str = "SecretSynced";
/// Application health statuses that are drift (Argo CD's `Progressing` and `Suspended` are
/// passing states, so a sync in flight does not open an issue).
const UNHEALTHY: [&str; 2] = ["Degraded", "Missing"];

/// An Argo CD application's state, as `GET /api/v1/applications/{name}` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    /// `status.sync.status`: `Synced`, `OutOfSync` or `Unknown`.
    pub sync_status: String,
    /// `status.health.status`: `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`,
    /// `Unknown`.
    pub health_status: String,
}

impl Application {
    /// What post-merge verification of a workload fix requires.
    pub fn synced_and_healthy(&self) -> bool {
        self.sync_status == "Synced" && self.health_status == "Healthy"
    }
}

/// One of an application's managed resources (`GET .../managed-resources`, `items[]`): the live
/// and target states arrive as JSON text, `"null"` or absent when there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedResource {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub live: Option<Value>,
    pub target: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("Argo CD {operation}: {reason}")]
pub struct ArgoCdError {
    pub operation: &'static str,
    pub reason: SafeText,
}

/// The Argo CD API, as workload detection reads it. Boxed futures keep it object-safe, so the
/// detector and the gateway carry one without another type parameter.
pub trait ArgoCd: Send + Sync {
    fn application<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Application, ArgoCdError>>;
    fn managed_resources<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ManagedResource>, ArgoCdError>>;
}

/// Workload detection as configured (`ENABLE_ARGOCD_CHECK`): the API and the application.
#[derive(Clone)]
pub struct WorkloadCheck {
    pub argocd: Arc<dyn ArgoCd>,
    /// `ARGOCD_APP_NAME`.
    pub app: String,
    /// `WORKLOAD_NAMESPACE`: where a managed resource Argo CD reports without a namespace lives.
    pub namespace: String,
}

/// One `ExternalSecret` the manifest projects into the estate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedExternalSecret {
    pub secret: String,
    pub name: String,
    pub namespace: String,
    pub object: Value,
}

/// The projections of the estate's declared secrets that the scope covers.
pub fn expected(
    manifest: &Manifest,
    estate: Estate<'_>,
    scope: &DriftScope,
) -> Vec<ExpectedExternalSecret> {
    let prefix = estate.prefix();
    manifest
        .scope(estate.environment, None)
        .filter(|d| scope.covers(&prefix, &d.name.to_string()))
        .filter_map(|d| {
            let k8s = d.kubernetes.as_ref()?;
            Some(ExpectedExternalSecret {
                secret: d.name.to_string(),
                name: external_secret_name(d),
                namespace: k8s.namespace.clone(),
                object: external_secret_object(d, k8s),
            })
        })
        .collect()
}

/// What Argo CD reported for one application.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadObserved {
    pub app: Application,
    pub resources: Vec<ManagedResource>,
}

/// Reads the application and its managed resources.
pub async fn read(check: &WorkloadCheck) -> Result<WorkloadObserved, ArgoCdError> {
    Ok(WorkloadObserved {
        app: check.argocd.application(&check.app).await?,
        resources: check.argocd.managed_resources(&check.app).await?,
    })
}

/// Every workload finding: the application's own state (when the scope covers the estate) and
/// each expected `ExternalSecret`'s.
pub fn evaluate(
    observed: &WorkloadObserved,
    expected: &[ExpectedExternalSecret],
    estate: Estate<'_>,
    scope: &DriftScope,
    default_namespace: &str,
) -> Vec<Finding> {
    let prefix = estate.prefix();
    let app = observed.app.name.as_str();
    let mut findings = Vec::new();
    if scope.covers(&prefix, &prefix) {
        if observed.app.sync_status != "Synced" {
            findings.push(
                Finding::new(FindingKind::WorkloadOutOfSync, &prefix, Some(app))
                    .with("app", app)
                    .with("sync_status", &observed.app.sync_status),
            );
        }
        if UNHEALTHY.contains(&observed.app.health_status.as_str()) {
            findings.push(
                Finding::new(FindingKind::WorkloadDegraded, &prefix, Some(app))
                    .with("app", app)
                    .with("health_status", &observed.app.health_status),
            );
        }
    }
    for want in expected {
        let found = observed.resources.iter().find(|r| {
            r.group == EXTERNAL_SECRET_GROUP
                && r.kind == EXTERNAL_SECRET_KIND
                && r.name == want.name
                && namespace_of(r, default_namespace) == want.namespace
        });
        let base = |kind| {
            Finding::new(kind, &want.secret, Some(app))
                .with("app", app)
                .with(
                    "external_secret",
                    format!("{}/{}", want.namespace, want.name),
                )
        };
        let Some(live) = found.and_then(|r| r.live.as_ref()) else {
            findings.push(base(FindingKind::ExternalSecretMissing).with(
                "in_application",
                if found.is_some() {
                    "declared, not in the cluster"
                } else {
                    "not managed by the application"
                },
            ));
            continue;
        };
        let mut differing = Vec::new();
        differences(&want.object["spec"], &live["spec"], "spec", &mut differing);
        if !differing.is_empty() {
            findings.push(
                base(FindingKind::ExternalSecretSpecDrift).with("fields", differing.join(",")),
            );
        }
        if let Some(condition) = not_synced(live) {
            findings.push(
                base(FindingKind::ExternalSecretNotSynced)
                    .with("ready_status", condition.status)
                    .with("ready_reason", condition.reason),
            );
        }
    }
    findings.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    findings
}

fn namespace_of<'a>(resource: &'a ManagedResource, default_namespace: &'a str) -> &'a str {
    if resource.namespace.is_empty() {
        default_namespace
    } else {
        &resource.namespace
    }
}

/// The paths where `live` does not hold what `declared` says: every key of a declared object
/// must be in the live one with the same value, arrays element by element. Keys only the live
/// side has are defaults the cluster filled in.
fn differences(declared: &Value, live: &Value, path: &str, out: &mut Vec<String>) {
    match (declared, live) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let child = format!("{path}.{key}");
                match have.get(key) {
                    Some(actual) => differences(value, actual, &child, out),
                    None => out.push(child),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                differences(w, h, &format!("{path}[{i}]"), out);
            }
        }
        (want, have) if want == have => {}
        _ => out.push(path.to_owned()),
    }
}

/// The `Ready` condition's reading, when it is not `True` with reason `SecretSynced`.
struct ReadyCondition {
    status: String,
    reason: String,
}

fn not_synced(live: &Value) -> Option<ReadyCondition> {
    let ready = live["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "Ready"));
    let Some(ready) = ready else {
        return Some(ReadyCondition {
            status: "absent".into(),
            reason: "no Ready condition".into(),
        });
    };
    let status = ready["status"].as_str().unwrap_or_default();
    let reason = ready["reason"].as_str().unwrap_or_default();
    (status != "True" || reason != SECRET_SYNCED).then(|| ReadyCondition {
        status: status.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The application a workload fingerprint names (its detail).
pub fn app_of(fingerprint: &str) -> Option<&str> {
    let secret = Finding::secret_of(fingerprint)?;
    let (_, rest) = fingerprint.split_once(':')?;
    rest.strip_prefix(secret)?.strip_prefix(':')
}
