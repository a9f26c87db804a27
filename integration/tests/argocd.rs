//! The fake Argo CD API as its reference describes it (auth, error bodies, the two routes), and
//! keyward's adapter and workload detection against it over HTTP: findings from what it
//! reports, a fix synced and verified, and the token never in an error or a log line.

use std::sync::Arc;
use std::time::Duration;

use keyward_drift::argocd::ArgoCdClient;
use keyward_drift::detect::{DriftScope, Estate};
use keyward_drift::workload::{self, ArgoCd, WorkloadCheck};
use keyward_integration::fakes::argocd::{FakeArgoCd, ResourceSeed, as_applied};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::manifest::Manifest;
use keyward_shared::redact::{Redactor, SecretString};
use serde_json::{Value, json};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.keyward-argocd-test-token.c2lnbmF0dXJl";
const ENUMS: &str = include_str!("../../infra/config/manifest/enums.yaml");
const APP: &str = "keyward-prod";

fn manifest() -> Manifest {
    let text = "version: 1\norg: acme\nenvironments: [prod]\nsecrets:\n  - service: web\n    name: api-key\n    type: api-key\n    domain: web\n    owner: team-web\n    classification: internal\n    rotation: {strategy: random, days: 30}\n    kubernetes: {namespace: web, properties: [key]}\n    environments: [prod]\n";
    Manifest::from_sources(&[("m.yaml", text)], ("enums.yaml", ENUMS)).unwrap()
}

const ESTATE: Estate<'static> = Estate {
    org: "acme",
    environment: "prod",
};

fn projection() -> Value {
    workload::expected(&manifest(), ESTATE, &DriftScope::default())[0]
        .object
        .clone()
}

fn client(server: &str, token: &str, redactor: &Redactor) -> ArgoCdClient {
    let token = SecretString::from(token.to_owned());
    redactor.register(&token);
    ArgoCdClient {
        http: HttpClient::new(
            "keyward-argocd-test",
            Duration::from_secs(5),
            RetryPolicy {
                base_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            redactor.clone(),
        )
        .unwrap(),
        server: server.to_owned(),
        token,
    }
}

async fn get(url: &str, auth: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_fake_answers_as_argo_cd_does() {
    let argo = FakeArgoCd::start(TOKEN).await.unwrap();
    argo.fake.add_app(APP, "platform");
    let base = argo.base_url();
    let app_url = format!("{base}/api/v1/applications/{APP}");
    let bearer = format!("Bearer {TOKEN}");

    let (status, body) = get(&app_url, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "no session information", "code": 16, "message": "no session information"})
    );
    let (status, body) = get(&app_url, Some("Bearer another")).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(16)));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid session")
    );

    let (status, body) = get(&app_url, Some(&bearer)).await;
    assert_eq!(status, 200);
    assert_eq!(body["metadata"]["name"], APP);
    assert_eq!(body["spec"]["project"], "platform");
    assert_eq!(body["status"]["sync"]["status"], "Synced");
    assert_eq!(body["status"]["health"]["status"], "Healthy");

    // Missing, or not readable: 403 without saying which; with a project: 404.
    let (status, body) = get(&format!("{base}/api/v1/applications/nope"), Some(&bearer)).await;
    assert_eq!((status, body["code"].as_u64()), (403, Some(7)));
    assert_eq!(body["message"], "permission denied");
    let (status, body) = get(
        &format!("{base}/api/v1/applications/nope?project=platform"),
        Some(&bearer),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(5)));
    assert_eq!(body["error"], "applications.argoproj.io \"nope\" not found");
    let (status, _) = get(&format!("{app_url}?project=other"), Some(&bearer)).await;
    assert_eq!(status, 404);

    // Managed resources: states as JSON text, "null" when there is none; filters.
    let target = projection();
    argo.fake.put_resource(
        APP,
        ResourceSeed::external_secret("web", "web-api-key", None, Some(target.clone())),
    );
    let (status, body) = get(&format!("{app_url}/managed-resources"), Some(&bearer)).await;
    assert_eq!(status, 200);
    let item = &body["items"][0];
    assert_eq!(item["liveState"], "null");
    assert_eq!(
        serde_json::from_str::<Value>(item["targetState"].as_str().unwrap()).unwrap(),
        target
    );
    assert_eq!(item["modified"], true);
    let (_, body) = get(
        &format!("{app_url}/managed-resources?kind=Deployment"),
        Some(&bearer),
    )
    .await;
    assert_eq!(body["items"], json!([]));
    assert_eq!(argo.fake.sync_status(APP), "OutOfSync");
    argo.fake.sync(APP);
    assert_eq!(argo.fake.sync_status(APP), "Synced");

    let (status, body) = get(&format!("{base}/api/v1/clusters-ish"), Some(&bearer)).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(5)));
    let response = reqwest::Client::new()
        .delete(&app_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    argo.fake.deny(APP);
    let (status, _) = get(&app_url, Some(&bearer)).await;
    assert_eq!(status, 403);
}

/// Drift found from what Argo CD reports, then fixed by a chart change and a sync.
#[tokio::test]
async fn workload_detection_through_the_adapter() {
    let argo = FakeArgoCd::start(TOKEN).await.unwrap();
    argo.fake.add_app(APP, "platform");
    // The chart in git still renders an older ExternalSecret (refreshed daily): Argo CD has it
    // synced, but it is not what keyward projects.
    let mut stale = projection();
    stale["spec"]["refreshInterval"] = json!("24h");
    argo.fake.put_resource(
        APP,
        ResourceSeed::external_secret("web", "web-api-key", Some(as_applied(&stale)), Some(stale)),
    );
    let redactor = Redactor::new();
    let check = WorkloadCheck {
        argocd: Arc::new(client(&argo.base_url(), TOKEN, &redactor)),
        app: APP.into(),
        namespace: "default".into(),
    };
    let findings = |observed: &workload::WorkloadObserved| {
        let expected = workload::expected(&manifest(), ESTATE, &DriftScope::default());
        workload::evaluate(
            observed,
            &expected,
            ESTATE,
            &DriftScope::default(),
            "default",
        )
        .into_iter()
        .map(|f| f.fingerprint)
        .collect::<Vec<_>>()
    };
    let observed = workload::read(&check).await.unwrap();
    assert!(observed.app.synced_and_healthy());
    assert_eq!(
        findings(&observed),
        ["external-secret-spec-drift:/acme/prod/web/api-key:keyward-prod"]
    );
    // The fix: the chart renders the projection; until Argo CD syncs, the app is OutOfSync.
    argo.fake
        .set_target(APP, "ExternalSecret", "web", "web-api-key", projection());
    let observed = workload::read(&check).await.unwrap();
    assert!(!observed.app.synced_and_healthy());
    assert!(findings(&observed).contains(&"workload-out-of-sync:/acme/prod/:keyward-prod".into()));
    argo.fake.sync(APP);
    let observed = workload::read(&check).await.unwrap();
    assert!(observed.app.synced_and_healthy());
    assert!(findings(&observed).is_empty(), "{:?}", findings(&observed));
    argo.fake.set_health(APP, "Degraded");
    let observed = workload::read(&check).await.unwrap();
    assert_eq!(
        findings(&observed),
        ["workload-degraded:/acme/prod/:keyward-prod"]
    );
    let seen = argo.fake.seen();
    assert!(seen.iter().all(|s| s.status == 200), "{seen:?}");
}

/// Refusals and outages are errors naming the operation, never the token; bad names never
/// reach the server.
#[tokio::test]
async fn the_token_never_shows_in_an_error() {
    let argo = FakeArgoCd::start(TOKEN).await.unwrap();
    argo.fake.add_app(APP, "platform");
    let redactor = Redactor::new();
    let good = client(&argo.base_url(), TOKEN, &redactor);
    let wrong_token = "eyJhbGciOiJIUzI1NiJ9.a-wrong-token-value";
    let wrong = client(&argo.base_url(), wrong_token, &redactor);
    let mut errors = Vec::new();
    errors.push(wrong.application(APP).await.unwrap_err().to_string());
    errors.push(good.application("missing").await.unwrap_err().to_string());
    argo.fake.fail_next(10);
    errors.push(good.managed_resources(APP).await.unwrap_err().to_string());
    errors.push(
        good.application("../../settings")
            .await
            .unwrap_err()
            .to_string(),
    );
    assert!(errors[0].contains("401"), "{}", errors[0]);
    assert!(errors[1].contains("403"), "{}", errors[1]);
    assert!(
        errors[3].contains("not a Kubernetes resource name"),
        "{}",
        errors[3]
    );
    for error in &errors {
        assert!(
            !error.contains(TOKEN)
                && !error.contains(wrong_token)
                && !error.contains("c2lnbmF0dXJl"),
            "{error}"
        );
    }
    assert!(
        argo.fake
            .seen()
            .iter()
            .all(|s| !s.path.contains("settings")),
        "an invalid name was sent"
    );
    // The debug form of the client (what a careless `{:?}` would log) redacts it too.
    let shown = format!("{:?}", good.token);
    assert!(!shown.contains(TOKEN), "{shown}");
}
