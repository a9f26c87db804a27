//! Unit tests of the pure parts: planning, configuration, credentials, input classification.
//! The whole function runs against the fake Vercel API and moto in
//! `integration/tests/vercel_sync.rs`.

use std::collections::BTreeMap;

use keyward_shared::governance::{
    EditPolicy, OrphanPolicy, VercelBinding, VercelMapping, VercelTarget,
};
use keyward_shared::redact::Redactor;
use secrecy::ExposeSecret;

use keyward_shared::lambda::FailureKind;

use crate::plan::*;
use crate::trigger::id_to_name;
use crate::vercel::{CustomEnvironment, EnvRecord, ProjectRef};
use crate::{Config, credentials_from_secret};

const SECRET: &str = "/acme/prod/web/session-key";

fn project() -> ProjectRef {
    ProjectRef {
        project: "acme-web".into(),
        team: Some("team_acme".into()),
    }
}

fn mapping(targets: &[&str]) -> VercelMapping {
    VercelMapping {
        project: "acme-web".into(),
        team: Some("team_acme".into()),
        targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
        git_branch: None,
        binding: VercelBinding::Key("SESSION_SECRET".parse().unwrap()),
        orphans: OrphanPolicy::Keep,
        on_edit: EditPolicy::Report,
        allow_restricted: false,
    }
}

fn record(id: &str, key: &str, target: &[&str], updated_at: i64) -> EnvRecord {
    EnvRecord {
        id: id.into(),
        key: key.into(),
        env_type: "sensitive".into(),
        target: target.iter().map(|t| (*t).to_owned()).collect(),
        git_branch: None,
        custom_environment_ids: Vec::new(),
        comment: None,
        configuration_id: None,
        updated_at,
        updated_by: Some("user_keyward".into()),
        system: None,
    }
}

fn entry(slot: Slot, id: &str, version: &str, updated_at: i64) -> LedgerEntry {
    LedgerEntry {
        slot,
        record_id: id.into(),
        version_id: version.into(),
        updated_at,
        written_by: Some("user_keyward".into()),
        env_type: "sensitive".into(),
    }
}

fn slot(target: &str) -> Slot {
    Slot {
        project: project(),
        key: "SESSION_SECRET".into(),
        target: target.into(),
        git_branch: None,
    }
}

struct World {
    ledger: Ledger,
    records: BTreeMap<ProjectRef, Vec<EnvRecord>>,
    on_edit: EditPolicy,
    orphans: OrphanPolicy,
}

impl World {
    fn new(records: Vec<EnvRecord>, entries: Vec<LedgerEntry>) -> Self {
        Self {
            ledger: Ledger {
                secret: SECRET.into(),
                orphans: OrphanPolicy::Keep,
                entries,
            },
            records: BTreeMap::from([(project(), records)]),
            on_edit: EditPolicy::Report,
            orphans: OrphanPolicy::Keep,
        }
    }

    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            secret: SECRET,
            version: "v2",
            on_edit: self.on_edit,
            orphans: self.orphans,
            ledger: &self.ledger,
            records: &self.records,
        }
    }

    fn plan(&self, target: &str) -> Action {
        let (desired, unknown) = desired_slots(&mapping(&[target]), &[]);
        assert!(unknown.is_empty());
        plan_slot(&self.input(), desired.into_iter().next().unwrap()).action
    }
}

#[test]
fn provenance_names_the_secret_and_version_and_parses_back() {
    let comment = provenance(SECRET, "v1");
    assert_eq!(
        comment,
        "managed-by=keyward;secret=/acme/prod/web/session-key;version=v1"
    );
    assert_eq!(provenance_secret(&comment), Some(SECRET));
    assert_eq!(provenance_secret("managed by hand"), None);
    assert_eq!(provenance_secret("secret=/acme/prod/web/session-key"), None);
}

#[test]
fn one_slot_per_key_and_target_with_types_and_branch() {
    let mut m = mapping(&["production", "preview", "development", "staging"]);
    m.git_branch = Some("release/next".into());
    m.binding = VercelBinding::JsonMap(BTreeMap::from([
        (
            "client_id".parse().unwrap(),
            "NEXT_PUBLIC_CLIENT_ID".parse().unwrap(),
        ),
        (
            "client_secret".parse().unwrap(),
            "CLIENT_SECRET".parse().unwrap(),
        ),
    ]));
    let custom = [CustomEnvironment {
        id: "env_stg1".into(),
        slug: "staging".into(),
    }];
    let (desired, unknown) = desired_slots(&m, &custom);
    assert!(unknown.is_empty());
    assert_eq!(
        desired.len(),
        8,
        "2 keys x 4 targets, never a shared record"
    );
    let find = |target: &str, key: &str| {
        desired
            .iter()
            .find(|d| d.slot.target == target && d.slot.key == key)
            .unwrap()
    };
    assert_eq!(find("production", "CLIENT_SECRET").env_type, "sensitive");
    assert_eq!(find("development", "CLIENT_SECRET").env_type, "encrypted");
    assert_eq!(
        find("production", "NEXT_PUBLIC_CLIENT_ID").env_type,
        "encrypted",
        "public keys are inlined into the browser bundle; sensitive is refused for them"
    );
    assert_eq!(
        find("preview", "CLIENT_SECRET").slot.git_branch.as_deref(),
        Some("release/next")
    );
    assert_eq!(find("production", "CLIENT_SECRET").slot.git_branch, None);
    assert_eq!(
        find("staging", "CLIENT_SECRET").scope,
        Scope::Custom {
            id: "env_stg1".into()
        }
    );
    assert_eq!(
        find("staging", "CLIENT_SECRET").field.as_deref(),
        Some("client_secret")
    );

    let (_, unknown) = desired_slots(&mapping(&["qa"]), &custom);
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].slot.target, "qa");
}

#[test]
fn empty_slot_is_created() {
    let world = World::new(
        vec![record("env_other", "OTHER", &["production"], 1)],
        vec![],
    );
    assert_eq!(
        world.plan("production"),
        Action::Write {
            kind: WriteKind::Create,
            replace: None,
            note: None
        }
    );
}

#[test]
fn current_version_untouched_record_is_unchanged() {
    let world = World::new(
        vec![record("env_1", "SESSION_SECRET", &["production"], 100)],
        vec![entry(slot("production"), "env_1", "v2", 100)],
    );
    assert_eq!(
        world.plan("production"),
        Action::Unchanged {
            record_id: "env_1".into()
        }
    );
}

#[test]
fn new_version_is_written_over_keywards_record() {
    let world = World::new(
        vec![record("env_1", "SESSION_SECRET", &["production"], 100)],
        vec![entry(slot("production"), "env_1", "v1", 100)],
    );
    assert_eq!(
        world.plan("production"),
        Action::Write {
            kind: WriteKind::Update,
            replace: None,
            note: None
        }
    );
}

#[test]
fn hand_edit_is_reported_or_overwritten_by_policy() {
    let mut edited = record("env_1", "SESSION_SECRET", &["production"], 200);
    edited.updated_by = Some("user_alice".into());
    let mut world = World::new(
        vec![edited],
        vec![entry(slot("production"), "env_1", "v2", 100)],
    );
    match world.plan("production") {
        Action::Drift { note } => {
            assert!(note.contains("edited in Vercel by user_alice"), "{note}");
            assert!(note.contains("on-edit: report"), "{note}");
        }
        other => panic!("expected drift, got {other:?}"),
    }
    world.on_edit = EditPolicy::Overwrite;
    assert!(matches!(
        world.plan("production"),
        Action::Write { kind: WriteKind::Update, note: Some(n), .. } if n.contains("written back")
    ));
}

#[test]
fn a_newer_write_by_keywards_own_token_is_not_a_hand_edit() {
    // Two syncs raced; the ledger kept the earlier write's timestamp.
    let world = World::new(
        vec![record("env_1", "SESSION_SECRET", &["production"], 200)],
        vec![entry(slot("production"), "env_1", "v2", 100)],
    );
    assert_eq!(
        world.plan("production"),
        Action::Unchanged {
            record_id: "env_1".into()
        }
    );
}

#[test]
fn deleted_by_hand_is_drift_unless_overwrite() {
    let mut world = World::new(vec![], vec![entry(slot("production"), "env_1", "v2", 100)]);
    assert!(
        matches!(world.plan("production"), Action::Drift { note } if note.contains("deleted in Vercel"))
    );
    world.on_edit = EditPolicy::Overwrite;
    assert!(matches!(
        world.plan("production"),
        Action::Write {
            kind: WriteKind::Create,
            ..
        }
    ));
}

#[test]
fn foreign_integration_system_and_shared_records_are_refused() {
    let foreign = record("env_f", "SESSION_SECRET", &["production"], 1);
    let mut integration = foreign.clone();
    integration.configuration_id = Some("icfg_upstash".into());
    integration.comment = Some(provenance(SECRET, "v1"));
    let mut system = foreign.clone();
    system.env_type = "system".into();
    system.system = Some(true);
    let mut shared = foreign.clone();
    shared.target = vec!["production".into(), "preview".into()];
    shared.comment = Some(provenance(SECRET, "v1"));
    let mut other_secret = foreign.clone();
    other_secret.comment = Some(provenance("/acme/prod/web/other", "v1"));
    for (held_by, expect) in [
        (foreign, "does not own (id env_f)"),
        (integration, "managed by an integration"),
        (system, "a system variable"),
        (shared, "spanning more than this target"),
        (other_secret, "does not own"),
    ] {
        let world = World::new(vec![held_by], vec![]);
        match world.plan("production") {
            Action::Refuse { note } => assert!(note.contains(expect), "{note}"),
            other => panic!("expected a refusal ({expect}), got {other:?}"),
        }
    }
}

#[test]
fn own_record_found_by_comment_is_adopted_when_the_ledger_is_lost() {
    let mut own = record("env_1", "SESSION_SECRET", &["production"], 100);
    own.comment = Some(provenance(SECRET, "v1"));
    let world = World::new(vec![own], vec![]);
    assert!(matches!(
        world.plan("production"),
        Action::Write { kind: WriteKind::Update, note: Some(n), .. } if n.contains("adopted")
    ));
}

#[test]
fn type_change_replaces_the_record() {
    let mut encrypted = record("env_1", "SESSION_SECRET", &["production"], 100);
    encrypted.env_type = "encrypted".into();
    let world = World::new(
        vec![encrypted],
        vec![entry(slot("production"), "env_1", "v2", 100)],
    );
    assert_eq!(
        world.plan("production"),
        Action::Write {
            kind: WriteKind::Update,
            replace: Some("env_1".into()),
            note: None
        }
    );
}

#[test]
fn branch_and_custom_environment_records_are_distinct_slots() {
    let mut branch = record("env_b", "SESSION_SECRET", &["preview"], 1);
    branch.git_branch = Some("feature-x".into());
    let world = World::new(vec![branch], vec![]);
    // The preview slot without a branch is free: a branch record is another slot.
    assert!(matches!(
        world.plan("preview"),
        Action::Write {
            kind: WriteKind::Create,
            ..
        }
    ));

    let mut custom = record("env_c", "SESSION_SECRET", &[], 1);
    custom.custom_environment_ids = vec!["env_stg1".into()];
    let world = World::new(vec![custom], vec![]);
    let custom_envs = [CustomEnvironment {
        id: "env_stg1".into(),
        slug: "staging".into(),
    }];
    let (desired, _) = desired_slots(&mapping(&["staging"]), &custom_envs);
    assert!(matches!(
        plan_slot(&world.input(), desired[0].clone()).action,
        Action::Refuse { .. }
    ));
}

#[test]
fn orphans_follow_the_policy() {
    let orphan = entry(slot("development"), "env_d", "v1", 100);
    let mut world = World::new(
        vec![record("env_d", "SESSION_SECRET", &["development"], 100)],
        vec![orphan.clone()],
    );
    let desired = [slot("production")];
    assert_eq!(
        plan_orphans(&world.input(), &desired)[0].action,
        OrphanAction::Release
    );
    world.orphans = OrphanPolicy::Delete;
    assert_eq!(
        plan_orphans(&world.input(), &desired)[0].action,
        OrphanAction::Delete {
            record_id: "env_d".into()
        }
    );
    // Mapped again: not an orphan.
    assert!(plan_orphans(&world.input(), &[slot("development")]).is_empty());

    let mut edited = record("env_d", "SESSION_SECRET", &["development"], 300);
    edited.updated_by = Some("user_bob".into());
    world.records.insert(project(), vec![edited]);
    assert!(matches!(
        &plan_orphans(&world.input(), &desired)[0].action,
        OrphanAction::Drift { note } if note.contains("user_bob")
    ));
    world.records.insert(project(), vec![]);
    assert_eq!(
        plan_orphans(&world.input(), &desired)[0].action,
        OrphanAction::Gone
    );
}

#[test]
fn ledger_round_trips_and_keeps_entries_sorted() {
    let mut ledger = Ledger {
        secret: SECRET.into(),
        orphans: OrphanPolicy::Delete,
        entries: vec![],
    };
    ledger.upsert(entry(slot("production"), "env_p", "v1", 1));
    ledger.upsert(entry(slot("development"), "env_d", "v1", 1));
    ledger.upsert(entry(slot("production"), "env_p2", "v2", 2));
    assert_eq!(ledger.entries.len(), 2);
    assert_eq!(ledger.entries[0].slot.target, "development");
    assert_eq!(
        ledger.entry(&slot("production")).unwrap().record_id,
        "env_p2"
    );
    let text = serde_json::to_string(&ledger).unwrap();
    assert!(
        text.contains("\"project\":\"acme-web\",\"team\":\"team_acme\""),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Ledger>(&text).unwrap(), ledger);
}

#[test]
fn env_types_by_target_and_key() {
    assert_eq!(
        env_type_for(&VercelTarget::Production, "API_KEY"),
        "sensitive"
    );
    assert_eq!(env_type_for(&VercelTarget::Preview, "API_KEY"), "sensitive");
    assert_eq!(
        env_type_for(&VercelTarget::Custom("staging".into()), "API_KEY"),
        "sensitive"
    );
    assert_eq!(
        env_type_for(&VercelTarget::Development, "API_KEY"),
        "encrypted"
    );
}

use keyward_shared::config::env_of as env;

#[test]
fn config_reads_and_names_bad_variables() {
    let base = [
        ("KEYWARD_EVENT_BUS", "keyward-acme"),
        ("KEYWARD_STATE_BUCKET", "state"),
        ("KEYWARD_SECRET_PREFIX", "/acme/prod/"),
        (
            "KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:v",
        ),
        ("KEYWARD_MANIFEST_S3_URI", "s3://config-bucket/manifest/"),
    ];
    let cfg = Config::from_env(&env(&base)).unwrap();
    assert_eq!(
        (cfg.manifest_bucket.as_str(), cfg.manifest_prefix.as_str()),
        ("config-bucket", "manifest/")
    );
    assert_eq!(cfg.api_url, "https://api.vercel.com");
    assert_eq!(cfg.environment(), "prod");
    assert_eq!(cfg.redeploy_debounce_secs, 60);
    assert!(cfg.redeploy_queue_url.is_none());
    for (name, value, expect) in [
        (
            "KEYWARD_SECRET_PREFIX",
            "/acme/prod",
            "not of the form /<org>/<env>/",
        ),
        ("KEYWARD_SECRET_PREFIX", "/acme/", "not of the form"),
        (
            "KEYWARD_VERCEL_API_URL",
            "http://api.vercel.com",
            "https://",
        ),
        ("KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS", "901", "900 s"),
        (
            "KEYWARD_MANIFEST_S3_URI",
            "config-bucket/manifest",
            "KEYWARD_MANIFEST_S3_URI",
        ),
    ] {
        let mut pairs = base.to_vec();
        pairs.retain(|(k, _)| *k != name);
        pairs.push((name, value));
        let err = Config::from_env(&env(&pairs)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(expect), "{err}");
    }
}

#[test]
fn credentials_are_registered_and_never_quoted_in_errors() {
    let redactor = Redactor::new();
    let creds = credentials_from_secret(
        r#"{"token":"vcp_token_123456789","deploy_hooks":{"acme-web":"https://api.vercel.com/v1/integrations/deploy/prj_1/hook_abcdef"}}"#,
        &redactor,
    )
    .unwrap();
    assert_eq!(creds.token.expose_secret(), "vcp_token_123456789");
    assert_eq!(
        redactor.redact("sent vcp_token_123456789 to https://api.vercel.com/v1/integrations/deploy/prj_1/hook_abcdef"),
        "sent [REDACTED] to [REDACTED]"
    );
    for bad in [
        "vcp_token_leaked_in_plain_text",
        r#"{"token":"vcp_token_leaked_in_plain_text","extra":1}"#,
        r#"{"token":"  "}"#,
        r#"{"token":"vcp_token_leaked_in_plain_text","deploy_hooks":{"p":"http://hooks.example/vcp_token_leaked"}}"#,
    ] {
        let err = credentials_from_secret(bad, &Redactor::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(!err.contains("leaked"), "{err}");
        assert!(err.starts_with("the Vercel credentials secret"), "{err}");
    }
}

#[test]
fn secret_names_from_arns() {
    assert_eq!(
        id_to_name(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/web/key-AbCdEf"
        )
        .as_deref(),
        Some("/acme/prod/web/key")
    );
    assert_eq!(
        id_to_name("/acme/prod/web/key").as_deref(),
        Some("/acme/prod/web/key")
    );
    assert_eq!(id_to_name("arn:aws:secretsmanager:r:1:secret:abc"), None);
}

#[test]
fn every_sample_event_is_understood() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/vercel-sync");
    let expected = [
        ("put-secret-value.json", "secret"),
        ("rotation-succeeded.json", "secret"),
        ("secret-rotated.json", "secret"),
        ("sync-requested.json", "scope"),
        ("scheduled.json", "sweep"),
        ("redeploy-batch.json", "redeploy"),
    ];
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = expected.iter().map(|(f, _)| (*f).to_owned()).collect();
    named.sort();
    assert_eq!(files, named, "every sample has an expectation");
    for (file, kind) in expected {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(crate::input_kind(&text).unwrap(), kind, "{file}");
    }
}

#[test]
fn inputs_that_are_not_ours_are_refused_or_skipped_clearly() {
    for (payload, expect) in [
        ("", Err("InvalidEvent")),
        ("[]", Err("InvalidEvent")),
        (
            r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#,
            Err("InvalidEvent"),
        ),
        (
            r#"{"source":"aws.secretsmanager","detail-type":"AWS API Call via CloudTrail","detail":{"eventName":"GetSecretValue","requestParameters":{"secretId":"x"}}}"#,
            Ok("skip"),
        ),
        (
            r#"{"source":"aws.secretsmanager","detail-type":"AWS API Call via CloudTrail","detail":{"eventName":"PutSecretValue"}}"#,
            Err("InvalidEvent"),
        ),
        (
            r#"{"source":"aws.secretsmanager","detail-type":"AWS Service Event via CloudTrail","detail":{"eventName":"RotationFailed"}}"#,
            Ok("skip"),
        ),
        (
            r#"{"source":"keyward.rotation","detail-type":"SecretRotated","detail":{"secret":"x"}}"#,
            Err("InvalidEvent"),
        ),
        (
            r#"{"Records":[{"messageId":"m1","body":"{}"}]}"#,
            Ok("redeploy"),
        ),
    ] {
        let got = crate::input_kind(payload).map_err(|e| e.kind());
        assert_eq!(got, expect, "{payload}");
    }
}

/// Seeded mutations of the sample events (the cargo-fuzz targets in `fuzz/` go further): no
/// input may panic the parsers, and an error never quotes the input.
#[test]
fn mutated_inputs_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/vercel-sync");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    for _ in 0..4_000 {
        let mut bytes = seeds[rng.usize(0..seeds.len())].clone();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(0..bytes.len());
            match rng.u8(0..3) {
                0 => bytes[at] = rng.u8(..),
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, b"{}[]\":,0"[rng.usize(0..8)]),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = crate::input_kind(&text) {
            assert!(
                !e.to_string().contains("acme/dev/web/session-key-Xy"),
                "{e}"
            );
        }
        let _ = crate::vercel::decode_list_page(&bytes);
        let _ = crate::vercel::decode_upsert(&bytes);
    }
}

#[test]
fn vercel_response_shapes() {
    let crate::vercel::ListPage {
        records,
        next,
        hidden_production,
    } = crate::vercel::decode_list_page(
        br#"{"envs":[{"id":"e1","key":"K","type":"sensitive","target":"production","gitBranch":"","customEnvironmentIds":null,"configurationId":null,"updatedAt":5,"unknownField":true}],"pagination":{"count":1,"next":42,"prev":null}}"#,
    )
    .unwrap();
    assert_eq!(next, Some(42));
    assert_eq!(hidden_production, 0);
    assert_eq!(records[0].target, ["production"], "a single string target");
    assert_eq!(records[0].git_branch, None, "an empty branch is none");
    assert!(records[0].custom_environment_ids.is_empty());
    let one =
        crate::vercel::decode_list_page(br#"{"id":"e2","key":"K","target":["preview"]}"#).unwrap();
    assert_eq!((one.records.len(), one.next), (1, None));
    let hidden =
        crate::vercel::decode_list_page(br#"{"envs":[],"hiddenProductionEnvCount":3}"#).unwrap();
    assert!(hidden.records.is_empty());
    assert_eq!(hidden.hidden_production, 3);
    let created = crate::vercel::decode_upsert(
        br#"{"created":{"id":"e3","key":"K","target":["production"]},"failed":[{"error":{"code":"ENV_CONFLICT","message":"exists","key":"J","target":["preview"]}}]}"#,
    )
    .unwrap();
    assert_eq!(created.created.len(), 1, "a single created object");
    assert_eq!(created.failed[0].code, "ENV_CONFLICT");
    assert_eq!(created.failed[0].key.as_deref(), Some("J"));
}
