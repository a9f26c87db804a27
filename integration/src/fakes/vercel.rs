//! A fake Vercel REST API: project environment variables, custom environments and deploy hooks,
//! built from the facts gathered in `/work/shared/reference/vercel.md` (Vercel's OpenAPI as
//! generated into `vercel/sdk`, the CLI, the Terraform provider, Vercel's docs):
//!
//! - Auth: `Authorization: Bearer <token>` only; anything else 403
//!   `{"error":{"code":"forbidden","message":"Not authorized","invalidToken":true}}`.
//! - Scope: a team's project needs `?teamId=` or `?slug=` on every call; a missing or wrong
//!   scope, an unknown project, or a team scope on a personal project all answer 404
//!   `not_found` "Project not found" (the project is looked up inside the scope the call names).
//! - `GET /v10/projects/{idOrName}/env`: `{envs, pagination:{count, next, prev}}`, newest first,
//!   `next` is the `createdAt` to pass as `?until=`; filters `gitBranch`, `customEnvironmentId`,
//!   `customEnvironmentSlug`; `decrypt` is accepted and ignored (it "often returns ciphertext").
//!   `sensitive` values are never returned, `encrypted` ones only as ciphertext.
//! - `POST /v10/projects/{idOrName}/env[?upsert=true]`: one object or an array; partial success
//!   `201 {created, failed}` (`created` is an object for an object body, an array for an array
//!   body: `Env|Env[]`); every element failing is 400 with the first failure as `error` and the
//!   whole `failed` list. Per-element codes from the CLI's known-error list: `MISSING_KEY`,
//!   `KEY_INVALID_CHARACTERS`, `KEY_INVALID_LENGTH`, `RESERVED_ENV_VARIABLE`, `MISSING_VALUE`,
//!   `INVALID_VALUE`, `VALUE_INVALID_LENGTH` (64 KB), `VALUE_INVALID_TYPE` (`secret` is sunset),
//!   `SYSTEM_ENV_WITH_VALUE`, `MISSING_TARGET`, `BAD_REQUEST` (sensitive on development, a git
//!   branch without the preview target, unknown custom environment), `ENV_CONFLICT` (one record
//!   per key, git branch and target or custom environment).
//! - `PATCH` / `DELETE /v9/projects/{idOrName}/env/{id}`: 200 with the env; PATCH keeps the
//!   sensitive/non-sensitive type (delete and recreate to convert).
//! - `GET /v9/projects/{idOrName}/custom-environments`: `{accountLimit:{total}, environments}`.
//! - `POST /v1/integrations/deploy/{projectId}/{hookId}`: no auth (the URL is the secret), 201
//!   `{job:{id, state:"PENDING", createdAt}}`.
//! - Errors always `{"error":{"code","message",...}}`; unknown path 404 `not_found`, wrong method
//!   405 `method_unknown`; every response carries `x-ratelimit-limit`, `x-ratelimit-remaining`,
//!   `x-ratelimit-reset` (epoch seconds); 429 `rate_limited` adds `Retry-After` and
//!   `error.limit:{remaining, reset, resetMs, total}`.
//!
//! Where the reference is silent, the fake chooses (and a client must not rely on more):
//! only the endpoint versions above are served (others 404), so a client sticks to the
//! recommended ones; `teamId` wins over `slug` and an empty one counts as absent; the throttle
//! applies after authentication and before any lookup; `gitBranch` filters by exact branch, an
//! unknown `customEnvironmentSlug` is 404, `limit` is honoured up to the page size; "" and
//! `null` mean no `gitBranch`/`comment`; an upsert states the whole variable (an omitted comment
//! clears it) and, like PATCH, refuses to change sensitivity (`BAD_REQUEST`); PATCH and DELETE
//! do not protect integration or system records (the reference does not say the API does; the
//! client must skip them); the rate-limit headers never run down on their own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::kit::{self, Kit, Running, now_ms, random_bytes};

/// The user the API token belongs to: `createdBy`/`updatedBy` of everything written over HTTP.
pub const TOKEN_USER: &str = "user_keyward";
/// The user of `edit_by_hand`, `delete_by_hand` and `seed_env`.
pub const DASHBOARD_USER: &str = "user_dashboard";
/// The reference saw buckets of 60 (deletes) and 120 (`api-projects`); 120 is reported.
const RATE_LIMIT: u64 = 120;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const CUSTOM_ENV_LIMIT: u64 = 12;
const TARGETS: [&str; 3] = ["production", "preview", "development"];
const RESERVED_KEYS: [&str; 11] = [
    "AWS_SECRET_KEY",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "NOW_REGION",
    "TZ",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// One request as the fake saw it (no bodies: they hold secret values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string, "" if none.
    pub query: String,
    pub status: u16,
    /// For `POST …/env`: elements in the body (1 for a single object), else 0.
    pub items: usize,
}

/// A variable created outside keyward (dashboard, an integration).
#[derive(Debug, Clone)]
pub struct EnvSeed {
    pub key: String,
    pub value: String,
    /// "plain" | "encrypted" | "sensitive" | "system"
    pub r#type: String,
    pub target: Vec<String>,
    pub git_branch: Option<String>,
    pub custom_environment_ids: Vec<String>,
    pub comment: Option<String>,
    pub configuration_id: Option<String>,
}

/// A stored record with its plaintext value (for test assertions only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnv {
    pub id: String,
    pub key: String,
    pub value: String,
    pub r#type: String,
    pub target: Vec<String>,
    pub git_branch: Option<String>,
    pub custom_environment_ids: Vec<String>,
    pub comment: Option<String>,
    pub configuration_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone)]
struct Record {
    env: StoredEnv,
    created_by: String,
    /// What the API shows for an `encrypted` value; renewed on every write, as re-encryption
    /// would.
    ciphertext: String,
}

#[derive(Debug, Clone)]
struct CustomEnv {
    id: String,
    slug: String,
    created_at: i64,
}

#[derive(Debug)]
struct Project {
    id: String,
    name: String,
    /// (team id, team slug); `None` for a personal account.
    team: Option<(String, String)>,
    envs: Vec<Record>,
    custom: Vec<CustomEnv>,
    hooks: Vec<String>,
    deployments: usize,
}

pub struct Store {
    projects: Vec<Project>,
    /// key → code: the next create element with this key fails with this code.
    fail_once: HashMap<String, String>,
    page_size: usize,
    /// Last timestamp handed out; every write takes a strictly greater one.
    clock: i64,
}

impl Store {
    /// A millisecond timestamp strictly greater than any handed out before, so `createdAt`
    /// orders records unambiguously for `until` and `updatedAt` grows on every write.
    fn tick(&mut self) -> i64 {
        self.clock = now_ms().max(self.clock + 1);
        self.clock
    }

    fn project_index(&self, id_or_name: &str) -> usize {
        self.projects
            .iter()
            .position(|p| p.id == id_or_name || p.name == id_or_name)
            .unwrap_or_else(|| panic!("fake vercel: no project {id_or_name}"))
    }
}

/// The API; its throttle applies to writes under `/v*/projects`.
#[derive(Clone)]
pub struct FakeVercel {
    kit: Kit<Store, Seen>,
    token: Arc<str>,
}

pub type RunningVercel = Running<FakeVercel>;

impl RunningVercel {
    /// Stands in for `https://api.vercel.com` (no trailing slash).
    pub fn api_url(&self) -> String {
        self.server.base_url()
    }
}

impl FakeVercel {
    /// Accepts only `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> std::io::Result<RunningVercel> {
        let fake = FakeVercel {
            kit: Kit::new(Store {
                projects: Vec::new(),
                fail_once: HashMap::new(),
                page_size: 100,
                clock: 0,
            }),
            token: Arc::from(token),
        };
        // One fallback handler routes by hand so that unknown paths, wrong methods and
        // oversized bodies still get Vercel's error shape, rate-limit headers and a `seen` entry.
        let kit = fake.kit.clone();
        kit::start(fake, &kit, Router::new().fallback(handle)).await
    }

    fn lock(&self) -> MutexGuard<'_, kit::Inner<Store, Seen>> {
        self.kit.lock()
    }

    /// A project owned by a team (`(team id, team slug)`) or a personal account; returns its id.
    pub fn add_project(&self, name: &str, team: Option<(&str, &str)>) -> String {
        let id = format!("prj_{}", random_alnum(28));
        self.lock().state.projects.push(Project {
            id: id.clone(),
            name: name.to_owned(),
            team: team.map(|(id, slug)| (id.to_owned(), slug.to_owned())),
            envs: Vec::new(),
            custom: Vec::new(),
            hooks: Vec::new(),
            deployments: 0,
        });
        id
    }

    /// Adds a custom environment to a project (id or name); returns its id.
    pub fn add_custom_environment(&self, project: &str, slug: &str) -> String {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let at = store.tick();
        let index = store.project_index(project);
        let id = format!("env_{}", random_alnum(24));
        store.projects[index].custom.push(CustomEnv {
            id: id.clone(),
            slug: slug.to_owned(),
            created_at: at,
        });
        id
    }

    /// Inserts a variable as if created elsewhere (no validation: the dashboard and
    /// integrations write things the API would refuse, e.g. `system`); returns its id.
    pub fn seed_env(&self, project: &str, seed: EnvSeed) -> String {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let at = store.tick();
        let index = store.project_index(project);
        let id = random_alnum(16);
        let ciphertext = ciphertext_for(&seed.value);
        store.projects[index].envs.push(Record {
            env: StoredEnv {
                id: id.clone(),
                key: seed.key,
                value: seed.value,
                r#type: seed.r#type,
                target: seed.target,
                git_branch: seed.git_branch,
                custom_environment_ids: seed.custom_environment_ids,
                comment: seed.comment,
                configuration_id: seed.configuration_id,
                created_at: at,
                updated_at: at,
                updated_by: DASHBOARD_USER.to_owned(),
            },
            created_by: DASHBOARD_USER.to_owned(),
            ciphertext,
        });
        id
    }

    /// Every stored record of a project, plaintext values included, oldest first.
    pub fn envs(&self, project: &str) -> Vec<StoredEnv> {
        let guard = self.lock();
        let store = &guard.state;
        let index = store.project_index(project);
        store.projects[index]
            .envs
            .iter()
            .map(|r| r.env.clone())
            .collect()
    }

    /// A person edits a variable's value in the dashboard.
    pub fn edit_by_hand(&self, project: &str, env_id: &str, value: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let at = store.tick();
        let index = store.project_index(project);
        let record = store.projects[index]
            .envs
            .iter_mut()
            .find(|r| r.env.id == env_id)
            .unwrap_or_else(|| panic!("fake vercel: no env {env_id}"));
        record.env.value = value.to_owned();
        record.env.updated_at = at;
        record.env.updated_by = DASHBOARD_USER.to_owned();
        record.ciphertext = ciphertext_for(value);
    }

    /// A person deletes a variable in the dashboard.
    pub fn delete_by_hand(&self, project: &str, env_id: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.project_index(project);
        let envs = &mut store.projects[index].envs;
        let before = envs.len();
        envs.retain(|r| r.env.id != env_id);
        assert!(envs.len() < before, "fake vercel: no env {env_id}");
    }

    /// The next `n` writes (POST/PATCH/DELETE under `/v*/projects`) get 429 with
    /// `Retry-After: retry_after_secs` and change nothing.
    pub fn throttle_next_writes(&self, n: u32, retry_after_secs: u64) {
        self.lock().faults.throttle_next(n, retry_after_secs);
    }

    /// The next create element with this key lands in `failed` with this code instead of being
    /// written (the rest of its batch is written). Armed until such an element arrives.
    pub fn fail_key_once(&self, key: &str, code: &str) {
        self.lock()
            .state
            .fail_once
            .insert(key.to_owned(), code.to_owned());
    }

    /// Page size of the list endpoint (default 100).
    pub fn set_page_size(&self, n: usize) {
        self.lock().state.page_size = n.max(1);
    }

    /// Registers a deploy hook; returns its URL.
    pub fn add_deploy_hook(&self, project: &str) -> String {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.project_index(project);
        let hook = random_alnum(10);
        let project = &mut store.projects[index];
        project.hooks.push(hook.clone());
        let project_id = project.id.clone();
        format!(
            "{}/v1/integrations/deploy/{project_id}/{hook}",
            guard.base_url
        )
    }

    /// How many times the project's deploy hooks were triggered.
    pub fn deployments(&self, project: &str) -> usize {
        let store = &self.lock().state;
        store.projects[store.project_index(project)].deployments
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.kit.seen()
    }

    pub fn clear_seen(&self) {
        self.kit.clear_seen();
    }

    /// The `seen` entries that were writes (POST/PATCH/DELETE) to project routes.
    pub fn seen_writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| is_project_write(&s.method, &s.path))
            .collect()
    }
}

async fn handle(State(fake): State<FakeVercel>, request: Request) -> Response {
    let (parts, body) = kit::read(request, MAX_BODY).await;
    let mut guard = fake.lock();
    let kit::Inner {
        state,
        faults,
        seen,
        ..
    } = &mut *guard;
    let (response, items) = match body {
        Some(body) => respond(
            state,
            faults,
            &fake.token,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
        ),
        None => (
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                "Request body too large",
            ),
            0,
        ),
    };
    let status = response.status().as_u16();
    let kit::Seen {
        method,
        path,
        query,
        status,
    } = kit::Seen::new(&parts.method, &parts.uri, status);
    seen.push(Seen {
        method,
        path,
        query,
        status,
        items,
    });
    with_rate_headers(response)
}

enum Route<'a> {
    ListEnv(&'a str),
    CreateEnv(&'a str),
    EditEnv(&'a str, &'a str),
    DeleteEnv(&'a str, &'a str),
    CustomEnvs(&'a str),
    DeployHook(&'a str, &'a str),
}

/// Why no route matched: an unknown path, or a known path with the methods it allows.
enum NoRoute {
    NotFound,
    WrongMethod(&'static str),
}

impl NoRoute {
    fn response(self) -> Response {
        match self {
            NoRoute::NotFound => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "The requested path was not found",
            ),
            NoRoute::WrongMethod(allow) => {
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_unknown",
                    &format!("This endpoint only responds to {allow}"),
                );
                response
                    .headers_mut()
                    .insert("allow", HeaderValue::from_static(allow));
                response
            }
        }
    }
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, NoRoute> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (found, allow) = match segments.as_slice() {
        ["v10", "projects", p, "env"] => (
            match *method {
                Method::GET => Some(Route::ListEnv(p)),
                Method::POST => Some(Route::CreateEnv(p)),
                _ => None,
            },
            "GET, POST",
        ),
        ["v9", "projects", p, "env", id] => (
            match *method {
                Method::PATCH => Some(Route::EditEnv(p, id)),
                Method::DELETE => Some(Route::DeleteEnv(p, id)),
                _ => None,
            },
            "PATCH, DELETE",
        ),
        ["v9", "projects", p, "custom-environments"] => (
            (*method == Method::GET).then_some(Route::CustomEnvs(p)),
            "GET",
        ),
        ["v1", "integrations", "deploy", p, hook] => (
            (*method == Method::POST).then_some(Route::DeployHook(p, hook)),
            "POST",
        ),
        _ => return Err(NoRoute::NotFound),
    };
    found.ok_or(NoRoute::WrongMethod(allow))
}

fn is_project_write(method: &str, path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/');
    let versioned = segments
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    versioned
        && segments.next() == Some("projects")
        && matches!(method, "POST" | "PATCH" | "DELETE")
}

/// Answers one request; also returns the element count of a create body for `seen`.
fn respond(
    store: &mut Store,
    faults: &mut kit::Faults,
    token: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, usize) {
    let route = match route(method, uri.path()) {
        Ok(route) => route,
        Err(no_route) => return (no_route.response(), 0),
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let items = match (&route, &parsed) {
        (Route::CreateEnv(_), Some(Value::Array(elements))) => elements.len(),
        (Route::CreateEnv(_), Some(_)) => 1,
        _ => 0,
    };
    let project = match route {
        // The deploy hook URL is itself the credential.
        Route::DeployHook(project_id, hook) => return (deploy(store, project_id, hook), 0),
        Route::ListEnv(p)
        | Route::CreateEnv(p)
        | Route::EditEnv(p, _)
        | Route::DeleteEnv(p, _)
        | Route::CustomEnvs(p) => p,
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == token);
    if !authorized {
        let body = json!({"error": {
            "code": "forbidden",
            "message": "Not authorized",
            "invalidToken": true,
        }});
        return (
            (StatusCode::FORBIDDEN, axum::Json(body)).into_response(),
            items,
        );
    }
    // Limits are per token and endpoint, so they apply once the caller is known, before any
    // lookup: a throttled call changes nothing.
    if is_project_write(method.as_str(), uri.path())
        && let Some(retry_after) = faults.take_throttle()
    {
        return (rate_limited(retry_after), items);
    }
    (project_call(store, uri, route, project, parsed), items)
}

/// An authenticated call on one of a project's routes: the project looked up in the call's
/// scope, the body checked, the route answered.
fn project_call(
    store: &mut Store,
    uri: &Uri,
    route: Route<'_>,
    project: &str,
    parsed: Option<Value>,
) -> Response {
    let query: HashMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let Some(index) = find_project(store, project, &query) else {
        return error(StatusCode::NOT_FOUND, "not_found", "Project not found");
    };
    let needs_body = matches!(route, Route::CreateEnv(_) | Route::EditEnv(..));
    let body = match parsed {
        Some(body) => body,
        None if needs_body => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request body: expected JSON",
            );
        }
        None => Value::Null,
    };
    match route {
        Route::ListEnv(_) => list(store, index, &query),
        Route::CreateEnv(_) => {
            let upsert = query.get("upsert").is_some_and(|v| v == "true");
            create(store, index, &body, upsert)
        }
        Route::EditEnv(_, id) => edit(store, index, id, &body),
        Route::DeleteEnv(_, id) => delete(store, index, id),
        Route::CustomEnvs(_) => custom_environments(&store.projects[index]),
        Route::DeployHook(..) => unreachable!("answered by respond"),
    }
}

/// Looks the project up inside the scope the call names: `teamId` wins over `slug`, an empty
/// parameter counts as absent, and a personal project is not visible from any team scope.
fn find_project(store: &Store, id_or_name: &str, query: &HashMap<String, String>) -> Option<usize> {
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let (team_id, slug) = (param("teamId"), param("slug"));
    store.projects.iter().position(|p| {
        let in_scope = match (&p.team, team_id, slug) {
            (Some((id, _)), Some(given), _) => id == given,
            (Some((_, team_slug)), None, Some(given)) => team_slug == given,
            (Some(_), None, None) => false,
            (None, None, None) => true,
            (None, _, _) => false,
        };
        in_scope && (p.id == id_or_name || p.name == id_or_name)
    })
}

fn list(store: &Store, index: usize, query: &HashMap<String, String>) -> Response {
    let project = &store.projects[index];
    let custom_id = match (
        query.get("customEnvironmentId"),
        query.get("customEnvironmentSlug"),
    ) {
        (Some(id), _) => Some(id.as_str()),
        (None, Some(slug)) => match project.custom.iter().find(|c| &c.slug == slug) {
            Some(custom) => Some(custom.id.as_str()),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("Custom environment {slug} not found"),
                );
            }
        },
        (None, None) => None,
    };
    let parse = |name: &str| -> Result<Option<i64>, Failure> {
        query
            .get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Failure::new(
                        "bad_request",
                        format!("Invalid query parameter `{name}`: expected a number"),
                    )
                })
            })
            .transpose()
    };
    let (until, limit) = match (parse("until"), parse("limit")) {
        (Ok(until), Ok(limit)) => (until, limit),
        (Err(failure), _) | (_, Err(failure)) => return failure.response(StatusCode::BAD_REQUEST),
    };
    let page_size = limit
        .map(|l| (l.max(1) as usize).min(store.page_size))
        .unwrap_or(store.page_size);
    let mut matching: Vec<&Record> = project
        .envs
        .iter()
        .filter(|r| {
            query
                .get("gitBranch")
                .is_none_or(|b| r.env.git_branch.as_ref() == Some(b))
        })
        .filter(|r| custom_id.is_none_or(|c| r.env.custom_environment_ids.iter().any(|i| i == c)))
        .collect();
    matching.sort_by(|a, b| (b.env.created_at, &b.env.id).cmp(&(a.env.created_at, &a.env.id)));
    let newer_exist = until.is_some_and(|u| matching.iter().any(|r| r.env.created_at >= u));
    let remaining: Vec<&Record> = matching
        .into_iter()
        .filter(|r| until.is_none_or(|u| r.env.created_at < u))
        .collect();
    let page = &remaining[..remaining.len().min(page_size)];
    let next = (remaining.len() > page.len()).then(|| page.last().map(|r| r.env.created_at));
    let prev = if newer_exist {
        page.first().map(|r| r.env.created_at)
    } else {
        None
    };
    let body = json!({
        "envs": page.iter().map(|r| env_json(r)).collect::<Vec<_>>(),
        "pagination": {"count": page.len(), "next": next.flatten(), "prev": prev},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A per-element failure (`failed[]` entry) or, for PATCH, the whole answer.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
    fields: Map<String, Value>,
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            fields: Map::new(),
        }
    }

    fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// Names the element it is about, as Vercel's `failed[]` entries do.
    fn about(self, candidate: &Candidate) -> Self {
        let mut failure = self.with("key", candidate.key.clone());
        if !candidate.target.is_empty() {
            failure = failure.with("target", candidate.target.clone());
        }
        if let Some(branch) = &candidate.git_branch {
            failure = failure.with("gitBranch", branch.clone());
        }
        failure
    }

    fn error_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.clone().into());
        error.insert("message".into(), self.message.clone().into());
        error.extend(self.fields.clone());
        Value::Object(error)
    }

    fn response(&self, status: StatusCode) -> Response {
        (status, axum::Json(json!({"error": self.error_json()}))).into_response()
    }
}

/// A variable as a create element or a PATCH result describes it.
#[derive(Debug, Clone)]
struct Candidate {
    key: String,
    value: String,
    r#type: String,
    target: Vec<String>,
    git_branch: Option<String>,
    custom_environment_ids: Vec<String>,
    comment: Option<String>,
}

impl Candidate {
    fn from_json(element: &Value) -> Result<Candidate, Failure> {
        let Some(object) = element.as_object() else {
            return Err(Failure::new(
                "BAD_REQUEST",
                "Each environment variable must be an object",
            ));
        };
        let key = match object.get("key") {
            Some(Value::String(key)) if !key.is_empty() => key.clone(),
            _ => return Err(Failure::new("MISSING_KEY", "Missing `key`")),
        };
        let named = |failure: Failure| failure.with("key", key.clone());
        let value = match object.get("value") {
            Some(Value::String(value)) => value.clone(),
            None | Some(Value::Null) => {
                return Err(named(Failure::new(
                    "MISSING_VALUE",
                    format!("Missing `value` for `{key}`"),
                )));
            }
            Some(_) => {
                return Err(named(Failure::new(
                    "INVALID_VALUE",
                    format!("The `value` of `{key}` must be a string"),
                )));
            }
        };
        let r#type = match object.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                return Err(named(Failure::new(
                    "VALUE_INVALID_TYPE",
                    format!("Missing or invalid `type` for `{key}`"),
                )));
            }
        };
        let mut candidate = Candidate {
            key,
            value,
            r#type,
            target: Vec::new(),
            git_branch: None,
            custom_environment_ids: Vec::new(),
            comment: None,
        };
        candidate.apply(object).map_err(|f| f.about(&candidate))?;
        Ok(candidate)
    }

    /// Applies the optional fields a create element or a PATCH body may carry.
    fn apply(&mut self, object: &Map<String, Value>) -> Result<(), Failure> {
        if let Some(target) = object.get("target") {
            self.target = string_list(target, "target")?;
            if let Some(bad) = self.target.iter().find(|t| !TARGETS.contains(&t.as_str())) {
                return Err(Failure::new(
                    "BAD_REQUEST",
                    format!("Invalid target `{bad}`: use production, preview or development"),
                ));
            }
        }
        if let Some(branch) = object.get("gitBranch") {
            self.git_branch = optional_string(branch, "gitBranch")?;
        }
        if let Some(ids) = object.get("customEnvironmentIds") {
            self.custom_environment_ids = string_list(ids, "customEnvironmentIds")?;
        }
        if let Some(comment) = object.get("comment") {
            self.comment = optional_string(comment, "comment")?;
        }
        Ok(())
    }

    fn validate(&self, project: &Project, check_type: bool) -> Result<(), Failure> {
        let fail = |code: &str, message: String| Err(Failure::new(code, message).about(self));
        let key = &self.key;
        let mut chars = key.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return fail(
                "KEY_INVALID_CHARACTERS",
                format!(
                    "The name of your Environment Variable `{key}` contains invalid characters. Only letters, digits, and underscores are allowed. Furthermore, the name should not start with a digit."
                ),
            );
        }
        if key.len() > MAX_KEY_LEN {
            return fail(
                "KEY_INVALID_LENGTH",
                format!(
                    "The name of your Environment Variable is longer than {MAX_KEY_LEN} characters"
                ),
            );
        }
        if RESERVED_KEYS.contains(&key.as_str()) {
            return fail(
                "RESERVED_ENV_VARIABLE",
                format!("The name `{key}` is reserved: choose another one"),
            );
        }
        if self.value.len() > MAX_VALUE_LEN {
            return fail(
                "VALUE_INVALID_LENGTH",
                format!("The value of `{key}` is larger than 64 KB"),
            );
        }
        if check_type {
            match self.r#type.as_str() {
                "plain" | "encrypted" | "sensitive" => {}
                "system" => {
                    return fail(
                        "SYSTEM_ENV_WITH_VALUE",
                        format!("`{key}` cannot be a system Environment Variable with a value"),
                    );
                }
                "secret" => {
                    return fail(
                        "VALUE_INVALID_TYPE",
                        "The `secret` type has been sunset: use `sensitive` or `encrypted`".into(),
                    );
                }
                other => {
                    return fail(
                        "VALUE_INVALID_TYPE",
                        format!("Invalid type `{other}` for `{key}`"),
                    );
                }
            }
        }
        if self.target.is_empty() && self.custom_environment_ids.is_empty() {
            return fail(
                "MISSING_TARGET",
                format!("`{key}` needs a `target` or `customEnvironmentIds`"),
            );
        }
        if self.r#type == "sensitive" && self.target.iter().any(|t| t == "development") {
            return fail(
                "BAD_REQUEST",
                "Sensitive Environment Variables are not allowed for the development target".into(),
            );
        }
        if self.git_branch.is_some() && self.target != ["preview"] {
            return fail(
                "BAD_REQUEST",
                format!("`gitBranch` of `{key}` is only allowed with the target `preview` alone"),
            );
        }
        if let Some(unknown) = self
            .custom_environment_ids
            .iter()
            .find(|id| !project.custom.iter().any(|c| &c.id == *id))
        {
            return fail(
                "BAD_REQUEST",
                format!("Custom environment `{unknown}` was not found on this project"),
            );
        }
        Ok(())
    }
}

fn string_list(value: &Value, field: &str) -> Result<Vec<String>, Failure> {
    let invalid = || {
        Failure::new(
            "BAD_REQUEST",
            format!("`{field}` must be an array of strings"),
        )
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut list: Vec<String> = Vec::new();
            for item in items {
                let item = item.as_str().ok_or_else(invalid)?;
                // Vercel stores a set; a repeated entry counts once.
                if !list.iter().any(|l| l == item) {
                    list.push(item.to_owned());
                }
            }
            Ok(list)
        }
        _ => Err(invalid()),
    }
}

/// `null` and "" mean none (the reference: `""` is "any branch" in other sync products).
fn optional_string(value: &Value, field: &str) -> Result<Option<String>, Failure> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(Failure::new(
            "BAD_REQUEST",
            format!("`{field}` must be a string or null"),
        )),
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.contains(x))
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// Records sharing Vercel's conflict space with the candidate: same key, same git branch, and a
/// target or custom environment in common.
fn conflicting<'a>(
    project: &'a Project,
    candidate: &Candidate,
    except: Option<&str>,
) -> Vec<&'a Record> {
    project
        .envs
        .iter()
        .filter(|r| except != Some(r.env.id.as_str()))
        .filter(|r| r.env.key == candidate.key && r.env.git_branch == candidate.git_branch)
        .filter(|r| {
            overlaps(&r.env.target, &candidate.target)
                || overlaps(
                    &r.env.custom_environment_ids,
                    &candidate.custom_environment_ids,
                )
        })
        .collect()
}

fn conflict_failure(candidate: &Candidate, existing: &Record, why: &str) -> Failure {
    let mut scopes: Vec<&str> = existing
        .env
        .target
        .iter()
        .filter(|t| candidate.target.contains(t))
        .map(String::as_str)
        .collect();
    scopes.extend(
        existing
            .env
            .custom_environment_ids
            .iter()
            .filter(|c| candidate.custom_environment_ids.contains(c))
            .map(String::as_str),
    );
    let branch = candidate
        .git_branch
        .as_ref()
        .map(|b| format!(" and Git branch `{b}`"))
        .unwrap_or_default();
    Failure::new(
        "ENV_CONFLICT",
        format!(
            "A variable with the name `{}` already exists for the target {}{branch}{why}",
            candidate.key,
            scopes.join(", "),
        ),
    )
    .about(candidate)
    .with("envVarId", existing.env.id.clone())
    .with("envVarKey", existing.env.key.clone())
}

fn is_sensitive(r#type: &str) -> bool {
    r#type == "sensitive"
}

fn type_change_failure(from: &str, to: &str) -> Failure {
    Failure::new(
        "BAD_REQUEST",
        format!(
            "Cannot change the type of an Environment Variable from `{from}` to `{to}`: remove it and add it again"
        ),
    )
}

fn create(store: &mut Store, index: usize, body: &Value, upsert: bool) -> Response {
    let (elements, single): (Vec<&Value>, bool) = match body {
        Value::Array(elements) => (elements.iter().collect(), false),
        Value::Object(_) => (vec![body], true),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Invalid request body: expected an object or an array of objects",
            );
        }
    };
    let mut created = Vec::new();
    let mut failed = Vec::new();
    // One at a time, as Vercel applies a batch: a later element conflicts with an earlier one.
    for element in elements {
        match create_one(store, index, element, upsert) {
            Ok(env) => created.push(env),
            Err(failure) => failed.push(failure),
        }
    }
    let failed_json: Vec<Value> = failed
        .iter()
        .map(|f| json!({"error": f.error_json()}))
        .collect();
    if let (true, Some(first)) = (created.is_empty(), failed.first()) {
        let body = json!({"error": first.error_json(), "failed": failed_json});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    // `Env|Env[]`: an object body gets its env back as an object.
    let created = if single {
        created.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(created)
    };
    let body = json!({"created": created, "failed": failed_json});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn create_one(
    store: &mut Store,
    index: usize,
    element: &Value,
    upsert: bool,
) -> Result<Value, Failure> {
    if let Some(key) = element.get("key").and_then(Value::as_str)
        && let Some(code) = store.fail_once.remove(key)
    {
        let failure = Failure::new(&code, format!("Could not save `{key}` ({code})"));
        let failure = match Candidate::from_json(element) {
            Ok(candidate) => failure.about(&candidate),
            Err(_) => failure.with("key", key),
        };
        return Err(failure);
    }
    let candidate = Candidate::from_json(element)?;
    candidate.validate(&store.projects[index], true)?;
    let in_place = upsert_target(&store.projects[index], &candidate, upsert)?;
    let at = store.tick();
    let envs = &mut store.projects[index].envs;
    let record = match in_place {
        Some(id) => {
            let record = envs
                .iter_mut()
                .find(|r| r.env.id == id)
                .expect("conflicting record exists");
            record.env.value = candidate.value;
            record.env.r#type = candidate.r#type;
            // An upsert states the whole variable: an omitted comment clears it.
            record.env.comment = candidate.comment;
            record.env.updated_at = at;
            record.env.updated_by = TOKEN_USER.to_owned();
            record.ciphertext = ciphertext_for(&record.env.value);
            record
        }
        None => {
            envs.push(Record {
                ciphertext: ciphertext_for(&candidate.value),
                env: StoredEnv {
                    id: random_alnum(16),
                    key: candidate.key,
                    value: candidate.value,
                    r#type: candidate.r#type,
                    target: candidate.target,
                    git_branch: candidate.git_branch,
                    custom_environment_ids: candidate.custom_environment_ids,
                    comment: candidate.comment,
                    configuration_id: None,
                    created_at: at,
                    updated_at: at,
                    updated_by: TOKEN_USER.to_owned(),
                },
                created_by: TOKEN_USER.to_owned(),
            });
            envs.last_mut().expect("just pushed")
        }
    };
    Ok(env_json(record))
}

/// Which record a create writes over: none (a new record), or with `upsert` the one record it
/// restates exactly; anything else is a conflict.
fn upsert_target(
    project: &Project,
    candidate: &Candidate,
    upsert: bool,
) -> Result<Option<String>, Failure> {
    let clashes = conflicting(project, candidate, None);
    Ok(match clashes.as_slice() {
        [] => None,
        [existing] if upsert => {
            let env = &existing.env;
            if env.configuration_id.is_some() || env.r#type == "system" {
                return Err(conflict_failure(
                    candidate,
                    existing,
                    ", managed by an integration",
                ));
            }
            if !same_set(&env.target, &candidate.target)
                || !same_set(
                    &env.custom_environment_ids,
                    &candidate.custom_environment_ids,
                )
            {
                return Err(conflict_failure(
                    candidate,
                    existing,
                    ", with different targets",
                ));
            }
            if is_sensitive(&env.r#type) != is_sensitive(&candidate.r#type) {
                return Err(type_change_failure(&env.r#type, &candidate.r#type).about(candidate));
            }
            Some(env.id.clone())
        }
        [existing, ..] => return Err(conflict_failure(candidate, existing, "")),
    })
}

fn edit(store: &mut Store, index: usize, id: &str, body: &Value) -> Response {
    let Some(object) = body.as_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request body: expected an object",
        );
    };
    let project = &store.projects[index];
    let Some(record) = project.envs.iter().find(|r| r.env.id == id) else {
        return env_not_found(id);
    };
    let env = &record.env;
    let mut candidate = Candidate {
        key: env.key.clone(),
        value: env.value.clone(),
        r#type: env.r#type.clone(),
        target: env.target.clone(),
        git_branch: env.git_branch.clone(),
        custom_environment_ids: env.custom_environment_ids.clone(),
        comment: env.comment.clone(),
    };
    let field = |name: &str| -> Result<Option<String>, Failure> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Failure::new(
                "bad_request",
                format!("`{name}` must be a string"),
            )),
        }
    };
    let (key, value, new_type) = match (field("key"), field("value"), field("type")) {
        (Ok(k), Ok(v), Ok(t)) => (k, v, t),
        (Err(f), _, _) | (_, Err(f), _) | (_, _, Err(f)) => {
            return f.response(StatusCode::BAD_REQUEST);
        }
    };
    if let Some(key) = key {
        candidate.key = key;
    }
    if let Some(value) = value {
        candidate.value = value;
    }
    if let Some(new_type) = &new_type {
        // PATCH keeps sensitivity: encrypted ↔ sensitive needs delete + recreate.
        if is_sensitive(&env.r#type) != is_sensitive(new_type) {
            let mut failure = type_change_failure(&env.r#type, new_type);
            failure.code = "bad_request".into();
            return failure.response(StatusCode::BAD_REQUEST);
        }
        candidate.r#type = new_type.clone();
    }
    if let Err(failure) = candidate.apply(object) {
        return failure.response(StatusCode::BAD_REQUEST);
    }
    if let Err(failure) = candidate.validate(project, new_type.is_some()) {
        return failure.response(StatusCode::BAD_REQUEST);
    }
    if let Some(existing) = conflicting(project, &candidate, Some(id)).first() {
        return conflict_failure(&candidate, existing, "").response(StatusCode::BAD_REQUEST);
    }
    let at = store.tick();
    let record = store.projects[index]
        .envs
        .iter_mut()
        .find(|r| r.env.id == id)
        .expect("looked up above");
    let env = &mut record.env;
    env.key = candidate.key;
    env.value = candidate.value;
    env.r#type = candidate.r#type;
    env.target = candidate.target;
    env.git_branch = candidate.git_branch;
    env.custom_environment_ids = candidate.custom_environment_ids;
    env.comment = candidate.comment;
    env.updated_at = at;
    env.updated_by = TOKEN_USER.to_owned();
    record.ciphertext = ciphertext_for(&env.value);
    (StatusCode::OK, axum::Json(env_json(record))).into_response()
}

fn delete(store: &mut Store, index: usize, id: &str) -> Response {
    let envs = &mut store.projects[index].envs;
    match envs.iter().position(|r| r.env.id == id) {
        Some(position) => {
            let record = envs.remove(position);
            (StatusCode::OK, axum::Json(env_json(&record))).into_response()
        }
        None => env_not_found(id),
    }
}

fn env_not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("Environment Variable {id} not found"),
    )
}

fn custom_environments(project: &Project) -> Response {
    let environments: Vec<Value> = project
        .custom
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "slug": c.slug,
                "type": "preview",
                "description": "",
                "branchMatcher": null,
                "createdAt": c.created_at,
                "updatedAt": c.created_at,
            })
        })
        .collect();
    let body = json!({
        "accountLimit": {"total": CUSTOM_ENV_LIMIT},
        "environments": environments,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn deploy(store: &mut Store, project_id: &str, hook: &str) -> Response {
    let at = store.tick();
    let Some(project) = store
        .projects
        .iter_mut()
        .find(|p| p.id == project_id && p.hooks.iter().any(|h| h == hook))
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "Deploy hook not found");
    };
    project.deployments += 1;
    let body = json!({"job": {"id": random_alnum(20), "state": "PENDING", "createdAt": at}});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// The env object as the API shows it: never a sensitive value, an encrypted one only as
/// ciphertext, `gitBranch`/`comment` omitted when none, `system` only on system variables.
fn env_json(record: &Record) -> Value {
    let env = &record.env;
    let mut object = json!({
        "id": env.id,
        "key": env.key,
        "type": env.r#type,
        "target": env.target,
        "customEnvironmentIds": env.custom_environment_ids,
        "configurationId": env.configuration_id,
        "createdAt": env.created_at,
        "updatedAt": env.updated_at,
        "createdBy": record.created_by,
        "updatedBy": env.updated_by,
        "decrypted": false,
    });
    if let Some(branch) = &env.git_branch {
        object["gitBranch"] = branch.clone().into();
    }
    if let Some(comment) = &env.comment {
        object["comment"] = comment.clone().into();
    }
    match env.r#type.as_str() {
        "sensitive" => {}
        "encrypted" => object["value"] = record.ciphertext.clone().into(),
        _ => object["value"] = env.value.clone().into(),
    }
    if env.r#type == "system" {
        object["system"] = true.into();
    }
    object
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    Failure::new(code, message).response(status)
}

fn rate_limited(retry_after: u64) -> Response {
    let reset_ms = now_ms() + (retry_after as i64) * 1000;
    let reset = (reset_ms + 999) / 1000;
    let body = json!({"error": {
        "code": "rate_limited",
        "message": "Rate limit exceeded",
        "limit": {"remaining": 0, "reset": reset, "resetMs": reset_ms, "total": RATE_LIMIT},
    }});
    let response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let response = kit::with_retry_after(response, retry_after);
    kit::exhausted(response, HeaderValue::from(reset))
}

/// Vercel's counters are undocumented: the fake never runs out on its own, it reports one
/// request used of the window, resetting in a minute (a 429 sets its own values first).
fn with_rate_headers(response: Response) -> Response {
    let reset = now_ms() / 1000 + 60;
    kit::with_rate_headers(
        response,
        RATE_LIMIT,
        &[
            ("x-ratelimit-remaining", HeaderValue::from(RATE_LIMIT - 1)),
            ("x-ratelimit-reset", HeaderValue::from(reset)),
        ],
    )
}

fn random_alnum(len: usize) -> String {
    kit::random_text(kit::ALPHANUMERIC, len)
}

/// Looks like what Vercel returns for an encrypted value: base64 of random bytes as long as an
/// IV, the ciphertext and a tag would be. Never derived from the plaintext.
fn ciphertext_for(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(value.len() + 28))
}
