//! A fake GitHub REST API (version 2022-11-28): issues, issue comments, pull requests and
//! pull-request reviews, from GitHub's REST documentation (docs.github.com/rest):
//!
//! - Auth: `Authorization: Bearer <token>` or `token <token>` (scheme case-insensitive) with the
//!   one configured token; anything else 401
//!   `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`.
//! - Errors are `{message, documentation_url, status}` (`status` a string, as GitHub now sends
//!   it): an unknown repository, issue, pull request or path 404 "Not Found" (GitHub also
//!   answers 404, not 405, to a method a path does not serve); a body that is not a JSON object
//!   400 "Problems parsing JSON"; a refused field 422 "Validation Failed" with
//!   `errors:[{resource, code, field}]`, `code` `missing_field` or `invalid`.
//! - "GitHub's REST API considers every pull request an issue": numbers are shared per
//!   repository, `GET …/issues` lists both and marks pull requests with a `pull_request` key
//!   (a client must skip those), `…/issues/{n}` and its comments work on pull-request numbers,
//!   and `…/pulls/{n}` is 404 for a plain issue.
//! - `GET /repos/{o}/{r}/issues`: `state` `open` (default) | `closed` | `all`, `labels` a
//!   comma-separated list that must all be present (label names are case-insensitive), newest
//!   first; `per_page` default 30, max 100; `page` from 1. When there is more than one page a
//!   `Link` header carries rel="prev"/"next"/"last"/"first" with absolute URLs in GitHub's
//!   canonical `/repositories/{id}/…` form (served too), so a client must follow them as given
//!   rather than rebuild them.
//! - `POST …/issues`: 201 and `Location`; `title` required; `labels` as names or `{name}`
//!   objects; a label that does not exist is created (GitHub does so for users with push access)
//!   with the default color `ededed`, an existing one is matched case-insensitively and keeps its
//!   spelling.
//! - `PATCH …/issues/{n}`: `state_reason` is "Ignored unless `state` is changed"; closing
//!   without one records `completed`, reopening records `reopened`; `labels` replaces the set;
//!   `body: null` clears the body.
//! - Comments: `POST …/issues/{n}/comments` 201 `{id, body, user, created_at, html_url, …}`;
//!   `GET` oldest first, paginated like the issue list; `GET`/`PATCH …/issues/comments/{id}`
//!   ("Update an issue comment": `body` required, 200 with the comment, `updated_at` moves;
//!   an id of another repository's comment is 404).
//! - `POST …/pulls` ("Create a pull request"): `title`, `head`, `base` required (422
//!   `missing_field`), `head` as `branch` or `owner:branch`; 201 with the pull request and
//!   `Location`. A second open pull request for the same head and base is 422 with
//!   `{"resource":"PullRequest","code":"custom","message":"A pull request already exists for
//!   owner:branch."}`, and a head equal to the base 422 "No commits between …".
//! - `PATCH …/pulls/{n}` ("Update a pull request"): `title`, `body`, `state` (`open` |
//!   `closed`, else 422 `invalid`), `base`; absent fields are left as they are; 404 for a plain
//!   issue.
//! - Text limits: an issue, pull-request or comment `body` over 65,536 characters is 422
//!   `{"resource", "code":"custom", "field":"body", "message":"body is too long (maximum is
//!   65536 characters)"}`.
//! - `GET …/pulls/{n}`: "Before merging a pull request, the `merge_commit_sha` attribute holds
//!   the SHA of the test merge commit", so an open pull request already has one (with
//!   `mergeable: true`) and only `merged` / `merged_at` say it was merged; after merging it is the
//!   merge commit, `merged_by` the merger.
//! - `GET …/pulls/{n}/reviews`: chronological, paginated; `commit_id` is the head SHA the review
//!   was submitted on.
//! - `GET …/commits/{sha}/pulls` ("List pull requests associated with a commit"): the merged
//!   pull request whose merge commit it is; for a commit not on the default branch, the open
//!   pull requests whose head it is; an empty list otherwise (a SHA is not validated).
//! - Rate limits: every response carries `x-ratelimit-limit: 5000`, `x-ratelimit-remaining`,
//!   `x-ratelimit-used`, `x-ratelimit-reset` (epoch seconds, an hourly window that starts with
//!   the first request), `x-ratelimit-resource: core` and `x-github-api-version-selected`. A
//!   primary limit is 403 with `x-ratelimit-remaining: 0` and the reset time ("wait until the
//!   time specified by x-ratelimit-reset"); a secondary limit is 429 with `retry-after` and the
//!   primary counters untouched, so a client must honour `retry-after` before them.
//!
//! Where the documentation is silent, the fake chooses (and a client must not rely on more):
//! `title` may be a number (GitHub's schema allows it) but not blank; `state_reason` accepts
//! `completed`, `not_planned`, `duplicate`, `reopened` or null, and `reopened` on a close is 422;
//! pull requests never get a `state_reason`; other list parameters (`sort`, `since`, …) are
//! ignored; an unparseable `per_page` / `page` falls back to the default; the throttle applies
//! after authentication and before any lookup, so a throttled call changes nothing; a 401
//! carries the core counters without spending them.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::kit::{self, Kit, Running};

pub use super::kit::Seen;

/// The user the token belongs to: author of everything written over HTTP, user ID 1.
pub const TOKEN_USER: &str = "keyward-bot";
const RATE_LIMIT: u64 = 5000;
const DOCS: &str = "https://docs.github.com/rest";
const RATE_DOCS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
const CREATE_DOCS: &str = "https://docs.github.com/rest/issues/issues#create-an-issue";
const UPDATE_DOCS: &str = "https://docs.github.com/rest/issues/issues#update-an-issue";
const COMMENT_DOCS: &str = "https://docs.github.com/rest/issues/comments#create-an-issue-comment";
const COMMENT_UPDATE_DOCS: &str =
    "https://docs.github.com/rest/issues/comments#update-an-issue-comment";
const PULL_CREATE_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const PULL_UPDATE_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request";
/// GitHub's limit on an issue, pull-request or comment body, in characters.
const MAX_BODY_CHARS: usize = 65_536;
const API_VERSION: &str = "2022-11-28";
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
const MAX_BODY: usize = 25 * 1024 * 1024;
const DEFAULT_LABEL_COLOR: &str = "ededed";
const REVIEW_STATES: [&str; 4] = ["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"];

/// A pull request opened outside keyward.
#[derive(Debug, Clone)]
pub struct PullSeed {
    pub title: String,
    pub body: String,
    pub author: String,
    pub head_sha: String,
    pub base_ref: String,
}

/// An issue as stored (pull requests excluded), for test assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIssue {
    pub number: u64,
    pub title: String,
    /// "" when GitHub would show `null`.
    pub body: String,
    /// "open" | "closed"
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    /// How many comments it has.
    pub comments: usize,
}

#[derive(Debug, Clone)]
struct Label {
    id: u64,
    name: String,
    color: String,
}

#[derive(Debug, Clone)]
struct Comment {
    id: u64,
    body: String,
    login: String,
    at: DateTime<Utc>,
    /// When it was last edited, if ever.
    updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Review {
    id: u64,
    login: String,
    state: String,
    at: DateTime<Utc>,
    commit_id: String,
}

#[derive(Debug, Clone)]
struct Merge {
    sha: String,
    at: DateTime<Utc>,
    by: String,
}

#[derive(Debug, Clone)]
struct Pull {
    head_sha: String,
    head_ref: String,
    base_ref: String,
    base_sha: String,
    /// What `merge_commit_sha` shows while open: the test merge commit.
    test_merge_sha: String,
    merged: Option<Merge>,
    reviews: Vec<Review>,
}

/// An issue or a pull request: they share the number sequence.
#[derive(Debug, Clone)]
struct Item {
    id: u64,
    number: u64,
    title: String,
    body: Option<String>,
    state: String,
    state_reason: Option<String>,
    labels: Vec<String>,
    author: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    comments: Vec<Comment>,
    pull: Option<Pull>,
}

#[derive(Debug)]
struct Repo {
    id: u64,
    owner: String,
    name: String,
    labels: Vec<Label>,
    /// `items[n - 1]` is number `n`.
    items: Vec<Item>,
    /// Collaborators' permissions (`admin`, `maintain`, `write`, `triage`, `read`).
    permissions: std::collections::BTreeMap<String, String>,
}

impl Repo {
    fn item(&self, number: u64) -> Option<&Item> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.items.get(index)
    }

    fn item_mut(&mut self, number: u64) -> Option<&mut Item> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.items.get_mut(index)
    }

    fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

pub struct Store {
    api_url: String,
    repos: Vec<Repo>,
    /// Logins in order of first appearance: user ID = position + 1 (the token user is 1).
    users: Vec<String>,
    next_id: u64,
    /// Whether the throttle answers with the secondary limit (429) rather than the primary.
    secondary: bool,
    per_page_max: usize,
    used: u64,
    window_reset: i64,
}

impl Store {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn register(&mut self, login: &str) {
        if !self.users.iter().any(|u| u == login) {
            self.users.push(login.to_owned());
        }
    }

    fn user_json(&self, login: &str) -> Value {
        let id = self
            .users
            .iter()
            .position(|u| u == login)
            .map_or(0, |p| p as u64 + 1);
        json!({
            "login": login,
            "id": id,
            "node_id": node_id("U", id),
            "type": "User",
            "site_admin": false,
            "url": format!("{}/users/{login}", self.api_url),
            "html_url": format!("https://github.com/{login}"),
        })
    }

    /// GitHub resolves owner and repository names case-insensitively.
    fn repo_index(&self, owner: &str, name: &str) -> Option<usize> {
        self.repos
            .iter()
            .position(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
    }

    fn expect_repo(&self, owner: &str, name: &str) -> usize {
        self.repo_index(owner, name)
            .unwrap_or_else(|| panic!("fake github: no repository {owner}/{name}"))
    }

    /// The canonical names of `wanted`, creating the labels the repository lacks.
    fn ensure_labels(&mut self, repo: usize, wanted: &[String]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in wanted {
            let existing = self.repos[repo]
                .labels
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(name))
                .map(|l| l.name.clone());
            let name = match existing {
                Some(name) => name,
                None => {
                    let id = self.next_id();
                    self.repos[repo].labels.push(Label {
                        id,
                        name: name.clone(),
                        color: DEFAULT_LABEL_COLOR.to_owned(),
                    });
                    name.clone()
                }
            };
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        names
    }
}

#[derive(Clone)]
pub struct FakeGithub {
    kit: Kit<Store>,
    token: Arc<str>,
}

pub type RunningGithub = Running<FakeGithub>;

impl RunningGithub {
    /// Stands in for `https://api.github.com` (no trailing slash).
    pub fn api_url(&self) -> String {
        self.server.base_url()
    }
}

impl FakeGithub {
    /// Accepts `Authorization: Bearer <token>` or `token <token>` with exactly this token;
    /// anything else 401 "Bad credentials".
    pub async fn start(token: &str) -> std::io::Result<RunningGithub> {
        let fake = FakeGithub {
            kit: Kit::new(Store {
                api_url: String::new(),
                repos: Vec::new(),
                users: vec![TOKEN_USER.to_owned()],
                next_id: 1_000_000,
                secondary: false,
                per_page_max: MAX_PER_PAGE,
                used: 0,
                window_reset: 0,
            }),
            token: Arc::from(token),
        };
        // One fallback handler routes by hand so that unknown paths and methods still get
        // GitHub's error shape, the rate-limit headers and a `seen` entry.
        let kit = fake.kit.clone();
        let running = kit::start(fake, &kit, Router::new().fallback(handle)).await?;
        kit.lock().state.api_url = running.server.base_url();
        Ok(running)
    }

    fn lock(&self) -> MutexGuard<'_, kit::Inner<Store>> {
        self.kit.lock()
    }

    pub fn add_repo(&self, owner: &str, repo: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        if store.repo_index(owner, repo).is_some() {
            return;
        }
        let id = store.next_id();
        store.register(owner);
        store.repos.push(Repo {
            id,
            owner: owner.to_owned(),
            name: repo.to_owned(),
            labels: Vec::new(),
            items: Vec::new(),
            permissions: Default::default(),
        });
    }

    /// Makes `login` a collaborator of the repository with `permission` (`admin`, `maintain`,
    /// `write`, `triage` or `read`).
    pub fn grant(&self, owner: &str, repo: &str, login: &str, permission: &str) {
        let mut guard = self.lock();
        let store = &mut guard.state;
        store.register(login);
        if let Some(index) = store.repo_index(owner, repo) {
            store.repos[index]
                .permissions
                .insert(login.to_owned(), permission.to_owned());
        }
    }

    /// Opens an issue as someone else would (author `author`); returns its number.
    pub fn open_issue(
        &self,
        owner: &str,
        repo: &str,
        author: &str,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> u64 {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.expect_repo(owner, repo);
        let wanted: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let labels = store.ensure_labels(index, &wanted);
        let body = (!body.is_empty()).then(|| body.to_owned());
        push_item(store, index, author, title, body, labels, None)
    }

    /// Opens a pull request (returns its number; numbers are shared with issues per
    /// repository, as on GitHub).
    pub fn open_pull(&self, owner: &str, repo: &str, seed: PullSeed) -> u64 {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.expect_repo(owner, repo);
        let pull = Pull {
            head_ref: format!(
                "{}-patch-{}",
                seed.author,
                store.repos[index].items.len() + 1
            ),
            head_sha: seed.head_sha,
            base_ref: seed.base_ref,
            base_sha: random_sha(),
            test_merge_sha: random_sha(),
            merged: None,
            reviews: Vec::new(),
        };
        let body = (!seed.body.is_empty()).then_some(seed.body);
        push_item(
            store,
            index,
            &seed.author,
            &seed.title,
            body,
            Vec::new(),
            Some(pull),
        )
    }

    /// Merges it: `merged`, state closed, `merge_commit_sha` a new 40-hex SHA, `merged_at` now,
    /// `merged_by` the merger. Returns the merge SHA.
    pub fn merge_pull(&self, owner: &str, repo: &str, number: u64, merged_by: &str) -> String {
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.expect_repo(owner, repo);
        store.register(merged_by);
        let now = Utc::now();
        let sha = random_sha();
        let item = store.repos[index]
            .item_mut(number)
            .filter(|i| i.pull.is_some())
            .unwrap_or_else(|| panic!("fake github: no pull request {owner}/{repo}#{number}"));
        let pull = item.pull.as_mut().expect("filtered on pull");
        assert!(
            pull.merged.is_none(),
            "fake github: #{number} already merged"
        );
        pull.merged = Some(Merge {
            sha: sha.clone(),
            at: now,
            by: merged_by.to_owned(),
        });
        item.state = "closed".into();
        item.closed_at = Some(now);
        item.updated_at = now;
        sha
    }

    /// Adds a submitted review ("APPROVED" | "CHANGES_REQUESTED" | "COMMENTED" |
    /// "DISMISSED") on the current head SHA.
    pub fn review(&self, owner: &str, repo: &str, number: u64, login: &str, state: &str) {
        assert!(
            REVIEW_STATES.contains(&state),
            "fake github: review state {state} is not one of {REVIEW_STATES:?}"
        );
        let mut guard = self.lock();
        let store = &mut guard.state;
        let index = store.expect_repo(owner, repo);
        store.register(login);
        let id = store.next_id();
        let item = store.repos[index]
            .item_mut(number)
            .filter(|i| i.pull.is_some())
            .unwrap_or_else(|| panic!("fake github: no pull request {owner}/{repo}#{number}"));
        let pull = item.pull.as_mut().expect("filtered on pull");
        let commit_id = pull.head_sha.clone();
        pull.reviews.push(Review {
            id,
            login: login.to_owned(),
            state: state.to_owned(),
            at: Utc::now(),
            commit_id,
        });
    }

    /// Issues only (not pull requests), by number.
    pub fn issues(&self, owner: &str, repo: &str) -> Vec<StoredIssue> {
        let store = &self.lock().state;
        let index = store.expect_repo(owner, repo);
        store.repos[index]
            .items
            .iter()
            .filter(|i| i.pull.is_none())
            .map(|i| StoredIssue {
                number: i.number,
                title: i.title.clone(),
                body: i.body.clone().unwrap_or_default(),
                state: i.state.clone(),
                state_reason: i.state_reason.clone(),
                labels: i.labels.clone(),
                comments: i.comments.len(),
            })
            .collect()
    }

    /// Comment bodies on an issue or pull request, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, number: u64) -> Vec<String> {
        let store = &self.lock().state;
        let index = store.expect_repo(owner, repo);
        store.repos[index]
            .item(number)
            .map(|i| i.comments.iter().map(|c| c.body.clone()).collect())
            .unwrap_or_default()
    }

    /// A pull request's description ("" when GitHub would show `null`); `None` if there is no
    /// such pull request.
    pub fn pull_body(&self, owner: &str, repo: &str, number: u64) -> Option<String> {
        let store = &self.lock().state;
        let index = store.expect_repo(owner, repo);
        store.repos[index]
            .item(number)
            .filter(|i| i.pull.is_some())
            .map(|i| i.body.clone().unwrap_or_default())
    }

    /// Every pull request as `(number, title, head ref, base ref, state)`, by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<(u64, String, String, String, String)> {
        let store = &self.lock().state;
        let index = store.expect_repo(owner, repo);
        store.repos[index]
            .items
            .iter()
            .filter_map(|i| {
                let pull = i.pull.as_ref()?;
                Some((
                    i.number,
                    i.title.clone(),
                    pull.head_ref.clone(),
                    pull.base_ref.clone(),
                    i.state.clone(),
                ))
            })
            .collect()
    }

    /// The next `n` requests get a primary rate-limit 403 (`x-ratelimit-remaining: 0`,
    /// `x-ratelimit-reset` now + `retry_after_secs`), or with `secondary` a 429 with
    /// `retry-after: retry_after_secs`. Throttled requests change nothing.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64, secondary: bool) {
        let mut guard = self.lock();
        guard.faults.throttle_next(n, retry_after_secs);
        guard.state.secondary = secondary;
    }

    /// Caps `per_page` below GitHub's 100 (default 100), to force `Link` pagination in tests.
    pub fn set_per_page_max(&self, n: usize) {
        self.lock().state.per_page_max = n.clamp(1, MAX_PER_PAGE);
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.kit.seen()
    }

    pub fn clear_seen(&self) {
        self.kit.clear_seen();
    }
}

fn push_item(
    store: &mut Store,
    repo: usize,
    author: &str,
    title: &str,
    body: Option<String>,
    labels: Vec<String>,
    pull: Option<Pull>,
) -> u64 {
    store.register(author);
    let id = store.next_id();
    let now = Utc::now();
    let items = &mut store.repos[repo].items;
    let number = items.len() as u64 + 1;
    items.push(Item {
        id,
        number,
        title: title.to_owned(),
        body,
        state: "open".into(),
        state_reason: None,
        labels,
        author: author.to_owned(),
        created_at: now,
        updated_at: now,
        closed_at: None,
        comments: Vec::new(),
        pull,
    });
    number
}

async fn handle(State(fake): State<FakeGithub>, request: Request) -> Response {
    // An oversized body reads as empty, which then fails JSON parsing like GitHub's 400.
    let (parts, body) = kit::read(request, MAX_BODY).await;
    let body = body.unwrap_or_default();
    fake.kit.answer(&parts, |store, faults| {
        let now = Utc::now().timestamp();
        if now >= store.window_reset {
            store.window_reset = now + 3600;
            store.used = 0;
        }
        let response = if authorized(&parts.headers, &fake.token) {
            store.used = (store.used + 1).min(RATE_LIMIT);
            respond(store, faults, &parts.method, &parts.uri, &body)
        } else {
            error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS)
        };
        with_rate_headers(store, response)
    })
}

/// `Bearer <token>` or the older `token <token>`; GitHub treats the scheme case-insensitively.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some((scheme, given)) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && given.trim() == token
}

enum Route {
    Issues,
    Issue(u64),
    Comments(u64),
    Comment(u64),
    Pulls,
    Pull(u64),
    Reviews(u64),
    Permission(String),
    CommitPulls(String),
}

/// Resolves `/repos/{owner}/{repo}/…` or the canonical `/repositories/{id}/…` to a repository
/// and a resource; `None` is GitHub's 404.
fn route(store: &Store, path: &str) -> Option<(usize, Route)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (repo, rest) = match segments.as_slice() {
        ["repos", owner, name, rest @ ..] => (store.repo_index(owner, name)?, rest),
        ["repositories", id, rest @ ..] => {
            let id: u64 = id.parse().ok()?;
            (store.repos.iter().position(|r| r.id == id)?, rest)
        }
        _ => return None,
    };
    let number = |s: &str| s.parse::<u64>().ok().filter(|n| *n > 0);
    let route = match rest {
        ["issues"] => Route::Issues,
        ["issues", n] => Route::Issue(number(n)?),
        ["issues", n, "comments"] => Route::Comments(number(n)?),
        ["issues", "comments", id] => Route::Comment(number(id)?),
        ["pulls"] => Route::Pulls,
        ["pulls", n] => Route::Pull(number(n)?),
        ["pulls", n, "reviews"] => Route::Reviews(number(n)?),
        ["collaborators", login, "permission"] => Route::Permission((*login).to_owned()),
        ["commits", sha, "pulls"] => Route::CommitPulls((*sha).to_owned()),
        _ => return None,
    };
    Some((repo, route))
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
        return if store.secondary {
            secondary_limited(retry_after)
        } else {
            primary_limited(retry_after)
        };
    }
    let Some((repo, route)) = route(store, uri.path()) else {
        return not_found();
    };
    let query: HashMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let page = Paging {
        path: uri.path(),
        raw_query: uri.query().unwrap_or(""),
        query: &query,
    };
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    match (route, method.clone(), &object) {
        (Route::Issues, Method::GET, _) => list_issues(store, repo, &page),
        (Route::Issues, Method::POST, Some(b)) => create_issue(store, repo, b),
        (Route::Issue(n), Method::GET, _) => get_issue(store, repo, n),
        (Route::Issue(n), Method::PATCH, Some(b)) => update_issue(store, repo, n, b),
        (Route::Comments(n), Method::GET, _) => list_comments(store, repo, n, &page),
        (Route::Comments(n), Method::POST, Some(b)) => create_comment(store, repo, n, b),
        (Route::Comment(id), Method::GET, _) => get_comment(store, repo, id),
        (Route::Comment(id), Method::PATCH, Some(b)) => update_comment(store, repo, id, b),
        (Route::Pulls, Method::POST, Some(b)) => create_pull(store, repo, b),
        (Route::Pull(n), Method::GET, _) => get_pull(store, repo, n),
        (Route::Pull(n), Method::PATCH, Some(b)) => update_pull(store, repo, n, b),
        (Route::Reviews(n), Method::GET, _) => list_reviews(store, repo, n, &page),
        (Route::Permission(login), Method::GET, _) => permission(store, repo, &login),
        (Route::CommitPulls(sha), Method::GET, _) => commit_pulls(store, repo, &sha, &page),
        (Route::Issues, Method::POST, None)
        | (Route::Issue(_), Method::PATCH, None)
        | (Route::Comments(_), Method::POST, None)
        | (Route::Comment(_), Method::PATCH, None)
        | (Route::Pulls, Method::POST, None)
        | (Route::Pull(_), Method::PATCH, None) => {
            error(StatusCode::BAD_REQUEST, "Problems parsing JSON", DOCS)
        }
        _ => not_found(),
    }
}

/// The request's pagination inputs, and what a `Link` header needs to rebuild its URLs.
struct Paging<'a> {
    path: &'a str,
    raw_query: &'a str,
    query: &'a HashMap<String, String>,
}

/// Answers one page of `values` as a JSON array, with GitHub's `Link` header when there is
/// more than one page. URLs use the canonical `/repositories/{id}/…` path, keep every other
/// query parameter as sent and put `page` last.
fn paged(store: &Store, repo: usize, paging: &Paging, values: Vec<Value>) -> Response {
    let number = |name: &str| {
        paging
            .query
            .get(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    let per_page = number("per_page")
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(store.per_page_max)
        .min(MAX_PER_PAGE);
    let page = number("page").unwrap_or(1);
    let last = values.len().div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(values.len());
    let end = start.saturating_add(per_page).min(values.len());
    let body = Value::Array(values[start..end].to_vec());
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if last > 1 {
        // `/repos/{o}/{r}/rest…` or `/repositories/{id}/rest…` → the canonical form.
        let segments: Vec<&str> = paging.path.trim_start_matches('/').split('/').collect();
        let skip = if segments.first() == Some(&"repos") {
            3
        } else {
            2
        };
        let rest = segments.get(skip..).unwrap_or_default().join("/");
        let canonical = format!(
            "{}/repositories/{}/{rest}",
            store.api_url, store.repos[repo].id
        );
        let kept: Vec<&str> = paging
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("page="))
            .collect();
        let url = |n: usize| {
            let mut pairs = kept.clone();
            let page = format!("page={n}");
            pairs.push(&page);
            format!("<{canonical}?{}>", pairs.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert("link", value);
        }
    }
    response
}

fn list_issues(store: &Store, repo: usize, paging: &Paging) -> Response {
    let state = paging.query.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return validation("Issue", "invalid", "state", DOCS);
    }
    let wanted: Vec<&str> = paging
        .query
        .get("labels")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let r = &store.repos[repo];
    let values: Vec<Value> = r
        .items
        .iter()
        .rev()
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| {
            wanted
                .iter()
                .all(|w| i.labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
        })
        .map(|i| issue_json(store, r, i))
        .collect();
    paged(store, repo, paging, values)
}

fn get_issue(store: &Store, repo: usize, number: u64) -> Response {
    let r = &store.repos[repo];
    match r.item(number) {
        Some(item) => (StatusCode::OK, axum::Json(issue_json(store, r, item))).into_response(),
        None => not_found(),
    }
}

/// A refused `Issue` field: one entry of GitHub's 422 `errors`.
struct Invalid {
    code: &'static str,
    field: &'static str,
}

impl Invalid {
    /// The field has a value of the wrong shape.
    fn field(field: &'static str) -> Self {
        Invalid {
            code: "invalid",
            field,
        }
    }

    /// The 422 answer, pointing at the operation's documentation.
    fn response(&self, docs: &str) -> Response {
        validation("Issue", self.code, self.field, docs)
    }
}

/// `labels` as names or `{name}` objects; `null` is no labels.
fn parse_labels(value: &Value) -> Result<Vec<String>, Invalid> {
    let name = |e: &Value| -> Option<String> {
        let text = match e {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("name")?.as_str()?,
            _ => return None,
        };
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(elements) => elements
            .iter()
            .map(|e| name(e).ok_or(Invalid::field("labels")))
            .collect(),
        _ => Err(Invalid::field("labels")),
    }
}

/// `body` as a string or null; anything else is refused.
fn parse_text(value: Option<&Value>, field: &'static str) -> Result<Option<String>, Invalid> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid::field(field)),
    }
}

/// GitHub's schema types `title` as "string or integer"; blank is a missing title.
fn parse_title(value: Option<&Value>) -> Result<Option<String>, Invalid> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Invalid {
            code: "missing_field",
            field: "title",
        }),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Invalid::field("title")),
    }
}

fn create_issue(store: &mut Store, repo: usize, body: &Map<String, Value>) -> Response {
    let title = match parse_title(body.get("title")) {
        Ok(Some(title)) => title,
        Ok(None) => return validation("Issue", "missing_field", "title", CREATE_DOCS),
        Err(invalid) => return invalid.response(CREATE_DOCS),
    };
    let text = match parse_text(body.get("body"), "body") {
        Ok(text) => text.filter(|t| !t.is_empty()),
        Err(invalid) => return invalid.response(CREATE_DOCS),
    };
    let labels = match body.get("labels").map(parse_labels) {
        Some(Ok(labels)) => labels,
        Some(Err(invalid)) => return invalid.response(CREATE_DOCS),
        None => Vec::new(),
    };
    let labels = store.ensure_labels(repo, &labels);
    let number = push_item(store, repo, TOKEN_USER, &title, text, labels, None);
    let r = &store.repos[repo];
    let item = r.item(number).expect("just pushed");
    let json = issue_json(store, r, item);
    let mut response = (StatusCode::CREATED, axum::Json(json)).into_response();
    let location = format!("{}/repos/{}/issues/{number}", store.api_url, r.slug());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    response
}

fn update_issue(
    store: &mut Store,
    repo: usize,
    number: u64,
    body: &Map<String, Value>,
) -> Response {
    if store.repos[repo].item(number).is_none() {
        return not_found();
    }
    let title = match parse_title(body.get("title")) {
        Ok(title) => title,
        Err(invalid) => return invalid.response(UPDATE_DOCS),
    };
    // `body: null` clears it, an absent `body` leaves it.
    let text = match body.get("body") {
        None => None,
        Some(value) => match parse_text(Some(value), "body") {
            Ok(text) => Some(text.filter(|t| !t.is_empty())),
            Err(invalid) => return invalid.response(UPDATE_DOCS),
        },
    };
    let state = match body.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "open" || s == "closed" => Some(s.clone()),
        Some(_) => return validation("Issue", "invalid", "state", UPDATE_DOCS),
    };
    let reason = match body.get("state_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if matches!(
                s.as_str(),
                "completed" | "not_planned" | "duplicate" | "reopened"
            ) =>
        {
            Some(s.clone())
        }
        Some(_) => return validation("Issue", "invalid", "state_reason", UPDATE_DOCS),
    };
    if state.as_deref() == Some("closed") && reason.as_deref() == Some("reopened") {
        return validation("Issue", "invalid", "state_reason", UPDATE_DOCS);
    }
    let labels = match body.get("labels").map(parse_labels) {
        Some(Ok(labels)) => Some(store.ensure_labels(repo, &labels)),
        Some(Err(invalid)) => return invalid.response(UPDATE_DOCS),
        None => None,
    };
    let now = Utc::now();
    let item = store.repos[repo].item_mut(number).expect("checked above");
    if let Some(title) = title {
        item.title = title;
    }
    if let Some(text) = text {
        item.body = text;
    }
    if let Some(labels) = labels {
        item.labels = labels;
    }
    // "Ignored unless state is changed."
    if let Some(state) = state
        && state != item.state
    {
        let is_pull = item.pull.is_some();
        if state == "closed" {
            item.closed_at = Some(now);
            item.state_reason = (!is_pull).then(|| reason.unwrap_or_else(|| "completed".into()));
        } else {
            item.closed_at = None;
            item.state_reason = (!is_pull).then(|| "reopened".to_owned());
        }
        item.state = state;
    }
    item.updated_at = now;
    let r = &store.repos[repo];
    let item = r.item(number).expect("checked above");
    (StatusCode::OK, axum::Json(issue_json(store, r, item))).into_response()
}

fn list_comments(store: &Store, repo: usize, number: u64, paging: &Paging) -> Response {
    let r = &store.repos[repo];
    let Some(item) = r.item(number) else {
        return not_found();
    };
    let values = item
        .comments
        .iter()
        .map(|c| comment_json(store, r, item, c))
        .collect();
    paged(store, repo, paging, values)
}

fn create_comment(
    store: &mut Store,
    repo: usize,
    number: u64,
    body: &Map<String, Value>,
) -> Response {
    if store.repos[repo].item(number).is_none() {
        return not_found();
    }
    let text = match body.get("body") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return validation("IssueComment", "missing_field", "body", COMMENT_DOCS);
        }
        Some(_) => return validation("IssueComment", "invalid", "body", COMMENT_DOCS),
    };
    if too_long(&text) {
        return body_too_long("IssueComment", COMMENT_DOCS);
    }
    let id = store.next_id();
    let now = Utc::now();
    let item = store.repos[repo].item_mut(number).expect("checked above");
    item.comments.push(Comment {
        id,
        body: text,
        login: TOKEN_USER.to_owned(),
        at: now,
        updated: None,
    });
    item.updated_at = now;
    let r = &store.repos[repo];
    let item = r.item(number).expect("checked above");
    let comment = item.comments.last().expect("just pushed");
    let json = comment_json(store, r, item, comment);
    (StatusCode::CREATED, axum::Json(json)).into_response()
}

fn too_long(text: &str) -> bool {
    text.chars().count() > MAX_BODY_CHARS
}

fn body_too_long(resource: &str, docs: &str) -> Response {
    custom_validation(
        resource,
        Some("body"),
        &format!("body is too long (maximum is {MAX_BODY_CHARS} characters)"),
        docs,
    )
}

/// GitHub's 422 for a rule of its own rather than a field's shape: `code: custom` and a
/// `message` (and the field, when the rule is about one).
fn custom_validation(resource: &str, field: Option<&str>, message: &str, docs: &str) -> Response {
    let mut error = json!({"resource": resource, "code": "custom", "message": message});
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    let body = json!({
        "message": "Validation Failed",
        "errors": [error],
        "documentation_url": docs,
        "status": "422",
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// The issue or pull request holding comment `id` in this repository, and the comment's index.
fn find_comment(store: &Store, repo: usize, id: u64) -> Option<(u64, usize)> {
    store.repos[repo].items.iter().find_map(|item| {
        let index = item.comments.iter().position(|c| c.id == id)?;
        Some((item.number, index))
    })
}

fn get_comment(store: &Store, repo: usize, id: u64) -> Response {
    let Some((number, index)) = find_comment(store, repo, id) else {
        return not_found();
    };
    let r = &store.repos[repo];
    let item = r.item(number).expect("found above");
    let json = comment_json(store, r, item, &item.comments[index]);
    (StatusCode::OK, axum::Json(json)).into_response()
}

/// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`: `body` is required.
fn update_comment(store: &mut Store, repo: usize, id: u64, body: &Map<String, Value>) -> Response {
    let Some((number, index)) = find_comment(store, repo, id) else {
        return not_found();
    };
    let text = match body.get("body") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return validation("IssueComment", "missing_field", "body", COMMENT_UPDATE_DOCS);
        }
        Some(_) => return validation("IssueComment", "invalid", "body", COMMENT_UPDATE_DOCS),
    };
    if too_long(&text) {
        return body_too_long("IssueComment", COMMENT_UPDATE_DOCS);
    }
    let now = Utc::now();
    let item = store.repos[repo].item_mut(number).expect("found above");
    let comment = &mut item.comments[index];
    comment.body = text;
    comment.updated = Some(now);
    item.updated_at = now;
    let r = &store.repos[repo];
    let item = r.item(number).expect("found above");
    let json = comment_json(store, r, item, &item.comments[index]);
    (StatusCode::OK, axum::Json(json)).into_response()
}

/// A required string field of a pull request: absent, null or blank is `missing_field`.
fn required_text(body: &Map<String, Value>, field: &'static str) -> Result<String, &'static str> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err("missing_field"),
        Some(_) => Err("invalid"),
    }
}

/// `POST /repos/{owner}/{repo}/pulls`, authored by the token's user. The fake holds no git
/// data, so any head branch is taken to exist.
fn create_pull(store: &mut Store, repo: usize, body: &Map<String, Value>) -> Response {
    let mut fields = Vec::new();
    for field in ["title", "head", "base"] {
        match required_text(body, field) {
            Ok(value) => fields.push(value),
            Err(code) => return validation("PullRequest", code, field, PULL_CREATE_DOCS),
        }
    }
    let [title, head, base] = <[String; 3]>::try_from(fields).expect("three fields");
    let text = match parse_text(body.get("body"), "body") {
        Ok(text) => text.filter(|t| !t.is_empty()),
        Err(_) => return validation("PullRequest", "invalid", "body", PULL_CREATE_DOCS),
    };
    if text.as_deref().is_some_and(too_long) {
        return body_too_long("PullRequest", PULL_CREATE_DOCS);
    }
    // `head` is `branch` or `owner:branch` (a fork's); this fake serves one owner per repo.
    let owner = store.repos[repo].owner.clone();
    let head_ref = head
        .split_once(':')
        .map_or(head.as_str(), |(_, branch)| branch)
        .to_owned();
    if head_ref == base {
        return custom_validation(
            "PullRequest",
            None,
            &format!("No commits between {base} and {head_ref}"),
            PULL_CREATE_DOCS,
        );
    }
    let duplicate = store.repos[repo].items.iter().any(|i| {
        i.state == "open"
            && i.pull
                .as_ref()
                .is_some_and(|p| p.head_ref == head_ref && p.base_ref == base)
    });
    if duplicate {
        return custom_validation(
            "PullRequest",
            None,
            &format!("A pull request already exists for {owner}:{head_ref}."),
            PULL_CREATE_DOCS,
        );
    }
    let pull = Pull {
        head_sha: random_sha(),
        head_ref,
        base_ref: base,
        base_sha: random_sha(),
        test_merge_sha: random_sha(),
        merged: None,
        reviews: Vec::new(),
    };
    let number = push_item(
        store,
        repo,
        TOKEN_USER,
        &title,
        text,
        Vec::new(),
        Some(pull),
    );
    let r = &store.repos[repo];
    let item = r.item(number).expect("just pushed");
    let mut response = (StatusCode::CREATED, axum::Json(pull_json(store, r, item))).into_response();
    let location = format!("{}/repos/{}/pulls/{number}", store.api_url, r.slug());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    response
}

/// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}`: only the fields sent change.
fn update_pull(store: &mut Store, repo: usize, number: u64, body: &Map<String, Value>) -> Response {
    if store.repos[repo]
        .item(number)
        .is_none_or(|i| i.pull.is_none())
    {
        return not_found();
    }
    let title = match parse_title(body.get("title")) {
        Ok(title) => title,
        Err(_) => return validation("PullRequest", "invalid", "title", PULL_UPDATE_DOCS),
    };
    let text = match body.get("body") {
        None => None,
        Some(value) => match parse_text(Some(value), "body") {
            Ok(text) => Some(text.filter(|t| !t.is_empty())),
            Err(_) => return validation("PullRequest", "invalid", "body", PULL_UPDATE_DOCS),
        },
    };
    if text
        .as_ref()
        .and_then(Option::as_deref)
        .is_some_and(too_long)
    {
        return body_too_long("PullRequest", PULL_UPDATE_DOCS);
    }
    let state = match body.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "open" || s == "closed" => Some(s.clone()),
        Some(_) => return validation("PullRequest", "invalid", "state", PULL_UPDATE_DOCS),
    };
    let base = match body.get("base") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return validation("PullRequest", "invalid", "base", PULL_UPDATE_DOCS),
    };
    let now = Utc::now();
    let item = store.repos[repo].item_mut(number).expect("checked above");
    if item.pull.as_ref().is_some_and(|p| p.merged.is_some()) && state.as_deref() == Some("open") {
        return custom_validation(
            "PullRequest",
            Some("state"),
            "state cannot be changed. The pull request has been merged.",
            PULL_UPDATE_DOCS,
        );
    }
    if let Some(title) = title {
        item.title = title;
    }
    if let Some(text) = text {
        item.body = text;
    }
    if let (Some(base), Some(pull)) = (base, item.pull.as_mut()) {
        pull.base_ref = base;
    }
    if let Some(state) = state
        && state != item.state
    {
        item.closed_at = (state == "closed").then_some(now);
        item.state = state;
    }
    item.updated_at = now;
    let r = &store.repos[repo];
    let item = r.item(number).expect("checked above");
    (StatusCode::OK, axum::Json(pull_json(store, r, item))).into_response()
}

fn get_pull(store: &Store, repo: usize, number: u64) -> Response {
    let r = &store.repos[repo];
    match r.item(number) {
        Some(item) if item.pull.is_some() => {
            (StatusCode::OK, axum::Json(pull_json(store, r, item))).into_response()
        }
        _ => not_found(),
    }
}

/// `GET /repos/{owner}/{repo}/commits/{sha}/pulls`: the merged pull request the commit merged,
/// else the open ones whose head it is.
fn commit_pulls(store: &Store, repo: usize, sha: &str, paging: &Paging) -> Response {
    let r = &store.repos[repo];
    let pulls = || r.items.iter().filter_map(|i| Some((i, i.pull.as_ref()?)));
    let merged: Vec<Value> = pulls()
        .filter(|(_, p)| p.merged.as_ref().is_some_and(|m| m.sha == sha))
        .map(|(item, _)| pull_json(store, r, item))
        .collect();
    let values = if merged.is_empty() {
        pulls()
            .filter(|(item, p)| item.state == "open" && p.head_sha == sha)
            .map(|(item, _)| pull_json(store, r, item))
            .collect()
    } else {
        merged
    };
    paged(store, repo, paging, values)
}

/// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`: the user's permission on the
/// repository (`none` for a user without access); 404 for a user GitHub does not know.
fn permission(store: &Store, repo: usize, login: &str) -> Response {
    if !store.users.iter().any(|u| u == login) {
        return not_found();
    }
    let permission = store.repos[repo]
        .permissions
        .get(login)
        .map(String::as_str)
        .unwrap_or("none");
    // `permission` folds maintain into write and triage into read; `role_name` keeps them.
    let folded = match permission {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    (
        StatusCode::OK,
        axum::Json(json!({
            "permission": folded,
            "role_name": permission,
            "user": store.user_json(login),
        })),
    )
        .into_response()
}

fn list_reviews(store: &Store, repo: usize, number: u64, paging: &Paging) -> Response {
    let r = &store.repos[repo];
    let Some((item, pull)) = r.item(number).and_then(|i| i.pull.as_ref().map(|p| (i, p))) else {
        return not_found();
    };
    let values = pull
        .reviews
        .iter()
        .map(|review| {
            json!({
                "id": review.id,
                "node_id": node_id("PRR", review.id),
                "user": store.user_json(&review.login),
                "body": "",
                "state": review.state,
                "html_url": format!(
                    "https://github.com/{}/pull/{}#pullrequestreview-{}",
                    r.slug(),
                    item.number,
                    review.id
                ),
                "pull_request_url": format!(
                    "{}/repos/{}/pulls/{}",
                    store.api_url,
                    r.slug(),
                    item.number
                ),
                "author_association": "CONTRIBUTOR",
                "submitted_at": timestamp(review.at),
                "commit_id": review.commit_id,
            })
        })
        .collect();
    paged(store, repo, paging, values)
}

fn label_json(store: &Store, repo: &Repo, name: &str) -> Value {
    let label = repo.labels.iter().find(|l| l.name == name);
    let id = label.map_or(0, |l| l.id);
    json!({
        "id": id,
        "node_id": node_id("LA", id),
        "url": format!(
            "{}/repos/{}/labels/{}",
            store.api_url,
            repo.slug(),
            crate::support::percent_encode(name)
        ),
        "name": name,
        "color": label.map_or(DEFAULT_LABEL_COLOR, |l| l.color.as_str()),
        "default": false,
        "description": null,
    })
}

fn issue_json(store: &Store, repo: &Repo, item: &Item) -> Value {
    let api = format!("{}/repos/{}", store.api_url, repo.slug());
    let n = item.number;
    let kind = if item.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    let mut json = json!({
        "id": item.id,
        "node_id": node_id(if item.pull.is_some() { "PR" } else { "I" }, item.id),
        "url": format!("{api}/issues/{n}"),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{n}/labels{{/name}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "events_url": format!("{api}/issues/{n}/events"),
        "html_url": format!("https://github.com/{}/{kind}/{n}", repo.slug()),
        "number": n,
        "title": item.title,
        "body": item.body,
        "state": item.state,
        "state_reason": item.state_reason,
        "locked": false,
        "labels": item
            .labels
            .iter()
            .map(|l| label_json(store, repo, l))
            .collect::<Vec<_>>(),
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": item.comments.len(),
        "user": store.user_json(&item.author),
        "author_association": "CONTRIBUTOR",
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
        "closed_at": item.closed_at.map(timestamp),
    });
    if let Some(pull) = &item.pull {
        json["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": format!("https://github.com/{}/pull/{n}", repo.slug()),
            "diff_url": format!("https://github.com/{}/pull/{n}.diff", repo.slug()),
            "patch_url": format!("https://github.com/{}/pull/{n}.patch", repo.slug()),
            "merged_at": pull.merged.as_ref().map(|m| timestamp(m.at)),
        });
    }
    json
}

fn pull_json(store: &Store, repo: &Repo, item: &Item) -> Value {
    let pull = item.pull.as_ref().expect("a pull request");
    let api = format!("{}/repos/{}", store.api_url, repo.slug());
    let n = item.number;
    let merged = pull.merged.as_ref();
    let open = item.state == "open";
    json!({
        "id": item.id,
        "node_id": node_id("PR", item.id),
        "url": format!("{api}/pulls/{n}"),
        "html_url": format!("https://github.com/{}/pull/{n}", repo.slug()),
        "issue_url": format!("{api}/issues/{n}"),
        "number": n,
        "state": item.state,
        "locked": false,
        "title": item.title,
        "user": store.user_json(&item.author),
        "body": item.body,
        "labels": item
            .labels
            .iter()
            .map(|l| label_json(store, repo, l))
            .collect::<Vec<_>>(),
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
        "closed_at": item.closed_at.map(timestamp),
        "merged_at": merged.map(|m| timestamp(m.at)),
        // Before merging: the test merge commit; after: the merge commit; closed unmerged: none.
        "merge_commit_sha": match (merged, open) {
            (Some(m), _) => Some(m.sha.clone()),
            (None, true) => Some(pull.test_merge_sha.clone()),
            (None, false) => None,
        },
        "draft": false,
        "head": {
            "label": format!("{}:{}", item.author, pull.head_ref),
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "user": store.user_json(&item.author),
        },
        "base": {
            "label": format!("{}:{}", repo.owner, pull.base_ref),
            "ref": pull.base_ref,
            "sha": pull.base_sha,
            "user": store.user_json(&repo.owner),
        },
        "author_association": "CONTRIBUTOR",
        "merged": merged.is_some(),
        "mergeable": if open { Value::Bool(true) } else { Value::Null },
        "mergeable_state": if open { "clean" } else { "unknown" },
        "merged_by": merged.map(|m| store.user_json(&m.by)),
        "comments": item.comments.len(),
        "review_comments": 0,
        "commits": 1,
        "requested_reviewers": [],
        "auto_merge": null,
    })
}

fn comment_json(store: &Store, repo: &Repo, item: &Item, comment: &Comment) -> Value {
    let api = format!("{}/repos/{}", store.api_url, repo.slug());
    let kind = if item.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    json!({
        "id": comment.id,
        "node_id": node_id("IC", comment.id),
        "url": format!("{api}/issues/comments/{}", comment.id),
        "html_url": format!(
            "https://github.com/{}/{kind}/{}#issuecomment-{}",
            repo.slug(),
            item.number,
            comment.id
        ),
        "issue_url": format!("{api}/issues/{}", item.number),
        "body": comment.body,
        "user": store.user_json(&comment.login),
        "author_association": "CONTRIBUTOR",
        "created_at": timestamp(comment.at),
        "updated_at": timestamp(comment.updated.unwrap_or(comment.at)),
    })
}

fn error(status: StatusCode, message: &str, docs: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": docs,
        "status": status.as_u16().to_string(),
    });
    (status, axum::Json(body)).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", DOCS)
}

fn validation(resource: &str, code: &str, field: &str, docs: &str) -> Response {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{"resource": resource, "code": code, "field": field}],
        "documentation_url": docs,
        "status": "422",
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn primary_limited(retry_after: u64) -> Response {
    let reset = Utc::now().timestamp() + retry_after as i64;
    let mut response = error(
        StatusCode::FORBIDDEN,
        "API rate limit exceeded for user ID 1.",
        RATE_DOCS,
    );
    response
        .headers_mut()
        .insert("x-ratelimit-used", HeaderValue::from(RATE_LIMIT));
    kit::exhausted(response, HeaderValue::from(reset))
}

fn secondary_limited(retry_after: u64) -> Response {
    let response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
    );
    kit::with_retry_after(response, retry_after)
}

/// The core counters of the current window; a primary-limit answer has set its own first.
fn with_rate_headers(store: &Store, response: Response) -> Response {
    let mut response = kit::with_rate_headers(
        response,
        RATE_LIMIT,
        &[
            (
                "x-ratelimit-remaining",
                HeaderValue::from(RATE_LIMIT - store.used),
            ),
            ("x-ratelimit-used", HeaderValue::from(store.used)),
            ("x-ratelimit-reset", HeaderValue::from(store.window_reset)),
        ],
    );
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    headers.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static(API_VERSION),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string()[..20]) {
        headers.insert("x-github-request-id", id);
    }
    response
}

/// GitHub's timestamps: UTC, whole seconds, `Z`.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Opaque global IDs shaped like GitHub's (`I_…`, `PR_…`).
fn node_id(prefix: &str, id: u64) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes());
    format!("{prefix}_kwDO{encoded}")
}

fn random_sha() -> String {
    hex::encode(kit::random_bytes(20))
}
