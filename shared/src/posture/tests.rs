use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::audit::record::AuditRecord;
use crate::audit::{InMemoryAuditBucket, LocalKeySigner, RECORD_PREFIX};
use crate::events::{
    Actor, AnomalyGroup, CorrelationId, DomainEvent, EventData, GroupRole, Outcome, SecretRef,
    Severity, VercelTargetResult, VercelTargetStatus,
};
use crate::governance::{RotationStrategy, VercelTarget};
use crate::manifest::Manifest;
use crate::ports::{
    CatalogEntry, CatalogError, InMemoryMarkerStore, InMemoryResourcePolicies,
    InMemorySecretCatalog, MarkerStore, ResourcePolicies, SecretCatalog,
};
use crate::vercel_ledger::{Ledger, LedgerEntry, ProjectRef, Slot, ledger_key};

fn manifest() -> Manifest {
    crate::test_fixtures::web_manifest()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap()
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - Duration::days(days)
}

fn entry(name: &str, created: i64, rotated: Option<i64>, current: Option<&str>) -> CatalogEntry {
    CatalogEntry {
        arn: format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf"),
        name: name.to_owned(),
        tags: Vec::new(),
        governance: Ok(None),
        rotation_enabled: rotated.is_some(),
        rotation_days: None,
        rotation_lambda_arn: None,
        last_rotated: rotated.map(days_ago),
        next_rotation: None,
        last_changed: Some(now()),
        last_accessed: None,
        created: Some(days_ago(created)),
        deleted: None,
        kms_key_id: None,
        primary_region: None,
        current_version: current.map(str::to_owned),
    }
}

fn event(at: DateTime<Utc>, secret: Option<&str>, data: EventData) -> DomainEvent {
    let mut event = DomainEvent::new(
        CorrelationId::generate(),
        Actor::service("test"),
        secret.map(|name| SecretRef {
            name: name.to_owned(),
            arn: None,
        }),
        Outcome::Success,
        data,
    );
    event.time = at;
    event
}

fn chain_ok() -> ChainState {
    ChainState {
        verdict: ChainVerdict::Valid,
        summary: "VALID".into(),
        digests_checked: 1,
        records_checked: 0,
        last_digest: None,
        last_digest_age_hours: None,
        failures: Vec::new(),
    }
}

fn gathered(catalog: Vec<CatalogEntry>, events: Vec<DomainEvent>) -> Gathered {
    Gathered {
        org: "acme".into(),
        now: now(),
        window: Window {
            from: days_ago(7),
            to: now(),
        },
        manifest: Some(manifest()),
        catalog: Some(catalog),
        policies: Some(BTreeMap::new()),
        ledgers: Some(BTreeMap::new()),
        readers_seen: Some(BTreeMap::new()),
        events: Some(events),
        chain: chain_ok(),
        sources: Vec::new(),
    }
}

fn secret<'a>(p: &'a Posture, name: &str) -> &'a SecretPosture {
    p.secrets.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn rotation_is_measured_against_the_declared_interval() {
    let g = gathered(
        vec![
            // Rotated 10 days ago, 30-day interval.
            entry("/acme/prod/web/session-key", 100, Some(10), Some("v2")),
            // Rotated 40 days ago: overdue.
            entry("/acme/staging/web/session-key", 100, Some(40), Some("v2")),
            // Manual, never rotated, created 5 days ago: within its first interval.
            entry("/acme/prod/web/stripe-key", 5, None, Some("v1")),
            // Manual, never rotated, created 200 days ago: overdue.
            entry("/acme/staging/web/stripe-key", 200, None, Some("v1")),
            // Not declared.
            entry("/acme/prod/web/legacy", 3, None, Some("v1")),
        ],
        Vec::new(),
    );
    let p = compute(&g);
    let fresh = secret(&p, "/acme/prod/web/session-key");
    assert_eq!(fresh.rotation, RotationState::WithinPolicy);
    assert_eq!(fresh.next_due, Some(days_ago(10) + Duration::days(30)));
    assert_eq!(fresh.age_days, Some(10.0));
    assert_eq!(
        fresh.last_rotation_evidence,
        Some(RotationEvidence::SecretsManager)
    );
    assert_eq!(
        secret(&p, "/acme/staging/web/session-key").rotation,
        RotationState::Overdue
    );
    let stripe = secret(&p, "/acme/prod/web/stripe-key");
    assert_eq!(stripe.rotation, RotationState::NeverRotated);
    assert_eq!(stripe.strategy, Some(RotationStrategy::Manual));
    assert_eq!(
        secret(&p, "/acme/staging/web/stripe-key").rotation,
        RotationState::NeverRotatedOverdue
    );
    let legacy = secret(&p, "/acme/prod/web/legacy");
    assert_eq!(legacy.rotation, RotationState::Undeclared);
    assert!(!legacy.declared && legacy.exists);

    let f = &p.headline.figures;
    assert_eq!(f.secrets_governed, 4);
    assert_eq!(f.secrets_declared, 4);
    assert_eq!(f.secrets_existing, 5);
    assert_eq!(f.within_policy, 2);
    assert_eq!(f.overdue, 2);
    assert_eq!(f.never_rotated, 2);
    assert_eq!(f.undeclared, 1);
    assert_eq!(p.headline.within_policy_percent, 50.0);
    // Worst first: the overdue ones lead, the healthy one closes.
    assert_eq!(p.secrets[0].health, Health::Bad);
    assert!(p.secrets.iter().map(|s| s.health).is_sorted());
}

#[test]
fn a_rotation_record_counts_and_a_missing_value_or_secret_is_named() {
    let rotated = event(
        days_ago(2),
        Some("/acme/staging/web/session-key"),
        EventData::SecretRotated {
            strategy: RotationStrategy::Random,
            version_id: "v3".into(),
            previous_version_id: None,
        },
    );
    let failed = event(
        days_ago(1),
        Some("/acme/staging/web/session-key"),
        EventData::RotationFailed {
            strategy: Some(RotationStrategy::Random),
            step: crate::events::RotationStep::TestSecret,
            version_id: "v4".into(),
            error: crate::redact::SafeText::fixed("test failed"),
        },
    );
    let g = gathered(
        vec![
            entry("/acme/staging/web/session-key", 100, Some(40), Some("v3")),
            entry("/acme/prod/web/session-key", 100, None, None),
        ],
        vec![rotated, failed],
    );
    let p = compute(&g);
    let staging = secret(&p, "/acme/staging/web/session-key");
    assert_eq!(staging.rotation, RotationState::WithinPolicy);
    assert_eq!(staging.last_rotated, Some(days_ago(2)));
    assert_eq!(
        staging.last_rotation_evidence,
        Some(RotationEvidence::AuditRecord)
    );
    assert_eq!(staging.rotation_failures, 1);
    assert_eq!(staging.health, Health::Warn);
    assert_eq!(
        secret(&p, "/acme/prod/web/session-key").rotation,
        RotationState::NoValue
    );
    assert_eq!(
        secret(&p, "/acme/prod/web/stripe-key").rotation,
        RotationState::Missing
    );
    assert_eq!(p.headline.figures.no_value, 1);
    assert_eq!(p.headline.figures.missing, 2);
}

fn ledger(secret: &str, version: &str) -> Ledger {
    Ledger {
        secret: secret.into(),
        entries: vec![LedgerEntry {
            slot: Slot {
                project: ProjectRef {
                    project: "acme-web".into(),
                    team: None,
                },
                key: "SESSION_KEY".into(),
                target: "production".into(),
                git_branch: None,
            },
            record_id: "env_1".into(),
            version_id: version.into(),
            updated_at: 1,
            written_by: None,
            env_type: "sensitive".into(),
        }],
        ..Ledger::default()
    }
}

#[test]
fn vercel_parity_follows_the_ledger_and_the_last_sync() {
    let prod = "/acme/prod/web/session-key";
    let staging = "/acme/staging/web/session-key";
    let mut g = gathered(
        vec![
            entry(prod, 100, Some(1), Some("v2")),
            entry(staging, 100, Some(1), Some("v2")),
        ],
        Vec::new(),
    );
    g.ledgers = Some(BTreeMap::from([
        (prod.to_owned(), ledger(prod, "v2")),
        (staging.to_owned(), ledger(staging, "v1")),
    ]));
    let p = compute(&g);
    assert_eq!(secret(&p, prod).vercel[0].state, ParityState::InParity);
    assert_eq!(secret(&p, staging).vercel[0].state, ParityState::Stale);
    assert_eq!(p.headline.figures.vercel_targets, 2);
    assert_eq!(p.headline.figures.vercel_targets_in_parity, 1);

    // The latest sync of prod failed on that variable.
    g.events = Some(vec![event(
        days_ago(1),
        Some(prod),
        EventData::VercelSyncFailed {
            version_id: "v2".into(),
            results: vec![VercelTargetResult {
                project: "acme-web".into(),
                target: VercelTarget::Production,
                git_branch: None,
                key: "SESSION_KEY".into(),
                status: VercelTargetStatus::DriftDetected,
                detail: None,
            }],
            error: crate::redact::SafeText::fixed("edited in Vercel"),
        },
    )]);
    let p = compute(&g);
    assert_eq!(secret(&p, prod).vercel[0].state, ParityState::Failed);
    assert_eq!(secret(&p, prod).health, Health::Bad);

    // No ledger written yet; no ledgers readable at all.
    g.events = Some(Vec::new());
    g.ledgers = Some(BTreeMap::new());
    assert_eq!(
        secret(&compute(&g), prod).vercel[0].state,
        ParityState::NeverSynced
    );
    g.ledgers = None;
    assert_eq!(
        secret(&compute(&g), prod).vercel[0].state,
        ParityState::Unknown
    );
}

#[test]
fn readers_declared_admitted_and_seen_give_ghosts_unused_grants_and_exposure() {
    let prod = "/acme/prod/web/session-key";
    let mut g = gathered(vec![entry(prod, 100, Some(1), Some("v1"))], Vec::new());
    g.policies = Some(BTreeMap::from([(
        prod.to_owned(),
        Some(
            crate::policy::PolicyGrants::parse(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/batch"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
            )
            .unwrap(),
        ),
    )]));
    g.readers_seen = Some(BTreeMap::from([(
        prod.to_owned(),
        vec![
            // The declared role, seen through a role ARN with a path: the same role.
            SeenReader {
                principal: "arn:aws:iam::123456789012:role/service/web-app".into(),
                first_seen: days_ago(1),
            },
            SeenReader {
                principal: "arn:aws:iam::123456789012:user/mallory".into(),
                first_seen: days_ago(2),
            },
        ],
    )]));
    let p = compute(&g);
    let r = &secret(&p, prod).readers;
    assert_eq!(r.declared, ["arn:aws:iam::123456789012:role/web-app"]);
    assert_eq!(r.admitted, ["arn:aws:iam::123456789012:role/batch"]);
    assert_eq!(r.ghost, ["arn:aws:iam::123456789012:user/mallory"]);
    assert_eq!(r.unused, ["arn:aws:iam::123456789012:role/batch"]);
    assert_eq!(r.exposure, 3);
    assert!(!r.public);
    assert_eq!(secret(&p, prod).health, Health::Bad);
    assert_eq!(p.headline.figures.ghost_readers, 1);
}

#[test]
fn principals_compare_across_session_role_and_path_forms() {
    let role = principal_identity("arn:aws:iam::1:role/app");
    assert_eq!(principal_identity("arn:aws:iam::1:role/a/b/app"), role);
    assert_eq!(
        principal_identity("arn:aws:sts::1:assumed-role/app/session-42"),
        role
    );
    assert_ne!(principal_identity("arn:aws:iam::2:role/app"), role);
    assert_ne!(principal_identity("arn:aws:iam::1:user/app"), role);
    assert_eq!(principal_identity("123456789012"), "123456789012");
}

#[test]
fn drift_is_open_until_a_verified_fix_closes_it() {
    let detected = |at, fp: &str| {
        event(
            at,
            Some("/acme/prod/web/session-key"),
            EventData::DriftDetected {
                fingerprint: fp.into(),
                finding: "rotation-disabled".into(),
                severity: Severity::High,
                evidence: Default::default(),
            },
        )
    };
    let remediated = |at, fp: &str, verified| {
        event(
            at,
            Some("/acme/prod/web/session-key"),
            EventData::DriftRemediated {
                fingerprint: fp.into(),
                drift_issue: "1".into(),
                change_request_id: "CR-1".into(),
                jira_key: None,
                environment: "prod".into(),
                cloud_provider: "aws".into(),
                pull_request: "2".into(),
                merge_commit: "abc".into(),
                verified,
                remaining: Vec::new(),
            },
        )
    };
    let g = gathered(
        vec![entry(
            "/acme/prod/web/session-key",
            100,
            Some(1),
            Some("v1"),
        )],
        vec![
            detected(days_ago(3), "a"),
            remediated(days_ago(2), "a", true),
            detected(days_ago(1), "b"),
            remediated(now() - Duration::hours(12), "b", false),
            // Closed long before the window: not listed.
            detected(days_ago(29), "c"),
            remediated(days_ago(28), "c", true),
        ],
    );
    let p = compute(&g);
    let states: Vec<(&str, bool)> = p
        .drift
        .iter()
        .map(|d| (d.fingerprint.as_str(), d.closed.is_some()))
        .collect();
    assert_eq!(states, [("b", false), ("a", true)]);
    assert_eq!(p.drift[1].age_hours, 24.0);
    assert_eq!(p.headline.figures.open_drift, 1);
    assert_eq!(secret(&p, "/acme/prod/web/session-key").open_drift, 1);
}

#[test]
fn alerts_count_new_alerts_by_rule_severity_principal_and_day() {
    let alert = |at, rule: &str, principal: &str, role: Option<GroupRole>| {
        event(
            at,
            None,
            EventData::AnomalyDetected {
                rule: rule.into(),
                severity: Severity::High,
                cloudtrail_event_id: "e".into(),
                event_name: "GetSecretValue".into(),
                principal: principal.into(),
                evidence: Default::default(),
                group: role.map(|role| AnomalyGroup {
                    id: "g".into(),
                    role,
                    count: 1,
                    first: at,
                    last: at,
                    members: Vec::new(),
                }),
            },
        )
    };
    let g = gathered(
        Vec::new(),
        vec![
            alert(days_ago(1), "bulk-read", "mallory", None),
            alert(days_ago(1), "bulk-read", "mallory", Some(GroupRole::Opened)),
            // An update of the group just opened: the same alert again.
            alert(
                days_ago(1),
                "bulk-read",
                "mallory",
                Some(GroupRole::Updated),
            ),
            alert(days_ago(3), "root-read", "root", None),
            // Before the window.
            alert(days_ago(9), "root-read", "root", None),
        ],
    );
    let p = compute(&g);
    assert_eq!(p.alerts.total, 3);
    assert_eq!(p.alerts.by_rule["bulk-read"], 2);
    assert_eq!(p.alerts.by_severity["high"], 3);
    assert_eq!(p.alerts.top_principals[0].name, "mallory");
    assert_eq!(p.alerts.by_day.len(), 8);
    let day = days_ago(1).date_naive().to_string();
    assert_eq!(
        p.alerts
            .by_day
            .iter()
            .find(|d| d.name == day)
            .unwrap()
            .count,
        2
    );
}

#[test]
fn the_key_grid_marks_what_is_missing_where() {
    let g = gathered(
        vec![
            entry("/acme/staging/web/session-key", 1, None, Some("v")),
            entry("/acme/prod/web/session-key", 1, None, Some("v")),
            entry("/acme/staging/web/stripe-key", 1, None, Some("v")),
            entry("/acme/staging/web/feature-flag-key", 1, None, Some("v")),
        ],
        Vec::new(),
    );
    let p = compute(&g);
    let grid = &p.keys_by_environment;
    assert_eq!(grid.environments, ["staging", "prod"]);
    let row = |name: &str| grid.rows.iter().find(|r| r.name == name).unwrap();
    assert_eq!(
        row("session-key").cells,
        [KeyCell::Present, KeyCell::Present]
    );
    assert!(!row("session-key").gap);
    assert_eq!(
        row("stripe-key").cells,
        [KeyCell::Present, KeyCell::Missing]
    );
    assert_eq!(
        row("feature-flag-key").cells,
        [KeyCell::Undeclared, KeyCell::Absent]
    );
    // Gaps first.
    assert!(grid.rows[0].gap && !grid.rows.last().unwrap().gap);
}

/// A catalogue that cannot be listed.
struct Unreachable;

impl SecretCatalog for Unreachable {
    async fn list(&self, _prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        Err(CatalogError(crate::redact::SafeText::fixed(
            "AccessDenied: not authorised to ListSecrets",
        )))
    }
}

impl ResourcePolicies for Unreachable {
    async fn policy(&self, _arn: &str) -> Result<Option<String>, CatalogError> {
        unreachable!("no policy is read when listing failed")
    }
}

struct Catalog {
    entries: InMemorySecretCatalog,
    policies: InMemoryResourcePolicies,
}

impl SecretCatalog for Catalog {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        self.entries.list(prefix).await
    }
}

impl ResourcePolicies for Catalog {
    async fn policy(&self, arn: &str) -> Result<Option<String>, CatalogError> {
        self.policies.policy(arn).await
    }
}

fn request() -> PostureRequest {
    PostureRequest {
        org: "acme".into(),
        now: Utc::now(),
        window_days: 7,
        history_days: 30,
        max_digest_age: Duration::hours(2),
        digest_lookback: Duration::hours(48),
    }
}

fn audit_record(event: DomainEvent) -> (String, Vec<u8>) {
    let record = AuditRecord::of(event);
    (record.key(), record.to_bytes().unwrap())
}

#[tokio::test]
async fn gathering_reads_every_source_and_names_the_ones_it_could_not() {
    let now = Utc::now();
    let name = "/acme/prod/web/session-key";
    let mut listed = entry(name, 1, None, Some("v9"));
    listed.created = Some(now - Duration::days(1));
    let catalog = Catalog {
        entries: InMemorySecretCatalog {
            entries: vec![listed.clone()],
        },
        policies: InMemoryResourcePolicies::default(),
    };
    let state = InMemoryMarkerStore::default();
    state
        .create_or_get(
            &ledger_key(name),
            &serde_json::to_string(&ledger(name, "v9")).unwrap(),
        )
        .await
        .unwrap();
    let sighting = Sighting {
        event_id: "ct-1".into(),
        event_time: now - Duration::hours(3),
        principal_arn: Some("arn:aws:iam::123456789012:user/mallory".into()),
        secret: Some(listed.arn.clone()),
    };
    state
        .create_or_get(
            &format!("{READER_SIGHTINGS_PREFIX}abc"),
            &serde_json::to_string(&sighting).unwrap(),
        )
        .await
        .unwrap();
    let audit = InMemoryAuditBucket::default();
    let rotated = event(
        now - Duration::hours(5),
        Some(name),
        EventData::SecretRotated {
            strategy: RotationStrategy::Random,
            version_id: "v9".into(),
            previous_version_id: None,
        },
    );
    // Filed in the hour of its event (an id minted then would put it there).
    let (_, bytes) = audit_record(rotated);
    let key = format!(
        "{}rotated.json",
        crate::audit::record_partition(&(now - Duration::hours(5)))
    );
    audit.put(&key, bytes, BTreeMap::new(), now - Duration::hours(5));
    audit.put(
        &format!("{RECORD_PREFIX}{}/junk.json", now.format("%Y/%m/%d/%H")),
        b"not a record".to_vec(),
        BTreeMap::new(),
        now,
    );
    let signer = LocalKeySigner::generate().unwrap();
    let sources = PostureSources {
        manifest: Ok(manifest()),
        secrets: &catalog,
        state: &state,
        audit: &audit,
        audit_bucket: "audit",
        public_key: signer.public_key_spki().map_err(|e| e.to_string()),
    };
    let g = gather(&request(), sources).await;
    let p = compute(&g);
    let s = secret(&p, name);
    assert_eq!(
        s.last_rotation_evidence,
        Some(RotationEvidence::AuditRecord)
    );
    assert_eq!(s.rotation, RotationState::WithinPolicy);
    assert_eq!(s.vercel[0].state, ParityState::InParity);
    assert_eq!(s.readers.ghost, ["arn:aws:iam::123456789012:user/mallory"]);
    let audit_state = p
        .sources
        .iter()
        .find(|s| s.source == SourceKind::AuditBucket)
        .unwrap();
    assert!(audit_state.read);
    assert!(
        audit_state.error.as_deref().unwrap().contains("junk.json"),
        "{audit_state:?}"
    );
    // Nothing sealed records written hours ago: the verifier says so.
    assert_eq!(p.chain.verdict, ChainVerdict::Broken);
    assert!(
        p.chain
            .failures
            .iter()
            .any(|f| f.starts_with("digest stale ")),
        "{:?}",
        p.chain.failures
    );

    // Secrets Manager unreachable, no public key: both named, nothing guessed.
    let g = gather(
        &request(),
        PostureSources {
            manifest: Err("infra/config/manifest: no enums.yaml".into()),
            secrets: &Unreachable,
            state: &state,
            audit: &audit,
            audit_bucket: "audit",
            public_key: Err("KMS GetPublicKey: AccessDenied".into()),
        },
    )
    .await;
    let p = compute(&g);
    let failed: BTreeMap<SourceKind, String> = p
        .sources
        .iter()
        .filter(|s| !s.read)
        .map(|s| (s.source, s.error.clone().unwrap_or_default()))
        .collect();
    assert!(failed[&SourceKind::Manifest].contains("enums.yaml"));
    assert!(failed[&SourceKind::SecretsManager].contains("AccessDenied"));
    assert!(failed[&SourceKind::ResourcePolicies].contains("not read"));
    assert!(failed[&SourceKind::AuditChain].contains("GetPublicKey"));
    assert!(p.secrets.is_empty());
    assert_eq!(p.chain.verdict, ChainVerdict::NotVerified);
    let page = html::render(&p);
    assert!(page.contains("data-source=\"secrets_manager\""));
    assert!(page.contains("not authorised to ListSecrets"));
    let terminal = text::render(&p);
    assert!(terminal.contains("! Secrets Manager: "), "{terminal}");
}

#[test]
fn the_page_is_self_contained_and_escapes_every_text() {
    let mut g = gathered(
        vec![entry("/acme/prod/web/session-key", 1, Some(1), Some("v"))],
        vec![event(
            days_ago(1),
            None,
            EventData::AnomalyDetected {
                rule: "<img src=x onerror=alert(1)>".into(),
                severity: Severity::Low,
                cloudtrail_event_id: "e".into(),
                event_name: "GetSecretValue".into(),
                principal: "\"><script>alert(2)</script>".into(),
                evidence: Default::default(),
                group: None,
            },
        )],
    );
    g.chain.summary = "</section><script>alert(3)</script>".into();
    let page = html::render(&compute(&g));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<script>").count(),
        1,
        "only the page's own filter script"
    );
    assert!(!page.contains("<img"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // No fetch of anything: no URL, no external source or stylesheet.
    for external in [
        "http://", "https://", "src=\"", "href=\"", "@import", "url(",
    ] {
        assert!(!page.contains(external), "{external}");
    }
    for section in [
        "headline",
        "rotation-chart",
        "alerts-chart",
        "secrets",
        "drift",
        "readers",
        "keys",
        "chain",
    ] {
        assert!(page.contains(&format!("id=\"{section}\"")), "{section}");
    }
}

#[test]
fn the_document_round_trips_through_its_json() {
    let p = compute(&gathered(
        vec![entry("/acme/prod/web/session-key", 1, Some(1), Some("v"))],
        Vec::new(),
    ));
    let json = serde_json::to_string(&p).unwrap();
    let back: Posture = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert!(json.contains("\"schema_version\":1"));
    assert!(json.contains("\"secrets_governed\":1"));
}

/// Counts reads per key.
struct Counting {
    bucket: InMemoryAuditBucket,
    gets: std::sync::Mutex<BTreeMap<String, usize>>,
}

impl crate::audit::AuditReader for Counting {
    async fn list_versions(
        &self,
        prefix: &str,
    ) -> Result<Vec<crate::audit::ObjectVersion>, crate::audit::ReadError> {
        self.bucket.list_versions(prefix).await
    }

    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<crate::audit::FetchedObject>, crate::audit::ReadError> {
        *self.gets.lock().unwrap().entry(key.to_owned()).or_default() += 1;
        self.bucket.get(key).await
    }
}

/// The verifier hashes the records the history read: each is fetched from the bucket once.
#[tokio::test]
async fn each_audit_record_is_read_from_the_bucket_once() {
    let now = Utc::now();
    let audit = Counting {
        bucket: InMemoryAuditBucket::default(),
        gets: Default::default(),
    };
    for hours in [1, 2, 30] {
        let (_, bytes) = audit_record(event(
            now - Duration::hours(hours),
            Some("/acme/prod/web/session-key"),
            EventData::SecretRotated {
                strategy: RotationStrategy::Random,
                version_id: format!("v{hours}"),
                previous_version_id: None,
            },
        ));
        let key = format!(
            "{}r{hours}.json",
            crate::audit::record_partition(&(now - Duration::hours(hours)))
        );
        audit.bucket.put(&key, bytes, BTreeMap::new(), now);
    }
    let signer = LocalKeySigner::generate().unwrap();
    let g = gather(
        &request(),
        PostureSources {
            manifest: Ok(manifest()),
            secrets: &InMemorySecretCatalog::default(),
            state: &InMemoryMarkerStore::default(),
            audit: &audit,
            audit_bucket: "audit",
            public_key: signer.public_key_spki().map_err(|e| e.to_string()),
        },
    )
    .await;
    assert_eq!(g.events.as_ref().map(Vec::len), Some(3));
    let gets = audit.gets.lock().unwrap().clone();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert!(gets.values().all(|n| *n == 1), "{gets:?}");
}
