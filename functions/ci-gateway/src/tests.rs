//! Unit tests of the parts that need no HTTP: configuration, JWKS filtering, policy loading
//! and decisions, token shape checks. The attack list runs end to end in
//! `integration/tests/ci_gateway.rs` against a fake issuer.

use base64::Engine as _;
use serde_json::json;

use crate::policy::{Action, Policy, Scope};
use crate::token::{self, StrictObject, TokenError};
use crate::{Config, GITHUB_ISSUER};

use keyward_shared::config::env_of as env;

const BASE: [(&str, &str); 4] = [
    ("KEYWARD_EVENT_BUS", "bus"),
    ("KEYWARD_STATE_BUCKET", "state"),
    ("KEYWARD_CONFIG_DIR", "/opt"),
    ("KEYWARD_OIDC_AUDIENCE", "https://keyward.acme.example/ci"),
];

#[test]
fn configuration_pins_issuers_and_refuses_the_default_audience() {
    let config = Config::from_env(&env(&BASE)).unwrap();
    assert_eq!(config.issuers, [GITHUB_ISSUER]);
    assert_eq!(
        config.jwks_urls(),
        [(
            GITHUB_ISSUER.to_owned(),
            format!("{GITHUB_ISSUER}/.well-known/jwks")
        )]
    );
    let mut pairs = BASE.to_vec();
    pairs[3] = ("KEYWARD_OIDC_AUDIENCE", "https://github.com/acme");
    let err = Config::from_env(&env(&pairs)).unwrap_err().to_string();
    assert!(err.contains("default audience"), "{err}");
    for bad in [
        "http://ghe.example",
        "https://ghe.example/",
        "token.actions.x",
    ] {
        let mut pairs = BASE.to_vec();
        pairs.push(("KEYWARD_OIDC_ISSUERS", bad));
        assert!(Config::from_env(&env(&pairs)).is_err(), "{bad}");
    }
    let mut pairs = BASE.to_vec();
    pairs.push((
        "KEYWARD_OIDC_ISSUERS",
        "https://token.actions.acme.ghe.com, https://token.actions.githubusercontent.com/acme",
    ));
    assert_eq!(Config::from_env(&env(&pairs)).unwrap().issuers.len(), 3);
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn only_rs256_signing_keys_of_2048_bits_are_kept() {
    let n2048 = b64(&[0xC5; 256]);
    let n1024 = b64(&[0xC5; 128]);
    let padded = b64(&[&[0u8; 10][..], &[0xC5; 200][..]].concat());
    let e = b64(&[1, 0, 1]);
    let body = json!({"keys": [
        {"kty": "RSA", "kid": "good", "n": n2048, "e": e, "alg": "RS256", "use": "sig"},
        {"kty": "RSA", "kid": "no-alg", "n": n2048, "e": e},
        {"kty": "RSA", "kid": "small", "n": n1024, "e": e},
        {"kty": "RSA", "kid": "zeros", "n": padded, "e": e},
        {"kty": "RSA", "kid": "enc", "n": n2048, "e": e, "use": "enc"},
        {"kty": "RSA", "kid": "rs512", "n": n2048, "e": e, "alg": "RS512"},
        {"kty": "RSA", "n": n2048, "e": e},
        {"kty": "oct", "kid": "hmac", "k": b64(b"secret")},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        "not an object"
    ]});
    let keys = crate::jwks::parse_jwks(body.to_string().as_bytes()).unwrap();
    let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
    kids.sort();
    assert_eq!(kids, ["good", "no-alg"]);
    assert!(crate::jwks::parse_jwks(b"[]").is_err());
    assert!(crate::jwks::parse_jwks(&vec![b' '; 70 * 1024]).is_err());
}

#[test]
fn the_shipped_policy_loads_and_bad_policies_are_refused() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../infra/config/gateway-policy.yaml"),
    )
    .unwrap();
    Policy::from_yaml(&text).unwrap();
    let binding = |patch: &str| {
        format!(
            "version: 1\nbindings:\n  - name: b\n    repository_owner_id: \"1\"\n    repository_id: \"2\"\n    refs: [refs/heads/main]\n    event_names: [push]\n    job_workflow_refs: [o/r/.github/workflows/w.yml@refs/heads/main]\n    allow: [{{action: preflight, workflows: [o/r/.github/workflows/w.yml@refs/heads/main], environments: [prod]}}]\n{patch}"
        )
    };
    Policy::from_yaml(&binding("")).unwrap();
    for (text, expected) in [
        (binding("    unknown: 1\n"), "line"),
        (binding("").replace("\"2\"", "acme/payments"), "numeric ids"),
        (
            binding("").replace("refs/heads/main]", "refs/heads/*]"),
            "matched exactly",
        ),
        (
            binding("").replace("[push]", "[pull_request_target]"),
            "never allowed",
        ),
        (
            binding("").replace("environments: [prod]", "environments: []"),
            "environments",
        ),
        ("version: 2\n".to_owned(), "version 2"),
        (
            binding("").replace(
                ", workflows: [o/r/.github/workflows/w.yml@refs/heads/main]",
                ", workflows: []",
            ),
            "names no workflows",
        ),
        (
            binding("").replace(
                "workflows: [o/r/.github/workflows/w.yml@refs/heads/main]",
                "workflows: [o/r/.github/workflows/other.yml@refs/heads/main]",
            ),
            "not in job_workflow_refs",
        ),
    ] {
        let err = Policy::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

fn claims() -> token::GithubClaims {
    token::GithubClaims {
        iss: GITHUB_ISSUER.into(),
        aud: "a".into(),
        sub: "repo:acme/payments:ref:refs/heads/main".into(),
        jti: "j".into(),
        exp: 0,
        iat: 0,
        nbf: None,
        repository_id: "2000002".into(),
        repository_owner_id: "1000001".into(),
        repository: "acme/payments".into(),
        r#ref: "refs/heads/main".into(),
        ref_type: "branch".into(),
        event_name: "push".into(),
        job_workflow_ref: "acme/payments/.github/workflows/deploy.yml@refs/heads/main".into(),
        runner_environment: "github-hosted".into(),
        run_id: "1".into(),
        environment: Some("prod".into()),
        sha: None,
    }
}

/// The policy the repository ships (`infra/config/gateway-policy.yaml`).
fn shipped_policy() -> Policy {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../infra/config/gateway-policy.yaml"),
    )
    .unwrap();
    Policy::from_yaml(&text).unwrap()
}

#[test]
fn decisions_name_what_failed() {
    let policy = shipped_policy();
    let scope = Scope {
        environment: "prod".into(),
        service: Some("payments".into()),
    };
    assert!(policy.decide(&claims(), Action::Preflight, &scope).allowed);
    let sync = policy.decide(&claims(), Action::SyncVercel, &scope);
    assert!(!sync.allowed);
    assert_eq!(
        sync.reasons,
        ["binding payments-deploy: sync-vercel on prod/payments not granted"]
    );
    let mut c = claims();
    c.event_name = "pull_request_target".into();
    assert!(!policy.decide(&c, Action::Preflight, &scope).allowed);
}

/// Two GitHub Enterprise servers number their repositories independently: the same ids from
/// another issuer match no binding.
#[test]
fn bindings_belong_to_their_issuer() {
    let policy = shipped_policy();
    let scope = Scope {
        environment: "prod".into(),
        service: Some("payments".into()),
    };
    let mut other = claims();
    other.iss = "https://ghe.example.com/_services/token".into();
    let decision = policy.decide(&other, Action::Preflight, &scope);
    assert!(!decision.allowed);
    assert!(
        decision.reasons[0].contains("from issuer https://ghe.example.com"),
        "{decision:?}"
    );
}

/// A workflow a binding lists may use only the grants that name it: the guard workflow cannot
/// verify, the verify workflow cannot guard.
#[test]
fn grants_are_paired_with_their_workflows() {
    let policy = shipped_policy();
    let scope = Scope {
        environment: "prod".into(),
        service: None,
    };
    let mut c = claims();
    c.repository_id = "2000010".into();
    c.repository = "acme/platform".into();
    c.job_workflow_ref = "acme/platform/.github/workflows/drift-guard.yml@refs/heads/main".into();
    assert!(policy.decide(&c, Action::DriftGuard, &scope).allowed);
    assert!(!policy.decide(&c, Action::DriftVerify, &scope).allowed);
    c.job_workflow_ref = "acme/platform/.github/workflows/drift-verify.yml@refs/heads/main".into();
    assert!(policy.decide(&c, Action::DriftVerify, &scope).allowed);
    assert!(!policy.decide(&c, Action::DriftGuard, &scope).allowed);
}

#[test]
fn token_shape_is_checked_before_any_key_is_used() {
    let head = |h: serde_json::Value| b64(h.to_string().as_bytes());
    let body = b64(json!({"iss": GITHUB_ISSUER}).to_string().as_bytes());
    let ok = format!("{}.{body}.c2ln", head(json!({"alg": "RS256", "kid": "k"})));
    let parsed = token::parse(&ok).unwrap();
    assert_eq!(
        (parsed.kid.as_str(), parsed.issuer.as_str()),
        ("k", GITHUB_ISSUER)
    );
    let cases = [
        ("a.b".to_owned(), TokenError::Malformed),
        (
            format!("{}.{body}.", head(json!({"alg": "RS256", "kid": "k"}))),
            TokenError::Malformed,
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"alg": "RS256"}))),
            TokenError::NoKeyId,
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"alg": "RS256", "kid": 7}))),
            TokenError::NoKeyId,
        ),
        (
            format!(
                "{}.{body}.c2ln",
                head(json!({"alg": ["RS256"], "kid": "k"}))
            ),
            TokenError::Algorithm,
        ),
        (
            format!(
                "{}.{body}.c2ln",
                head(json!({"alg": "RS256", "kid": "k", "jku": "x"}))
            ),
            TokenError::ForbiddenHeader("jku".into()),
        ),
        (
            format!(
                "{}.{}.c2ln",
                head(json!({"alg": "RS256", "kid": "k"})),
                b64(b"{\"iss\":1}")
            ),
            TokenError::Issuer,
        ),
        ("x".repeat(9000), TokenError::TooLarge),
    ];
    for (token, expected) in cases {
        assert_eq!(token::parse(&token).unwrap_err(), expected, "{token}");
    }
    assert!(serde_json::from_str::<StrictObject>(r#"{"a":1,"a":2}"#).is_err());
    assert!(serde_json::from_str::<StrictObject>(r#"{"a":1,"b":{"c":2}}"#).is_ok());
}

#[test]
fn pull_request_tokens_pass_only_bindings_that_ask_for_them() {
    let policy = shipped_policy();
    let mut c = claims();
    c.repository = "acme/platform".into();
    c.repository_id = "2000010".into();
    c.event_name = "pull_request".into();
    c.r#ref = "refs/pull/42/merge".into();
    c.environment = None;
    c.job_workflow_ref = "acme/platform/.github/workflows/drift-guard.yml@refs/heads/main".into();
    let scope = Scope {
        environment: "prod".into(),
        service: None,
    };
    assert!(policy.decide(&c, Action::DriftGuard, &scope).allowed);
    assert!(policy.permits_any(&c, Action::DriftGuard));
    assert!(!policy.decide(&c, Action::Preflight, &scope).allowed);
    assert!(!policy.permits_any(&c, Action::SyncVercel));
    for bad_ref in [
        "refs/pull/42/head",
        "refs/pull/x/merge",
        "refs/pull//merge",
        "refs/heads/feature",
    ] {
        c.r#ref = bad_ref.into();
        assert!(
            !policy.decide(&c, Action::DriftGuard, &scope).allowed,
            "{bad_ref}"
        );
    }
    // Another repository's binding lists refs exactly: a pull request ref does not pass it.
    let mut payments = claims();
    payments.event_name = "pull_request".into();
    payments.r#ref = "refs/pull/7/merge".into();
    assert!(!policy.permits_any(&payments, Action::Preflight));
    assert_eq!(
        crate::policy::pull_request_number("refs/pull/42/merge"),
        Some(42)
    );
    assert_eq!(
        crate::policy::pull_request_number("refs/pull/42/head"),
        None
    );
    // `pull_requests: true` without the event is a contradiction, refused at load.
    let err = Policy::from_yaml(
        "version: 1\nbindings:\n  - name: b\n    repository_owner_id: \"1\"\n    repository_id: \"2\"\n    refs: [refs/heads/main]\n    event_names: [push]\n    pull_requests: true\n    job_workflow_refs: [o/r/.github/workflows/w.yml@refs/heads/main]\n    allow: [{action: drift-guard, workflows: [o/r/.github/workflows/w.yml@refs/heads/main], environments: [prod]}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pull_request"), "{err}");
}

/// Every sample request in `events/ci-gateway/` is a Function URL event that becomes the
/// gateway's request as the deployed handler builds it, and carries the body its route parses.
#[test]
fn sample_requests_parse_as_the_gateway_reads_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/ci-gateway");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let request =
            crate::serve::request_of(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(request.method, "POST", "{name}");
        assert!(
            request
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer ")),
            "{name}"
        );
        let body = &request.body;
        match request.path.as_str() {
            "/v1/preflight" => {
                serde_json::from_slice::<crate::PreflightBody>(body).unwrap();
            }
            "/v1/sync/vercel" => {
                serde_json::from_slice::<crate::SyncBody>(body).unwrap();
            }
            "/v1/secret-requests/validate" => {
                serde_json::from_slice::<crate::ValidateBody>(body).unwrap();
            }
            "/v1/drift/pre-merge" | "/v1/drift/post-merge" => {
                let value: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert!(value["pull_number"].as_u64().is_some(), "{name}");
            }
            other => assert_eq!(name, "unknown-route.json", "{other}"),
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "drift-post-merge.json",
            "drift-pre-merge.json",
            "preflight.json",
            "secret-requests-validate.json",
            "sync-vercel.json",
            "unknown-route.json"
        ]
    );
}

/// A JWKS endpoint that never answers holds no request past the keys deadline, and the failure
/// counts for the refetch limit (the next request does not wait again).
#[tokio::test(start_paused = true)]
async fn a_hanging_issuer_costs_a_request_at_most_the_keys_deadline() {
    struct Hangs(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl crate::jwks::JwksFetcher for Hangs {
        async fn fetch(&self, _url: &str) -> Result<Vec<u8>, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending().await
        }
    }
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cache = crate::jwks::JwksCache::new(
        Hangs(calls.clone()),
        [(GITHUB_ISSUER.to_owned(), "https://x/jwks".to_owned())],
    );
    let started = tokio::time::Instant::now();
    let err = cache.key(GITHUB_ISSUER, "k1").await.err().unwrap();
    assert!(matches!(err, TokenError::KeysUnavailable(_)), "{err:?}");
    assert!(started.elapsed() <= crate::jwks::KEYS_DEADLINE + std::time::Duration::from_millis(10));
    let again = tokio::time::Instant::now();
    assert!(cache.key(GITHUB_ISSUER, "k1").await.is_err());
    assert!(again.elapsed() < std::time::Duration::from_millis(10));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn drift_settings_default_to_one_approval_and_argocd_off() {
    use crate::drift::RemediationConfig;
    let drift = [
        ("KEYWARD_STATE_BUCKET", "state"),
        (
            "KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:d",
        ),
        ("KEYWARD_DRIFT_GITHUB_REPO", "acme/platform"),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config/manifest/"),
    ];
    assert!(RemediationConfig::from_env(&env(&[])).unwrap().is_none());
    let config = RemediationConfig::from_env(&env(&drift)).unwrap().unwrap();
    assert_eq!(config.min_approvals, 1);
    assert!(config.argocd.is_none());
    // Workload fixes are verified through Argo CD only when it is switched on and named.
    let mut on = drift.to_vec();
    on.push(("ENABLE_ARGOCD_CHECK", "true"));
    let err = RemediationConfig::from_env(&env(&on))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ARGOCD_APP_NAME"), "{err}");
    on.extend([
        ("ARGOCD_APP_NAME", "keyward-prod"),
        ("ARGOCD_SERVER", "https://argocd.acme.example"),
        ("WORKLOAD_NAMESPACE", "apps"),
    ]);
    let argocd = RemediationConfig::from_env(&env(&on))
        .unwrap()
        .unwrap()
        .argocd
        .unwrap();
    assert_eq!(
        (argocd.app.as_str(), argocd.namespace.as_str()),
        ("keyward-prod", "apps")
    );
}

/// A body the Function URL base64-encoded (a non-text content type) reaches the gateway decoded;
/// the answer is JSON, never cached, with the response's own headers.
#[test]
fn function_url_events_in_and_responses_out() {
    let body = r#"{"environment":"prod"}"#;
    let event = |body: serde_json::Value, encoded: bool| {
        json!({
            "version": "2.0", "rawPath": "/v1/preflight", "rawQueryString": "",
            "headers": {"Authorization": "Bearer t.k.n", "content-type": "application/octet-stream"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/preflight", "sourceIp": "203.0.113.9"}},
            "body": body, "isBase64Encoded": encoded
        })
        .to_string()
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let request = crate::serve::request_of(&event(json!(encoded), true)).unwrap();
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(request.authorization.as_deref(), Some("Bearer t.k.n"));
    assert_eq!(request.source_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/preflight")
    );
    assert_eq!(
        crate::serve::request_of(&event(json!(body), false))
            .unwrap()
            .body,
        body.as_bytes()
    );
    assert!(
        crate::serve::request_of(&event(serde_json::Value::Null, false))
            .unwrap()
            .body
            .is_empty()
    );

    let mut response = crate::Response::json(401, json!({"error": {"code": "unauthenticated"}}));
    response.headers.push(("www-authenticate", "Bearer".into()));
    let out = serde_json::to_value(crate::serve::response_of(&response)).unwrap();
    assert_eq!(
        out,
        json!({
            "statusCode": 401,
            "headers": {"cache-control": "no-store", "content-type": "application/json", "www-authenticate": "Bearer"},
            "body": r#"{"error":{"code":"unauthenticated"}}"#,
            "isBase64Encoded": false
        })
    );
}

/// An invocation that is not a Function URL request fails with a kind and a position, and never
/// quotes what it was sent (a header value may be a token).
#[test]
fn a_malformed_event_is_an_error_that_quotes_nothing() {
    use keyward_shared::lambda::FailureKind as _;
    let token = "ghs_tokenvalue1234567890";
    for payload in [
        json!({"rawPath": "/v1/preflight", "headers": {"authorization": token}}).to_string(),
        json!({"rawPath": "/v1/preflight", "headers": {"authorization": [token]},
               "requestContext": {"http": {"method": "POST"}}})
        .to_string(),
        json!({"rawPath": token, "requestContext": {"http": {"method": 7}}}).to_string(),
        json!({"rawPath": "/", "requestContext": {"http": {"method": "POST"}},
               "body": format!("{token}!"), "isBase64Encoded": true})
        .to_string(),
        "not json".to_owned(),
    ] {
        let err = crate::serve::request_of(&payload).unwrap_err();
        assert_eq!(err.kind(), "InvalidEvent");
        assert!(!format!("{err} {err:?}").contains("ghs_"), "{err}");
    }
}
