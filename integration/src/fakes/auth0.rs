//! A fake Auth0 tenant: the authentication API's client-credentials grant and the Management
//! API's client update (of `client_secret`), from Auth0's public documentation:
//!
//! - `POST /oauth/token` (JSON or form body): 200 `{access_token, scope, expires_in: 86400,
//!   token_type: "Bearer"}`; wrong client id or secret 401 `{error: "access_denied",
//!   error_description: "Unauthorized"}`; authenticated but no client grant for the audience 403
//!   `{error: "access_denied", error_description: "Client is not authorized to access ..."}`;
//!   other grant types 400 `unsupported_grant_type`.
//! - `PATCH /api/v2/clients/{id}` with `{"client_secret": "..."}` (the `client_secret` attribute
//!   needs scope `update:client_keys`): 200 with the client object; the old secret stops working
//!   at once and the new one may take a while to apply ("up to 30 seconds"); errors in the
//!   Management API's shape `{statusCode, error, message, errorCode}`: 400 `invalid_body`
//!   (this fake updates only `client_secret`), 401 missing/invalid token, 403
//!   `insufficient_scope`, 404 `inexistent_client`, 429 `too_many_requests`. Other Management
//!   API routes are 404, as for a path Auth0 does not serve.
//! - Every response carries `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`
//!   (epoch seconds).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde_json::{Value, json};

use super::kit::{self, Kit, Running};

pub use super::kit::Seen;

pub const ROTATE_SCOPE: &str = "update:client_keys";
const RATE_LIMIT: u64 = 50;

#[derive(Debug, Clone)]
struct Client {
    name: String,
    secret: String,
    /// A rotated secret that Auth0 has not applied yet, and when it applies.
    applying: Option<(String, Instant)>,
    /// Audiences this client has a client grant for, with the granted scopes.
    grants: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    audience: String,
    scopes: Vec<String>,
}

#[derive(Default)]
pub struct Tenant {
    clients: HashMap<String, Client>,
    tokens: HashMap<String, IssuedToken>,
    /// How long a rotated secret takes to apply.
    propagation: Duration,
    counter: u64,
}

/// The tenant; its throttle applies to Management API calls (429).
#[derive(Clone)]
pub struct FakeAuth0 {
    kit: Kit<Tenant>,
}

pub type RunningAuth0 = Running<FakeAuth0>;

impl RunningAuth0 {
    /// The `domain` a secret names: loopback `http://` (keyward accepts plain http only there).
    pub fn domain(&self) -> String {
        self.server.base_url()
    }

    pub fn management_audience(&self) -> String {
        format!("{}/api/v2/", self.server.base_url())
    }
}

impl FakeAuth0 {
    pub async fn start() -> std::io::Result<RunningAuth0> {
        let fake = FakeAuth0 {
            kit: Kit::new(Tenant::default()),
        };
        let routes = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v2/clients/{id}", patch(update_client));
        let kit = fake.kit.clone();
        kit::start(fake, &kit, routes).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, kit::Inner<Tenant>> {
        self.kit.lock()
    }

    /// Registers an application; returns its client id.
    pub fn add_client(&self, name: &str, secret: &str) -> String {
        let mut guard = self.lock();
        let tenant = &mut guard.state;
        tenant.counter += 1;
        let id = format!(
            "{:0>32}",
            format!("{name}{}", tenant.counter).replace(['-', '_'], "")
        );
        tenant.clients.insert(
            id.clone(),
            Client {
                name: name.to_owned(),
                secret: secret.to_owned(),
                applying: None,
                grants: HashMap::new(),
            },
        );
        id
    }

    pub fn grant(&self, client_id: &str, audience: &str, scopes: &[&str]) {
        if let Some(client) = self.lock().state.clients.get_mut(client_id) {
            client.grants.insert(
                audience.to_owned(),
                scopes.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
    }

    /// The secret that logs in now (after any pending rotation applied).
    pub fn secret_of(&self, client_id: &str) -> Option<String> {
        let mut guard = self.lock();
        let client = guard.state.clients.get_mut(client_id)?;
        apply_due(client);
        Some(client.secret.clone())
    }

    pub fn throttle_next(&self, calls: u32) {
        self.lock().faults.throttle_next(calls, 0);
    }

    pub fn set_propagation(&self, delay: Duration) {
        self.lock().state.propagation = delay;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.kit.seen()
    }

    /// Client secrets set through the Management API (answered 200).
    pub fn secret_updates(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == "PATCH" && s.status == 200)
            .count()
    }
}

fn apply_due(client: &mut Client) {
    if let Some((secret, at)) = &client.applying
        && Instant::now() >= *at
    {
        client.secret = secret.clone();
        client.applying = None;
    }
}

fn random_secret(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    kit::random_text(ALPHABET, len)
}

fn record(fake: &FakeAuth0, method: &Method, uri: &Uri, response: Response) -> Response {
    let status = response.status();
    fake.lock()
        .seen
        .push(Seen::new(method, uri, status.as_u16()));
    let remaining = if status == StatusCode::TOO_MANY_REQUESTS {
        0
    } else {
        RATE_LIMIT - 1
    };
    let reset = chrono::Utc::now().timestamp() + 1;
    kit::with_rate_headers(
        response,
        RATE_LIMIT,
        &[
            ("x-ratelimit-remaining", HeaderValue::from(remaining)),
            ("x-ratelimit-reset", HeaderValue::from(reset)),
        ],
    )
}

fn auth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn management_error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let mut body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    if let Some(code) = code {
        body["errorCode"] = Value::String(code.to_owned());
    }
    (status, axum::Json(body)).into_response()
}

/// Auth0 accepts the token request as JSON or as a form.
fn token_fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(body).ok()?;
        Some(
            text.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.replace('+', " ")))
                .collect(),
        )
    } else {
        let value: Value = serde_json::from_slice(body).ok()?;
        Some(
            value
                .as_object()?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect(),
        )
    }
}

async fn token(
    State(fake): State<FakeAuth0>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let response = issue_token(&fake, &headers, &body);
    record(&fake, &Method::POST, &uri, response)
}

fn issue_token(fake: &FakeAuth0, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(fields) = token_fields(headers, body) else {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        );
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return auth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Unsupported grant type: {}", field("grant_type")),
        );
    }
    let mut guard = fake.lock();
    let tenant = &mut guard.state;
    let Some(client) = tenant.clients.get_mut(field("client_id")) else {
        return auth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    };
    apply_due(client);
    if client.secret != field("client_secret") || field("client_secret").is_empty() {
        return auth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let audience = field("audience").to_owned();
    let Some(scopes) = client.grants.get(&audience).cloned() else {
        return auth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            &format!(
                "Client is not authorized to access \"{audience}\". You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"
            ),
        );
    };
    let access_token = format!("fake-at-{}", random_secret(40));
    tenant.tokens.insert(
        access_token.clone(),
        IssuedToken {
            audience,
            scopes: scopes.clone(),
        },
    );
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": access_token,
            "scope": scopes.join(" "),
            "expires_in": 86400,
            "token_type": "Bearer",
        })),
    )
        .into_response()
}

async fn update_client(
    State(fake): State<FakeAuth0>,
    uri: Uri,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let response = set_secret(&fake, &id, &headers, &body);
    record(&fake, &Method::PATCH, &uri, response)
}

/// The Management API's refusal of a bearer token without `update:client_keys`, if any.
fn refuse_keys(tenant: &Tenant, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return Some(management_error(
            StatusCode::UNAUTHORIZED,
            "Missing authentication",
            None,
        ));
    };
    let Some(issued) = tenant.tokens.get(bearer) else {
        return Some(management_error(
            StatusCode::UNAUTHORIZED,
            "Invalid token",
            None,
        ));
    };
    if !issued.audience.ends_with("/api/v2/") {
        return Some(management_error(
            StatusCode::UNAUTHORIZED,
            &format!("Bad audience: {}", issued.audience),
            None,
        ));
    }
    if !issued.scopes.iter().any(|s| s == ROTATE_SCOPE) {
        return Some(management_error(
            StatusCode::FORBIDDEN,
            &format!("Insufficient scope, expected any of: {ROTATE_SCOPE}"),
            Some("insufficient_scope"),
        ));
    }
    None
}

fn set_secret(fake: &FakeAuth0, id: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut guard = fake.lock();
    let kit::Inner {
        state: tenant,
        faults,
        ..
    } = &mut *guard;
    if faults.take_throttle().is_some() {
        return management_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Global limit has been reached",
            Some("too_many_requests"),
        );
    }
    if let Some(refused) = refuse_keys(tenant, headers) {
        return refused;
    }
    let new_secret = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => match (fields.get("client_secret"), fields.len()) {
            (Some(Value::String(secret)), 1) if !secret.is_empty() => secret.clone(),
            _ => {
                let extra: Vec<&String> = fields.keys().filter(|k| *k != "client_secret").collect();
                return management_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Payload validation error: 'Additional properties not allowed: {extra:?}' (this fake updates client_secret only)"
                    ),
                    Some("invalid_body"),
                );
            }
        },
        _ => {
            return management_error(
                StatusCode::BAD_REQUEST,
                "Payload validation error: 'Expected type object but found type string'.",
                Some("invalid_body"),
            );
        }
    };
    let propagation = tenant.propagation;
    let Some(client) = tenant.clients.get_mut(id) else {
        return management_error(
            StatusCode::NOT_FOUND,
            "The client does not exist",
            Some("inexistent_client"),
        );
    };
    // The old secret dies at once; the new one applies after the propagation delay.
    client.secret = String::new();
    client.applying = Some((new_secret.clone(), Instant::now() + propagation));
    apply_due(client);
    (
        StatusCode::OK,
        axum::Json(json!({
            "client_id": id,
            "client_secret": new_secret,
            "name": client.name,
            "app_type": "non_interactive",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "is_first_party": true,
        })),
    )
        .into_response()
}
