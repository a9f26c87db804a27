//! A fake Argo CD API server, from Argo CD's public API reference (`assets/swagger.json` of
//! argoproj/argo-cd) and its server code (`server/server.go`, `server/application/`):
//!
//! - Auth: `Authorization: Bearer <token>` (or the `argocd.token` cookie the UI uses). No token:
//!   401 `no session information`; another token: 401 `invalid session: token signature is
//!   invalid`. Both gRPC code 16 (Unauthenticated).
//! - Errors are grpc-gateway bodies `{"error", "code", "message"}` (`error` and `message` the
//!   same text, `code` the gRPC code).
//! - `GET /api/v1/applications/{name}`: the `Application` (`metadata`, `spec.project`,
//!   `spec.source`, `spec.destination`, `status.sync.{status, revision}`,
//!   `status.health.status`, `status.resources[]`). An application that does not exist, or that
//!   the token may not read, is 403 `permission denied` (code 7): Argo CD does not reveal which.
//!   With `?project=P` (which the token may read), a missing application, or one in another
//!   project, is 404 `applications.argoproj.io "<name>" not found` (code 5).
//! - `GET /api/v1/applications/{applicationName}/managed-resources`: `{"items": [...]}`, each a
//!   `ResourceDiff` with `group`, `kind`, `namespace`, `name`, `liveState`, `targetState`,
//!   `normalizedLiveState`, `predictedLiveState` (JSON text; `"null"` when there is none),
//!   `modified`, `hook`; filtered by the `namespace`, `name`, `group` and `kind` query parameters.
//!   Same auth and 403/404 rules.
//! - Anything else under `/api/`: 404 `Not Found` (code 5); another method on a known path:
//!   405 `Method Not Allowed` (code 12). A failure switched on: 503 (code 14, Unavailable).
//!
//! The sync status is computed as Argo CD computes it: `Synced` when every resource's live
//! state holds its target state (fields the cluster adds, defaults and `status`, are not a
//! difference), `OutOfSync` otherwise. Health is set by the test. Where the reference is silent
//! the fake chooses: the live state of a synced `ExternalSecret` carries the defaults the
//! External Secrets Operator's webhook fills in and a `Ready` condition with reason
//! `SecretSynced`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::kit::{self, Kit, Running};

pub use super::kit::Seen;

/// One managed resource of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSeed {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// What the cluster runs (`None`: not in the cluster).
    pub live: Option<Value>,
    /// What git (the chart) declares (`None`: not in git any more).
    pub target: Option<Value>,
}

impl ResourceSeed {
    /// An External Secrets Operator `ExternalSecret`.
    pub fn external_secret(
        namespace: &str,
        name: &str,
        live: Option<Value>,
        target: Option<Value>,
    ) -> Self {
        Self {
            group: "external-secrets.io".into(),
            kind: "ExternalSecret".into(),
            namespace: namespace.into(),
            name: name.into(),
            live,
            target,
        }
    }
}

#[derive(Debug, Clone)]
struct App {
    name: String,
    project: String,
    health: String,
    revision: String,
    resources: Vec<ResourceSeed>,
    /// The token may read this application (RBAC).
    readable: bool,
}

impl App {
    fn sync_status(&self) -> &'static str {
        let in_sync = self.resources.iter().all(|r| match (&r.target, &r.live) {
            (Some(target), Some(live)) => holds(live, target),
            (None, None) => true,
            _ => false,
        });
        if in_sync { "Synced" } else { "OutOfSync" }
    }
}

/// Whether `live` holds every field of `target`, the object's `status` (the cluster's to write)
/// aside.
fn holds(live: &Value, target: &Value) -> bool {
    match (target, live) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .filter(|(k, _)| k.as_str() != "status")
            .all(|(k, v)| have.get(k).is_some_and(|h| fields_hold(h, v))),
        _ => fields_hold(live, target),
    }
}

/// Below the top level every field counts, one named `status` too.
fn fields_hold(live: &Value, target: &Value) -> bool {
    match (target, live) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| have.get(k).is_some_and(|h| fields_hold(h, v))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| fields_hold(h, w))
        }
        (want, have) => want == have,
    }
}

pub struct Store {
    apps: Vec<App>,
}

#[derive(Clone)]
pub struct FakeArgoCd {
    kit: Kit<Store>,
    token: Arc<str>,
}

pub type RunningArgoCd = Running<FakeArgoCd>;

impl RunningArgoCd {
    /// Stands in for `https://argocd.example.com` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }
}

impl FakeArgoCd {
    /// Serves the API; only `token` authenticates.
    pub async fn start(token: &str) -> std::io::Result<RunningArgoCd> {
        let fake = FakeArgoCd {
            kit: Kit::new(Store { apps: Vec::new() }),
            token: Arc::from(token),
        };
        let kit = fake.kit.clone();
        kit::start(fake, &kit, Router::new().fallback(handle)).await
    }

    /// An application in `project`, Healthy, with no resources yet.
    pub fn add_app(&self, name: &str, project: &str) {
        let mut inner = self.kit.lock();
        inner.state.apps.retain(|a| a.name != name);
        inner.state.apps.push(App {
            name: name.to_owned(),
            project: project.to_owned(),
            health: "Healthy".into(),
            revision: "0".repeat(40),
            resources: Vec::new(),
            readable: true,
        });
    }

    fn with_app<T>(&self, name: &str, f: impl FnOnce(&mut App) -> T) -> T {
        let mut inner = self.kit.lock();
        let app = inner
            .state
            .apps
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("fake argocd: no application {name}"));
        f(app)
    }

    /// Adds or replaces a managed resource (by group, kind, namespace and name).
    pub fn put_resource(&self, app: &str, resource: ResourceSeed) {
        self.with_app(app, |a| {
            a.resources.retain(|r| {
                (&r.group, &r.kind, &r.namespace, &r.name)
                    != (
                        &resource.group,
                        &resource.kind,
                        &resource.namespace,
                        &resource.name,
                    )
            });
            a.resources.push(resource);
        });
    }

    /// A new revision of the chart declares `target` for the resource named so (git changed;
    /// the cluster has not yet).
    pub fn set_target(&self, app: &str, kind: &str, namespace: &str, name: &str, target: Value) {
        self.with_app(app, |a| {
            for r in &mut a.resources {
                if r.kind == kind && r.namespace == namespace && r.name == name {
                    r.target = Some(target.clone());
                }
            }
            a.revision = format!("{:040x}", uuid::Uuid::new_v4().as_u128());
        });
    }

    /// A sync: every resource's live state becomes its target as the cluster stores it.
    pub fn sync(&self, app: &str) {
        self.with_app(app, |a| {
            for r in &mut a.resources {
                r.live = r.target.as_ref().map(as_applied);
            }
        });
    }

    /// Sets `status.health.status` (`Healthy`, `Progressing`, `Degraded`, `Missing`, ...).
    pub fn set_health(&self, app: &str, health: &str) {
        self.with_app(app, |a| a.health = health.to_owned());
    }

    /// Takes the token's permission to read the application away (RBAC).
    pub fn deny(&self, app: &str) {
        self.with_app(app, |a| a.readable = false);
    }

    /// The application's computed sync status.
    pub fn sync_status(&self, app: &str) -> String {
        self.with_app(app, |a| a.sync_status().to_owned())
    }

    /// The next `n` requests fail with 503.
    pub fn fail_next(&self, n: u32) {
        self.kit.lock().faults.fail_next(n);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.kit.seen()
    }
}

/// A resource as the cluster stores it once applied: an `ExternalSecret` gains the operator's
/// defaults and a `Ready` condition; every object gains a uid and resource version.
pub fn as_applied(target: &Value) -> Value {
    let mut live = target.clone();
    live["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    live["metadata"]["resourceVersion"] = json!("1");
    if live["kind"] == "ExternalSecret" {
        if let Some(data) = live["spec"]["data"].as_array_mut() {
            for item in data {
                let remote = &mut item["remoteRef"];
                remote["conversionStrategy"] = json!("Default");
                remote["decodingStrategy"] = json!("None");
                remote["metadataPolicy"] = json!("None");
            }
        }
        live["status"] = json!({
            "binding": {"name": live["spec"]["target"]["name"]},
            "refreshTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "syncedResourceVersion": "1-0",
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "SecretSynced",
                "message": "secret synced",
                "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }],
        });
    }
    live
}

/// grpc-gateway's error body.
fn grpc_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": code, "message": message})),
    )
        .into_response()
}

fn bearer(request: &axum::http::request::Parts) -> Option<String> {
    let header = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    header.or_else(|| {
        request
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())?
            .split(';')
            .find_map(|c| c.trim().strip_prefix("argocd.token=").map(str::to_owned))
    })
}

async fn handle(State(fake): State<FakeArgoCd>, request: Request) -> Response {
    let (parts, _) = kit::read(request, 1024 * 1024).await;
    let token = bearer(&parts);
    fake.kit.answer(&parts, |store, faults| {
        let path = parts.uri.path().trim_end_matches('/');
        let Some(rest) = path.strip_prefix("/api/v1/applications/") else {
            return grpc_error(StatusCode::NOT_FOUND, 5, "Not Found");
        };
        let (name, managed) = match rest.split_once('/') {
            None => (rest, false),
            Some((name, "managed-resources")) => (name, true),
            Some(_) => return grpc_error(StatusCode::NOT_FOUND, 5, "Not Found"),
        };
        if parts.method != Method::GET {
            return grpc_error(StatusCode::METHOD_NOT_ALLOWED, 12, "Method Not Allowed");
        }
        match token.as_deref() {
            None | Some("") => {
                return grpc_error(StatusCode::UNAUTHORIZED, 16, "no session information");
            }
            Some(t) if t != &*fake.token => {
                return grpc_error(
                    StatusCode::UNAUTHORIZED,
                    16,
                    "invalid session: token signature is invalid",
                );
            }
            Some(_) => {}
        }
        if faults.take_failure() {
            return grpc_error(StatusCode::SERVICE_UNAVAILABLE, 14, "service unavailable");
        }
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let param = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let not_found = || {
            grpc_error(
                StatusCode::NOT_FOUND,
                5,
                &format!("applications.argoproj.io \"{name}\" not found"),
            )
        };
        let app = store.apps.iter().find(|a| a.name == name);
        let app = match (app, param("project").or(param("projects"))) {
            (Some(app), _) if !app.readable => {
                return grpc_error(StatusCode::FORBIDDEN, 7, "permission denied");
            }
            (Some(app), Some(project)) if app.project != project => return not_found(),
            (Some(app), _) => app,
            (None, Some(_)) => return not_found(),
            (None, None) => return grpc_error(StatusCode::FORBIDDEN, 7, "permission denied"),
        };
        if managed {
            let items: Vec<Value> = app
                .resources
                .iter()
                .filter(|r| param("namespace").is_none_or(|v| v == r.namespace))
                .filter(|r| param("name").is_none_or(|v| v == r.name))
                .filter(|r| param("group").is_none_or(|v| v == r.group))
                .filter(|r| param("kind").is_none_or(|v| v == r.kind))
                .map(resource_diff)
                .collect();
            return axum::Json(json!({ "items": items })).into_response();
        }
        axum::Json(application(app)).into_response()
    })
}

/// A state as the API carries it: JSON text, `"null"` when there is none.
fn text(state: Option<&Value>) -> String {
    state.map_or_else(|| "null".to_owned(), Value::to_string)
}

fn resource_diff(r: &ResourceSeed) -> Value {
    let modified = match (&r.target, &r.live) {
        (Some(t), Some(l)) => !holds(l, t),
        (None, None) => false,
        _ => true,
    };
    json!({
        "group": r.group,
        "kind": r.kind,
        "namespace": r.namespace,
        "name": r.name,
        "liveState": text(r.live.as_ref()),
        "targetState": text(r.target.as_ref()),
        "normalizedLiveState": text(r.live.as_ref()),
        "predictedLiveState": text(r.target.as_ref().or(r.live.as_ref())),
        "modified": modified,
        "hook": false,
    })
}

fn application(app: &App) -> Value {
    let resources: Vec<Value> = app
        .resources
        .iter()
        .map(|r| {
            let synced = match (&r.target, &r.live) {
                (Some(t), Some(l)) => holds(l, t),
                (None, None) => true,
                _ => false,
            };
            json!({
                "group": r.group,
                "version": "v1",
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "status": if synced { "Synced" } else { "OutOfSync" },
                "health": {"status": if r.live.is_some() { "Healthy" } else { "Missing" }},
            })
        })
        .collect();
    json!({
        "metadata": {"name": app.name, "namespace": "argocd"},
        "spec": {
            "project": app.project,
            "source": {
                "repoURL": "https://github.com/acme/platform.git",
                "path": "infra/workloads/chart",
                "targetRevision": "main",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
        },
        "status": {
            "sync": {"status": app.sync_status(), "revision": app.revision},
            "health": {"status": app.health},
            "resources": resources,
        },
    })
}
