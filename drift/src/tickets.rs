//! Tickets for findings: one GitHub issue per fingerprint (label `drift`, the fingerprint in a
//! hidden marker in the body, so a rerun finds it instead of opening another), an optional Jira
//! issue per fingerprint (found again by a label derived from the fingerprint), and an optional
//! webhook notification of what is new.
//!
//! GitHub (REST, `2022-11-28`): `GET /repos/{o}/{r}/issues?labels=drift&state=all` (paginated by
//! `Link`; pull requests appear in the list and are skipped), `POST .../issues`,
//! `PATCH .../issues/{n}`, `POST .../issues/{n}/comments`, `GET .../pulls/{n}`,
//! `GET .../pulls/{n}/reviews`. Jira Cloud (REST v3): `POST /rest/api/3/issue`,
//! `POST /rest/api/3/search/jql`, `GET|POST /rest/api/3/issue/{key}/transitions`,
//! `POST /rest/api/3/issue/{key}/comment`; descriptions and comments are Atlassian Document
//! Format.

use std::future::Future;

use keyward_shared::adapters::http::Method;
use keyward_shared::adapters::http::header::{ACCEPT, HeaderValue};
use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest};
use keyward_shared::redact::SafeText;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::findings::{DriftType, Finding};

pub const DRIFT_LABEL: &str = "drift";
/// The second label of a workload finding's issue, as the platform teams' flow names it.
pub const WORKLOAD_DRIFT_LABEL: &str = "workload-drift";
const MARKER_PREFIX: &str = "<!-- keyward-drift fingerprint=\"";
const MARKER_SUFFIX: &str = "\" -->";

#[derive(Debug, thiserror::Error)]
#[error("{service} {operation}: {reason}")]
pub struct TicketError {
    pub service: &'static str,
    pub operation: &'static str,
    pub reason: SafeText,
}

/// The hidden marker that ties an issue to its fingerprint.
pub fn marker(fingerprint: &str) -> String {
    format!("{MARKER_PREFIX}{fingerprint}{MARKER_SUFFIX}")
}

/// The fingerprint an issue body carries, if any.
pub fn fingerprint_in(body: &str) -> Option<&str> {
    let start = body.find(MARKER_PREFIX)? + MARKER_PREFIX.len();
    let end = body[start..].find(MARKER_SUFFIX)? + start;
    Some(&body[start..end])
}

/// Jira labels cannot hold `/` or `:`: a short hash of the fingerprint stands for it.
pub fn jira_label(fingerprint: &str) -> String {
    format!(
        "keyward-{}",
        &hex::encode(Sha256::digest(fingerprint.as_bytes()))[..16]
    )
}

/// The labels a finding's issue opens with: `drift`, and `workload-drift` for workload drift.
pub fn issue_labels(finding: &Finding) -> Vec<&'static str> {
    match finding.kind.drift_type() {
        DriftType::Infra => vec![DRIFT_LABEL],
        DriftType::Workload => vec![DRIFT_LABEL, WORKLOAD_DRIFT_LABEL],
    }
}

/// The issue title and body for a finding: deterministic, so an unchanged finding needs no
/// update.
pub fn issue_text(finding: &Finding, jira_key: Option<&str>) -> (String, String) {
    let title = format!("Drift: {} on {}", finding.kind.slug(), finding.secret);
    let mut body = format!(
        "{}\n## {} on `{}`\n\nSeverity: **{:?}**. Found by keyward's drift detector.\n\n| evidence | value |\n|---|---|\n",
        marker(&finding.fingerprint),
        finding.kind.slug(),
        finding.secret,
        finding.severity
    );
    for (k, v) in &finding.evidence {
        body.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    }
    if let Some(key) = jira_key {
        body.push_str(&format!("\nJira: {key}\n"));
    }
    body.push_str(&format!(
        "\nFix it through a reviewed pull request whose description carries:\n\n```\nDrift Issue: #<this issue>\nDrift Type: {}\nChange Request ID: <CR id>\nEnvironment: <env>\nCloud Provider: aws\n{}{}```\n\nThe pre-merge guard checks these fields and the approvals; after the merge, verification re-runs detection and closes this issue.\n",
        finding.kind.drift_type().as_str(),
        crate::workload::app_of(&finding.fingerprint)
            .filter(|_| finding.kind.drift_type() == DriftType::Workload)
            .map(|app| format!("ArgoCD App: {app}\n"))
            .unwrap_or_default(),
        if jira_key.is_some() { "Jira Key: <key>\n" } else { "" }
    ));
    (title, body)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedIssue {
    pub number: u64,
    pub fingerprint: String,
    pub body: String,
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub author: String,
    pub body: String,
    pub merged: bool,
    pub merge_commit: Option<String>,
    pub head_sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub login: String,
    pub state: String,
    pub commit_id: Option<String>,
}

pub trait IssueTracker: Send + Sync {
    /// Every issue (open or closed) labelled `drift` that carries a fingerprint marker.
    fn drift_issues(&self) -> impl Future<Output = Result<Vec<TrackedIssue>, TicketError>> + Send;
    fn open_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> impl Future<Output = Result<u64, TicketError>> + Send;
    /// Replaces the body; `reopen` also sets the state back to open.
    fn update_issue(
        &self,
        number: u64,
        body: &str,
        reopen: bool,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;
    fn comment(
        &self,
        number: u64,
        text: &str,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;
    fn close_issue(&self, number: u64) -> impl Future<Output = Result<(), TicketError>> + Send;
    fn issue(
        &self,
        number: u64,
    ) -> impl Future<Output = Result<Option<TrackedIssue>, TicketError>> + Send;
}

pub trait PullRequests: Send + Sync {
    fn pull(
        &self,
        repo: &str,
        number: u64,
    ) -> impl Future<Output = Result<Option<PullRequest>, TicketError>> + Send;
    fn reviews(
        &self,
        repo: &str,
        number: u64,
    ) -> impl Future<Output = Result<Vec<Review>, TicketError>> + Send;
    /// The account's permission on the repository (`admin`, `maintain`, `write`, `triage`,
    /// `read` or `none`), as GitHub's collaborator permission API reports it.
    fn permission(
        &self,
        repo: &str,
        login: &str,
    ) -> impl Future<Output = Result<String, TicketError>> + Send;
    /// The merged pull request whose merge commit `sha` is, if any (GitHub's "list pull
    /// requests associated with a commit").
    fn merged_by_commit(
        &self,
        repo: &str,
        sha: &str,
    ) -> impl Future<Output = Result<Option<u64>, TicketError>> + Send;
}

/// Whether a permission lets its holder merge: only such reviewers' approvals count.
pub fn can_write(permission: &str) -> bool {
    matches!(permission, "admin" | "maintain" | "write")
}

/// GitHub's REST API for one repository's drift issues (and any repository's pull requests).
pub struct GithubClient {
    pub http: HttpClient,
    pub api_url: String,
    /// `owner/repo` where drift issues live.
    pub repo: String,
    pub token: SecretString,
}

#[derive(Deserialize)]
struct IssueJson {
    number: u64,
    #[serde(default)]
    body: Option<String>,
    state: String,
    #[serde(default)]
    pull_request: Option<Value>,
}

const PAGE_CAP: usize = 100;

impl GithubClient {
    fn request(&self, method: Method, path: &str) -> HttpRequest {
        HttpRequest::new(
            method,
            format!("{}{path}", self.api_url.trim_end_matches('/')),
        )
        .bearer(self.token.clone())
        .header(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        )
        .header(
            keyward_shared::adapters::http::HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static("2022-11-28"),
        )
    }

    fn error(&self, operation: &'static str, e: HttpError) -> TicketError {
        TicketError {
            service: "GitHub",
            operation,
            reason: self.http.redactor().safe(&e.to_string()),
        }
    }

    async fn json(
        &self,
        operation: &'static str,
        request: HttpRequest,
    ) -> Result<(Value, Option<String>), TicketError> {
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| self.error(operation, e))?;
        let next = response
            .headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let value = if response.body.is_empty() {
            Value::Null
        } else {
            response
                .json::<Value>()
                .map_err(|e| self.error(operation, e))?
        };
        Ok((value, next))
    }

    /// The path of a `Link: <...>; rel="next"` URL on the same API.
    fn follow(&self, next: &str) -> String {
        next.strip_prefix(self.api_url.trim_end_matches('/'))
            .unwrap_or(next)
            .to_owned()
    }
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

impl IssueTracker for GithubClient {
    async fn drift_issues(&self) -> Result<Vec<TrackedIssue>, TicketError> {
        let mut out = Vec::new();
        let mut path = format!(
            "/repos/{}/issues?labels={DRIFT_LABEL}&state=all&per_page=100",
            self.repo
        );
        for _ in 0..PAGE_CAP {
            let (page, next) = self
                .json("list issues", self.request(Method::GET, &path))
                .await?;
            let issues: Vec<IssueJson> = serde_json::from_value(page).map_err(|e| TicketError {
                service: "GitHub",
                operation: "list issues",
                reason: self
                    .http
                    .redactor()
                    .safe(&format!("unexpected issue list: {e}")),
            })?;
            for issue in issues {
                if issue.pull_request.is_some() {
                    continue;
                }
                let body = issue.body.unwrap_or_default();
                if let Some(fp) = fingerprint_in(&body) {
                    out.push(TrackedIssue {
                        number: issue.number,
                        fingerprint: fp.to_owned(),
                        open: issue.state == "open",
                        body,
                    });
                }
            }
            match next {
                Some(url) => path = self.follow(&url),
                None => return Ok(out),
            }
        }
        Err(TicketError {
            service: "GitHub",
            operation: "list issues",
            reason: SafeText::fixed("more pages than the detector follows"),
        })
    }

    async fn open_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Result<u64, TicketError> {
        let request = self
            .request(Method::POST, &format!("/repos/{}/issues", self.repo))
            .json(&json!({"title": title, "body": body, "labels": labels}))
            .map_err(|e| self.error("open issue", e))?;
        let (value, _) = self.json("open issue", request).await?;
        value["number"].as_u64().ok_or_else(|| TicketError {
            service: "GitHub",
            operation: "open issue",
            reason: SafeText::fixed("the created issue has no number"),
        })
    }

    async fn update_issue(&self, number: u64, body: &str, reopen: bool) -> Result<(), TicketError> {
        let mut patch = json!({"body": body});
        if reopen {
            patch["state"] = "open".into();
            patch["state_reason"] = "reopened".into();
        }
        let request = self
            .request(
                Method::PATCH,
                &format!("/repos/{}/issues/{number}", self.repo),
            )
            .json(&patch)
            .map_err(|e| self.error("update issue", e))?;
        self.json("update issue", request).await.map(|_| ())
    }

    async fn comment(&self, number: u64, text: &str) -> Result<(), TicketError> {
        let request = self
            .request(
                Method::POST,
                &format!("/repos/{}/issues/{number}/comments", self.repo),
            )
            .json(&json!({"body": text}))
            .map_err(|e| self.error("comment", e))?;
        self.json("comment", request).await.map(|_| ())
    }

    async fn close_issue(&self, number: u64) -> Result<(), TicketError> {
        let request = self
            .request(
                Method::PATCH,
                &format!("/repos/{}/issues/{number}", self.repo),
            )
            .json(&json!({"state": "closed", "state_reason": "completed"}))
            .map_err(|e| self.error("close issue", e))?;
        self.json("close issue", request).await.map(|_| ())
    }

    async fn issue(&self, number: u64) -> Result<Option<TrackedIssue>, TicketError> {
        let request = self.request(
            Method::GET,
            &format!("/repos/{}/issues/{number}", self.repo),
        );
        match self.http.send(request).await {
            Ok(response) => {
                let issue: IssueJson = response.json().map_err(|e| self.error("get issue", e))?;
                let body = issue.body.unwrap_or_default();
                Ok(fingerprint_in(&body).map(|fp| TrackedIssue {
                    number: issue.number,
                    fingerprint: fp.to_owned(),
                    open: issue.state == "open",
                    body: body.clone(),
                }))
            }
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(self.error("get issue", e)),
        }
    }
}

impl PullRequests for GithubClient {
    async fn pull(&self, repo: &str, number: u64) -> Result<Option<PullRequest>, TicketError> {
        let request = self.request(Method::GET, &format!("/repos/{repo}/pulls/{number}"));
        match self.http.send(request).await {
            Ok(response) => {
                let v: Value = response
                    .json()
                    .map_err(|e| self.error("get pull request", e))?;
                Ok(Some(PullRequest {
                    number,
                    author: v["user"]["login"].as_str().unwrap_or_default().to_owned(),
                    body: v["body"].as_str().unwrap_or_default().to_owned(),
                    merged: v["merged"].as_bool().unwrap_or(false),
                    merge_commit: v["merge_commit_sha"].as_str().map(str::to_owned),
                    head_sha: v["head"]["sha"].as_str().unwrap_or_default().to_owned(),
                }))
            }
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(self.error("get pull request", e)),
        }
    }

    async fn merged_by_commit(&self, repo: &str, sha: &str) -> Result<Option<u64>, TicketError> {
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = format!("/repos/{repo}/commits/{sha}/pulls?per_page=100");
        let (page, _) = self
            .json(
                "list pull requests of a commit",
                self.request(Method::GET, &path),
            )
            .await?;
        Ok(page.as_array().into_iter().flatten().find_map(|pull| {
            let merged = !pull["merged_at"].is_null()
                && pull["merge_commit_sha"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(sha));
            merged.then(|| pull["number"].as_u64()).flatten()
        }))
    }

    async fn reviews(&self, repo: &str, number: u64) -> Result<Vec<Review>, TicketError> {
        let mut out = Vec::new();
        let mut path = format!("/repos/{repo}/pulls/{number}/reviews?per_page=100");
        for _ in 0..PAGE_CAP {
            let (page, next) = self
                .json("list reviews", self.request(Method::GET, &path))
                .await?;
            for r in page.as_array().into_iter().flatten() {
                out.push(Review {
                    login: r["user"]["login"].as_str().unwrap_or_default().to_owned(),
                    state: r["state"].as_str().unwrap_or_default().to_owned(),
                    commit_id: r["commit_id"].as_str().map(str::to_owned),
                });
            }
            match next {
                Some(url) => path = self.follow(&url),
                None => return Ok(out),
            }
        }
        Err(TicketError {
            service: "GitHub",
            operation: "list reviews",
            reason: SafeText::fixed("more pages than the guard follows"),
        })
    }

    async fn permission(&self, repo: &str, login: &str) -> Result<String, TicketError> {
        let request = self.request(
            Method::GET,
            &format!("/repos/{repo}/collaborators/{login}/permission"),
        );
        match self.http.send(request).await {
            Ok(response) => {
                let v: Value = response
                    .json()
                    .map_err(|e| self.error("get collaborator permission", e))?;
                Ok(v["permission"].as_str().unwrap_or("none").to_owned())
            }
            // Not a collaborator (GitHub answers 404 for a user it cannot see on the repo).
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok("none".to_owned()),
            Err(e) => Err(self.error("get collaborator permission", e)),
        }
    }
}

pub trait Jira: Send + Sync {
    /// The open-or-done issue for a fingerprint, by its label.
    fn find(
        &self,
        fingerprint: &str,
    ) -> impl Future<Output = Result<Option<String>, TicketError>> + Send;
    fn create(&self, finding: &Finding)
    -> impl Future<Output = Result<String, TicketError>> + Send;
    fn comment(
        &self,
        key: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), TicketError>> + Send;
    /// Moves the issue to a status named `Done` (the transition whose target is `Done`).
    fn resolve(&self, key: &str) -> impl Future<Output = Result<(), TicketError>> + Send;
}

pub use keyward_shared::adapters::http::ChatWebhook;

/// A webhook failure as drift reports it (the client built the text from redacted parts).
pub fn webhook_error(error: HttpError, redactor: &keyward_shared::redact::Redactor) -> TicketError {
    TicketError {
        service: "webhook",
        operation: "notify",
        reason: redactor.safe(&error.to_string()),
    }
}

pub struct JiraClient {
    pub http: HttpClient,
    pub base_url: String,
    pub project: String,
    /// The issue type drift issues are created with (`JIRA_ISSUE_TYPE`).
    pub issue_type: String,
    pub email: String,
    pub api_token: SecretString,
}

/// The transition that ends an issue, from Jira's transitions response: to a status named
/// Done, else one named Closed (workflows name their last status either way).
pub fn closing_transition(transitions: &Value) -> Option<&str> {
    let all = transitions["transitions"].as_array()?;
    ["done", "closed"].iter().find_map(|wanted| {
        all.iter()
            .find(|t| {
                t["to"]["name"]
                    .as_str()
                    .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
            })
            .and_then(|t| t["id"].as_str())
    })
}

/// A plain paragraph in Atlassian Document Format.
fn adf(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": text.split("\n\n").map(|p| json!({
        "type": "paragraph", "content": [{"type": "text", "text": p}]
    })).collect::<Vec<_>>()})
}

impl JiraClient {
    fn request(&self, method: Method, path: &str) -> HttpRequest {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.email,
            self.api_token.expose_secret()
        ));
        let basic = SecretString::from(basic);
        self.http.redactor().register(&basic);
        let mut value = HeaderValue::from_str(&format!("Basic {}", basic.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic invalid"));
        value.set_sensitive(true);
        HttpRequest::new(
            method,
            format!("{}{path}", self.base_url.trim_end_matches('/')),
        )
        .header(keyward_shared::adapters::http::AUTHORIZATION, value)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    fn error(&self, operation: &'static str, e: HttpError) -> TicketError {
        TicketError {
            service: "Jira",
            operation,
            reason: self.http.redactor().safe(&e.to_string()),
        }
    }
}

impl Jira for JiraClient {
    async fn find(&self, fingerprint: &str) -> Result<Option<String>, TicketError> {
        let jql = format!(
            "project = {} AND labels = \"{DRIFT_LABEL}\" AND labels = \"{}\"",
            self.project,
            jira_label(fingerprint)
        );
        let request = self
            .request(Method::POST, "/rest/api/3/search/jql")
            .json(&json!({"jql": jql, "fields": ["status"], "maxResults": 1}))
            .map_err(|e| self.error("search", e))?
            // A search changes nothing: safe to retry on 5xx.
            .idempotency(keyward_shared::adapters::http::Idempotency::Idempotent);
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| self.error("search", e))?;
        let v: Value = response.json().map_err(|e| self.error("search", e))?;
        Ok(v["issues"][0]["key"].as_str().map(str::to_owned))
    }

    async fn create(&self, finding: &Finding) -> Result<String, TicketError> {
        let (title, _) = issue_text(finding, None);
        let evidence: Vec<String> = finding
            .evidence
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let request = self
            .request(Method::POST, "/rest/api/3/issue")
            .json(&json!({"fields": {
                "project": {"key": self.project},
                "summary": title,
                "issuetype": {"name": self.issue_type},
                "labels": [DRIFT_LABEL, jira_label(&finding.fingerprint)],
                "description": adf(&format!("Fingerprint: {}\n\nSeverity: {:?}\n\n{}", finding.fingerprint, finding.severity, evidence.join("\n\n"))),
            }}))
            .map_err(|e| self.error("create issue", e))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| self.error("create issue", e))?;
        let v: Value = response.json().map_err(|e| self.error("create issue", e))?;
        v["key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TicketError {
                service: "Jira",
                operation: "create issue",
                reason: SafeText::fixed("the created issue has no key"),
            })
    }

    async fn comment(&self, key: &str, text: &str) -> Result<(), TicketError> {
        let request = self
            .request(Method::POST, &format!("/rest/api/3/issue/{key}/comment"))
            .json(&json!({"body": adf(text)}))
            .map_err(|e| self.error("comment", e))?;
        self.http
            .send(request)
            .await
            .map(|_| ())
            .map_err(|e| self.error("comment", e))
    }

    async fn resolve(&self, key: &str) -> Result<(), TicketError> {
        let response = self
            .http
            .send(self.request(Method::GET, &format!("/rest/api/3/issue/{key}/transitions")))
            .await
            .map_err(|e| self.error("transitions", e))?;
        let v: Value = response.json().map_err(|e| self.error("transitions", e))?;
        let Some(id) = closing_transition(&v) else {
            // Already done or closed (no transition leads there from the status itself).
            return Ok(());
        };
        let request = self
            .request(
                Method::POST,
                &format!("/rest/api/3/issue/{key}/transitions"),
            )
            .json(&json!({"transition": {"id": id}}))
            .map_err(|e| self.error("transition", e))?;
        self.http
            .send(request)
            .await
            .map(|_| ())
            .map_err(|e| self.error("transition", e))
    }
}
