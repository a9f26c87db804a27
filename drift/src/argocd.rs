//! The Argo CD REST API adapter (`assets/swagger.json` of argoproj/argo-cd):
//! `GET /api/v1/applications/{name}` (`status.sync.status`, `status.health.status`) and
//! `GET /api/v1/applications/{name}/managed-resources` (`items[]` with `group`, `kind`,
//! `namespace`, `name`, and `liveState`/`targetState` as JSON text), with
//! `Authorization: Bearer <token>`. Errors arrive as grpc-gateway bodies
//! `{"error", "code", "message"}`: 401 (code 16) for a missing or invalid token, 403 (code 7)
//! `permission denied` both for an application the token may not read and for one that does
//! not exist (Argo CD does not tell the two apart), 404 (code 5) when a project was named.

use futures::future::BoxFuture;
use keyward_shared::adapters::http::Method;
use keyward_shared::adapters::http::header::{ACCEPT, HeaderValue};
use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest};
use keyward_shared::redact::SafeText;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::workload::{Application, ArgoCd, ArgoCdError, ManagedResource};

pub struct ArgoCdClient {
    pub http: HttpClient,
    /// `ARGOCD_SERVER`, without a trailing `/`.
    pub server: String,
    /// `argocd_auth_token` of the drift credentials secret (registered with the redactor).
    pub token: SecretString,
}

#[derive(Deserialize)]
struct AppJson {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    status: StatusJson,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct StatusJson {
    #[serde(default)]
    sync: Named,
    #[serde(default)]
    health: Named,
}

#[derive(Deserialize, Default)]
struct Named {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct ResourcesJson {
    #[serde(default)]
    items: Vec<ResourceJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceJson {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    live_state: Option<String>,
    #[serde(default)]
    target_state: Option<String>,
}

/// A state field: JSON text of an object, or `"null"`/empty for none.
fn state(text: Option<String>) -> Result<Option<Value>, String> {
    match text.as_deref().map(str::trim) {
        None | Some("") | Some("null") => Ok(None),
        Some(text) => serde_json::from_str::<Value>(text)
            .map(|v| v.is_object().then_some(v))
            .map_err(|e| format!("a state is not JSON ({e})")),
    }
}

/// Application names are DNS labels: anything else is refused before a URL is built.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl ArgoCdClient {
    fn request(&self, path: &str) -> HttpRequest {
        HttpRequest::new(Method::GET, format!("{}{path}", self.server))
            .bearer(self.token.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
    }

    fn error(&self, operation: &'static str, e: HttpError) -> ArgoCdError {
        let reason = match e.status().map(|s| s.as_u16()) {
            Some(401) => "the token was refused (401): check argocd_auth_token".to_owned(),
            Some(403) => {
                "permission denied (403): the application does not exist or the token may not read it"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        ArgoCdError {
            operation,
            reason: self.http.redactor().safe(&reason),
        }
    }

    fn checked(&self, operation: &'static str, name: &str) -> Result<(), ArgoCdError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(ArgoCdError {
                operation,
                reason: SafeText::fixed("the application name is not a Kubernetes resource name"),
            })
        }
    }

    /// `GET /api/v1/applications/{name}{suffix}`, its body as `T`; the name checked first.
    async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        name: &str,
        suffix: &str,
    ) -> Result<T, ArgoCdError> {
        self.checked(operation, name)?;
        let response = self
            .http
            .send(self.request(&format!("/api/v1/applications/{name}{suffix}")))
            .await
            .map_err(|e| self.error(operation, e))?;
        response.json().map_err(|e| self.error(operation, e))
    }

    async fn get_application(&self, name: &str) -> Result<Application, ArgoCdError> {
        let app: AppJson = self.get_json("get application", name, "").await?;
        Ok(Application {
            name: if app.metadata.name.is_empty() {
                name.to_owned()
            } else {
                app.metadata.name
            },
            sync_status: app.status.sync.status,
            health_status: app.status.health.status,
        })
    }

    async fn get_resources(&self, name: &str) -> Result<Vec<ManagedResource>, ArgoCdError> {
        const OP: &str = "list managed resources";
        let list: ResourcesJson = self.get_json(OP, name, "/managed-resources").await?;
        list.items
            .into_iter()
            .map(|r| {
                let bad = |reason: String| ArgoCdError {
                    operation: OP,
                    reason: self.http.redactor().safe(&reason),
                };
                Ok(ManagedResource {
                    live: state(r.live_state).map_err(bad)?,
                    target: state(r.target_state).map_err(bad)?,
                    group: r.group,
                    kind: r.kind,
                    namespace: r.namespace,
                    name: r.name,
                })
            })
            .collect()
    }
}

impl ArgoCd for ArgoCdClient {
    fn application<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Application, ArgoCdError>> {
        Box::pin(self.get_application(name))
    }

    fn managed_resources<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ManagedResource>, ArgoCdError>> {
        Box::pin(self.get_resources(name))
    }
}
