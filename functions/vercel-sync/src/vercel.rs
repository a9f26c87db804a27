//! The Vercel REST API as the sync needs it: a narrow port ([`VercelApi`]) and its HTTP adapter
//! ([`HttpVercel`]) over the shared client (timeouts, `Retry-After` and `X-RateLimit-Reset`
//! honoured with jitter, 429 retried for every method, 5xx only for idempotent ones).
//!
//! Facts (from Vercel's OpenAPI-generated SDK and CLI, see `../shared/reference/vercel.md`):
//! - every call names the project by id or name and its team by `?teamId=` (id `team_...`) or
//!   `?slug=`;
//! - `GET /v10/projects/{p}/env` lists records, possibly paginated (`pagination.next` is the
//!   `until` of the next page); sensitive records come back without a value;
//! - `POST /v10/projects/{p}/env?upsert=true` takes an array and answers 201
//!   `{created, failed}`: some elements may fail while others are written;
//! - `DELETE /v9/projects/{p}/env/{id}`; `GET /v9/projects/{p}/custom-environments` gives the
//!   ids that env records use for custom environments (slugs are not targets).

use std::future::Future;

use keyward_shared::adapters::http::Method;
use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest};
use keyward_shared::redact::SafeText;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

pub use keyward_shared::vercel_ledger::ProjectRef;

/// `teamId=` for an id, `slug=` for a slug; nothing for a personal account.
fn team_query(project: &ProjectRef) -> String {
    match &project.team {
        Some(team) if team.starts_with("team_") => format!("teamId={team}"),
        Some(slug) => format!("slug={slug}"),
        None => String::new(),
    }
}

/// One environment-variable record as Vercel lists it. Values are never read: parity comes
/// from the ledger. Unknown fields are ignored (Vercel adds fields often).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvRecord {
    pub id: String,
    pub key: String,
    #[serde(rename = "type", default)]
    pub env_type: String,
    /// An array, or a single string on older records.
    #[serde(default, deserialize_with = "one_or_many")]
    pub target: Vec<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub git_branch: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub custom_environment_ids: Vec<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// Set on records an integration (marketplace) owns: never touched.
    #[serde(default)]
    pub configuration_id: Option<String>,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub system: Option<bool>,
}

impl EnvRecord {
    /// Records keyward must never modify or delete, whoever wrote the comment.
    pub fn is_protected(&self) -> bool {
        self.configuration_id.is_some() || self.system == Some(true) || self.env_type == "system"
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null,
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null => Vec::new(),
    })
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// One element of a batch upsert. The value only ever leaves the process in the request body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEnv {
    pub key: String,
    #[serde(serialize_with = "expose")]
    pub value: SecretString,
    #[serde(rename = "type")]
    pub env_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_environment_ids: Vec<String>,
    pub comment: String,
}

fn expose<S: serde::Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

/// Why Vercel did not write one element of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedEnv {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub target: Vec<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub git_branch: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertResult {
    pub created: Vec<EnvRecord>,
    pub failed: Vec<FailedEnv>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CustomEnvironment {
    pub id: String,
    pub slug: String,
}

/// A Vercel call that failed as a whole.
#[derive(Debug, thiserror::Error)]
#[error("Vercel {operation} for {project}: {reason}")]
pub struct VercelError {
    pub operation: &'static str,
    pub project: String,
    /// The HTTP status when Vercel answered.
    pub status: Option<u16>,
    /// Vercel's `error.code` when the body had one (`rate_limited`, `forbidden`, ...).
    pub code: Option<String>,
    pub reason: SafeText,
}

impl VercelError {
    /// Whether a later attempt can succeed without anyone changing anything: throttling,
    /// Vercel's own faults, or no answer at all.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(status) => status == 429 || status >= 500,
        }
    }
}

/// What the sync needs from Vercel.
pub trait VercelApi: Send + Sync {
    /// Every record of the project (all pages).
    fn list_envs(
        &self,
        project: &ProjectRef,
    ) -> impl Future<Output = Result<Vec<EnvRecord>, VercelError>> + Send;
    /// One batch upsert (`?upsert=true`, array body).
    fn upsert_envs(
        &self,
        project: &ProjectRef,
        envs: &[NewEnv],
    ) -> impl Future<Output = Result<UpsertResult, VercelError>> + Send;
    /// Deletes one record; a record already gone is success.
    fn delete_env(
        &self,
        project: &ProjectRef,
        id: &str,
    ) -> impl Future<Output = Result<(), VercelError>> + Send;
    fn custom_environments(
        &self,
        project: &ProjectRef,
    ) -> impl Future<Output = Result<Vec<CustomEnvironment>, VercelError>> + Send;
    /// Triggers a deploy hook (its URL is the credential; no token is sent).
    fn trigger_deploy_hook(
        &self,
        project: &ProjectRef,
        hook_url: &SecretString,
    ) -> impl Future<Output = Result<(), VercelError>> + Send;
}

/// The list endpoint's page cap: a `next` that does not move is a server fault, not a loop.
const MAX_LIST_PAGES: usize = 1_000;

pub struct HttpVercel {
    http: HttpClient,
    api_url: String,
    token: SecretString,
}

impl HttpVercel {
    pub fn new(http: HttpClient, api_url: impl Into<String>, token: SecretString) -> Self {
        http.redactor().register(&token);
        Self {
            http,
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            token,
        }
    }

    fn url(&self, path: &str, project: &ProjectRef, extra_query: &[String]) -> String {
        let mut query: Vec<String> = Vec::new();
        let team = team_query(project);
        if !team.is_empty() {
            query.push(team);
        }
        query.extend(extra_query.iter().cloned());
        let mut url = format!("{}{}", self.api_url, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    fn project_path(project: &ProjectRef) -> String {
        // Ids and names are `[A-Za-z0-9._-]` (checked by the tag contract): no escaping needed.
        project.project.clone()
    }

    fn error(&self, operation: &'static str, project: &ProjectRef, err: HttpError) -> VercelError {
        let (status, code) = match &err {
            HttpError::Status { status, body, .. } => {
                (Some(status.as_u16()), error_code(body.as_str()))
            }
            HttpError::WaitTooLong { .. } => (Some(429), Some("rate_limited".to_owned())),
            _ => (None, None),
        };
        VercelError {
            operation,
            project: project.to_string(),
            status,
            code,
            reason: self.http.redactor().safe(&err.to_string()),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        project: &ProjectRef,
        body: &[u8],
    ) -> Result<T, VercelError> {
        serde_json::from_slice(body).map_err(|e| self.undocumented(operation, project, &e))
    }

    fn undocumented(
        &self,
        operation: &'static str,
        project: &ProjectRef,
        e: &serde_json::Error,
    ) -> VercelError {
        VercelError {
            operation,
            project: project.to_string(),
            status: None,
            code: None,
            // Position only: serde can quote the body.
            reason: self.http.redactor().safe(&format!(
                "the response is not the documented JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
        }
    }
}

/// `error.code` of Vercel's error body, when the excerpt is (still) parseable JSON.
fn error_code(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: Option<String>,
    }
    serde_json::from_str::<Body>(body)
        .ok()
        .and_then(|b| b.error)
        .and_then(|e| e.code)
}

/// One page of the list endpoint: its records and the `until` of the next page. Any of the
/// endpoint's three response shapes.
pub fn decode_list_page(body: &[u8]) -> Result<ListPage, serde_json::Error> {
    Ok(match serde_json::from_slice::<ListBody>(body)? {
        ListBody::One(record) => ListPage {
            records: vec![record],
            next: None,
            hidden_production: 0,
        },
        ListBody::Page {
            envs,
            pagination,
            hidden_production,
        } => ListPage {
            records: envs,
            next: pagination.and_then(|p| p.next),
            hidden_production: hidden_production.unwrap_or(0),
        },
    })
}

/// One page of the list endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub records: Vec<EnvRecord>,
    /// The `until` of the next page.
    pub next: Option<i64>,
    /// `hiddenProductionEnvCount`: production records this token cannot see.
    pub hidden_production: u64,
}

/// The batch upsert's 201 body (or a 4xx body listing `failed`).
pub fn decode_upsert(body: &[u8]) -> Result<UpsertResult, serde_json::Error> {
    let body: CreatedBody = serde_json::from_slice(body)?;
    Ok(UpsertResult {
        created: body.created,
        failed: body.failed.into_iter().map(|f| f.error).collect(),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListBody {
    Page {
        envs: Vec<EnvRecord>,
        #[serde(default)]
        pagination: Option<Pagination>,
        /// Production records the token may not see: an upsert into a slot that looks empty
        /// could overwrite one of them.
        #[serde(default, rename = "hiddenProductionEnvCount")]
        hidden_production: Option<u64>,
    },
    One(EnvRecord),
}

#[derive(Deserialize)]
struct Pagination {
    next: Option<i64>,
}

#[derive(Deserialize)]
struct CreatedBody {
    #[serde(default, deserialize_with = "created_list")]
    created: Vec<EnvRecord>,
    #[serde(default)]
    failed: Vec<FailedWrapper>,
}

#[derive(Deserialize)]
struct FailedWrapper {
    error: FailedEnv,
}

fn created_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvRecord>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<EnvRecord>),
        One(Box<EnvRecord>),
        Null,
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(r) => vec![*r],
        OneOrMany::Null => Vec::new(),
    })
}

#[derive(Deserialize)]
struct CustomEnvironmentsBody {
    #[serde(default)]
    environments: Vec<CustomEnvironment>,
}

impl VercelApi for HttpVercel {
    async fn list_envs(&self, project: &ProjectRef) -> Result<Vec<EnvRecord>, VercelError> {
        let path = format!("/v10/projects/{}/env", Self::project_path(project));
        let mut out = Vec::new();
        let mut until: Option<i64> = None;
        for _ in 0..MAX_LIST_PAGES {
            let extra: Vec<String> = until.map(|u| format!("until={u}")).into_iter().collect();
            let response = self
                .http
                .send(
                    HttpRequest::new(Method::GET, self.url(&path, project, &extra))
                        .bearer(self.token.clone()),
                )
                .await
                .map_err(|e| self.error("list", project, e))?;
            let ListPage {
                records: envs,
                next,
                hidden_production,
            } = decode_list_page(&response.body)
                .map_err(|e| self.undocumented("list", project, &e))?;
            if hidden_production > 0 {
                // Not transient: the token's access has to change first.
                return Err(VercelError {
                    operation: "list",
                    project: project.to_string(),
                    status: Some(403),
                    code: Some("hidden_production_variables".into()),
                    reason: self.http.redactor().safe(&format!(
                        "the token cannot see {hidden_production} production variable(s); an upsert could overwrite one of them unseen, so nothing is written until the token may see production"
                    )),
                });
            }
            out.extend(envs);
            match next {
                Some(next) if Some(next) != until => until = Some(next),
                Some(_) => {
                    return Err(VercelError {
                        operation: "list",
                        project: project.to_string(),
                        status: None,
                        code: None,
                        reason: SafeText::fixed(
                            "pagination did not advance (the same `next` twice)",
                        ),
                    });
                }
                None => return Ok(out),
            }
        }
        Err(VercelError {
            operation: "list",
            project: project.to_string(),
            status: None,
            code: None,
            reason: SafeText::fixed("more pages than any project can hold"),
        })
    }

    async fn upsert_envs(
        &self,
        project: &ProjectRef,
        envs: &[NewEnv],
    ) -> Result<UpsertResult, VercelError> {
        let path = format!("/v10/projects/{}/env", Self::project_path(project));
        let request = HttpRequest::new(
            Method::POST,
            self.url(&path, project, &["upsert=true".to_owned()]),
        )
        .bearer(self.token.clone())
        .json(&envs)
        .map_err(|e| self.error("upsert", project, e))?;
        match self.http.send(request).await {
            Ok(response) => {
                decode_upsert(&response.body).map_err(|e| self.undocumented("upsert", project, &e))
            }
            // Every element failed: Vercel answers 4xx and may still list them in `failed`.
            Err(HttpError::Status { status, body, .. })
                if status.is_client_error() && status.as_u16() != 429 =>
            {
                if let Ok(parsed) = serde_json::from_str::<CreatedBody>(body.as_str())
                    && !parsed.failed.is_empty()
                {
                    return Ok(UpsertResult {
                        created: parsed.created,
                        failed: parsed.failed.into_iter().map(|f| f.error).collect(),
                    });
                }
                Err(VercelError {
                    operation: "upsert",
                    project: project.to_string(),
                    status: Some(status.as_u16()),
                    code: error_code(body.as_str()),
                    reason: body,
                })
            }
            Err(err) => Err(self.error("upsert", project, err)),
        }
    }

    async fn delete_env(&self, project: &ProjectRef, id: &str) -> Result<(), VercelError> {
        let path = format!("/v9/projects/{}/env/{id}", Self::project_path(project));
        match self
            .http
            .send(
                HttpRequest::new(Method::DELETE, self.url(&path, project, &[]))
                    .bearer(self.token.clone()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.status().map(|s| s.as_u16()) == Some(404) => Ok(()),
            Err(err) => Err(self.error("delete", project, err)),
        }
    }

    async fn custom_environments(
        &self,
        project: &ProjectRef,
    ) -> Result<Vec<CustomEnvironment>, VercelError> {
        let path = format!(
            "/v9/projects/{}/custom-environments",
            Self::project_path(project)
        );
        let response = self
            .http
            .send(
                HttpRequest::new(Method::GET, self.url(&path, project, &[]))
                    .bearer(self.token.clone()),
            )
            .await
            .map_err(|e| self.error("custom environments", project, e))?;
        Ok(self
            .decode::<CustomEnvironmentsBody>("custom environments", project, &response.body)?
            .environments)
    }

    async fn trigger_deploy_hook(
        &self,
        project: &ProjectRef,
        hook_url: &SecretString,
    ) -> Result<(), VercelError> {
        self.http.redactor().register(hook_url);
        // A repeated POST starts a second deployment: retried only where Vercel never acted.
        self.http
            .send(HttpRequest::new(Method::POST, hook_url.expose_secret()))
            .await
            .map(|_| ())
            .map_err(|e| self.error("deploy hook", project, e))
    }
}
