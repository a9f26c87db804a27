//! A fake Jira Cloud platform REST API v3: issues, JQL search, comments and transitions, from
//! Atlassian's REST v3 reference and its rate-limiting guide
//! (developer.atlassian.com/cloud/jira/platform):
//!
//! - Auth: basic auth `email:api_token`; anything else 401 `{"errorMessages":["You are not
//!   authenticated. Authentication required to perform this operation."],"errors":{}}` with
//!   `X-Seraph-LoginReason: AUTHENTICATED_FAILED`.
//! - Errors are `{"errorMessages":[…],"errors":{field: message}}`; a body that is not a JSON
//!   object, or a search body with a property the endpoint does not know (e.g. `startAt`), 400
//!   "Invalid request payload. Refer to the REST API documentation and try again."; an unknown
//!   issue 404 "Issue does not exist or you do not have permission to see it."; an unknown path
//!   404, a wrong method 405.
//! - Rich text is the Atlassian Document Format in v3: `description` and comment bodies must be
//!   `{"type":"doc","version":1,"content":[…]}`; a plain string is 400 "Operation value must be
//!   an Atlassian Document (see the Atlassian Document Format)".
//! - `POST /rest/api/3/issue`: 201 `{id, key, self}`; every refused field is reported at once in
//!   `errors` (`project`, `summary` "You must specify a summary of the issue.", `issuetype`,
//!   `description`, `labels` — labels may not contain spaces — and "Field 'x' cannot be set. It
//!   is not on the appropriate screen, or unknown." for anything else, `status` included: status
//!   only changes through transitions).
//! - `GET /rest/api/3/issue/{idOrKey}`: all fields by default, `?fields=` selects; `PUT` takes
//!   `fields` (`summary`, `description`, `labels`) and `update` operations (`set`/`add`/`remove`
//!   on labels, `set` on summary and description), 204.
//! - `POST /rest/api/3/search/jql`, the enhanced search: body `{jql, fields, maxResults,
//!   nextPageToken, …}`, answer `{issues, nextPageToken?, isLast}` with no `total`;
//!   `nextPageToken` is absent on the last page; each issue is only `{id}` unless `fields` asks
//!   for more (the enhanced search returns IDs by default); `maxResults` default 50, at most 100
//!   with fields (5000 for IDs/keys only). The fake answers the one JQL shape keyward sends,
//!   `project = KEY AND labels = "a" AND labels = "b"` (one or more label clauses, values quoted
//!   or not), newest first; a project that does not exist is 400 "The value 'X' does not exist
//!   for the field 'project'."; any other query is refused with Jira's error shape, 400
//!   `{"errorMessages":["Error in the JQL Query: …"],"errors":{}}`.
//! - Comments: `POST …/comment` 201 `{id, self, author, body, created, updated}`, an empty body
//!   "Comment body can not be empty!"; `GET …/comment` `{startAt, maxResults, total, comments}`.
//! - Workflow: To Do → In Progress → Done (categories `new`, `indeterminate`, `done`);
//!   transitions "Reopen" (11, to To Do), "Start progress" (21, to In Progress), "Done" (31, to
//!   Done), each available from every status but its own target. `GET …/transitions` lists the
//!   available ones; `POST` `{"transition":{"id"}}` 204, or 400 for one that is not available.
//!   Done sets `resolution` "Done", leaving Done clears it.
//! - Rate limits: 429 with `Retry-After` (seconds), `X-RateLimit-Reset` (ISO 8601,
//!   `yyyy-MM-ddTHH:mmZ`, "the request timestamp plus the Retry-After period"),
//!   `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `RateLimit-Reason: jira-quota-based` and
//!   `{"errorMessages":["Rate limit exceeded."],"errors":{}}`; `X-RateLimit-Limit` and
//!   `X-RateLimit-Remaining` are on every response.
//!
//! Where the documentation is silent, the fake chooses (and a client must not rely on more):
//! keys and IDs are accepted in paths, keys case-insensitively; issue IDs start at 10000; label
//! matching in JQL is exact; search is `POST` only (keyward never searches with `GET`); a page
//! token is only valid for the JQL it came from (else 400 "Invalid nextPageToken."); a malformed ADF object
//! gets the same message as a string; an unavailable transition is reported both in
//! `errorMessages` and as `errors.transition`; the throttle applies after authentication and
//! before any lookup, so a throttled call changes nothing; search sees writes at once (the real
//! one may lag).

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::kit::{self, Kit, Running};

pub use super::kit::Seen;

const API: &str = "/rest/api/3";
/// Atlassian does not publish its budgets; the fake reports a fixed one that never runs down.
const RATE_LIMIT: u64 = 350;
const MAX_BODY: usize = 16 * 1024 * 1024;
const SEARCH_DEFAULT: usize = 50;
const SEARCH_MAX_WITH_FIELDS: usize = 100;
const SEARCH_MAX_IDS: usize = 5000;
const ADF_MESSAGE: &str =
    "Operation value must be an Atlassian Document (see the Atlassian Document Format)";
const BAD_PAYLOAD: &str =
    "Invalid request payload. Refer to the REST API documentation and try again.";
const NO_ISSUE: &str = "Issue does not exist or you do not have permission to see it.";
const EMPTY_COMMENT: &str = "Comment body can not be empty!";
const SEARCH_KEYS: [&str; 9] = [
    "jql",
    "nextPageToken",
    "maxResults",
    "fields",
    "expand",
    "properties",
    "fieldsByKeys",
    "failFast",
    "reconcileIssues",
];
/// The issue fields the fake models, in the order they are rendered.
const FIELDS: [&str; 13] = [
    "summary",
    "description",
    "labels",
    "status",
    "issuetype",
    "project",
    "created",
    "updated",
    "resolution",
    "resolutiondate",
    "reporter",
    "creator",
    "comment",
];

struct StatusDef {
    name: &'static str,
    id: &'static str,
    category_id: u64,
    category_key: &'static str,
    category_name: &'static str,
    color: &'static str,
}

/// The default software workflow's statuses and categories, with Jira Cloud's usual IDs.
const STATUSES: [StatusDef; 3] = [
    StatusDef {
        name: "To Do",
        id: "10000",
        category_id: 2,
        category_key: "new",
        category_name: "To Do",
        color: "blue-gray",
    },
    StatusDef {
        name: "In Progress",
        id: "3",
        category_id: 4,
        category_key: "indeterminate",
        category_name: "In Progress",
        color: "yellow",
    },
    StatusDef {
        name: "Done",
        id: "10001",
        category_id: 3,
        category_key: "done",
        category_name: "Done",
        color: "green",
    },
];
const DONE: usize = 2;
/// (id, name, target status index)
const TRANSITIONS: [(&str, &str, usize); 3] = [
    ("11", "Reopen", 0),
    ("21", "Start progress", 1),
    ("31", "Done", DONE),
];
/// (id, name)
const ISSUE_TYPES: [(&str, &str); 2] = [("10001", "Task"), ("10002", "Bug")];

/// An issue as stored, for test assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJiraIssue {
    pub key: String,
    pub summary: String,
    /// Plain text flattened from the ADF description ("" when none): blocks joined by "\n".
    pub description_text: String,
    pub status: String,
    pub labels: Vec<String>,
    /// Comment bodies flattened like the description, oldest first.
    pub comments: Vec<String>,
}

#[derive(Debug, Clone)]
struct Comment {
    id: u64,
    body: Value,
    created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Issue {
    id: u64,
    key: String,
    project: usize,
    issue_type: usize,
    summary: String,
    description: Option<Value>,
    labels: Vec<String>,
    status: usize,
    comments: Vec<Comment>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    resolved: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Project {
    id: u64,
    key: String,
    next_number: u64,
}

pub struct Store {
    base_url: String,
    email: String,
    account_id: String,
    projects: Vec<Project>,
    /// In creation order.
    issues: Vec<Issue>,
    next_id: u64,
    /// Issued page tokens: token → (JQL, offset of the next page).
    page_tokens: HashMap<String, (String, usize)>,
}

impl Store {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// By key (case-insensitive) or numeric ID, as `{issueIdOrKey}` allows.
    fn issue_index(&self, id_or_key: &str) -> Option<usize> {
        self.issues
            .iter()
            .position(|i| i.key.eq_ignore_ascii_case(id_or_key) || i.id.to_string() == id_or_key)
    }

    fn project_index(&self, key_or_id: &str) -> Option<usize> {
        self.projects
            .iter()
            .position(|p| p.key.eq_ignore_ascii_case(key_or_id) || p.id.to_string() == key_or_id)
    }

    fn user_json(&self) -> Value {
        json!({
            "self": format!("{}{API}/user?accountId={}", self.base_url, self.account_id),
            "accountId": self.account_id,
            "emailAddress": self.email,
            "displayName": "keyward",
            "active": true,
            "accountType": "atlassian",
        })
    }

    fn push_issue(
        &mut self,
        project: usize,
        issue_type: usize,
        summary: String,
        description: Option<Value>,
        labels: Vec<String>,
    ) -> usize {
        let id = self.next_id();
        let project_ref = &mut self.projects[project];
        project_ref.next_number += 1;
        let key = format!("{}-{}", project_ref.key, project_ref.next_number);
        let now = Utc::now();
        self.issues.push(Issue {
            id,
            key,
            project,
            issue_type,
            summary,
            description,
            labels,
            status: 0,
            comments: Vec::new(),
            created: now,
            updated: now,
            resolved: None,
        });
        self.issues.len() - 1
    }
}

#[derive(Clone)]
pub struct FakeJira {
    kit: Kit<Store>,
    /// The `Authorization` header value that authenticates.
    expected_auth: Arc<str>,
}

pub type RunningJira = Running<FakeJira>;

impl RunningJira {
    /// Stands in for `https://<site>.atlassian.net` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }
}

impl FakeJira {
    /// Basic auth `email:api_token` must match; anything else 401.
    pub async fn start(email: &str, api_token: &str) -> std::io::Result<RunningJira> {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{email}:{api_token}"));
        let fake = FakeJira {
            kit: Kit::new(Store {
                base_url: String::new(),
                email: email.to_owned(),
                account_id: format!("712020:{}", uuid::Uuid::new_v4()),
                projects: Vec::new(),
                issues: Vec::new(),
                next_id: 9999,
                page_tokens: HashMap::new(),
            }),
            expected_auth: Arc::from(format!("Basic {credentials}")),
        };
        // One fallback handler routes by hand so that unknown paths and wrong methods still get
        // a `seen` entry and the rate-limit headers.
        let kit = fake.kit.clone();
        let running = kit::start(fake, &kit, Router::new().fallback(handle)).await?;
        kit.lock().state.base_url = running.server.base_url();
        Ok(running)
    }

    fn lock(&self) -> MutexGuard<'_, kit::Inner<Store>> {
        self.kit.lock()
    }

    /// A project with this key (e.g. "SEC") on the To Do → In Progress → Done workflow.
    pub fn add_project(&self, key: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        if store.project_index(key).is_some() {
            return;
        }
        let id = 10_000 + store.projects.len() as u64;
        store.projects.push(Project {
            id,
            key: key.to_ascii_uppercase(),
            next_number: 0,
        });
    }

    /// Creates a Task as someone else would (description one paragraph, "" for none); returns
    /// its key.
    pub fn add_issue(
        &self,
        project: &str,
        summary: &str,
        description: &str,
        labels: &[&str],
    ) -> String {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let project = store
            .project_index(project)
            .unwrap_or_else(|| panic!("fake jira: no project {project}"));
        let description = (!description.is_empty()).then(|| paragraph_doc(description));
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        let index = store.push_issue(project, 0, summary.to_owned(), description, labels);
        store.issues[index].key.clone()
    }

    /// Moves an issue to a status by hand ("To Do" | "In Progress" | "Done"), as someone
    /// dragging it on a board would.
    pub fn set_status(&self, key: &str, status: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store
            .issue_index(key)
            .unwrap_or_else(|| panic!("fake jira: no issue {key}"));
        let target = STATUSES
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(status))
            .unwrap_or_else(|| panic!("fake jira: no status {status}"));
        move_to(&mut store.issues[index], target);
    }

    /// Every issue, in creation order.
    pub fn issues(&self) -> Vec<StoredJiraIssue> {
        self.lock()
            .state
            .issues
            .iter()
            .map(|i| StoredJiraIssue {
                key: i.key.clone(),
                summary: i.summary.clone(),
                description_text: i.description.as_ref().map(flatten).unwrap_or_default(),
                status: STATUSES[i.status].name.to_owned(),
                labels: i.labels.clone(),
                comments: i.comments.iter().map(|c| flatten(&c.body)).collect(),
            })
            .collect()
    }

    /// The next `n` requests get 429 with `Retry-After: retry_after_secs` and change nothing.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        self.lock().faults.throttle_next(n, retry_after_secs);
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.kit.seen()
    }

    pub fn clear_seen(&self) {
        self.kit.clear_seen();
    }
}

fn move_to(issue: &mut Issue, target: usize) {
    let now = Utc::now();
    issue.resolved = (target == DONE).then_some(now);
    issue.status = target;
    issue.updated = now;
}

async fn handle(State(fake): State<FakeJira>, request: Request) -> Response {
    // An oversized body reads as empty, which then fails as an invalid payload.
    let (parts, body) = kit::read(request, MAX_BODY).await;
    let body = body.unwrap_or_default();
    let authorized = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == &*fake.expected_auth);
    let response = fake.kit.answer(&parts, |store, faults| {
        if authorized {
            return respond(store, faults, &parts.method, &parts.uri, &body);
        }
        let mut response = errors(
            StatusCode::UNAUTHORIZED,
            &["You are not authenticated. Authentication required to perform this operation."],
            Map::new(),
        );
        response.headers_mut().insert(
            "x-seraph-loginreason",
            HeaderValue::from_static("AUTHENTICATED_FAILED"),
        );
        response
    });
    with_rate_headers(response)
}

/// What a request addresses, with the issue it names already looked up.
enum Route {
    Create,
    Issue(usize),
    Comments(usize),
    Transitions(usize),
    Search,
}

/// Why no route matched: an unknown path, a method the path does not serve (with the ones it
/// does), or an issue that does not exist.
enum NoRoute {
    Path,
    Method(&'static str),
    Issue,
}

fn route(store: &Store, method: &Method, path: &str) -> Result<Route, NoRoute> {
    let rest = path.strip_prefix(API).ok_or(NoRoute::Path)?;
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let read_or = |write: Method| *method == Method::GET || *method == write;
    let (allowed, allow) = match segments.as_slice() {
        ["issue"] => (*method == Method::POST, "POST"),
        ["issue", _] => (read_or(Method::PUT), "GET, PUT"),
        ["issue", _, "comment" | "transitions"] => (read_or(Method::POST), "GET, POST"),
        // Keyward searches with POST only; the fake serves no GET search.
        ["search", "jql"] => (*method == Method::POST, "POST"),
        _ => return Err(NoRoute::Path),
    };
    if !allowed {
        return Err(NoRoute::Method(allow));
    }
    let issue = |key: &str| store.issue_index(key).ok_or(NoRoute::Issue);
    Ok(match segments.as_slice() {
        ["issue"] => Route::Create,
        ["issue", key] => Route::Issue(issue(key)?),
        ["issue", key, "comment"] => Route::Comments(issue(key)?),
        ["issue", key, _] => Route::Transitions(issue(key)?),
        _ => Route::Search,
    })
}

fn respond(
    store: &mut Store,
    faults: &mut kit::Faults,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Response {
    // Limits are per user, so they apply once the caller is known, before any lookup: a
    // throttled call changes nothing.
    if let Some(retry_after) = faults.take_throttle() {
        return rate_limited(retry_after);
    }
    let route = match route(store, method, uri.path()) {
        Ok(route) => route,
        Err(NoRoute::Path) => return unknown_path(uri.path()),
        Err(NoRoute::Method(allow)) => {
            let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
            response
                .headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
            return response;
        }
        Err(NoRoute::Issue) => return no_issue(),
    };
    let query: HashMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let read = *method == Method::GET;
    let body = if read {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            _ => return errors(StatusCode::BAD_REQUEST, &[BAD_PAYLOAD], Map::new()),
        }
    };
    match route {
        Route::Create => create_issue(store, &body),
        Route::Issue(i) if read => get_issue(store, i, query.get("fields").map(String::as_str)),
        Route::Issue(i) => edit_issue(store, i, &body),
        Route::Comments(i) if read => list_comments(store, i, &query),
        Route::Comments(i) => add_comment(store, i, &body),
        Route::Transitions(i) if read => list_transitions(store, i, &query),
        Route::Transitions(i) => transition(store, i, &body),
        Route::Search => search(store, &body),
    }
}

// ---------------------------------------------------------------------------------------------
// Issues

/// The validated, editable fields of a create or edit.
#[derive(Default)]
struct FieldEdits {
    summary: Option<String>,
    /// `Some(None)` clears the description.
    description: Option<Option<Value>>,
    labels: Option<Vec<String>>,
}

fn cannot_set(name: &str) -> String {
    format!("Field '{name}' cannot be set. It is not on the appropriate screen, or unknown.")
}

fn check_summary(value: &Value, errs: &mut Map<String, Value>) -> Option<String> {
    match value {
        Value::String(s) if s.trim().is_empty() => {
            errs.insert(
                "summary".into(),
                "You must specify a summary of the issue.".into(),
            );
            None
        }
        Value::String(s) if s.chars().count() > 255 => {
            errs.insert(
                "summary".into(),
                "Summary must be less than 255 characters.".into(),
            );
            None
        }
        Value::String(s) => Some(s.clone()),
        Value::Null => {
            errs.insert(
                "summary".into(),
                "You must specify a summary of the issue.".into(),
            );
            None
        }
        _ => {
            errs.insert("summary".into(), "Operation value must be a string".into());
            None
        }
    }
}

fn check_description(value: &Value, errs: &mut Map<String, Value>) -> Option<Option<Value>> {
    match value {
        Value::Null => Some(None),
        doc if is_adf_doc(doc) => Some(Some(doc.clone())),
        _ => {
            errs.insert("description".into(), ADF_MESSAGE.into());
            None
        }
    }
}

/// Labels are strings without whitespace (Jira splits labels on spaces in its UI and refuses
/// them over the API).
fn check_labels(value: &Value, errs: &mut Map<String, Value>) -> Option<Vec<String>> {
    let Some(elements) = value.as_array() else {
        errs.insert(
            "labels".into(),
            "Operation value must be an array of strings".into(),
        );
        return None;
    };
    let mut labels: Vec<String> = Vec::new();
    for element in elements {
        let Some(label) = element.as_str() else {
            errs.insert("labels".into(), "Operation value must be a string".into());
            return None;
        };
        if label.is_empty() || label.chars().any(char::is_whitespace) {
            errs.insert(
                "labels".into(),
                format!("The label '{label}' contains spaces which is invalid.").into(),
            );
            return None;
        }
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
    }
    Some(labels)
}

/// Reads the editable `fields`; anything else lands in `errs` as "cannot be set".
fn check_fields(
    fields: &Map<String, Value>,
    skip: &[&str],
    errs: &mut Map<String, Value>,
) -> FieldEdits {
    let mut edits = FieldEdits::default();
    for (name, value) in fields {
        match name.as_str() {
            "summary" => edits.summary = check_summary(value, errs),
            "description" => edits.description = check_description(value, errs),
            "labels" => edits.labels = check_labels(value, errs),
            other if skip.contains(&other) => {}
            other => {
                errs.insert(other.to_owned(), cannot_set(other).into());
            }
        }
    }
    edits
}

fn create_issue(store: &mut Store, body: &Map<String, Value>) -> Response {
    let empty = Map::new();
    let fields = body
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut errs = Map::new();
    let project = match fields.get("project") {
        Some(Value::Object(p)) => {
            let wanted = p
                .get("key")
                .or_else(|| p.get("id"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            match wanted.and_then(|w| store.project_index(&w)) {
                Some(index) => Some(index),
                None => {
                    errs.insert("project".into(), "valid project is required".into());
                    None
                }
            }
        }
        _ => {
            errs.insert("project".into(), "Specify a valid project ID or key".into());
            None
        }
    };
    let issue_type = match fields.get("issuetype") {
        Some(Value::Object(t)) => {
            let by_name = t.get("name").and_then(Value::as_str);
            let by_id = t
                .get("id")
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            let found = ISSUE_TYPES.iter().position(|(id, name)| {
                by_name.is_some_and(|n| n.eq_ignore_ascii_case(name))
                    || by_id.as_deref() == Some(*id)
            });
            if found.is_none() {
                errs.insert(
                    "issuetype".into(),
                    "The issue type selected is invalid.".into(),
                );
            }
            found
        }
        _ => {
            errs.insert("issuetype".into(), "Specify an issue type".into());
            None
        }
    };
    if !fields.contains_key("summary") {
        errs.insert(
            "summary".into(),
            "You must specify a summary of the issue.".into(),
        );
    }
    let edits = check_fields(fields, &["project", "issuetype"], &mut errs);
    let (Some(project), Some(issue_type), Some(summary), true) =
        (project, issue_type, edits.summary, errs.is_empty())
    else {
        return errors(StatusCode::BAD_REQUEST, &[], errs);
    };
    let index = store.push_issue(
        project,
        issue_type,
        summary,
        edits.description.flatten(),
        edits.labels.unwrap_or_default(),
    );
    let issue = &store.issues[index];
    let body = json!({
        "id": issue.id.to_string(),
        "key": issue.key,
        "self": issue_self(store, issue),
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn get_issue(store: &Store, index: usize, fields: Option<&str>) -> Response {
    let selected = select_fields(fields.map(|f| vec![f.to_owned()]), true);
    let body = issue_json(store, &store.issues[index], &selected);
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `PUT /issue/{key}`: `fields` set values; `update` applies operations (`set`, and `add` /
/// `remove` for labels). Nothing is written unless everything is valid.
fn edit_issue(store: &mut Store, index: usize, body: &Map<String, Value>) -> Response {
    let mut errs = Map::new();
    let empty = Map::new();
    let fields = body
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut edits = check_fields(fields, &[], &mut errs);
    let mut labels = edits
        .labels
        .clone()
        .unwrap_or_else(|| store.issues[index].labels.clone());
    let mut labels_touched = edits.labels.is_some();
    let update = body
        .get("update")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, operations) in update {
        let Some(operations) = operations.as_array() else {
            errs.insert(name.clone(), BAD_PAYLOAD.into());
            continue;
        };
        for operation in operations {
            let Some((verb, value)) = operation
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.iter().next())
            else {
                errs.insert(name.clone(), BAD_PAYLOAD.into());
                continue;
            };
            match (name.as_str(), verb.as_str()) {
                ("summary", "set") => edits.summary = check_summary(value, &mut errs),
                ("description", "set") => edits.description = check_description(value, &mut errs),
                ("labels", "set") => {
                    if let Some(set) = check_labels(value, &mut errs) {
                        labels = set;
                        labels_touched = true;
                    }
                }
                ("labels", "add" | "remove") => {
                    let Some(mut one) = check_labels(&json!([value]), &mut errs) else {
                        continue;
                    };
                    let label = one.remove(0);
                    if verb == "add" {
                        if !labels.contains(&label) {
                            labels.push(label);
                        }
                    } else {
                        labels.retain(|l| *l != label);
                    }
                    labels_touched = true;
                }
                ("summary" | "description" | "labels", _) => {
                    errs.insert(
                        name.clone(),
                        format!("Operation '{verb}' is not supported for field '{name}'.").into(),
                    );
                }
                (other, _) => {
                    errs.insert(other.to_owned(), cannot_set(other).into());
                }
            }
        }
    }
    if !errs.is_empty() {
        return errors(StatusCode::BAD_REQUEST, &[], errs);
    }
    let issue = &mut store.issues[index];
    if let Some(summary) = edits.summary {
        issue.summary = summary;
    }
    if let Some(description) = edits.description {
        issue.description = description;
    }
    if labels_touched {
        issue.labels = labels;
    }
    issue.updated = Utc::now();
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------------------------------------
// Comments

fn add_comment(store: &mut Store, index: usize, body: &Map<String, Value>) -> Response {
    let message = match body.get("body") {
        None | Some(Value::Null) => Some(EMPTY_COMMENT),
        Some(doc) if is_adf_doc(doc) && flatten(doc).trim().is_empty() => Some(EMPTY_COMMENT),
        Some(doc) if is_adf_doc(doc) => None,
        Some(_) => Some(ADF_MESSAGE),
    };
    if let Some(message) = message {
        let mut errs = Map::new();
        errs.insert("comment".into(), message.into());
        return errors(StatusCode::BAD_REQUEST, &[], errs);
    }
    let id = store.next_id();
    let now = Utc::now();
    let issue = &mut store.issues[index];
    issue.comments.push(Comment {
        id,
        body: body["body"].clone(),
        created: now,
    });
    issue.updated = now;
    let issue = &store.issues[index];
    let json = comment_json(store, issue, issue.comments.last().expect("just pushed"));
    (StatusCode::CREATED, axum::Json(json)).into_response()
}

fn list_comments(store: &Store, index: usize, query: &HashMap<String, String>) -> Response {
    let issue = &store.issues[index];
    let start = query
        .get("startAt")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let max = query
        .get("maxResults")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(5000);
    let comments: Vec<Value> = issue
        .comments
        .iter()
        .skip(start)
        .take(max)
        .map(|c| comment_json(store, issue, c))
        .collect();
    let body = json!({
        "startAt": start,
        "maxResults": max,
        "total": issue.comments.len(),
        "comments": comments,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn comment_json(store: &Store, issue: &Issue, comment: &Comment) -> Value {
    json!({
        "self": format!("{}/comment/{}", issue_self(store, issue), comment.id),
        "id": comment.id.to_string(),
        "author": store.user_json(),
        "updateAuthor": store.user_json(),
        "body": comment.body,
        "created": jira_time(comment.created),
        "updated": jira_time(comment.created),
        "jsdPublic": true,
    })
}

// ---------------------------------------------------------------------------------------------
// Transitions

fn available_transitions(
    status: usize,
) -> impl Iterator<Item = &'static (&'static str, &'static str, usize)> {
    TRANSITIONS.iter().filter(move |(_, _, to)| *to != status)
}

fn list_transitions(store: &Store, index: usize, query: &HashMap<String, String>) -> Response {
    let issue = &store.issues[index];
    let only = query.get("transitionId");
    let transitions: Vec<Value> = available_transitions(issue.status)
        .filter(|t| only.is_none_or(|o| o == t.0))
        .map(|(id, name, to)| {
            json!({
                "id": id,
                "name": name,
                "to": status_json(store, *to),
                "hasScreen": false,
                "isGlobal": true,
                "isInitial": false,
                "isAvailable": true,
                "isConditional": false,
                "isLooped": false,
            })
        })
        .collect();
    let body = json!({"expand": "transitions", "transitions": transitions});
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn transition(store: &mut Store, index: usize, body: &Map<String, Value>) -> Response {
    let id = body
        .get("transition")
        .and_then(Value::as_object)
        .and_then(|t| t.get("id"))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let issue = &mut store.issues[index];
    let message = match id {
        None => "Missing 'transition' identifier".to_owned(),
        Some(id) => match available_transitions(issue.status).find(|(t, _, _)| *t == id) {
            Some((_, _, to)) => {
                move_to(issue, *to);
                return StatusCode::NO_CONTENT.into_response();
            }
            None => format!("Transition id '{id}' is not valid for this issue."),
        },
    };
    let mut errs = Map::new();
    errs.insert("transition".into(), message.clone().into());
    errors(StatusCode::BAD_REQUEST, &[&message], errs)
}

// ---------------------------------------------------------------------------------------------
// Search

/// The one JQL shape keyward sends (`drift_detector::tickets`, finding a finding's ticket):
/// `project = KEY AND labels = "a" AND labels = "b"`, each value quoted or not.
struct LabelQuery {
    project: String,
    labels: Vec<String>,
}

impl LabelQuery {
    fn parse(jql: &str) -> Option<Self> {
        let mut clauses = jql.split(" AND ").map(|clause| {
            let (field, value) = clause.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let plain = !value.is_empty() && !value.contains([' ', '"', '(', ')', ',']);
            plain.then(|| (field.trim(), value.to_owned()))
        });
        let (field, project) = clauses.next()??;
        if field != "project" {
            return None;
        }
        let labels = clauses
            .map(|clause| {
                clause
                    .filter(|(field, _)| *field == "labels")
                    .map(|(_, v)| v)
            })
            .collect::<Option<Vec<String>>>()?;
        (!labels.is_empty()).then_some(Self { project, labels })
    }

    fn matches(&self, project: usize, issue: &Issue) -> bool {
        issue.project == project && self.labels.iter().all(|l| issue.labels.contains(l))
    }
}

/// The validated body of `POST /search/jql`.
struct SearchRequest {
    jql: String,
    fields: Option<Vec<String>>,
    max_results: usize,
    token: Option<String>,
}

impl SearchRequest {
    /// `None` is Jira's "Invalid request payload": a property the endpoint does not know, or one
    /// of the wrong type.
    fn parse(body: &Map<String, Value>) -> Option<Self> {
        if body.keys().any(|k| !SEARCH_KEYS.contains(&k.as_str())) {
            return None;
        }
        let text = |name: &str| match body.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let fields = match body.get("fields") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()?,
            ),
            Some(_) => return None,
        };
        let max_results = match body.get("maxResults") {
            None | Some(Value::Null) => SEARCH_DEFAULT,
            Some(v) => v.as_u64()? as usize,
        };
        Some(Self {
            jql: text("jql")?.unwrap_or_default(),
            // An empty list asks for nothing more than the default.
            fields: fields.filter(|f| !f.is_empty()),
            max_results,
            token: text("nextPageToken")?,
        })
    }

    /// At most 100 issues a page with fields, 5000 for IDs and keys only.
    fn page_size(&self) -> usize {
        let ids_only = self.fields.as_ref().is_none_or(|f| {
            f.iter()
                .flat_map(|f| f.split(','))
                .all(|f| matches!(f.trim(), "id" | "key" | ""))
        });
        let cap = if ids_only {
            SEARCH_MAX_IDS
        } else {
            SEARCH_MAX_WITH_FIELDS
        };
        self.max_results.clamp(1, cap)
    }
}

fn search(store: &mut Store, body: &Map<String, Value>) -> Response {
    let Some(request) = SearchRequest::parse(body) else {
        return errors(StatusCode::BAD_REQUEST, &[BAD_PAYLOAD], Map::new());
    };
    let Some(query) = LabelQuery::parse(&request.jql) else {
        let message = format!(
            "Error in the JQL Query: this fake answers only the query keyward sends (project = KEY AND labels = \"…\" AND …), not: {}",
            request.jql
        );
        return errors(StatusCode::BAD_REQUEST, &[&message], Map::new());
    };
    let Some(project) = store.project_index(&query.project) else {
        let message = format!(
            "The value '{}' does not exist for the field 'project'.",
            query.project
        );
        return errors(StatusCode::BAD_REQUEST, &[&message], Map::new());
    };
    let offset = match &request.token {
        None => 0,
        Some(token) => match store.page_tokens.get(token) {
            Some((for_jql, offset)) if *for_jql == request.jql => *offset,
            _ => {
                let message = ["Invalid nextPageToken."];
                return errors(StatusCode::BAD_REQUEST, &message, Map::new());
            }
        },
    };
    // Newest first.
    let matching: Vec<&Issue> = store
        .issues
        .iter()
        .rev()
        .filter(|i| query.matches(project, i))
        .collect();
    let selected = select_fields(request.fields.clone(), false);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(request.page_size())
        .map(|i| match request.fields {
            None => json!({"id": i.id.to_string()}),
            Some(_) => issue_json(store, i, &selected),
        })
        .collect();
    let next = offset + page.len();
    let is_last = next >= matching.len();
    let mut answer = json!({"issues": page, "isLast": is_last});
    if !is_last {
        let token = uuid::Uuid::new_v4().simple().to_string();
        store.page_tokens.insert(token.clone(), (request.jql, next));
        answer["nextPageToken"] = token.into();
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Which fields to render: the `fields` parameter's names, `*all`, `*navigable` and `-name`
/// exclusions; `default_all` when none is given (GET issue) or nothing (search: IDs only).
fn select_fields(fields: Option<Vec<String>>, default_all: bool) -> Vec<&'static str> {
    let names: Vec<String> = fields
        .unwrap_or_default()
        .iter()
        .flat_map(|f| f.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let includes_any = names.iter().any(|n| !n.starts_with('-'));
    // Only exclusions mean "the default set minus these", and a search's default set (when it
    // asks for fields at all) is the navigable fields.
    let all = names.iter().any(|n| n == "*all" || n == "*navigable")
        || (!includes_any && (default_all || !names.is_empty()));
    let mut selected: Vec<&'static str> = if all {
        FIELDS.to_vec()
    } else {
        FIELDS
            .iter()
            .copied()
            .filter(|f| names.iter().any(|n| n.eq_ignore_ascii_case(f)))
            .collect()
    };
    selected.retain(|f| {
        !names.iter().any(|n| {
            n.strip_prefix('-')
                .is_some_and(|x| x.eq_ignore_ascii_case(f))
        })
    });
    selected
}

fn issue_self(store: &Store, issue: &Issue) -> String {
    format!("{}{API}/issue/{}", store.base_url, issue.id)
}

fn status_json(store: &Store, index: usize) -> Value {
    let status = &STATUSES[index];
    json!({
        "self": format!("{}{API}/status/{}", store.base_url, status.id),
        "description": "",
        "iconUrl": format!("{}/", store.base_url),
        "name": status.name,
        "untranslatedName": status.name,
        "id": status.id,
        "statusCategory": {
            "self": format!("{}{API}/statuscategory/{}", store.base_url, status.category_id),
            "id": status.category_id,
            "key": status.category_key,
            "colorName": status.color,
            "name": status.category_name,
        },
    })
}

fn issue_json(store: &Store, issue: &Issue, fields: &[&str]) -> Value {
    let project = &store.projects[issue.project];
    let mut rendered = Map::new();
    for field in fields {
        let value = match *field {
            "summary" => json!(issue.summary),
            "description" => issue.description.clone().unwrap_or(Value::Null),
            "labels" => json!(issue.labels),
            "status" => status_json(store, issue.status),
            "issuetype" => {
                let (id, name) = ISSUE_TYPES[issue.issue_type];
                json!({
                    "self": format!("{}{API}/issuetype/{id}", store.base_url),
                    "id": id,
                    "name": name,
                    "description": "",
                    "subtask": false,
                    "hierarchyLevel": 0,
                })
            }
            "project" => json!({
                "self": format!("{}{API}/project/{}", store.base_url, project.id),
                "id": project.id.to_string(),
                "key": project.key,
                "name": project.key,
                "projectTypeKey": "software",
                "simplified": false,
            }),
            "created" => json!(jira_time(issue.created)),
            "updated" => json!(jira_time(issue.updated)),
            "resolution" => match issue.resolved {
                Some(_) => json!({
                    "self": format!("{}{API}/resolution/10000", store.base_url),
                    "id": "10000",
                    "description": "Work has been completed on this issue.",
                    "name": "Done",
                }),
                None => Value::Null,
            },
            "resolutiondate" => json!(issue.resolved.map(jira_time)),
            "reporter" | "creator" => store.user_json(),
            "comment" => json!({
                "comments": issue
                    .comments
                    .iter()
                    .map(|c| comment_json(store, issue, c))
                    .collect::<Vec<_>>(),
                "self": format!("{}/comment", issue_self(store, issue)),
                "maxResults": issue.comments.len(),
                "total": issue.comments.len(),
                "startAt": 0,
            }),
            _ => continue,
        };
        rendered.insert((*field).to_owned(), value);
    }
    json!({
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": issue.id.to_string(),
        "self": issue_self(store, issue),
        "key": issue.key,
        "fields": rendered,
    })
}

/// Jira's timestamps: milliseconds and a `+0000` offset.
fn jira_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

// ---------------------------------------------------------------------------------------------
// Atlassian Document Format

/// A top-level ADF document: `{"type":"doc","version":1,"content":[nodes]}`, where every node
/// has a `type`, `content` (if any) is an array of nodes and a text node has non-empty `text`.
fn is_adf_doc(value: &Value) -> bool {
    let Some(doc) = value.as_object() else {
        return false;
    };
    doc.get("type").and_then(Value::as_str) == Some("doc")
        && doc.get("version").and_then(Value::as_u64) == Some(1)
        && doc
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|nodes| nodes.iter().all(is_adf_node))
}

fn is_adf_node(value: &Value) -> bool {
    let Some(node) = value.as_object() else {
        return false;
    };
    let Some(kind) = node.get("type").and_then(Value::as_str) else {
        return false;
    };
    if kind == "doc" {
        return false;
    }
    if kind == "text"
        && node
            .get("text")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return false;
    }
    match node.get("content") {
        None => true,
        Some(Value::Array(children)) => children.iter().all(is_adf_node),
        Some(_) => false,
    }
}

const INLINE_NODES: [&str; 7] = [
    "text",
    "hardBreak",
    "mention",
    "emoji",
    "inlineCard",
    "date",
    "status",
];

/// Plain text of an ADF node: inline content concatenated, blocks separated by "\n".
fn flatten(node: &Value) -> String {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or("");
    let attr = |name: &str| {
        node.get("attrs")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match kind {
        "text" => {
            return node
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
        }
        "hardBreak" => return "\n".into(),
        "mention" | "status" => return attr("text"),
        "emoji" => return attr("shortName"),
        "inlineCard" => return attr("url"),
        _ => {}
    }
    let children: Vec<&Value> = node
        .get("content")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let inline = children.iter().all(|c| {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        INLINE_NODES.contains(&kind)
    });
    let parts: Vec<String> = children.into_iter().map(flatten).collect();
    parts.join(if inline { "" } else { "\n" })
}

/// One paragraph of plain text as an ADF document.
fn paragraph_doc(text: &str) -> Value {
    json!({
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    })
}

// ---------------------------------------------------------------------------------------------
// Errors and headers

fn errors(status: StatusCode, messages: &[&str], fields: Map<String, Value>) -> Response {
    let body = json!({"errorMessages": messages, "errors": fields});
    (status, axum::Json(body)).into_response()
}

fn no_issue() -> Response {
    errors(StatusCode::NOT_FOUND, &[NO_ISSUE], Map::new())
}

/// Jira's REST layer (Jersey) answers an unknown resource path this way.
fn unknown_path(path: &str) -> Response {
    let body = json!({"message": format!("null for uri: {path}"), "status-code": 404});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn rate_limited(retry_after: u64) -> Response {
    let reset = Utc::now() + chrono::Duration::seconds(retry_after as i64);
    let mut response = errors(
        StatusCode::TOO_MANY_REQUESTS,
        &["Rate limit exceeded."],
        Map::new(),
    );
    response.headers_mut().insert(
        "ratelimit-reason",
        HeaderValue::from_static("jira-quota-based"),
    );
    let response = kit::with_retry_after(response, retry_after);
    let reset = reset.format("%Y-%m-%dT%H:%MZ").to_string();
    kit::exhausted(
        response,
        HeaderValue::from_str(&reset).expect("a timestamp is a header value"),
    )
}

fn with_rate_headers(response: Response) -> Response {
    let remaining = HeaderValue::from(RATE_LIMIT - 1);
    kit::with_rate_headers(
        response,
        RATE_LIMIT,
        &[("x-ratelimit-remaining", remaining)],
    )
}
