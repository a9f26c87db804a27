//! Unit tests of the pure parts: every rule against the sample manifest, remediation fields and
//! approvals, policy parsing, issue markers, configuration. The whole run against moto and the
//! fake GitHub and Jira APIs is in `integration/tests/drift.rs`.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::CatalogEntry;
use keyward_shared::tags;
use keyward_shared::vercel_ledger::Ledger;

use crate::findings::*;
use crate::remediation::{approvers, parse_fields};
use crate::tickets::{Review, fingerprint_in, issue_text, jira_label, marker, next_link};
use crate::{DriftScope, jira_key_in};

fn manifest() -> Manifest {
    Manifest::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/config/manifest"),
    )
    .unwrap()
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

/// The account exactly as declared for `env`: tagged, rotating on time, a customer key.
fn clean_account(m: &Manifest, env: &str) -> Vec<CatalogEntry> {
    m.scope(env, None)
        .map(|d| {
            let tags = tags::encode(&d.governance).unwrap();
            let automatic = d.governance.rotation.strategy
                != keyward_shared::governance::RotationStrategy::Manual;
            CatalogEntry {
                arn: format!(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{}-AbCdEf",
                    d.name
                ),
                name: d.name.to_string(),
                governance: tags::decode(&tags),
                tags,
                rotation_enabled: automatic,
                rotation_days: automatic
                    .then_some(i64::from(d.governance.rotation.interval.days())),
                rotation_lambda_arn: None,
                last_rotated: Some(now() - Duration::days(2)),
                next_rotation: automatic.then(|| now() + Duration::days(5)),
                last_changed: Some(now() - Duration::days(2)),
                last_accessed: Some(now() - Duration::days(1)),
                created: Some(now() - Duration::days(200)),
                deleted: None,
                kms_key_id: Some("arn:aws:kms:eu-west-1:123456789012:key/1234abcd".into()),
                primary_region: None,
                current_version: Some("v1".into()),
            }
        })
        .collect()
}

struct Case {
    actual: Vec<CatalogEntry>,
    replication: BTreeMap<String, Vec<ReplicaStatus>>,
    policies: BTreeMap<String, Option<PolicyGrants>>,
    ledgers: BTreeMap<String, Ledger>,
}

fn run(m: &Manifest, env: &str, case: &Case) -> Vec<Finding> {
    let observed = Observed {
        declared: m.scope(env, None).collect(),
        actual: &case.actual,
        replication: &case.replication,
        policies: Some(&case.policies),
        ledgers: Some(&case.ledgers),
    };
    evaluate(
        &observed,
        &format!("/acme/{env}/"),
        now(),
        &Thresholds::default(),
    )
}

/// A clean prod account: replicas in sync, policies naming only declared readers, Vercel
/// ledgers at the current version.
fn clean_case(m: &Manifest, env: &str) -> Case {
    let actual = clean_account(m, env);
    let mut replication = BTreeMap::new();
    let mut policies = BTreeMap::new();
    let mut ledgers = BTreeMap::new();
    for d in m.scope(env, None) {
        let name = d.name.to_string();
        replication.insert(
            name.clone(),
            d.governance
                .replicas
                .iter()
                .map(|r| ReplicaStatus {
                    region: r.as_str().to_owned(),
                    status: "InSync".into(),
                    message: None,
                })
                .collect(),
        );
        policies.insert(
            name.clone(),
            Some(PolicyGrants {
                public: false,
                principals: d
                    .governance
                    .readers
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            }),
        );
        if let Some(mapping) = &d.governance.vercel {
            let ledger = Ledger::in_parity(&name, mapping, "v1", || "env_1".into(), None);
            ledgers.insert(name, ledger);
        }
    }
    Case {
        actual,
        replication,
        policies,
        ledgers,
    }
}

#[test]
fn a_clean_account_has_no_findings() {
    let m = manifest();
    for env in ["dev", "staging", "prod"] {
        let findings = run(&m, env, &clean_case(&m, env));
        assert!(findings.is_empty(), "{env}: {findings:#?}");
    }
}

fn entry<'a>(case: &'a mut Case, name: &str) -> &'a mut CatalogEntry {
    case.actual.iter_mut().find(|e| e.name == name).unwrap()
}

#[test]
fn every_finding_kind_is_raised_with_its_evidence() {
    let m = manifest();
    let mut case = clean_case(&m, "prod");
    let db = "/acme/prod/payments/db-credentials";
    let session = "/acme/prod/web/session-key";
    let m2m = "/acme/prod/web/auth0-m2m";
    let stripe = "/acme/prod/payments/stripe-api-key";
    // Missing: drop one declared secret.
    let missing = "/acme/prod/web/auth0-rotator";
    case.actual.retain(|e| e.name != missing);
    // Undeclared: a secret nobody declared.
    let mut stray = case.actual[0].clone();
    stray.name = "/acme/prod/web/hand-made".into();
    stray.arn =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/web/hand-made-Zz".into();
    case.actual.push(stray);
    // Rotation disabled, AWS-managed key, scheduled for deletion.
    {
        let e = entry(&mut case, session);
        e.rotation_enabled = false;
        e.kms_key_id = None;
        e.deleted = Some(now() + Duration::days(7));
    }
    // Interval over policy and overdue (a missed NextRotationDate), governance changed by hand.
    {
        let e = entry(&mut case, db);
        e.rotation_days = Some(120);
        e.next_rotation = Some(now() - Duration::days(3));
        let mut tags = e.tags.clone();
        for t in &mut tags {
            if t.key == "keyward:owner" {
                t.value = "team-web".into();
            }
        }
        e.governance = tags::decode(&tags);
        e.tags = tags;
    }
    // Never rotated (created long ago), unused, and holding no value.
    {
        let e = entry(&mut case, stripe);
        e.current_version = None;
        e.last_rotated = None;
        e.created = Some(now() - Duration::days(120));
        e.last_accessed = Some(now() - Duration::days(100));
    }
    // Broken tag contract.
    {
        let e = entry(&mut case, m2m);
        e.tags
            .push(keyward_shared::tags::Tag::new("keyward:rotaton", "random"));
        e.governance = tags::decode(&e.tags);
    }
    // Replica failing, policy public and granting an undeclared reader.
    case.replication.insert(
        db.into(),
        vec![ReplicaStatus {
            region: "eu-central-1".into(),
            status: "Failed".into(),
            message: Some("KMS key not found in the replica region".into()),
        }],
    );
    case.policies.insert(
        db.into(),
        Some(PolicyGrants {
            public: true,
            principals: ["arn:aws:iam::123456789012:role/intruder".to_owned()].into(),
        }),
    );
    // Vercel: one variable never synced, one stale.
    let ledger = case.ledgers.get_mut(m2m).unwrap();
    let first = ledger.entries[0].slot.clone();
    ledger.remove(&first);
    ledger.entries[0].version_id = "v0".into();

    let findings = run(&m, "prod", &case);
    let kinds: std::collections::BTreeSet<&str> = findings.iter().map(|f| f.kind.slug()).collect();
    let mut expected: Vec<&str> = FindingKind::ALL
        .iter()
        // Workload kinds come from Argo CD's reports (workload_tests.rs), not the account.
        // Neither do AWS Config's verdicts (workload_tests.rs, native_tests.rs).
        .filter(|k| k.drift_type() == DriftType::Infra && **k != FindingKind::NativeNonCompliant)
        .map(|k| k.slug())
        .filter(|k| *k != "replica-missing")
        .collect();
    expected.sort();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        expected,
        "{findings:#?}"
    );
    let by = |fp: &str| {
        findings
            .iter()
            .find(|f| f.fingerprint == fp)
            .unwrap_or_else(|| panic!("{fp}: {findings:#?}"))
    };
    assert_eq!(
        by(&format!("rotation-interval-over-policy:{db}")).evidence["rotation_days"],
        "120"
    );
    assert_eq!(
        by(&format!("governance-mismatch:{db}")).evidence["owner.actual"],
        "team-web"
    );
    assert!(
        by(&format!("tag-contract-broken:{m2m}")).evidence["error"].contains("keyward:rotaton")
    );
    assert_eq!(
        by(&format!("replica-failing:{db}:eu-central-1")).severity,
        keyward_shared::events::Severity::High
    );
    assert_eq!(
        by(&format!("policy-public:{db}")).severity,
        keyward_shared::events::Severity::Critical
    );
    assert!(findings.iter().any(|f| f.fingerprint
        == format!("policy-undeclared-reader:{db}:arn:aws:iam::123456789012:role/intruder")));
    assert_eq!(
        Finding::secret_of(&format!(
            "policy-undeclared-reader:{db}:arn:aws:iam::1:role/x"
        )),
        Some(db)
    );

    // A replica that is not there at all.
    case.replication.insert(db.into(), vec![]);
    let findings = run(&m, "prod", &case);
    assert!(
        findings
            .iter()
            .any(|f| f.fingerprint == format!("replica-missing:{db}:eu-central-1"))
    );
}

/// Only the manifest grants the CI reader role a value: the tag added by hand is drift.
#[test]
fn a_ci_read_tag_the_manifest_does_not_declare_is_governance_drift() {
    let m = manifest();
    let mut case = clean_case(&m, "prod");
    let session = "/acme/prod/web/session-key";
    {
        let e = entry(&mut case, session);
        e.tags
            .push(keyward_shared::tags::Tag::new("keyward:ci-read", "true"));
        e.governance = tags::decode(&e.tags);
    }
    let findings = run(&m, "prod", &case);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(
        finding.fingerprint,
        format!("governance-mismatch:{session}")
    );
    assert_eq!(finding.evidence["fields"], "ci_read");
    assert_eq!(finding.evidence["ci_read.declared"], "false");
    assert_eq!(finding.evidence["ci_read.actual"], "true");
}

#[test]
fn fingerprints_are_stable_across_runs() {
    let m = manifest();
    let mut case = clean_case(&m, "prod");
    entry(&mut case, "/acme/prod/web/session-key").rotation_enabled = false;
    let first: Vec<String> = run(&m, "prod", &case)
        .into_iter()
        .map(|f| f.fingerprint)
        .collect();
    let second: Vec<String> = run(&m, "prod", &case)
        .into_iter()
        .map(|f| f.fingerprint)
        .collect();
    assert_eq!(first, second);
    assert_eq!(first, ["rotation-disabled:/acme/prod/web/session-key"]);
}

#[test]
fn scopes_cover_what_they_name() {
    let p = "/acme/prod/";
    let all = DriftScope::default();
    let service = DriftScope {
        service: Some("web".into()),
        secret: None,
    };
    let secret = DriftScope {
        service: None,
        secret: Some("/acme/prod/web/k".into()),
    };
    assert!(all.covers(p, "/acme/prod/web/k") && !all.covers(p, "/acme/dev/web/k"));
    assert!(service.covers(p, "/acme/prod/web/k") && !service.covers(p, "/acme/prod/webx/k"));
    assert!(secret.covers(p, "/acme/prod/web/k") && !secret.covers(p, "/acme/prod/web/k2"));
}

#[test]
fn resource_policies_parse() {
    let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    assert!(PolicyGrants::parse(public).unwrap().public);
    let conditioned = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}}}"#;
    assert!(!PolicyGrants::parse(conditioned).unwrap().public);
    let named = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:role/a","arn:aws:iam::1:role/b"]},"Action":"*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::1:role/c"},"Action":"*","Resource":"*"}]}"#;
    let grants = PolicyGrants::parse(named).unwrap();
    assert_eq!(grants.principals.len(), 2, "Deny statements grant nothing");
    assert!(PolicyGrants::parse("{}").is_err());
    assert!(PolicyGrants::parse("not json").is_err());
}

#[test]
fn issue_bodies_carry_their_fingerprint_and_jira_key() {
    let m = manifest();
    let mut case = clean_case(&m, "prod");
    entry(&mut case, "/acme/prod/web/session-key").rotation_enabled = false;
    let finding = run(&m, "prod", &case).remove(0);
    let (title, body) = issue_text(&finding, Some("SEC-7"));
    assert_eq!(
        title,
        "Drift: rotation-disabled on /acme/prod/web/session-key"
    );
    assert_eq!(fingerprint_in(&body), Some(finding.fingerprint.as_str()));
    assert_eq!(jira_key_in(&body).as_deref(), Some("SEC-7"));
    assert!(body.contains("Drift Type: infra"));
    assert_eq!(issue_text(&finding, Some("SEC-7")).1, body, "deterministic");
    assert_eq!(fingerprint_in("no marker"), None);
    assert!(marker("a:b").starts_with("<!-- keyward-drift"));
    let label = jira_label(&finding.fingerprint);
    assert!(label.starts_with("keyward-") && label.len() == 24 && !label.contains(['/', ':']));
}

#[test]
fn link_headers() {
    let header = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
    assert_eq!(
        next_link(header).as_deref(),
        Some("https://api.github.com/repositories/1/issues?page=2")
    );
    assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
}

const GOOD_BODY: &str = "Fixes the rotation.\n\n**Drift Issue:** #12\nDrift Type: infra\nChange Request ID: CR-1042\nEnvironment: prod\nCloud Provider: AWS\nJira Key: SEC-7\n";

#[test]
fn remediation_fields_accept_a_complete_description() {
    let envs = ["dev".to_owned(), "prod".to_owned()];
    let fields = parse_fields(GOOD_BODY, true, &envs).unwrap();
    assert_eq!(fields.drift_issue, 12);
    assert_eq!(fields.drift_type, DriftType::Infra);
    assert_eq!(fields.change_request_id, "CR-1042");
    assert_eq!(fields.cloud_provider, "aws");
    assert_eq!(fields.jira_key.as_deref(), Some("SEC-7"));
    // Jira off: the key is optional.
    let without = GOOD_BODY.replace("Jira Key: SEC-7\n", "");
    assert!(parse_fields(&without, false, &envs).is_ok());
}

#[test]
fn remediation_fields_report_every_problem_by_name() {
    let envs = ["dev".to_owned(), "prod".to_owned()];
    for (edit, expect) in [
        (("**Drift Issue:** #12\n", ""), "`Drift Issue` is missing"),
        (("#12", "twelve"), "`Drift Issue` must be an issue number"),
        (
            ("Drift Type: infra", "Drift Type: rotation-disabled"),
            "`Drift Type` `rotation-disabled` is neither `infra` nor `workload`",
        ),
        (
            ("CR-1042", "see ticket"),
            "`Change Request ID` `see ticket`",
        ),
        (
            ("Environment: prod", "Environment: qa"),
            "`Environment` `qa`",
        ),
        (
            ("Cloud Provider: AWS", "Cloud Provider: gcp"),
            "`Cloud Provider` `gcp`",
        ),
        (("Jira Key: SEC-7\n", ""), "`Jira Key` is missing"),
        (("Jira Key: SEC-7", "Jira Key: sec 7"), "`Jira Key` `sec 7`"),
        (
            (
                "Change Request ID: CR-1042\n",
                "Change Request ID: CR-1042\nChange Request ID: CR-9\n",
            ),
            "more than once",
        ),
        (
            ("Environment: prod", "Environment:"),
            "`Environment` is empty",
        ),
    ] {
        let body = GOOD_BODY.replace(edit.0, edit.1);
        let problems = parse_fields(&body, true, &envs).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{expect}: {problems:?}"
        );
    }
    let problems = parse_fields("", true, &envs).unwrap_err();
    assert_eq!(problems.len(), 6, "{problems:?}");
}

#[test]
fn approvals_count_distinct_reviewers_latest_decision_not_the_author() {
    let r = |login: &str, state: &str| Review {
        login: login.into(),
        state: state.into(),
        commit_id: Some("head".into()),
    };
    let reviews = [
        r("alice", "APPROVED"),
        r("bob", "APPROVED"),
        r("bob", "CHANGES_REQUESTED"),
        r("carol", "CHANGES_REQUESTED"),
        r("carol", "APPROVED"),
        r("carol", "COMMENTED"),
        r("dave", "APPROVED"),
        r("dave", "DISMISSED"),
        r("author", "APPROVED"),
        r("alice", "APPROVED"),
    ];
    let got: Vec<String> = approvers(&reviews, "Author", "head").into_iter().collect();
    assert_eq!(got, ["alice", "carol"]);
    // No head commit known, or a review that names no commit: nothing counts.
    assert!(approvers(&reviews, "Author", "").is_empty());
    let unpinned = Review {
        commit_id: None,
        ..r("erin", "APPROVED")
    };
    assert!(approvers(&[unpinned], "author", "head").is_empty());
    // Approvals of an older commit do not count once something newer is pushed.
    let on = |login: &str, commit: &str| Review {
        login: login.into(),
        state: "APPROVED".into(),
        commit_id: Some(commit.into()),
    };
    let got: Vec<String> = approvers(&[on("alice", "old"), on("bob", "new")], "author", "new")
        .into_iter()
        .collect();
    assert_eq!(got, ["bob"]);
}

#[test]
fn credentials_never_quote_the_secret() {
    let redactor = keyward_shared::redact::Redactor::new();
    let creds = crate::credentials::credentials_from_secret(
        r#"{"github_token":"ghp_abcdefghijklmnop123456","jira_email":"bot@acme.example","jira_api_token":"ATATT3xFfGF0token","webhook_url":"https://hooks.slack.com/services/T0/B0/XYZSECRET"}"#,
        &redactor,
    )
    .unwrap();
    assert!(creds.github_token.is_some() && creds.jira_api_token.is_some());
    assert_eq!(
        redactor
            .redact("ghp_abcdefghijklmnop123456 https://hooks.slack.com/services/T0/B0/XYZSECRET"),
        "[REDACTED] [REDACTED]"
    );
    for bad in [
        "ghp_leakedtokenvalue",
        r#"{"github_token":"ghp_leakedtokenvalue","other":1}"#,
    ] {
        let err = crate::credentials::credentials_from_secret(
            bad,
            &keyward_shared::redact::Redactor::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(!err.contains("leaked"), "{err}");
    }
}

/// Seeded mutations of the outside inputs detection and the gateway parse (resource policies,
/// pull-request descriptions, Link headers, issue bodies): no panic, whatever arrives. The
/// detector function's own input parser has its test in that crate.
#[test]
fn mutated_outside_inputs_never_panic() {
    let seeds: [&str; 5] = [
        r#"{"scope": {"service": "web", "secret": "/acme/prod/web/k"}}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:role/a"]},"Action":"*","Resource":"*","Condition":{"StringEquals":{"a":"b"}}}]}"#,
        GOOD_BODY,
        r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://x>; rel="last""#,
        "<!-- keyward-drift fingerprint=\"rotation-disabled:/acme/prod/web/k\" -->\nJira: SEC-1\n",
    ];
    let mut rng = fastrand::Rng::with_seed(0xD21F7);
    let envs = ["prod".to_owned()];
    for _ in 0..5_000 {
        let seed = seeds[rng.usize(0..seeds.len())];
        let bytes = keyward_shared::mutate::mutant(&mut rng, seed.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        let _ = PolicyGrants::parse(&text);
        let _ = parse_fields(&text, true, &envs);
        let _ = next_link(&text);
        let _ = fingerprint_in(&text);
        let _ = jira_key_in(&text);
    }
}

#[test]
fn not_principal_allows_are_public() {
    let doc = r#"{"Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::1:role/a"},"Action":"*","Resource":"*"}]}"#;
    assert!(PolicyGrants::parse(doc).unwrap().public);
}

#[test]
fn only_write_permissions_approve() {
    use crate::tickets::can_write;
    for p in ["admin", "maintain", "write"] {
        assert!(can_write(p), "{p}");
    }
    for p in ["triage", "read", "none", "", "WRITE"] {
        assert!(!can_write(p), "{p}");
    }
}

#[test]
fn jira_issues_take_the_configured_type_and_close_to_done_or_closed() {
    let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let base = [
        ("ENABLE_JIRA_INTEGRATION", "true"),
        ("KEYWARD_JIRA_URL", "https://acme.atlassian.net"),
        ("KEYWARD_JIRA_PROJECT", "SEC"),
    ];
    let default = crate::settings::jira(&env(&base)).unwrap().unwrap();
    assert_eq!(default.issue_type, "Task");
    let mut bug = base.to_vec();
    bug.push(("JIRA_ISSUE_TYPE", "Bug"));
    assert_eq!(
        crate::settings::jira(&env(&bug))
            .unwrap()
            .unwrap()
            .issue_type,
        "Bug"
    );

    // Jira's transitions response: a workflow ending in Closed, and one ending in Done.
    let closed = serde_json::json!({"transitions": [
        {"id": "11", "name": "Start", "to": {"name": "In Progress"}},
        {"id": "41", "name": "Close issue", "to": {"name": "Closed"}},
    ]});
    assert_eq!(crate::tickets::closing_transition(&closed), Some("41"));
    let done = serde_json::json!({"transitions": [
        {"id": "41", "name": "Close", "to": {"name": "Closed"}},
        {"id": "31", "name": "Done", "to": {"name": "DONE"}},
    ]});
    assert_eq!(crate::tickets::closing_transition(&done), Some("31"));
    let neither = serde_json::json!({"transitions": [{"id": "11", "to": {"name": "To Do"}}]});
    assert_eq!(crate::tickets::closing_transition(&neither), None);
}
