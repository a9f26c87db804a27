//! The `keyward` operator CLI as a user runs it (the built binary): `request new` with every
//! kind of bad input and its path-pointing errors, `validate`, `render --check`, `workflows
//! --check`, and `plan` against moto (no change, then each kind of change, with
//! `terraform plan -detailed-exitcode` exit codes).

use keyward_integration::support::secret_tag;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keyward_integration::declared;
use keyward_integration::moto::MotoServer;

fn binary() -> PathBuf {
    let binary = keyward_integration::target_dir().join("debug/keyward");
    assert!(
        binary.exists(),
        "{} missing: `cargo build --workspace --bins` first",
        binary.display()
    );
    binary
}

fn run(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(binary())
        .env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A copy of the sample manifest under `org`, in a temp dir.
fn manifest_dir(org: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in declared::manifest_files(org) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

const GOOD: &[&str] = &[
    "--service",
    "billing",
    "--name",
    "ledger-key",
    "--type",
    "api-key",
    "--domain",
    "payments",
    "--owner",
    "team-payments",
    "--classification",
    "restricted",
    "--rotation",
    "random",
    "--rotation-days",
    "30",
    "--environments",
    "staging,prod",
];

fn with(overrides: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = GOOD.iter().map(|s| (*s).to_owned()).collect();
    for (flag, value) in overrides {
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = (*value).to_owned(),
            None => {
                args.push((*flag).to_owned());
                args.push((*value).to_owned());
            }
        }
    }
    args
}

#[test]
fn a_request_is_validated_then_written_and_becomes_part_of_the_manifest() {
    let dir = manifest_dir("acme");
    let mut args = vec!["request", "new", "--manifest", path(dir.path())];
    args.extend(GOOD);
    let out = run(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = dir.path().join("request-billing-ledger-key.yaml");
    let yaml = std::fs::read_to_string(&written).unwrap();
    assert!(yaml.contains("version: 1\nsecrets:"), "{yaml}");
    // The manifest now declares it, and `validate` accepts the whole.
    let out = run(&["validate", "--manifest", path(dir.path())], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid: 13 secret(s)"), "{}", text(&out));
    // The same request again is refused (the file exists), nothing overwritten.
    let out = run(&args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), yaml);
}

#[test]
fn every_bad_request_names_its_field_and_writes_nothing() {
    let dir = manifest_dir("acme");
    for (overrides, expect) in [
        (vec![("--type", "password")], "type"),
        (vec![("--domain", "marketing")], "domain"),
        (vec![("--owner", "nobody")], "owner"),
        (vec![("--rotation", "hourly")], "rotation"),
        (vec![("--rotation-days", "120")], "days"),
        (vec![("--environments", "qa")], "qa"),
        (vec![("--classification", "secret")], "--classification"),
        (vec![("--name", "Bad_Name")], "name"),
        (
            vec![("--type", "signing-key"), ("--rotation", "manual")],
            "rotation",
        ),
        (vec![("--vercel-project", "acme-web")], "vercel"),
        (
            vec![("--k8s-namespace", "Payments_NS")],
            "kubernetes.namespace",
        ),
        (vec![("--readers", "not-an-arn")], "reader"),
    ] {
        let args = with(&overrides);
        let mut argv = vec!["request", "new", "--manifest", path(dir.path())];
        argv.extend(args.iter().map(String::as_str));
        let out = run(&argv, &[]);
        let output = text(&out);
        assert_eq!(out.status.code(), Some(1), "{overrides:?}: {output}");
        assert!(
            output.contains(expect),
            "{overrides:?} should mention {expect}: {output}"
        );
        assert!(
            output.contains("request-billing-") || expect.starts_with("--"),
            "the problem points at the request file: {output}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("request-"))
        .collect();
    assert!(leftovers.is_empty(), "nothing written");
    // Missing flags without a terminal: one error naming all of them.
    let out = run(
        &[
            "request",
            "new",
            "--manifest",
            path(dir.path()),
            "--service",
            "x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out);
    for flag in [
        "--name",
        "--type",
        "--domain",
        "--owner",
        "--rotation-days",
        "--environments",
    ] {
        assert!(output.contains(flag), "{flag}: {output}");
    }
}

#[test]
fn validate_reports_problems_with_file_and_path() {
    let dir = manifest_dir("acme");
    let payments = dir.path().join("payments.yaml");
    let text_before = std::fs::read_to_string(&payments).unwrap();
    std::fs::write(&payments, text_before.replace("days: 30", "days: 91")).unwrap();
    let out = run(&["validate", "--manifest", path(dir.path())], &[]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out);
    assert!(output.contains("payments.yaml"), "{output}");
    assert!(output.contains("secrets[0].rotation.days"), "{output}");
}

#[test]
fn render_and_workflows_report_when_they_are_stale() {
    let dir = manifest_dir("acme");
    let out_dir = tempfile::tempdir().unwrap();
    let render = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "--manifest",
            path(dir.path()),
            "--out",
            path(out_dir.path()),
        ];
        args.extend_from_slice(extra);
        run(&args, &[])
    };
    let out = render(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first: Vec<(PathBuf, Vec<u8>)> = walk(out_dir.path());
    // Byte-identical on rerun.
    render(&[]);
    assert_eq!(walk(out_dir.path()), first);
    let check = || render(&["--check"]);
    assert_eq!(check().status.code(), Some(0));
    // A manifest change makes the committed projections stale.
    let web = dir.path().join("web.yaml");
    let before = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, before.replace("days: 30", "days: 14")).unwrap();
    let stale = check();
    assert_eq!(stale.status.code(), Some(1));
    assert!(text(&stale).contains("differs"), "{}", text(&stale));

    let workflow = out_dir.path().join("request-app-secret.yml");
    let args = [
        "workflows",
        "--manifest",
        path(dir.path()),
        "--out",
        workflow.to_str().unwrap(),
    ];
    assert_eq!(run(&args, &[]).status.code(), Some(0));
    let mut check_args = args.to_vec();
    check_args.push("--check");
    assert_eq!(run(&check_args, &[]).status.code(), Some(0));
    // A new owner in enums.yaml: the dropdown is out of date until regenerated.
    let enums = dir.path().join("enums.yaml");
    let text_enums = std::fs::read_to_string(&enums).unwrap();
    std::fs::write(
        &enums,
        text_enums.replace("team-platform]", "team-platform, team-data]"),
    )
    .unwrap();
    let drifted = run(&check_args, &[]);
    assert_eq!(drifted.status.code(), Some(1), "{}", text(&drifted));
    assert!(text(&drifted).contains("does not match enums.yaml"));
}

fn walk(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn plan_against_moto_exits_like_terraform_plan_detailed_exitcode() {
    let moto = MotoServer::shared().await;
    let org = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let dir = manifest_dir(&org);
    let env = moto.function_env();
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--manifest", path(dir.path()), "--env", "prod"];
        args.extend(extra);
        run(&args, &env)
    };
    // Nothing exists yet: every declared secret is a create.
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(text(&out).matches("~ create").count(), 6, "{}", text(&out));

    // Seeded as declared: no changes.
    let files = declared::manifest_files(&org);
    let manifest = declared::manifest_from(&files).unwrap();
    let seeded = declared::seed(moto, &manifest, "prod").await.unwrap();
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes"));

    // Each kind of change.
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let arn = |rest: &str| seeded[&format!("/{org}/prod/{rest}")].0.clone();
    sm.cancel_rotate_secret()
        .secret_id(arn("web/session-key"))
        .send()
        .await
        .unwrap();
    sm.tag_resource()
        .secret_id(arn("payments/stripe-api-key"))
        .tags(secret_tag("keyward:owner", "team-web"))
        .send()
        .await
        .unwrap();
    sm.remove_regions_from_replication()
        .secret_id(arn("payments/db-credentials"))
        .remove_replica_regions("eu-central-1")
        .send()
        .await
        .unwrap();
    declared::enable_rotation(moto, &arn("web/auth0-m2m"), 120)
        .await
        .unwrap();
    sm.delete_secret()
        .secret_id(arn("payments/db-admin"))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let output = text(&out);
    for action in [
        "enable rotation",
        "update tags",
        "add replica",
        "update rotation schedule",
        "create",
    ] {
        assert!(output.contains(action), "{action}: {output}");
    }
    // Markdown for the pull-request comment; a service filter narrows it.
    let md = plan(&["--markdown", "--service", "web"]);
    assert_eq!(md.status.code(), Some(2));
    let md = text(&md);
    assert!(md.starts_with("### keyward plan: `prod`"), "{md}");
    assert!(
        md.contains("| enable rotation |") && !md.contains("stripe-api-key"),
        "{md}"
    );
    // The local drift check lists every finding, operational ones included.
    let drift = run(
        &["drift", "--manifest", path(dir.path()), "--env", "prod"],
        &env,
    );
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift));
    let drift = text(&drift);
    for kind in [
        "rotation-disabled",
        "governance-mismatch",
        "replica-missing",
        "declared-missing",
    ] {
        assert!(drift.contains(kind), "{kind}: {drift}");
    }
    // An environment the manifest does not have is an error (exit 1).
    let bad = run(
        &["plan", "--manifest", path(dir.path()), "--env", "qa"],
        &env,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("`qa` is not one of the manifest's environments"));
}

/// `keyward posture` against moto: the summary, the document and the page from one run; a
/// source it cannot read is named on stderr and in the page, and the exit code is 1.
#[tokio::test]
async fn posture_reads_the_account_and_names_what_it_could_not_read() {
    use keyward_integration::moto::BucketKind;
    let moto = MotoServer::shared().await;
    let org = format!("q{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let dir = manifest_dir(&org);
    let files = declared::manifest_files(&org);
    let manifest = declared::manifest_from(&files).unwrap();
    declared::seed(moto, &manifest, "prod").await.unwrap();
    let state = format!("{org}-state");
    let audit = format!("{org}-audit");
    moto.create_bucket(&state, BucketKind::Versioned)
        .await
        .unwrap();
    moto.create_bucket(&audit, BucketKind::ObjectLockCompliance { days: 1 })
        .await
        .unwrap();
    let key = moto.create_signing_key().await.unwrap();
    let env = moto.function_env();
    let out_dir = tempfile::tempdir().unwrap();
    let page = out_dir.path().join("posture.html");
    let posture = |audit_bucket: &str, extra: &[&str]| {
        let mut args = vec![
            "posture",
            "--manifest",
            path(dir.path()),
            "--state-bucket",
            &state,
            "--audit-bucket",
            audit_bucket,
            "--kms-key-id",
            &key,
        ];
        args.extend(extra);
        run(&args, &env)
    };

    let out = posture(&audit, &["--json", "--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let declared_in_prod = manifest
        .secrets
        .iter()
        .filter(|s| s.name.env().as_str() == "prod")
        .count() as u64;
    assert_eq!(
        document["headline"]["secrets_governed"].as_u64(),
        Some(declared_in_prod),
        "{document:#}"
    );
    assert_eq!(document["schema_version"], 1);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"headline\"") && html.contains(&format!("/{org}/prod/")));

    // The terminal summary, worst first: the declared staging secrets are missing.
    let out = posture(&audit, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.starts_with(&format!("keyward posture of {org}")),
        "{summary}"
    );
    let first_row = summary
        .lines()
        .find(|l| l.starts_with("BAD") || l.starts_with("warn") || l.starts_with("ok"))
        .unwrap_or_default();
    assert!(first_row.starts_with("BAD"), "{summary}");

    // An audit bucket that does not exist: still a document, the source named, exit 1.
    let out = posture(&format!("{org}-nowhere"), &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unread: Vec<&str> = document["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["read"] == false)
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(unread, ["audit_bucket", "audit_chain"], "{document:#}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not read audit bucket"),
        "{}",
        text(&out)
    );

    // A manifest that does not load, and no --org: nothing to scope by, a clear error.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("secrets.yaml"), "version: 1\nsecrets: [").unwrap();
    let out = run(
        &[
            "posture",
            "--manifest",
            path(broken.path()),
            "--state-bucket",
            &state,
            "--audit-bucket",
            &audit,
            "--kms-key-id",
            &key,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the manifest could not be loaded and no --org was given"),
        "{}",
        text(&out)
    );
}

/// `keyward evidence` against moto signs a bundle with the digest key (RSASSA-PSS through
/// KMS); `keyward evidence verify` checks it offline with the public key and names a file
/// changed after signing.
#[tokio::test]
async fn an_evidence_bundle_is_signed_by_kms_and_verified_offline() {
    use keyward_integration::moto::BucketKind;
    use keyward_shared::audit::record::AuditRecord;
    use keyward_shared::events::{
        Actor, CorrelationId, DomainEvent, EventData, Outcome, SecretRef,
    };
    let moto = MotoServer::shared().await;
    let org = format!("e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let dir = manifest_dir(&org);
    let audit = format!("{org}-audit");
    moto.create_bucket(&audit, BucketKind::ObjectLockCompliance { days: 1 })
        .await
        .unwrap();
    let key = moto.create_signing_key().await.unwrap();
    let event = DomainEvent::new(
        CorrelationId::generate(),
        Actor::service("rotation"),
        Some(SecretRef {
            name: format!("/{org}/prod/web/session-key"),
            arn: None,
        }),
        Outcome::Success,
        EventData::SecretRotated {
            strategy: keyward_shared::governance::RotationStrategy::Random,
            version_id: "v2".into(),
            previous_version_id: None,
        },
    );
    let from = (event.time - chrono::Duration::hours(1)).to_rfc3339();
    let to = (event.time + chrono::Duration::hours(1)).to_rfc3339();
    let record = AuditRecord::of(event);
    moto.s3()
        .put_object()
        .bucket(&audit)
        .key(record.key())
        .body(record.to_bytes().unwrap().into())
        .send()
        .await
        .unwrap();
    let env = moto.function_env();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    let out = run(
        &[
            "evidence",
            "--manifest",
            path(dir.path()),
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            bundle.to_str().unwrap(),
            "--audit-bucket",
            &audit,
            "--kms-key-id",
            &key,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rotations: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("rotation-evidence.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rotations[0]["record_key"], record.key());

    let public_key = aws_sdk_kms::Client::new(&moto.sdk_config())
        .get_public_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap()
        .into_inner();
    let key_file = work.path().join("digest.pub.der");
    std::fs::write(&key_file, public_key).unwrap();
    let verify = |bundle: &Path| {
        run(
            &[
                "evidence",
                "verify",
                bundle.to_str().unwrap(),
                "--public-key",
                key_file.to_str().unwrap(),
            ],
            &env,
        )
    };
    let out = verify(&bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).starts_with("VALID: 5 file(s)"), "{}", text(&out));

    std::fs::write(bundle.join("asset-register.csv"), "name\r\n").unwrap();
    let out = verify(&bundle);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("changed asset-register.csv"),
        "{}",
        text(&out)
    );

    let out = verify(&work.path().join("nowhere"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
