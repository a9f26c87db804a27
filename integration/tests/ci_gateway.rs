//! The CI gateway against a fake GitHub OIDC issuer over real HTTP: the attack list of
//! `../shared/reference/github-oidc.md` §4, each case failing closed with its own reason; the
//! policy cases (forks, `pull_request_target`, renamed and recreated repositories, runners);
//! JWKS rotation and rate limits; replay; and preflight against moto with the sample manifest.

use keyward_integration::support::http_client;
use std::time::Duration;

use base64::Engine as _;
use ci_gateway::jwks::{HttpJwksFetcher, JwksCache};
use ci_gateway::{Gateway, Request, Response};
use keyward_integration::fakes::oidc::{FakeIssuer, RunningIssuer};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::events::{EventData, Outcome};
use keyward_shared::ports::{
    CatalogEntry, InMemoryEventPublisher, InMemoryMarkerStore, InMemorySecretCatalog,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://keyward.acme.test/ci";

type TestGateway =
    Gateway<HttpJwksFetcher, InMemorySecretCatalog, InMemoryMarkerStore, InMemoryEventPublisher>;

struct World {
    issuer: RunningIssuer,
    gateway: TestGateway,
}

fn http() -> HttpClient {
    http_client(
        "keyward-ci-gateway-test",
        Duration::from_secs(3),
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
    )
}

async fn world_with(entries: Vec<CatalogEntry>) -> World {
    let issuer = FakeIssuer::start().await.unwrap();
    let keys = JwksCache::new(
        HttpJwksFetcher(http()),
        [(issuer.issuer(), issuer.jwks_url())],
    );
    // The shipped policy, its bindings bound to the fake issuer (as for a GHE server).
    let config = keyward_integration::support::config_for_issuer(&issuer.issuer()).unwrap();
    let loaded = ci_gateway::load(config.path()).unwrap();
    let gateway = Gateway {
        keys,
        audience: AUDIENCE.into(),
        loaded,
        catalog: InMemorySecretCatalog { entries },
        replay: InMemoryMarkerStore::default(),
        publisher: InMemoryEventPublisher::default(),
        drift: None,
    };
    World { issuer, gateway }
}

async fn world() -> World {
    world_with(Vec::new()).await
}

impl World {
    fn claims(&self) -> Value {
        self.issuer.fake.github_claims(AUDIENCE)
    }

    fn token(&self, claims: &Value) -> String {
        self.issuer.fake.sign(claims)
    }

    fn with_header(&self, header: Value, claims: &Value) -> String {
        self.issuer
            .fake
            .sign_raw(&header.to_string(), &claims.to_string(), None)
    }

    async fn call(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.gateway
            .handle(&Request {
                method: "POST".into(),
                path: path.into(),
                authorization: token.map(|t| format!("Bearer {t}")),
                source_ip: Some("203.0.113.50".into()),
                body: body.to_string().into_bytes(),
            })
            .await
    }

    async fn preflight(&self, token: &str) -> Response {
        self.call(
            "/v1/preflight",
            Some(token),
            json!({"environment": "prod", "service": "payments"}),
        )
        .await
    }

    fn decisions(&self) -> Vec<(Outcome, Vec<String>)> {
        self.gateway
            .publisher
            .published
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.data {
                EventData::GatewayDecision { reasons, .. } => Some((e.outcome, reasons.clone())),
                _ => None,
            })
            .collect()
    }
}

fn header() -> Value {
    json!({"typ": "JWT", "alg": "RS256", "kid": "fake-key-1"})
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// 401 whose message names `expected`, with the RFC 6750 challenge.
fn refused(response: &Response, expected: &str) {
    assert_eq!(response.status, 401, "{expected}: {:?}", response.body);
    let message = response.body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(expected),
        "expected `{expected}`, got `{message}`"
    );
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.starts_with("Bearer")),
        "{:?}",
        response.headers
    );
}

/// Passed authentication (whatever preflight then found).
fn authenticated(response: &Response) {
    assert!(
        response.status == 200 || response.status == 412,
        "{} {:?}",
        response.status,
        response.body
    );
}

#[tokio::test]
async fn a_genuine_token_passes_and_its_decision_is_audited() {
    let w = world().await;
    let token = w.token(&w.claims());
    let response = w.preflight(&token).await;
    authenticated(&response);
    let decisions = w.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].0, Outcome::Allowed);
    assert_eq!(decisions[0].1, ["allowed by binding payments-deploy"]);
    // The token never reaches the audit event.
    let event = w.gateway.publisher.published.lock().unwrap()[0].clone();
    let json = event.to_detail_json().unwrap();
    assert!(json.contains("\"repository_id\":\"2000002\""), "{json}");
    let signature = token.rsplit('.').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    assert!(!json.contains(signature) && !json.contains(payload));
}

#[tokio::test]
async fn algorithm_and_header_attacks_fail_closed() {
    let w = world().await;
    let claims = w.claims();
    let payload = b64(claims.to_string().as_bytes());
    // 1–2: alg none, with and without a signature, any casing.
    for alg in ["none", "None", "NONE"] {
        let head = b64(json!({"alg": alg, "typ": "JWT", "kid": "fake-key-1"})
            .to_string()
            .as_bytes());
        refused(
            &w.preflight(&format!("{head}.{payload}.")).await,
            "compact JWS",
        );
        refused(
            &w.preflight(&format!("{head}.{payload}.c2ln")).await,
            "RS256",
        );
    }
    // 3, 5: HS256 keyed with the public key, and other algorithms, even correctly signed RS256.
    for alg in ["HS256", "PS256", "ES256", "EdDSA", "RS512", "rs256"] {
        let mut h = header();
        h["alg"] = alg.into();
        refused(&w.preflight(&w.with_header(h, &claims)).await, "RS256");
    }
    // 6: no kid.
    refused(
        &w.preflight(&w.with_header(json!({"alg": "RS256", "typ": "JWT"}), &claims))
            .await,
        "kid",
    );
    // 11–14: key-fetching and extension headers are refused outright.
    for (name, value) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("jwk", json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["x-custom"])),
        ("b64", json!(false)),
        ("zip", json!("DEF")),
        ("enc", json!("A256GCM")),
    ] {
        let mut h = header();
        h[name] = value;
        refused(&w.preflight(&w.with_header(h, &claims)).await, name);
    }
    // 15: typ other than JWT.
    let mut h = header();
    h["typ"] = "at+jwt".into();
    refused(&w.preflight(&w.with_header(h, &claims)).await, "typ");
    // 32: duplicate header keys (serde_json would keep the last `alg`).
    let token = w.issuer.fake.sign_raw(
        r#"{"alg":"HS256","alg":"RS256","typ":"JWT","kid":"fake-key-1"}"#,
        &claims.to_string(),
        None,
    );
    refused(&w.preflight(&token).await, "duplicate keys");
}

#[tokio::test]
async fn signature_and_shape_attacks_fail_closed() {
    let w = world().await;
    let token = w.token(&w.claims());
    let parts: Vec<&str> = token.split('.').collect();
    authenticated(&w.preflight(&token).await);
    // 9: a bad signature on a known key; no JWKS refetch for it.
    let before = w.issuer.fake.jwks_requests();
    let mut signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    signature[10] ^= 1;
    refused(
        &w.preflight(&format!("{}.{}.{}", parts[0], parts[1], b64(&signature)))
            .await,
        "signature",
    );
    // 10: a payload swapped in from another token.
    let mut other = w.claims();
    other["repository_id"] = "2000003".into();
    let other_payload = b64(other.to_string().as_bytes());
    refused(
        &w.preflight(&format!("{}.{other_payload}.{}", parts[0], parts[2]))
            .await,
        "signature",
    );
    assert_eq!(
        w.issuer.fake.jwks_requests(),
        before,
        "no refetch on a bad signature"
    );
    // 34–35: padding, standard alphabet, whitespace, segment counts, non-JSON, garbage.
    let cases = [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        // The standard alphabet's `+` where base64url has `-` (placed, not replaced: a random
        // signature need not contain a `-`).
        format!("{}.{}.+{}", parts[0], parts[1], &parts[2][1..]),
        format!("{} .{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!("{token}garbage!"),
        "...".to_owned(),
    ];
    for case in cases {
        let response = w.preflight(&case).await;
        assert_eq!(response.status, 401, "{case}: {:?}", response.body);
    }
    let not_json = format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]);
    refused(&w.preflight(&not_json).await, "header");
    // 36–37: a 1 MiB token; many dots.
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(1024 * 1024), parts[2]);
    refused(&w.preflight(&huge).await, "larger than");
    refused(&w.preflight(&".".repeat(5000)).await, "compact JWS");
}

#[tokio::test]
async fn time_claims_fail_closed_with_a_minute_of_leeway() {
    let w = world().await;
    let now = chrono::Utc::now().timestamp();
    let with = |patch: Value| {
        let mut claims = w.claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        w.token(&claims)
    };
    // 17–18: expired two minutes ago; thirty seconds ago is within the leeway.
    refused(
        &w.preflight(&with(json!({"exp": now - 120, "iat": now - 400})))
            .await,
        "expired",
    );
    authenticated(
        &w.preflight(&with(json!({"exp": now - 30, "iat": now - 330})))
            .await,
    );
    // 19: not valid before five minutes from now.
    refused(
        &w.preflight(&with(json!({"nbf": now + 300}))).await,
        "not valid yet",
    );
    // 20–21: issued in ten years; a lifetime over ten minutes.
    let later = now + 10 * 365 * 86400;
    refused(
        &w.preflight(&with(
            json!({"iat": later, "exp": later + 300, "nbf": later}),
        ))
        .await,
        "not valid yet",
    );
    refused(
        &w.preflight(&with(
            json!({"iat": now + 600, "exp": now + 900, "nbf": now - 10}),
        ))
        .await,
        "issued in the future",
    );
    refused(
        &w.preflight(&with(json!({"exp": now + 3600}))).await,
        "lifetime",
    );
    // 22–23: no exp; exp as a string; exp as 1e300.
    let response = w.preflight(&with(json!({"exp": null}))).await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    let response = w
        .preflight(&with(json!({"exp": (now + 300).to_string()})))
        .await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    let response = w.preflight(&with(json!({"exp": 1e300}))).await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    let response = w.preflight(&with(json!({"iat": "now"}))).await;
    assert_eq!(response.status, 401, "{:?}", response.body);
}

#[tokio::test]
async fn issuer_audience_and_claim_attacks_fail_closed() {
    let w = world().await;
    let issuer = w.issuer.issuer();
    let with = |patch: Value| {
        let mut claims = w.claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        w.token(&claims)
    };
    // 24–25: issuers that are not exactly ours.
    for iss in [
        json!(format!("{issuer}/")),
        json!(format!("{issuer}.evil.example")),
        json!(issuer.to_uppercase()),
        json!("https://token.actions.githubusercontent.com.evil.example"),
        json!([issuer.clone()]),
        json!(null),
    ] {
        refused(&w.preflight(&with(json!({"iss": iss}))).await, "issuer");
    }
    // 26–28: GitHub's default audience, an array holding ours, a number.
    refused(
        &w.preflight(&with(json!({"aud": "https://github.com/acme"})))
            .await,
        "audience",
    );
    let response = w
        .preflight(&with(json!({"aud": [AUDIENCE, "other"]})))
        .await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    let response = w.preflight(&with(json!({"aud": 42}))).await;
    assert_eq!(response.status, 401, "{:?}", response.body);
    // 39: a token minted for another endpoint.
    refused(
        &w.preflight(&with(json!({"aud": "https://keyward.acme.test/other"})))
            .await,
        "audience",
    );
    // 29–30: missing, empty or mistyped GitHub claims.
    for (claim, value) in [
        ("repository_id", json!(null)),
        ("repository_id", json!("")),
        ("repository_id", json!(2000002)),
        ("repository_owner_id", json!(null)),
        ("job_workflow_ref", json!(null)),
        ("runner_environment", json!(["github-hosted"])),
        ("jti", json!(null)),
        ("environment", json!(7)),
    ] {
        refused(&w.preflight(&with(json!({claim: value}))).await, claim);
    }
    // 31: duplicate claims (serde_json would keep the last `aud`).
    let claims = w.claims().to_string();
    let duplicated = claims.replacen('{', r#"{"aud":"https://github.com/acme","#, 1);
    let token = w
        .issuer
        .fake
        .sign_raw(&header().to_string(), &duplicated, None);
    refused(&w.preflight(&token).await, "duplicate keys");
    // 33: look-alike claim names are just unknown claims; the real one still decides.
    let token = w.token(&{
        let mut c = w.claims();
        c["ſub"] = "repo:evil/evil".into();
        c["AUD"] = "https://github.com/acme".into();
        c
    });
    authenticated(&w.preflight(&token).await);
}

#[tokio::test]
async fn keys_rotate_and_unknown_kids_refetch_at_most_once_a_minute() {
    let w = world().await;
    // 7: made-up kids. The first one loads the JWKS (the cache is empty); the rest, within the
    // minute, fail closed without another fetch.
    for n in 0..5 {
        let mut h = header();
        h["kid"] = format!("made-up-{n}").into();
        refused(
            &w.preflight(&w.with_header(h, &w.claims())).await,
            "unknown",
        );
    }
    assert_eq!(w.issuer.fake.jwks_requests(), 1);
    let old_token = w.token(&w.claims());
    authenticated(&w.preflight(&old_token).await);
    // 8: a key rotated in within that minute is not known yet...
    let new_kid = w.issuer.fake.rotate();
    refused(&w.preflight(&w.token(&w.claims())).await, "unknown");
    assert_eq!(w.issuer.fake.jwks_requests(), 1);
    // ...and is picked up by the refetch a later request makes once the minute is over (a new
    // cache stands in for the passing minute).
    let fresh = world_sharing_issuer(&w).await;
    authenticated(&fresh.preflight(&w.token(&w.claims())).await);
    assert_eq!(w.issuer.fake.current_kid(), new_kid);
    // Retired keys stop verifying once the cache reloads.
    w.issuer.fake.retire_old_keys();
    let reloaded = world_sharing_issuer(&w).await;
    refused(&reloaded.preflight(&old_token).await, "unknown");
    authenticated(&reloaded.preflight(&w.token(&w.claims())).await);
}

/// A gateway with an empty key cache over the same fake issuer (a new cold start).
async fn world_sharing_issuer(w: &World) -> TestGatewayRef<'_> {
    TestGatewayRef {
        world: w,
        gateway: Gateway {
            keys: JwksCache::new(
                HttpJwksFetcher(http()),
                [(w.issuer.issuer(), w.issuer.jwks_url())],
            ),
            audience: AUDIENCE.into(),
            loaded: ci_gateway::load(
                keyward_integration::support::config_for_issuer(&w.issuer.issuer())
                    .unwrap()
                    .path(),
            )
            .unwrap(),
            catalog: InMemorySecretCatalog::default(),
            replay: InMemoryMarkerStore::default(),
            publisher: InMemoryEventPublisher::default(),
            drift: None,
        },
    }
}

struct TestGatewayRef<'w> {
    #[allow(dead_code)]
    world: &'w World,
    gateway: TestGateway,
}

impl TestGatewayRef<'_> {
    async fn preflight(&self, token: &str) -> Response {
        self.gateway
            .handle(&Request {
                method: "POST".into(),
                path: "/v1/preflight".into(),
                authorization: Some(format!("Bearer {token}")),
                source_ip: Some("203.0.113.50".into()),
                body: json!({"environment": "prod", "service": "payments"})
                    .to_string()
                    .into_bytes(),
            })
            .await
    }
}

#[tokio::test]
async fn an_oct_key_under_the_tokens_kid_cannot_make_hmac_work() {
    let w = world().await;
    w.issuer
        .fake
        .publish_extra_jwk(json!({"kty": "oct", "kid": "hmac", "k": b64(b"secret")}));
    let mut h = header();
    h["kid"] = "hmac".into();
    h["alg"] = "HS256".into();
    refused(
        &w.preflight(&w.with_header(h.clone(), &w.claims())).await,
        "RS256",
    );
    h["alg"] = "RS256".into();
    refused(
        &w.preflight(&w.with_header(h, &w.claims())).await,
        "unknown",
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_503_not_a_401() {
    let w = world().await;
    w.issuer.fake.set_down(true);
    let response = w.preflight(&w.token(&w.claims())).await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert!(response.headers.iter().any(|(n, _)| *n == "retry-after"));
}

#[tokio::test]
async fn the_policy_decides_by_immutable_identity() {
    let w = world().await;
    let with = |patch: Value| {
        let mut claims = w.claims();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        w.token(&claims)
    };
    // A renamed repository (same ids, new name) is still itself.
    authenticated(
        &w.preflight(&with(json!({"repository": "acme/payments-renamed"})))
            .await,
    );
    // 40: each of these is a 403, and the decision is audited with its reason.
    let denied = [
        (
            json!({"repository_id": "2999999", "repository": "acme/payments"}),
            "no binding for repository id 2999999",
        ),
        (
            json!({"event_name": "pull_request", "ref": "refs/pull/7/merge"}),
            "ref refs/pull/7/merge not allowed",
        ),
        (
            json!({"event_name": "pull_request_target"}),
            "pull_request_target",
        ),
        (
            json!({"runner_environment": "self-hosted"}),
            "runner self-hosted not allowed",
        ),
        (
            json!({"job_workflow_ref": "attacker/payments/.github/workflows/deploy.yml@refs/heads/main"}),
            "workflow attacker/payments",
        ),
        (
            json!({"job_workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/feature"}),
            "not allowed",
        ),
        (
            json!({"environment": "dev"}),
            "GitHub environment dev not allowed",
        ),
        (
            json!({"ref": "refs/heads/main-evil"}),
            "ref refs/heads/main-evil not allowed",
        ),
    ];
    for (patch, reason) in denied {
        let response = w.preflight(&with(patch.clone())).await;
        assert_eq!(response.status, 403, "{patch}: {:?}", response.body);
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{patch}: {message}");
    }
    // A job without a GitHub environment, where the binding requires one.
    let mut claims = w.claims();
    claims.as_object_mut().unwrap().remove("environment");
    let response = w.preflight(&w.token(&claims)).await;
    assert_eq!(response.status, 403);
    // A grant for another service or environment.
    let response = w
        .call(
            "/v1/preflight",
            Some(&w.token(&w.claims())),
            json!({"environment": "prod", "service": "web"}),
        )
        .await;
    assert_eq!(response.status, 403, "{:?}", response.body);
    let decisions = w.decisions();
    assert_eq!(
        decisions
            .iter()
            .filter(|(outcome, _)| *outcome == Outcome::Denied)
            .count(),
        10
    );
}

fn web_release_claims(w: &World) -> Value {
    let mut claims = w.claims();
    claims["repository"] = "acme/web".into();
    claims["repository_id"] = "2000003".into();
    claims["event_name"] = "workflow_dispatch".into();
    claims["job_workflow_ref"] = "acme/web/.github/workflows/release.yml@refs/heads/main".into();
    claims
}

#[tokio::test]
async fn a_sync_request_uses_its_token_once() {
    let w = world().await;
    let token = w.token(&web_release_claims(&w));
    let body = json!({"environment": "prod", "service": "web"});
    let response = w.call("/v1/sync/vercel", Some(&token), body.clone()).await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    assert_eq!(response.body["requested"]["service"], "web");
    // 38: the same token again.
    refused(
        &w.call("/v1/sync/vercel", Some(&token), body.clone()).await,
        "already used",
    );
    let requested = w
        .gateway
        .publisher
        .published
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.data, EventData::VercelSyncRequested { .. }))
        .count();
    assert_eq!(requested, 1);
    // A scope the binding does not grant; a secret that is not declared; both or neither.
    let fresh = w.token(&web_release_claims(&w));
    let response = w
        .call(
            "/v1/sync/vercel",
            Some(&fresh),
            json!({"environment": "prod", "service": "payments"}),
        )
        .await;
    assert_eq!(response.status, 403);
    let response = w
        .call(
            "/v1/sync/vercel",
            Some(&fresh),
            json!({"environment": "prod", "secret": "/acme/prod/web/nope"}),
        )
        .await;
    assert_eq!(response.status, 404);
    let response = w
        .call(
            "/v1/sync/vercel",
            Some(&fresh),
            json!({"environment": "prod"}),
        )
        .await;
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn routes_bodies_and_missing_tokens_get_the_stable_error_shape() {
    let w = world().await;
    let token = w.token(&w.claims());
    let no_token = w.call("/v1/preflight", None, json!({})).await;
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.body["error"]["code"], "missing_token");
    assert!(
        no_token
            .headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v == "Bearer realm=\"keyward\"")
    );
    let unknown = w.call("/v1/nothing", Some(&token), json!({})).await;
    assert_eq!(unknown.status, 404);
    let get = w
        .gateway
        .handle(&Request {
            method: "GET".into(),
            path: "/v1/preflight".into(),
            authorization: Some(format!("Bearer {token}")),
            source_ip: Some("203.0.113.50".into()),
            body: Vec::new(),
        })
        .await;
    assert_eq!(get.status, 405);
    let bad = w
        .call(
            "/v1/preflight",
            Some(&token),
            json!({"environment": "prod", "extra": "should-not-echo"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        !bad.body.to_string().contains("should-not-echo"),
        "{}",
        bad.body
    );
    let unknown_env = w
        .call("/v1/preflight", Some(&token), json!({"environment": "qa"}))
        .await;
    assert_eq!(unknown_env.status, 400);
    let big = w
        .gateway
        .handle(&Request {
            method: "POST".into(),
            path: "/v1/preflight".into(),
            authorization: Some(format!("Bearer {token}")),
            source_ip: Some("203.0.113.50".into()),
            body: vec![b' '; 70 * 1024],
        })
        .await;
    assert_eq!(big.status, 413);
}

#[tokio::test]
async fn secret_requests_are_validated_against_the_manifest() {
    let w = world().await;
    let mut claims = w.claims();
    claims["repository"] = "acme/secret-requests".into();
    claims["repository_id"] = "2000009".into();
    claims["job_workflow_ref"] =
        "acme/secret-requests/.github/workflows/validate.yml@refs/heads/main".into();
    claims.as_object_mut().unwrap().remove("environment");
    let request = json!({
        "service": "billing", "name": "ledger-api-key", "description": "Ledger API",
        "type": "api-key", "domain": "payments", "owner": "team-payments",
        "classification": "restricted", "rotation": {"strategy": "manual", "days": 90},
        "kubernetes": {"namespace": "billing"},
        "environments": ["staging", "prod"]
    });
    let response = w
        .call(
            "/v1/secret-requests/validate",
            Some(&w.token(&claims)),
            json!({ "request": request }),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(
        response.body["secrets"],
        json!([
            "/acme/prod/billing/ledger-api-key",
            "/acme/staging/billing/ledger-api-key"
        ])
    );
    // The same projections `keyward render` writes, for the requested secrets only.
    let tf = &response.body["projections"]["terraform"]["prod"]["billing/ledger-api-key"];
    assert_eq!(tf["name"], "/acme/prod/billing/ledger-api-key");
    assert_eq!(tf["rotation_enabled"], false);
    assert_eq!(tf["tags"]["keyward:owner"], "team-payments");
    assert_eq!(
        response.body["projections"]["terraform"]
            .as_object()
            .unwrap()
            .len(),
        2,
        "one per environment"
    );
    let k8s = response.body["projections"]["kubernetes"]
        .as_array()
        .unwrap();
    assert_eq!(k8s.len(), 2);
    assert!(
        k8s[0]["manifest"]
            .as_str()
            .unwrap()
            .contains("kind: ExternalSecret")
    );
    let mut bad = request.clone();
    bad["rotation"]["days"] = 365.into();
    bad["owner"] = "nobody".into();
    let response = w
        .call(
            "/v1/secret-requests/validate",
            Some(&w.token(&claims)),
            json!({ "request": bad }),
        )
        .await;
    assert_eq!(response.status, 422, "{:?}", response.body);
    let problems = response.body["problems"].to_string();
    assert!(
        problems.contains("owner") && problems.contains("days"),
        "{problems}"
    );
}

// ------------------------------------------------------------------ preflight against moto

mod preflight_on_moto {
    use super::*;
    use keyward_integration::moto::MotoServer;
    use keyward_shared::adapters::aws::{SecretsManagerCatalog, tags_to_sdk};
    use keyward_shared::ports::SecretCatalog;

    /// Creates the sample manifest's prod/payments secrets in moto under a fresh org prefix.
    async fn provision(moto: &MotoServer, skip: &str) -> Vec<CatalogEntry> {
        let manifest = keyward_shared::manifest::Manifest::load(
            &keyward_integration::repo_root().join("infra/config/manifest"),
        )
        .unwrap();
        let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
        let lambda = moto.prepare_rotation().await.unwrap();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        for declared in manifest.scope("prod", Some("payments")) {
            if declared.name.name().as_str() == skip {
                continue;
            }
            let name = format!("{}-{}", declared.name, &suffix[..8]);
            let tags = keyward_shared::tags::encode(&declared.governance).unwrap();
            client
                .create_secret()
                .name(&name)
                .secret_string("{}")
                .set_tags(Some(tags_to_sdk(&tags)))
                .send()
                .await
                .unwrap();
            if declared.governance.rotation.strategy
                != keyward_shared::governance::RotationStrategy::Manual
            {
                client
                    .rotate_secret()
                    .secret_id(&name)
                    .rotation_lambda_arn(&lambda)
                    .rotation_rules(
                        aws_sdk_secretsmanager::types::RotationRulesType::builder()
                            .automatically_after_days(i64::from(
                                declared.governance.rotation.interval.days(),
                            ))
                            .build(),
                    )
                    .rotate_immediately(false)
                    .send()
                    .await
                    .unwrap();
            }
        }
        // Read back through the production adapter, then strip the suffix so names match.
        let catalog = SecretsManagerCatalog::new(client);
        catalog
            .list("/acme/prod/payments/")
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.name.ends_with(&suffix[..8]))
            .map(|mut e| {
                e.name = e
                    .name
                    .trim_end_matches(&format!("-{}", &suffix[..8]))
                    .to_owned();
                e
            })
            .collect()
    }

    #[tokio::test]
    async fn preflight_passes_and_names_each_failure() {
        let moto = MotoServer::shared().await;
        let entries = provision(moto, "").await;
        let w = world_with(entries.clone()).await;
        let response = w.preflight(&w.token(&w.claims())).await;
        assert_eq!(response.status, 200, "{:#}", response.body);
        assert_eq!(response.body["ready"], true);
        let checks = response.body["checklist"].as_array().unwrap();
        assert!(checks.len() >= 6, "{checks:?}");
        assert!(
            !response.body.to_string().contains("\"{}\""),
            "no value is ever returned"
        );

        // A missing secret.
        let missing = provision(moto, "db-credentials").await;
        let w = world_with(missing).await;
        let response = w.preflight(&w.token(&w.claims())).await;
        assert_eq!(response.status, 412);
        let text = response.body["missing"].to_string();
        assert!(
            text.contains("db-credentials") && text.contains("not found"),
            "{text}"
        );

        // Scheduled for deletion; rotation off; rotating less often than the policy; a manual
        // secret untouched for longer than its interval; a container without a value.
        let mut broken = entries.clone();
        for entry in &mut broken {
            match entry.name.rsplit('/').next().unwrap() {
                "stripe-api-key" => {
                    entry.last_changed = Some(chrono::Utc::now() - chrono::Duration::days(120));
                    entry.created = entry.last_changed;
                    entry.current_version = None;
                }
                "db-credentials" => entry.rotation_days = Some(120),
                "db-admin" => entry.deleted = Some(chrono::Utc::now() + chrono::Duration::days(7)),
                _ => {}
            }
        }
        let w = world_with(broken).await;
        let response = w.preflight(&w.token(&w.claims())).await;
        assert_eq!(response.status, 412);
        let text = response.body["missing"].to_string();
        for expected in [
            "scheduled for deletion",
            "rotates every 120 days",
            "rotated by hand 120 days ago",
            "no value: no version is labelled AWSCURRENT",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        let mut off = entries.clone();
        for entry in &mut off {
            entry.rotation_enabled = false;
        }
        let w = world_with(off).await;
        let text = w.preflight(&w.token(&w.claims())).await.body["missing"].to_string();
        assert!(text.contains("rotation is not enabled"), "{text}");
    }
}

#[tokio::test]
async fn a_secret_request_needs_every_environment_it_names_granted() {
    let w = world().await;
    // payments-deploy may not validate requests at all; secret-requests may, in dev/staging/prod.
    let mut claims = w.claims();
    claims["repository_id"] = "2000009".into();
    claims["job_workflow_ref"] =
        "acme/secret-requests/.github/workflows/validate.yml@refs/heads/main".into();
    claims.as_object_mut().unwrap().remove("environment");
    let request = |envs: Value| {
        json!({"request": {
            "service": "billing", "name": "ledger-api-key", "type": "api-key", "domain": "payments",
            "owner": "team-payments", "classification": "restricted",
            "rotation": {"strategy": "manual", "days": 90}, "environments": envs
        }})
    };
    let response = w
        .call(
            "/v1/secret-requests/validate",
            Some(&w.token(&claims)),
            request(json!(["prod", "qa"])),
        )
        .await;
    assert_eq!(response.status, 403, "{:?}", response.body);
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on qa")
    );
    let response = w
        .call(
            "/v1/secret-requests/validate",
            Some(&w.token(&claims)),
            request(json!({"dev": {}, "prod": {}})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
}

fn drift_guard_claims(w: &World, pull: u64) -> Value {
    let mut claims = w.claims();
    claims["repository"] = "acme/platform".into();
    claims["repository_id"] = "2000010".into();
    claims["event_name"] = "pull_request".into();
    claims["ref"] = format!("refs/pull/{pull}/merge").into();
    claims["job_workflow_ref"] =
        "acme/platform/.github/workflows/drift-guard.yml@refs/heads/main".into();
    claims.as_object_mut().unwrap().remove("environment");
    claims
}

#[tokio::test]
async fn drift_routes_bind_a_pull_request_token_to_its_own_pull_request() {
    let w = world().await;
    // A pull request's token naming another pull request: refused before anything is read.
    let token = w.token(&drift_guard_claims(&w, 42));
    let response = w
        .call(
            "/v1/drift/pre-merge",
            Some(&token),
            json!({"pull_number": 43}),
        )
        .await;
    assert_eq!(response.status, 403, "{:?}", response.body);
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("#42, not #43")
    );
    // Its own: this gateway has no drift backend configured, so 503 says so.
    let token = w.token(&drift_guard_claims(&w, 42));
    let response = w
        .call(
            "/v1/drift/pre-merge",
            Some(&token),
            json!({"pull_number": 42}),
        )
        .await;
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(response.body["error"]["code"], "drift_not_configured");
    // Bad bodies and methods.
    let token = w.token(&drift_guard_claims(&w, 42));
    let response = w
        .call("/v1/drift/post-merge", Some(&token), json!({"pull": 42}))
        .await;
    assert_eq!(response.status, 400, "{:?}", response.body);
}

#[test]
fn shipped_workflows_are_well_formed() {
    let dir = keyward_integration::repo_root().join("infra/github");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.display().to_string();
        assert!(
            doc.get("name").and_then(|n| n.as_str()).is_some(),
            "{name}: name"
        );
        let on = doc.get("on").unwrap_or_else(|| panic!("{name}: no `on`"));
        assert!(
            on.get("pull_request_target").is_none(),
            "{name}: pull_request_target is never used"
        );
        let jobs = doc
            .get("jobs")
            .and_then(|j| j.as_mapping())
            .unwrap_or_else(|| panic!("{name}: no jobs"));
        assert!(!jobs.is_empty());
        // Nothing is granted workflow-wide: each job names what it needs, and only a job that
        // mints an OIDC token (itself, through AWS credentials or through a workflow it calls)
        // gets id-token: write.
        assert_eq!(
            doc["permissions"].as_mapping().map(|m| m.len()),
            Some(0),
            "{name}: workflow-level permissions: {{}}"
        );
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap();
            let job_text = serde_yaml_ng::to_string(job).unwrap();
            // A script of infra/github/scripts/ the job runs mints a token when it (or the
            // common.sh it sources) asks the runner for one.
            let script_mints = job_text
                .split("infra/github/scripts/")
                .skip(1)
                .filter_map(|rest| rest.split(".sh").next())
                .any(|script| {
                    let scripts = dir.join("scripts");
                    let text = std::fs::read_to_string(scripts.join(format!("{script}.sh")))
                        .unwrap_or_else(|e| panic!("{name}: {script}.sh: {e}"));
                    let sourced = text.contains("common.sh")
                        && std::fs::read_to_string(scripts.join("common.sh"))
                            .unwrap()
                            .contains("ACTIONS_ID_TOKEN_REQUEST_URL");
                    sourced && text.contains("oidc_token")
                });
            let mints = job_text.contains("ACTIONS_ID_TOKEN_REQUEST_URL")
                || script_mints
                || job_text.contains("configure-aws-credentials")
                || job.get("uses").is_some();
            assert_eq!(
                job["permissions"]["id-token"].as_str(),
                mints.then_some("write"),
                "{name}: job {job_name}: id-token"
            );
            if job_text.contains("ACTIONS_ID_TOKEN_REQUEST_URL") {
                assert!(
                    job_text.contains("::add-mask::"),
                    "{name}: the token is masked"
                );
            }
        }
        // Inputs a reusable workflow reads are declared.
        if let Some(inputs) = on.get("workflow_call").and_then(|c| c.get("inputs")) {
            for (key, _) in inputs.as_mapping().unwrap() {
                let key = key.as_str().unwrap();
                assert!(
                    text.contains(&format!("inputs.{key}")),
                    "{name}: input {key} is never used"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "{checked} workflows");
}

/// Every refusal of an authenticated caller is on the audit trail, whatever step refused it (a
/// route that does not exist, a body that does not parse, a pull request the token is not for);
/// an anonymous request refused before any key work leaves none (and costs no key fetch).
#[tokio::test]
async fn every_refusal_of_an_authenticated_caller_is_audited() {
    let w = world().await;
    let token = w.token(&w.claims());
    for (path, body, status) in [
        ("/v1/nowhere", json!({}), 404),
        ("/v1/preflight", json!({"environment": 7}), 400),
        ("/v1/preflight", json!({"environment": "nowhere"}), 400),
    ] {
        let response = w.call(path, Some(&token), body).await;
        assert_eq!(response.status, status, "{path}: {:?}", response.body);
    }
    let decisions = w.decisions();
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    for ((outcome, reasons), status) in decisions.iter().zip(["404", "400", "400"]) {
        assert_eq!(*outcome, Outcome::Denied);
        assert!(reasons[0].starts_with(status), "{reasons:?}");
    }

    // Anonymous and refused before any key work: logged, not audited, no JWKS fetch.
    let fetches = w.issuer.fake.jwks_requests();
    let response = w.call("/v1/nowhere", None, json!({})).await;
    assert_eq!(response.status, 404);
    assert_eq!(w.decisions().len(), 3);
    assert_eq!(w.issuer.fake.jwks_requests(), fetches);
}
