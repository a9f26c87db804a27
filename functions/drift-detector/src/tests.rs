//! The detector function's own parts: configuration and its input parser.

use keyward_drift::DriftScope;

use crate::{Config, input_scope};

use keyward_shared::config::env_of as env;

#[test]
fn config_reads_and_names_bad_variables() {
    let base = [
        ("KEYWARD_EVENT_BUS", "keyward-acme"),
        ("KEYWARD_STATE_BUCKET", "state"),
        ("KEYWARD_SECRET_PREFIX", "/acme/prod/"),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config-bucket/manifest/"),
    ];
    let cfg = Config::from_env(&env(&base)).unwrap();
    assert_eq!(
        (cfg.manifest_bucket.as_str(), cfg.manifest_prefix.as_str()),
        ("config-bucket", "manifest/")
    );
    assert_eq!(cfg.github_api_url, "https://api.github.com");
    assert!(cfg.jira.is_none() && cfg.settings.check_policies && !cfg.notifications);
    assert_eq!(cfg.settings.thresholds.unused_days, 90);
    for (extra, expect) in [
        (
            vec![("KEYWARD_MANIFEST_S3_URI", "config-bucket/manifest")],
            "KEYWARD_MANIFEST_S3_URI",
        ),
        (
            vec![("ENABLE_JIRA_INTEGRATION", "true")],
            "KEYWARD_JIRA_URL",
        ),
        (
            vec![
                ("ENABLE_JIRA_INTEGRATION", "true"),
                ("KEYWARD_JIRA_URL", "https://acme.atlassian.net"),
            ],
            "KEYWARD_JIRA_PROJECT",
        ),
        (
            vec![("KEYWARD_GITHUB_API_URL", "http://github.example")],
            "KEYWARD_GITHUB_API_URL",
        ),
        (
            vec![("KEYWARD_DRIFT_GITHUB_REPO", "acme")],
            "KEYWARD_DRIFT_GITHUB_REPO",
        ),
        (
            vec![("KEYWARD_DRIFT_UNUSED_DAYS", "soon")],
            "KEYWARD_DRIFT_UNUSED_DAYS",
        ),
    ] {
        let mut pairs = base.to_vec();
        for (k, v) in &extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v));
        }
        let err = Config::from_env(&env(&pairs)).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn sample_inputs_and_bad_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/drift-detector");
    for (file, expect) in [
        ("scheduled.json", DriftScope::default()),
        (
            "on-demand-secret.json",
            DriftScope {
                service: None,
                secret: Some("/acme/dev/web/session-key".into()),
            },
        ),
        (
            "on-demand-service.json",
            DriftScope {
                service: Some("web".into()),
                secret: None,
            },
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(input_scope(&text).unwrap(), expect, "{file}");
    }
    for bad in [
        "",
        "{}",
        r#"{"scope": {"svc": "web"}}"#,
        r#"{"detail-type": "Object Created"}"#,
        "[1]",
    ] {
        let err = input_scope(bad).unwrap_err();
        assert_eq!(err.kind(), "InvalidInput", "{bad}");
    }
}

/// Seeded mutations of the on-demand payload: no panic, whatever arrives.
#[test]
fn mutated_inputs_never_panic() {
    let seed = r#"{"scope": {"service": "web", "secret": "/acme/prod/web/k"}}"#;
    let mut rng = fastrand::Rng::with_seed(0xD21F7);
    for _ in 0..5_000 {
        let bytes = keyward_shared::mutate::mutant(&mut rng, seed.as_bytes());
        let _ = input_scope(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn argocd_check_is_read_with_the_rest() {
    let base = [
        ("KEYWARD_EVENT_BUS", "keyward-acme"),
        ("KEYWARD_STATE_BUCKET", "state"),
        ("KEYWARD_SECRET_PREFIX", "/acme/prod/"),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config-bucket/manifest/"),
    ];
    assert!(Config::from_env(&env(&base)).unwrap().argocd.is_none());
    let mut on = base.to_vec();
    on.extend([
        ("ENABLE_ARGOCD_CHECK", "true"),
        ("ARGOCD_APP_NAME", "keyward-prod"),
    ]);
    let err = Config::from_env(&env(&on)).unwrap_err().to_string();
    assert!(err.contains("ARGOCD_SERVER"), "{err}");
    on.push(("ARGOCD_SERVER", "https://argocd.acme.example"));
    let argocd = Config::from_env(&env(&on)).unwrap().argocd.unwrap();
    assert_eq!(argocd.namespace, "default");
}
