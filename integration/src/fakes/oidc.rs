//! A fake GitHub Actions OIDC issuer (docs.github.com "OpenID Connect reference"):
//!
//! - `GET /.well-known/openid-configuration`: `issuer`, `jwks_uri`, `subject_types_supported`,
//!   `response_types_supported: ["id_token"]`, `id_token_signing_alg_values_supported:
//!   ["RS256"]`, `scopes_supported: ["openid"]`, `claims_supported`;
//! - `GET /.well-known/jwks`: `{"keys": [{"kty":"RSA","alg":"RS256","use":"sig","kid","n","e"}]}`
//!   (the endpoint counts its requests);
//! - RSA-2048 keys generated here; `rotate` adds a key and signs with it from then on,
//!   `retire` drops old keys, `serve_extra_key` publishes an arbitrary JWK (for `oct` keys);
//! - tokens signed RS256 over arbitrary header and payload text, so tests can forge any shape
//!   (duplicate keys, `crit`, odd types) with a valid signature. GitHub's claims: `github_claims`.

use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use super::kit::{self, Kit, Running};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
        }
    }

    fn jwk(&self) -> Value {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": b64(&components.n), "e": b64(&components.e)})
    }
}

#[derive(Default)]
pub struct Keys {
    keys: Vec<SigningKey>,
    /// Extra JWKs published as they are (tests of what the verifier must skip).
    extra: Vec<Value>,
    generation: u32,
}

/// The issuer; its fault switch `down` makes the JWKS endpoint answer 503.
#[derive(Clone)]
pub struct FakeIssuer {
    kit: Kit<Keys>,
}

pub type RunningIssuer = Running<FakeIssuer>;

impl RunningIssuer {
    /// The issuer URL (what tokens carry as `iss`).
    pub fn issuer(&self) -> String {
        self.server.base_url()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks", self.server.base_url())
    }
}

impl FakeIssuer {
    pub async fn start() -> std::io::Result<RunningIssuer> {
        let fake = FakeIssuer {
            kit: Kit::new(Keys::default()),
        };
        fake.rotate();
        let routes = Router::new()
            .route("/.well-known/openid-configuration", get(configuration))
            .route("/.well-known/jwks", get(jwks));
        let kit = fake.kit.clone();
        kit::start(fake, &kit, routes).await
    }

    /// Adds a new key and signs with it from now on; returns its `kid`.
    pub fn rotate(&self) -> String {
        let mut keys = self.kit.lock();
        keys.state.generation += 1;
        let kid = format!("fake-key-{}", keys.state.generation);
        keys.state.keys.push(SigningKey::generate(&kid));
        kid
    }

    /// Stops publishing every key but the newest.
    pub fn retire_old_keys(&self) {
        let mut keys = self.kit.lock();
        let keep = keys.state.keys.len().saturating_sub(1);
        keys.state.keys.drain(..keep);
    }

    pub fn publish_extra_jwk(&self, jwk: Value) {
        self.kit.lock().state.extra.push(jwk);
    }

    pub fn set_down(&self, down: bool) {
        self.kit.lock().faults.set_down(down);
    }

    pub fn current_kid(&self) -> String {
        self.kit
            .lock()
            .state
            .keys
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    pub fn jwks_requests(&self) -> u64 {
        let seen = self.kit.seen();
        seen.iter()
            .filter(|s| s.path == "/.well-known/jwks")
            .count() as u64
    }

    /// Signs `header` and `payload` (JSON text, taken as is) with the key `kid` (or the current
    /// key); returns the compact token.
    pub fn sign_raw(&self, header: &str, payload: &str, kid: Option<&str>) -> String {
        let keys = self.kit.lock();
        let key = match kid {
            Some(kid) => keys.state.keys.iter().find(|k| k.kid == kid),
            None => keys.state.keys.last(),
        }
        .expect("a signing key");
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mut signature = vec![0u8; key.pair.public_modulus_len()];
        key.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing");
        format!("{signing_input}.{}", b64(&signature))
    }

    /// A well-formed token: GitHub's header with the current `kid`, and `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header =
            json!({"typ": "JWT", "alg": "RS256", "x5t": "fake", "kid": self.current_kid()});
        self.sign_raw(&header.to_string(), &claims.to_string(), None)
    }

    /// The claims of a GitHub Actions job token for a push to main, issued now, valid 5 min.
    pub fn github_claims(&self, audience: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        let issuer = self.kit.base_url();
        json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": "repo:acme/payments:environment:prod",
            "aud": audience,
            "ref": "refs/heads/main",
            "sha": "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "repository": "acme/payments",
            "repository_owner": "acme",
            "repository_owner_id": "1000001",
            "repository_visibility": "private",
            "repository_id": "2000002",
            "run_id": "9100000001",
            "run_number": "42",
            "run_attempt": "1",
            "actor": "octocat",
            "actor_id": "583231",
            "workflow": "deploy",
            "workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
            "workflow_sha": "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "job_workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
            "job_workflow_sha": "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_type": "branch",
            "ref_protected": "true",
            "environment": "prod",
            "runner_environment": "github-hosted",
            "iss": issuer,
            "nbf": now - 600,
            "exp": now + 300,
            "iat": now,
        })
    }
}

async fn configuration(State(fake): State<FakeIssuer>) -> axum::Json<Value> {
    let issuer = fake.kit.base_url();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
            "repository_id", "repository_owner", "repository_owner_id", "run_id", "run_number",
            "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha",
            "head_ref", "base_ref", "event_name", "ref_type", "environment", "job_workflow_ref",
            "job_workflow_sha", "runner_environment"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
}

async fn jwks(State(fake): State<FakeIssuer>, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut keys = fake.kit.lock();
    let response = if keys.faults.down() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response()
    } else {
        let mut list: Vec<Value> = keys.state.keys.iter().map(SigningKey::jwk).collect();
        list.extend(keys.state.extra.iter().cloned());
        axum::Json(json!({ "keys": list })).into_response()
    };
    let seen = kit::Seen::new(&Method::GET, &uri, response.status().as_u16());
    keys.seen.push(seen);
    response
}
