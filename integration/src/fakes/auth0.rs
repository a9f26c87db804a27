//! A fake Auth0 tenant: the authentication API's client-credentials grant and the Management
//! API's `rotate-secret`, from Auth0's public documentation:
//!
//! - `POST /oauth/token` (JSON or form body): 200 `{access_token, scope, expires_in: 86400,
//!   token_type: "Bearer"}`; wrong client id or secret 401 `{error: "access_denied",
//!   error_description: "Unauthorized"}`; authenticated but no client grant for the audience 403
//!   `{error: "access_denied", error_description: "Client is not authorized to access ..."}`;
//!   other grant types 400 `unsupported_grant_type`.
//! - `POST /api/v2/clients/{id}/rotate-secret` (scope `update:client_keys`): 200 with the client
//!   object holding the new `client_secret`; the old secret stops working at once and the new one
//!   may take a while to apply ("up to 30 seconds"); errors in the Management API's shape
//!   `{statusCode, error, message, errorCode}`: 401 missing/invalid token, 403
//!   `insufficient_scope`, 404 `inexistent_client`, 429 `too_many_requests`.
//! - Every response carries `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`
//!   (epoch seconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{FakeServer, serve};

pub const ROTATE_SCOPE: &str = "update:client_keys";
const RATE_LIMIT: u32 = 50;

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

/// One request as the fake saw it (no bodies: they hold secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
struct Tenant {
    clients: HashMap<String, Client>,
    tokens: HashMap<String, IssuedToken>,
    /// The next this many Management API calls get 429.
    throttle_next: u32,
    /// How long a rotated secret takes to apply.
    propagation: Duration,
    seen: Vec<Seen>,
    counter: u64,
}

#[derive(Clone)]
pub struct FakeAuth0 {
    tenant: Arc<Mutex<Tenant>>,
}

pub struct RunningAuth0 {
    pub fake: FakeAuth0,
    pub server: FakeServer,
}

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
            tenant: Arc::default(),
        };
        let router = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v2/clients/{id}/rotate-secret", post(rotate_secret))
            .with_state(fake.clone());
        let server = serve(router).await?;
        Ok(RunningAuth0 { fake, server })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.tenant.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an application; returns its client id.
    pub fn add_client(&self, name: &str, secret: &str) -> String {
        let mut tenant = self.lock();
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
        let mut tenant = self.lock();
        if let Some(client) = tenant.clients.get_mut(client_id) {
            client.grants.insert(
                audience.to_owned(),
                scopes.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
    }

    /// The secret that logs in now (after any pending rotation applied).
    pub fn secret_of(&self, client_id: &str) -> Option<String> {
        let mut tenant = self.lock();
        let client = tenant.clients.get_mut(client_id)?;
        apply_due(client);
        Some(client.secret.clone())
    }

    pub fn throttle_next(&self, calls: u32) {
        self.lock().throttle_next = calls;
    }

    pub fn set_propagation(&self, delay: Duration) {
        self.lock().propagation = delay;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn rotations(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.ends_with("/rotate-secret") && s.status == 200)
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
    (0..len)
        .map(|_| ALPHABET[fastrand_index(ALPHABET.len())] as char)
        .collect()
}

fn fastrand_index(n: usize) -> usize {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    (u64::from_le_bytes(bytes) % n as u64) as usize
}

fn with_rate_headers(mut response: Response, remaining: u32) -> Response {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + 1)
        .unwrap_or(0);
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    response
}

fn record(fake: &FakeAuth0, path: &str, response: Response) -> Response {
    fake.lock().seen.push(Seen {
        method: "POST".into(),
        path: path.to_owned(),
        status: response.status().as_u16(),
    });
    let remaining = if response.status() == StatusCode::TOO_MANY_REQUESTS {
        0
    } else {
        RATE_LIMIT - 1
    };
    with_rate_headers(response, remaining)
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
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let response = issue_token(&fake, &headers, &body);
    record(&fake, "/oauth/token", response)
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
    let mut tenant = fake.lock();
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

async fn rotate_secret(
    State(fake): State<FakeAuth0>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v2/clients/{id}/rotate-secret");
    let response = rotate(&fake, &id, &headers);
    record(&fake, &path, response)
}

fn rotate(fake: &FakeAuth0, id: &str, headers: &HeaderMap) -> Response {
    let mut tenant = fake.lock();
    if tenant.throttle_next > 0 {
        tenant.throttle_next -= 1;
        return management_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Global limit has been reached",
            Some("too_many_requests"),
        );
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return management_error(StatusCode::UNAUTHORIZED, "Missing authentication", None);
    };
    let Some(issued) = tenant.tokens.get(bearer).cloned() else {
        return management_error(StatusCode::UNAUTHORIZED, "Invalid token", None);
    };
    if !issued.audience.ends_with("/api/v2/") {
        return management_error(
            StatusCode::UNAUTHORIZED,
            &format!("Bad audience: {}", issued.audience),
            None,
        );
    }
    if !issued.scopes.iter().any(|s| s == ROTATE_SCOPE) {
        return management_error(
            StatusCode::FORBIDDEN,
            &format!("Insufficient scope, expected any of: {ROTATE_SCOPE}"),
            Some("insufficient_scope"),
        );
    }
    let propagation = tenant.propagation;
    let Some(client) = tenant.clients.get_mut(id) else {
        return management_error(
            StatusCode::NOT_FOUND,
            "The client does not exist",
            Some("inexistent_client"),
        );
    };
    let new_secret = random_secret(64);
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
