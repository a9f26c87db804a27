//! Workload drift's pure parts: the rules against Argo CD's reports, fingerprints, the
//! remediation field, issue labels, configuration and the Argo CD credential. The HTTP adapter
//! against the fake Argo CD API is in `integration/tests/argocd.rs`.

use keyward_shared::config::env_of as env;
use keyward_shared::manifest::Manifest;
use serde_json::{Value, json};

use crate::detect::{DriftScope, Estate};
use crate::findings::{DriftType, FindingKind};
use crate::remediation::parse_fields;
use crate::settings;
use crate::tickets::{DRIFT_LABEL, WORKLOAD_DRIFT_LABEL, issue_labels, issue_text};
use crate::workload::{
    Application, ExpectedExternalSecret, ManagedResource, WorkloadObserved, app_of, evaluate,
    expected,
};

const ENUMS: &str = include_str!("../../infra/config/manifest/enums.yaml");
const ESTATE: Estate<'static> = Estate {
    org: "acme",
    environment: "prod",
};

fn manifest() -> Manifest {
    let text = "version: 1\norg: acme\nenvironments: [prod]\nsecrets:\n  - service: web\n    name: api-key\n    type: api-key\n    domain: web\n    owner: team-web\n    classification: internal\n    rotation: {strategy: random, days: 30}\n    kubernetes: {namespace: web}\n    environments: [prod]\n  - service: web\n    name: plain\n    type: api-key\n    domain: web\n    owner: team-web\n    classification: internal\n    rotation: {strategy: random, days: 30}\n    environments: [prod]\n";
    Manifest::from_sources(&[("m.yaml", text)], ("enums.yaml", ENUMS)).unwrap()
}

fn wanted() -> Vec<ExpectedExternalSecret> {
    expected(&manifest(), ESTATE, &DriftScope::default())
}

/// What the cluster holds once the projection is applied: operator defaults and `Ready`.
fn applied(object: &Value, reason: &str) -> Value {
    let mut live = object.clone();
    live["metadata"]["uid"] = json!("5d7c");
    for item in live["spec"]["data"].as_array_mut().unwrap() {
        item["remoteRef"]["conversionStrategy"] = json!("Default");
    }
    live["status"] = json!({"conditions": [
        {"type": "Ready", "status": if reason == "SecretSynced" { "True" } else { "False" }, "reason": reason}
    ]});
    live
}

fn resource(live: Option<Value>) -> ManagedResource {
    ManagedResource {
        group: "external-secrets.io".into(),
        kind: "ExternalSecret".into(),
        namespace: "web".into(),
        name: "web-api-key".into(),
        target: live.clone(),
        live,
    }
}

fn observed(sync: &str, health: &str, resources: Vec<ManagedResource>) -> WorkloadObserved {
    WorkloadObserved {
        app: Application {
            name: "apps".into(),
            sync_status: sync.into(),
            health_status: health.into(),
        },
        resources,
    }
}

fn slugs(o: &WorkloadObserved, scope: &DriftScope) -> Vec<String> {
    evaluate(o, &wanted(), ESTATE, scope, "default")
        .into_iter()
        .map(|f| f.fingerprint)
        .collect()
}

#[test]
fn only_projected_secrets_are_expected() {
    let all = wanted();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0].secret.as_str(),
            all[0].name.as_str(),
            all[0].namespace.as_str()
        ),
        ("/acme/prod/web/api-key", "web-api-key", "web")
    );
    let other = DriftScope {
        service: None,
        secret: Some("/acme/prod/web/plain".into()),
    };
    assert!(expected(&manifest(), ESTATE, &other).is_empty());
}

#[test]
fn a_synced_healthy_application_running_the_projection_is_clean() {
    let live = applied(&wanted()[0].object, "SecretSynced");
    let o = observed("Synced", "Healthy", vec![resource(Some(live))]);
    assert!(slugs(&o, &DriftScope::default()).is_empty());
    // A sync in flight is not drift.
    let o = observed("Synced", "Progressing", o.resources);
    assert!(slugs(&o, &DriftScope::default()).is_empty());
}

#[test]
fn each_rule_has_a_stable_fingerprint_of_workload_type() {
    let mut live = applied(&wanted()[0].object, "SecretSyncedError");
    live["spec"]["refreshInterval"] = json!("24h");
    let o = observed("OutOfSync", "Degraded", vec![resource(Some(live))]);
    let findings = evaluate(&o, &wanted(), ESTATE, &DriftScope::default(), "default");
    let prints: Vec<&str> = findings.iter().map(|f| f.fingerprint.as_str()).collect();
    assert_eq!(
        prints,
        [
            "external-secret-not-synced:/acme/prod/web/api-key:apps",
            "external-secret-spec-drift:/acme/prod/web/api-key:apps",
            "workload-degraded:/acme/prod/:apps",
            "workload-out-of-sync:/acme/prod/:apps",
        ]
    );
    assert!(
        findings
            .iter()
            .all(|f| f.kind.drift_type() == DriftType::Workload)
    );
    let drift = &findings[1];
    assert_eq!(drift.evidence["fields"], "spec.refreshInterval");
    assert_eq!(drift.evidence["external_secret"], "web/web-api-key");
    assert_eq!(findings[0].evidence["ready_reason"], "SecretSyncedError");
    assert_eq!(app_of(&findings[3].fingerprint), Some("apps"));
    // The application's drift names no secret in its event; an ExternalSecret's names its own.
    assert!(crate::drift_event(&findings[3]).secret.is_none());
    assert_eq!(
        crate::drift_event(&findings[0]).secret.map(|s| s.name),
        Some("/acme/prod/web/api-key".to_owned())
    );
    assert_eq!(app_of(&findings[0].fingerprint), Some("apps"));
    // Evaluated again: the same fingerprints (the same tickets).
    assert_eq!(slugs(&o, &DriftScope::default()), prints);
    // One secret's scope sees that secret's findings, not the application's.
    let one = DriftScope {
        service: None,
        secret: Some("/acme/prod/web/api-key".into()),
    };
    assert_eq!(slugs(&o, &one).len(), 2);
    // The estate's own scope (verifying an application finding) sees the application's.
    let estate = DriftScope {
        service: None,
        secret: Some("/acme/prod/".into()),
    };
    assert_eq!(slugs(&o, &estate).len(), 4);
}

#[test]
fn a_missing_external_secret_says_where_it_is_missing() {
    let none = observed("Synced", "Healthy", Vec::new());
    let f = evaluate(&none, &wanted(), ESTATE, &DriftScope::default(), "default");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, FindingKind::ExternalSecretMissing);
    assert_eq!(
        f[0].evidence["in_application"],
        "not managed by the application"
    );
    let declared_only = observed("OutOfSync", "Missing", vec![resource(None)]);
    let f = evaluate(
        &declared_only,
        &wanted(),
        ESTATE,
        &DriftScope::default(),
        "default",
    );
    let missing = f
        .iter()
        .find(|f| f.kind == FindingKind::ExternalSecretMissing)
        .unwrap();
    assert_eq!(
        missing.evidence["in_application"],
        "declared, not in the cluster"
    );
    // A resource in another namespace is not the projection's.
    let mut elsewhere = resource(Some(applied(&wanted()[0].object, "SecretSynced")));
    elsewhere.namespace = "api".into();
    let f = evaluate(
        &observed("Synced", "Healthy", vec![elsewhere]),
        &wanted(),
        ESTATE,
        &DriftScope::default(),
        "default",
    );
    assert_eq!(f[0].kind, FindingKind::ExternalSecretMissing);
}

#[test]
fn removed_or_changed_data_is_spec_drift_added_defaults_are_not() {
    let mut live = applied(&wanted()[0].object, "SecretSynced");
    live["spec"]["data"][0]["remoteRef"]["key"] = json!("/acme/prod/web/other");
    let f = evaluate(
        &observed("Synced", "Healthy", vec![resource(Some(live.clone()))]),
        &wanted(),
        ESTATE,
        &DriftScope::default(),
        "default",
    );
    assert_eq!(f[0].evidence["fields"], "spec.data[0].remoteRef.key");
    live["spec"]["data"] = json!([]);
    let f = evaluate(
        &observed("Synced", "Healthy", vec![resource(Some(live))]),
        &wanted(),
        ESTATE,
        &DriftScope::default(),
        "default",
    );
    assert_eq!(f[0].evidence["fields"], "spec.data");
}

#[test]
fn a_workload_fix_names_its_application() {
    let envs = vec!["prod".to_owned()];
    let body = "Drift Issue: #4\nDrift Type: workload\nChange Request ID: CR-9\nEnvironment: prod\nCloud Provider: aws\n";
    let problems = parse_fields(body, false, &envs).unwrap_err();
    assert_eq!(
        problems,
        ["`ArgoCD App` is missing from the pull request description"]
    );
    let fields = parse_fields(&format!("{body}ArgoCD App: apps\n"), false, &envs).unwrap();
    assert_eq!(fields.argocd_app.as_deref(), Some("apps"));
    // An infra fix has no application to name.
    let infra = body.replace("workload", "infra");
    assert_eq!(parse_fields(&infra, false, &envs).unwrap().argocd_app, None);
}

#[test]
fn workload_issues_carry_both_labels_and_the_app_field() {
    let live = applied(&wanted()[0].object, "SecretSynced");
    let o = observed("OutOfSync", "Healthy", vec![resource(Some(live))]);
    let finding = &evaluate(&o, &wanted(), ESTATE, &DriftScope::default(), "default")[0];
    assert_eq!(issue_labels(finding), [DRIFT_LABEL, WORKLOAD_DRIFT_LABEL]);
    let (_, body) = issue_text(finding, None);
    assert!(
        body.contains("Drift Type: workload\n") && body.contains("ArgoCD App: apps\n"),
        "{body}"
    );
}

#[test]
fn argocd_settings_as_the_platform_teams_name_them() {
    assert_eq!(settings::argocd(&env(&[])).unwrap(), None);
    let on = [
        ("ENABLE_ARGOCD_CHECK", "true"),
        ("ARGOCD_SERVER", "https://argocd.acme.example/"),
        ("ARGOCD_APP_NAME", "keyward-prod"),
    ];
    let config = settings::argocd(&env(&on)).unwrap().unwrap();
    assert_eq!(
        (
            config.server.as_str(),
            config.app.as_str(),
            config.namespace.as_str()
        ),
        ("https://argocd.acme.example", "keyward-prod", "default")
    );
    for (change, named) in [
        (("ARGOCD_APP_NAME", ""), "ARGOCD_APP_NAME"),
        (("ARGOCD_APP_NAME", "Keyward Prod"), "ARGOCD_APP_NAME"),
        (("ARGOCD_SERVER", ""), "ARGOCD_SERVER"),
        (
            ("ARGOCD_SERVER", "http://argocd.acme.example"),
            "ARGOCD_SERVER",
        ),
        (
            ("WORKLOAD_NAMESPACE", "Not A Namespace"),
            "WORKLOAD_NAMESPACE",
        ),
        (("ENABLE_ARGOCD_CHECK", "maybe"), "ENABLE_ARGOCD_CHECK"),
    ] {
        let mut pairs: Vec<(&str, &str)> =
            on.iter().copied().filter(|(k, _)| *k != change.0).collect();
        pairs.push(change);
        let err = settings::argocd(&env(&pairs)).unwrap_err().to_string();
        assert!(err.contains(named), "{change:?}: {err}");
    }
}

#[test]
fn the_argocd_token_is_a_credential() {
    let redactor = keyward_shared::redact::Redactor::new();
    let creds = crate::credentials::credentials_from_secret(
        r#"{"argocd_auth_token":"eyJhbGciOiJIUzI1NiJ9.argocd-secret-token"}"#,
        &redactor,
    )
    .unwrap();
    assert_eq!(
        redactor.redact("Bearer eyJhbGciOiJIUzI1NiJ9.argocd-secret-token"),
        "Bearer [REDACTED]"
    );
    let http = keyward_shared::adapters::http::HttpClient::for_function(
        "test",
        std::time::Duration::from_secs(1),
        redactor.clone(),
    )
    .unwrap();
    let config = settings::argocd(&env(&[
        ("ENABLE_ARGOCD_CHECK", "true"),
        ("ARGOCD_SERVER", "https://argocd.acme.example"),
        ("ARGOCD_APP_NAME", "apps"),
    ]))
    .unwrap();
    assert!(creds.argocd(&http, config.as_ref()).unwrap().is_some());
    let without = crate::credentials::Credentials::default();
    let err = without
        .argocd(&http, config.as_ref())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("argocd_auth_token"), "{err}");
    assert!(without.argocd(&http, None).unwrap().is_none());
}
