//! The rotation function's library against real parts: moto for Secrets Manager, a real
//! PostgreSQL over verified TLS, and the fake Auth0 tenant over HTTP. The test plays Secrets
//! Manager's part: `RotateSecret` (moto, Lambda execution off) creates the AWSPENDING
//! placeholder, then the four steps are invoked as Secrets Manager would.
//!
//! Written to hold on real AWS too; moto workarounds are named where they are made.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use keyward_integration::declared::LiveManifest;
use keyward_integration::fakes::auth0::{FakeAuth0, ROTATE_SCOPE, RunningAuth0};
use keyward_integration::logs::LogBuffer;
use keyward_integration::moto::MotoServer;
use keyward_integration::postgres::PostgresCluster;
use keyward_integration::samples::governance_tags;
use keyward_integration::tls::TestCa;
use keyward_shared::adapters::aws::tags_to_sdk;
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::events::{EventData, Outcome};
use keyward_shared::governance::RotationStrategy;
use keyward_shared::manifest::{Auth0Target, DatabaseTarget, RotationTarget};
use keyward_shared::naming::SecretName;
use keyward_shared::ports::InMemoryEventPublisher;
use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tags::Tag;
use rotation::auth0::Auth0Client;
use rotation::pg::{AlternatingUsers, Database, DbError, PgLogin, Postgres, PostgresConfig};
use rotation::store::SecretsManagerStore;
use rotation::{RotationError, Rotator, Settings};
use secrecy::SecretString;
use serde_json::{Value, json};

type Sm = aws_sdk_secretsmanager::Client;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", keyward_integration::support::unique())
}

fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What these tests' manifest declares: each governed secret as created, with the rotation
/// destination its first value names (the declaration the secret was provisioned from).
fn declared() -> &'static LiveManifest {
    static DECLARED: std::sync::OnceLock<LiveManifest> = std::sync::OnceLock::new();
    DECLARED.get_or_init(LiveManifest::default)
}

/// The destination a first value names, as its declaration would state it.
fn destination_of(value: &str, strategy: RotationStrategy) -> Option<RotationTarget> {
    let v: Value = serde_json::from_str(value).unwrap_or(Value::Null);
    let name_of = |arn: &Value| -> Option<SecretName> {
        let arn = arn.as_str()?;
        SecretName::name_from_arn(arn).ok()?.parse().ok()
    };
    match strategy {
        RotationStrategy::PostgresSingleUser | RotationStrategy::PostgresAlternatingUsers => {
            Some(RotationTarget::Database(DatabaseTarget {
                host: v["host"].as_str().unwrap_or("127.0.0.1").to_owned(),
                port: v["port"]
                    .as_u64()
                    .or_else(|| v["port"].as_str().and_then(|p| p.parse().ok()))
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(5432),
                dbname: v["dbname"].as_str().unwrap_or("postgres").to_owned(),
                master_secret: name_of(&v["masterarn"]),
            }))
        }
        RotationStrategy::Auth0ClientSecret => Some(RotationTarget::Auth0(Auth0Target {
            domain: v["domain"].as_str()?.to_owned(),
            management_secret: name_of(&v["management_secret_arn"])?,
        })),
        _ => None,
    }
}

async fn create_secret(sm: &Sm, name: &str, value: &str, tags: &[Tag]) -> String {
    if let Ok(Some(governance)) = keyward_shared::tags::decode(tags) {
        let target = destination_of(value, governance.rotation.strategy);
        declared().declare_rotating(name, governance, target);
    }
    sm.create_secret()
        .name(name)
        .secret_string(value)
        .set_tags(Some(tags_to_sdk(tags)))
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

async fn stage(sm: &Sm, arn: &str, stage: &str) -> Option<String> {
    sm.get_secret_value()
        .secret_id(arn)
        .version_stage(stage)
        .send()
        .await
        .ok()
        .and_then(|out| out.secret_string)
}

async fn stages_of(sm: &Sm, arn: &str, version: &str) -> Vec<String> {
    sm.describe_secret()
        .secret_id(arn)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages
        .unwrap_or_default()
        .remove(version)
        .unwrap_or_default()
}

type TestRotator<D> =
    Rotator<SecretsManagerStore, D, Auth0Client, InMemoryEventPublisher, LiveManifest>;

fn rotator_with<D: Database>(moto: &MotoServer, db: D, redactor: Redactor) -> TestRotator<D> {
    let http = HttpClient::new(
        "keyward-rotation-test",
        Duration::from_secs(5),
        RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        redactor.clone(),
    )
    .unwrap();
    Rotator {
        store: SecretsManagerStore::new(Sm::new(&moto.sdk_config()), redactor.clone()),
        db,
        auth0: Auth0Client::new(http),
        publisher: InMemoryEventPublisher::default(),
        settings: Settings {
            auth0_propagation: Duration::from_secs(10),
            auth0_retry_base: Duration::from_millis(100),
            // The PgWorld's CA bundle is configured: every database login is pinned to it.
            db_ca_bundle: true,
            db_system_trust: Default::default(),
        },
        manifests: declared().clone(),
        redactor,
    }
}

async fn run_step<D: Database>(
    rotator: &TestRotator<D>,
    arn: &str,
    step: &str,
    token: &str,
) -> Result<(), RotationError> {
    rotator
        .handle_event(&json!({"Step": step, "SecretId": arn, "ClientRequestToken": token}))
        .await
}

const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

async fn rotate<D: Database>(
    rotator: &TestRotator<D>,
    arn: &str,
    token: &str,
) -> Result<(), RotationError> {
    for step in STEPS {
        run_step(rotator, arn, step, token).await?;
    }
    Ok(())
}

/// Starts a rotation as RotateSecret does (moto creates AWSPENDING); returns its token.
async fn start_rotation(moto: &MotoServer, arn: &str) -> String {
    let token = token();
    moto.start_rotation(arn, &token).await.unwrap();
    token
}

/// Runs a step that must fail; returns its error as text.
async fn failing_step<D: Database>(
    rotator: &TestRotator<D>,
    arn: &str,
    step: &str,
    token: &str,
) -> String {
    run_step(rotator, arn, step, token)
        .await
        .unwrap_err()
        .to_string()
}

/// A new secret holding `document` whose rotation gets past createSecret and fails in
/// setSecret; returns the secret and setSecret's error.
async fn setsecret_fails<D: Database>(
    moto: &MotoServer,
    rotator: &TestRotator<D>,
    (name, document, tags): (&str, &str, &[Tag]),
) -> (String, String) {
    let sm = Sm::new(&moto.sdk_config());
    let arn = create_secret(&sm, &unique(name), document, tags).await;
    let token = start_rotation(moto, &arn).await;
    run_step(rotator, &arn, "createSecret", &token)
        .await
        .unwrap();
    let error = failing_step(rotator, &arn, "setSecret", &token).await;
    (arn, error)
}

/// A full rotation as Secrets Manager runs it, with moto's AWSPENDING quirk cleared after.
async fn full_rotation<D: Database>(moto: &MotoServer, rotator: &TestRotator<D>, arn: &str) {
    let token = start_rotation(moto, arn).await;
    rotate(rotator, arn, &token).await.unwrap();
    moto.strip_pending(arn).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL world: a TLS cluster, its CA bundle, a database with a master and application users.

struct PgWorld {
    cluster: PostgresCluster,
    ca_dir: tempfile::TempDir,
    ca_bundle: PathBuf,
}

const DB: &str = "appdb";
const MASTER: &str = "keyward_master";
const MASTER_PASSWORD: &str = "Master-Pa55word-Initial";

impl PgWorld {
    async fn start() -> Self {
        let ca = TestCa::new("keyward test RDS CA").unwrap();
        let server = ca.server_cert(&["127.0.0.1", "localhost"]).unwrap();
        let cluster = PostgresCluster::start_with_tls(&server).await.unwrap();
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_bundle = ca_dir.path().join("rds-global-bundle.pem");
        std::fs::write(&ca_bundle, ca.pem()).unwrap();
        let admin = cluster.connect_superuser().await.unwrap();
        // Separate statements: a multi-statement string runs as one transaction, which
        // CREATE DATABASE refuses.
        admin
            .batch_execute(&format!("CREATE DATABASE {DB}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!(
                "CREATE ROLE {MASTER} LOGIN CREATEROLE PASSWORD '{MASTER_PASSWORD}'"
            ))
            .await
            .unwrap();
        Self {
            cluster,
            ca_dir,
            ca_bundle,
        }
    }

    fn postgres(&self, redactor: &Redactor) -> Postgres {
        self.postgres_trusting(self.ca_bundle.clone(), redactor)
    }

    fn postgres_trusting(&self, ca_bundle: PathBuf, redactor: &Redactor) -> Postgres {
        Postgres::new(
            PostgresConfig {
                ca_bundle: Some(ca_bundle),
                allow_plaintext: false,
                connect_timeout: Duration::from_secs(5),
            },
            redactor.clone(),
        )
    }

    /// An application user the master created (so, as on RDS, the master administers it).
    async fn app_user(&self, user: &str, password: &str) {
        let admin = self
            .cluster
            .connect_as("keyward_admin", &self.cluster.superuser_password, DB)
            .await
            .unwrap();
        admin
            .batch_execute(&format!(
                "CREATE ROLE {user} LOGIN PASSWORD '{password}';
                 GRANT {user} TO {MASTER} WITH ADMIN OPTION;
                 GRANT CONNECT ON DATABASE {DB} TO {user};
                 CREATE SCHEMA {user}_data AUTHORIZATION {user};"
            ))
            .await
            .unwrap();
    }

    fn document(&self, user: &str, password: &str, extra: Value) -> String {
        let mut doc = json!({
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.cluster.port,
            "username": user,
            "password": password,
            "dbname": DB,
        });
        if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
            doc.extend(extra);
        }
        doc.to_string()
    }

    async fn logs_in(&self, document: &str) -> bool {
        let doc: Value = serde_json::from_str(document).unwrap();
        self.cluster
            .connect_as(
                doc["username"].as_str().unwrap(),
                doc["password"].as_str().unwrap(),
                DB,
            )
            .await
            .is_ok()
    }

    async fn session(&self, document: &str) -> tokio_postgres::Client {
        let doc: Value = serde_json::from_str(document).unwrap();
        self.cluster
            .connect_as(
                doc["username"].as_str().unwrap(),
                doc["password"].as_str().unwrap(),
                DB,
            )
            .await
            .unwrap()
    }

    /// An application user the master administers, and its governed secret (naming the master
    /// in `masterarn`) under `strategy`; returns the secret's ARN.
    async fn governed_app_secret(
        &self,
        sm: &Sm,
        user: &str,
        password: &str,
        strategy: &str,
    ) -> String {
        self.app_user(user, password).await;
        let master_arn = self.master_secret(sm).await;
        create_secret(
            sm,
            &unique(&format!("/acme/prod/payments/{user}-db")),
            &self.document(user, password, json!({"masterarn": master_arn})),
            &governance_tags(strategy, &[]),
        )
        .await
    }

    async fn master_secret(&self, sm: &Sm) -> String {
        create_secret(
            sm,
            &unique("/acme/prod/payments/db-master"),
            &json!({"username": MASTER, "password": MASTER_PASSWORD}).to_string(),
            &[],
        )
        .await
    }
}

async fn some_stored_credential_logs_in(world: &PgWorld, sm: &Sm, arn: &str) -> bool {
    for label in ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"] {
        if let Some(doc) = stage(sm, arn, label).await
            && world.logs_in(&doc).await
        {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn random_rotation_of_a_json_field_through_moto() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let original =
        json!({"api_key": "initial-api-key-value", "endpoint": "https://api.example.com"})
            .to_string();
    let arn = create_secret(
        &sm,
        &unique("/acme/dev/web/api-key"),
        &original,
        &governance_tags(
            "random",
            &[
                ("keyward:json-key", "api_key"),
                ("keyward:password-length", "40"),
            ],
        ),
    )
    .await;
    let (logs, _guard) = LogBuffer::install();
    let rotator = rotator_with(
        moto,
        Postgres::new(PostgresConfig::default(), Redactor::new()),
        Redactor::new(),
    );
    let mut seen = vec!["initial-api-key-value".to_owned()];
    for round in 0..2 {
        full_rotation(moto, &rotator, &arn).await;
        let current: Value =
            serde_json::from_str(&stage(&sm, &arn, "AWSCURRENT").await.unwrap()).unwrap();
        let key = current["api_key"].as_str().unwrap().to_owned();
        assert_eq!(key.len(), 40, "round {round}");
        assert!(!key.contains(['/', '@', '"', '\'', '\\']));
        assert_eq!(current["endpoint"], "https://api.example.com");
        assert!(!seen.contains(&key));
        seen.push(key);
    }
    let previous: Value =
        serde_json::from_str(&stage(&sm, &arn, "AWSPREVIOUS").await.unwrap()).unwrap();
    assert_eq!(previous["api_key"], seen[1].as_str());
    let published = rotator.publisher.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2);
    assert!(
        published
            .iter()
            .all(|e| matches!(e.data, EventData::SecretRotated { .. }))
    );
    let log_text = logs.text();
    assert!(log_text.contains("rotation finished"), "{log_text}");
    for value in &seen {
        assert!(
            !log_text.contains(value.as_str()),
            "a value reached the logs"
        );
        for event in &published {
            assert!(!event.to_detail_json().unwrap().contains(value.as_str()));
        }
    }
}

#[tokio::test]
async fn postgres_single_user_rotates_over_verified_tls_and_sends_no_password() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    // A password full of characters that break connection strings and SQL quoting.
    let initial = r#"it's a "p@ss:w/rd" \ with; spaces"#;
    world.app_user("ledger", &initial.replace('\'', "''")).await;
    let arn = create_secret(
        &sm,
        &unique("/acme/prod/payments/ledger-db"),
        &world.document("ledger", initial, json!({})),
        &governance_tags(
            "postgres-single-user",
            &[("keyward:password-exclude", "b64:Oi9AIidc")],
        ),
    )
    .await;
    let (logs, _guard) = LogBuffer::install();
    let redactor = Redactor::new();
    let rotator = rotator_with(moto, world.postgres(&redactor), redactor);
    let mut passwords = vec![initial.to_owned()];
    for _ in 0..2 {
        full_rotation(moto, &rotator, &arn).await;
        let current = stage(&sm, &arn, "AWSCURRENT").await.unwrap();
        assert!(world.logs_in(&current).await, "AWSCURRENT logs in");
        let previous = stage(&sm, &arn, "AWSPREVIOUS").await.unwrap();
        assert!(
            !world.logs_in(&previous).await,
            "single user: the old password is dead"
        );
        let doc: Value = serde_json::from_str(&current).unwrap();
        passwords.push(doc["password"].as_str().unwrap().to_owned());
    }
    // The server logged every statement (log_statement=all): the ALTER ROLE is there, with a
    // SCRAM verifier and no password.
    let server_log = world.cluster.server_log();
    assert!(
        server_log.contains("ALTER ROLE CURRENT_USER WITH PASSWORD 'SCRAM-SHA-256$"),
        "statement logged"
    );
    let log_text = logs.text();
    for password in &passwords[1..] {
        assert!(
            !server_log.contains(password.as_str()),
            "password in the server log"
        );
        assert!(
            !log_text.contains(password.as_str()),
            "password in the function log"
        );
    }
}

#[tokio::test]
async fn alternating_users_keep_every_object_readable_and_copy_grants_each_rotation() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    let arn = world
        .governed_app_secret(
            &sm,
            "orders",
            "Orders-Initial-Pa55",
            "postgres-alternating-users",
        )
        .await;
    // Data the application made before keyward, and a table a DBA shares with it later.
    let initial = world
        .session(&world.document("orders", "Orders-Initial-Pa55", json!({})))
        .await;
    initial
        .batch_execute("CREATE TABLE orders_data.before_keyward AS SELECT 1 AS id")
        .await
        .unwrap();
    let admin = world
        .cluster
        .connect_as("keyward_admin", &world.cluster.superuser_password, DB)
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.reports AS SELECT 42 AS answer;
             GRANT SELECT ON public.reports TO {MASTER} WITH GRANT OPTION;"
        ))
        .await
        .unwrap();

    let redactor = Redactor::new();
    let rotator = rotator_with(moto, world.postgres(&redactor), redactor);
    let mut tables = vec!["orders_data.before_keyward".to_owned()];
    for round in 1..=3 {
        full_rotation(moto, &rotator, &arn).await;
        let current = stage(&sm, &arn, "AWSCURRENT").await.unwrap();
        let previous = stage(&sm, &arn, "AWSPREVIOUS").await.unwrap();
        let current_user: Value = serde_json::from_str(&current).unwrap();
        let expected_user = if round % 2 == 1 {
            "orders_clone"
        } else {
            "orders"
        };
        assert_eq!(current_user["username"], expected_user, "round {round}");
        assert!(world.logs_in(&current).await && world.logs_in(&previous).await);

        // The current user creates a table; both users read every table so far.
        let table = format!("orders_data.made_in_round_{round}");
        world
            .session(&current)
            .await
            .batch_execute(&format!("CREATE TABLE {table} AS SELECT {round} AS id"))
            .await
            .unwrap();
        tables.push(table);
        for doc in [&current, &previous] {
            let session = world.session(doc).await;
            for table in &tables {
                session
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {table} unreadable: {e}"));
            }
        }
        if round == 1 {
            // After the clone exists, a DBA grants the current user (the clone) a table.
            admin
                .batch_execute("GRANT SELECT ON public.reports TO orders_clone")
                .await
                .unwrap();
        }
        if round >= 2 {
            // The grant made to the clone was copied to the base user on the next rotation.
            for doc in [&current, &previous] {
                world
                    .session(doc)
                    .await
                    .query_one("SELECT answer FROM public.reports", &[])
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: reports unreadable: {e}"));
            }
        }
    }
}

/// A database adapter that does the real work, then reports a failure once: a function that
/// died between the database change and its return.
struct DiesAfterCommit<D> {
    inner: D,
    armed: AtomicBool,
}

impl<D: Database> DiesAfterCommit<D> {
    fn injected(&self) -> Result<(), DbError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(DbError::Unreachable {
                endpoint: "injected".into(),
                message: SafeText::fixed("connection lost after the change committed"),
            });
        }
        Ok(())
    }
}

impl<D: Database> Database for DiesAfterCommit<D> {
    async fn check_login(&self, login: &PgLogin) -> Result<(), DbError> {
        self.inner.check_login(login).await
    }
    async fn set_own_password(&self, login: &PgLogin, new: &SecretString) -> Result<(), DbError> {
        self.inner.set_own_password(login, new).await?;
        self.injected()
    }
    async fn prepare_alternate(
        &self,
        master: &PgLogin,
        users: &AlternatingUsers,
        new: &SecretString,
    ) -> Result<(), DbError> {
        self.inner.prepare_alternate(master, users, new).await?;
        self.injected()
    }
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    AfterCreate,
    InsideSet,
    AfterSet,
    AfterTest,
    AfterFinish,
}

async fn fault_injection(strategy: &str) {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    let arn = world
        .governed_app_secret(&sm, "billing", "Billing-Initial-Pa55", strategy)
        .await;
    let redactor = Redactor::new();
    let db = DiesAfterCommit {
        inner: world.postgres(&redactor),
        armed: AtomicBool::new(false),
    };
    let rotator = rotator_with(moto, db, redactor);
    let alternating = strategy == "postgres-alternating-users";
    for cut in [
        Cut::AfterCreate,
        Cut::InsideSet,
        Cut::AfterSet,
        Cut::AfterTest,
        Cut::AfterFinish,
    ] {
        let token = start_rotation(moto, &arn).await;
        let steps = match cut {
            Cut::AfterCreate => 1,
            Cut::InsideSet | Cut::AfterSet => 2,
            Cut::AfterTest => 3,
            Cut::AfterFinish => 4,
        };
        if matches!(cut, Cut::InsideSet) {
            rotator.db.armed.store(true, Ordering::SeqCst);
        }
        for (i, step) in STEPS[..steps].iter().enumerate() {
            let result = run_step(&rotator, &arn, step, &token).await;
            if matches!(cut, Cut::InsideSet) && i == 1 {
                assert!(result.is_err(), "{cut:?}: the injected failure surfaces");
            } else {
                result.unwrap_or_else(|e| panic!("{strategy} {cut:?} {step}: {e}"));
            }
            assert!(
                some_stored_credential_logs_in(&world, &sm, &arn).await,
                "{strategy} {cut:?} after {step}: no stored credential logs in"
            );
            if alternating {
                let current = stage(&sm, &arn, "AWSCURRENT").await.unwrap();
                assert!(
                    world.logs_in(&current).await,
                    "{cut:?}: alternating keeps AWSCURRENT usable"
                );
            }
        }
        // Secrets Manager retries the whole rotation with the same token.
        rotate(&rotator, &arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{strategy} {cut:?}: rerun failed: {e}"));
        assert!(
            stages_of(&sm, &arn, &token)
                .await
                .contains(&"AWSCURRENT".to_owned())
        );
        let current = stage(&sm, &arn, "AWSCURRENT").await.unwrap();
        assert!(
            world.logs_in(&current).await,
            "{strategy} {cut:?}: AWSCURRENT logs in after the rerun"
        );
        moto.strip_pending(&arn).await.unwrap();
    }
}

#[tokio::test]
async fn single_user_rotation_recovers_from_a_stop_at_every_point() {
    fault_injection("postgres-single-user").await;
}

#[tokio::test]
async fn alternating_users_rotation_recovers_from_a_stop_at_every_point() {
    fault_injection("postgres-alternating-users").await;
}

#[tokio::test]
async fn two_racing_rotations_one_wins_cleanly() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    let arn = world
        .governed_app_secret(
            &sm,
            "racer",
            "Racer-Initial-Pa55",
            "postgres-alternating-users",
        )
        .await;
    let redactor = Redactor::new();
    let rotator = rotator_with(moto, world.postgres(&redactor), redactor);
    let first = start_rotation(moto, &arn).await;
    run_step(&rotator, &arn, "createSecret", &first)
        .await
        .unwrap();
    // A second rotation starts while the first is under way (on AWS, RotateSecret refuses this;
    // the function must still be safe if it happens).
    let second = start_rotation(moto, &arn).await;
    let (a, b) = tokio::join!(
        rotate(&rotator, &arn, &first),
        rotate(&rotator, &arn, &second)
    );
    assert!(a.is_err(), "the superseded rotation stops");
    b.unwrap();
    assert!(
        stages_of(&sm, &arn, &second)
            .await
            .contains(&"AWSCURRENT".to_owned())
    );
    let current = stage(&sm, &arn, "AWSCURRENT").await.unwrap();
    assert!(world.logs_in(&current).await);
    let events = rotator.publisher.published.lock().unwrap().clone();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.outcome == Outcome::Success)
            .count(),
        1
    );
}

async fn auth0_world(moto: &MotoServer, sm: &Sm) -> (RunningAuth0, String, String) {
    let auth0 = FakeAuth0::start().await.unwrap();
    let rotator_id = auth0
        .fake
        .add_client("keyward-rotator", "rotator-secret-0123456789");
    auth0.fake.grant(
        &rotator_id,
        &auth0.management_audience(),
        &[ROTATE_SCOPE, "read:clients"],
    );
    let app_id = auth0
        .fake
        .add_client("web-backend", "app-secret-initial-0123456789");
    auth0
        .fake
        .grant(&app_id, "https://api.acme.example/", &["read:orders"]);
    let management_arn = create_secret(
        sm,
        &unique("/acme/prod/identity/auth0-rotator"),
        &json!({"client_id": rotator_id, "client_secret": "rotator-secret-0123456789"}).to_string(),
        &[],
    )
    .await;
    let _ = moto;
    (auth0, app_id, management_arn)
}

#[tokio::test]
async fn auth0_client_secret_rotates_once_waits_for_propagation_and_rides_out_429() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let (auth0, app_id, management_arn) = auth0_world(moto, &sm).await;
    let arn = create_secret(
        &sm,
        &unique("/acme/prod/web/auth0-m2m"),
        &json!({
            "domain": auth0.domain(),
            "client_id": app_id,
            "client_secret": "app-secret-initial-0123456789",
            "management_secret_arn": management_arn,
            "audience": "https://api.acme.example/",
        })
        .to_string(),
        &governance_tags("auth0-client-secret", &[]),
    )
    .await;
    let (logs, _guard) = LogBuffer::install();
    let rotator = rotator_with(
        moto,
        Postgres::new(PostgresConfig::default(), Redactor::new()),
        Redactor::new(),
    );
    // Auth0 rate-limits the first call and takes a moment to apply the new secret.
    auth0.fake.throttle_next(1);
    auth0.fake.set_propagation(Duration::from_millis(600));
    let token = start_rotation(moto, &arn).await;
    rotate(&rotator, &arn, &token).await.unwrap();
    moto.strip_pending(&arn).await.unwrap();
    assert_eq!(
        auth0.fake.secret_updates(),
        1,
        "the client's secret was set exactly once"
    );
    let throttled = auth0.fake.seen().iter().filter(|s| s.status == 429).count();
    assert_eq!(throttled, 1);
    let current: Value =
        serde_json::from_str(&stage(&sm, &arn, "AWSCURRENT").await.unwrap()).unwrap();
    let new_secret = current["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(auth0.fake.secret_of(&app_id).unwrap(), new_secret);
    assert_eq!(current["audience"], "https://api.acme.example/");
    // Rerunning the finished rotation calls Auth0 no more.
    rotate(&rotator, &arn, &token).await.unwrap();
    assert_eq!(auth0.fake.secret_updates(), 1);
    let log_text = logs.text();
    for secret in [
        new_secret.as_str(),
        "app-secret-initial-0123456789",
        "rotator-secret-0123456789",
    ] {
        assert!(
            !log_text.contains(secret),
            "a client secret reached the logs"
        );
    }
    assert!(log_text.contains("waiting for propagation"), "{log_text}");
}

#[tokio::test]
async fn auth0_refusals_are_clear_and_leave_awscurrent_untouched() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let (auth0, app_id, _) = auth0_world(moto, &sm).await;
    // A rotator application without the update:client_keys scope.
    let weak_id = auth0
        .fake
        .add_client("weak-rotator", "weak-secret-0123456789");
    auth0
        .fake
        .grant(&weak_id, &auth0.management_audience(), &["read:clients"]);
    let weak_arn = create_secret(
        &sm,
        &unique("/acme/prod/identity/weak"),
        &json!({"client_id": weak_id, "client_secret": "weak-secret-0123456789"}).to_string(),
        &[],
    )
    .await;
    let document = json!({
        "domain": auth0.domain(),
        "client_id": app_id,
        "client_secret": "app-secret-initial-0123456789",
        "management_secret_arn": weak_arn,
    })
    .to_string();
    let arn = create_secret(
        &sm,
        &unique("/acme/prod/web/auth0-weak"),
        &document,
        &governance_tags("auth0-client-secret", &[]),
    )
    .await;
    let rotator = rotator_with(
        moto,
        Postgres::new(PostgresConfig::default(), Redactor::new()),
        Redactor::new(),
    );
    let token = start_rotation(moto, &arn).await;
    // The new secret is generated and stored first (no Auth0 call), then set: the missing
    // scope shows there, with the working secret untouched everywhere.
    run_step(&rotator, &arn, "createSecret", &token)
        .await
        .unwrap();
    let err = failing_step(&rotator, &arn, "setSecret", &token).await;
    assert!(
        err.contains("insufficient_scope") && err.contains(ROTATE_SCOPE),
        "{err}"
    );
    assert!(!err.contains("weak-secret"), "{err}");
    assert_eq!(stage(&sm, &arn, "AWSCURRENT").await.unwrap(), document);
    assert_eq!(auth0.fake.secret_updates(), 0);
    assert_eq!(
        auth0.fake.secret_of(&app_id).unwrap(),
        "app-secret-initial-0123456789"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_awscurrent_stays_untouched() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    world.app_user("victim", "Victim-Initial-Pa55").await;
    let (logs, _guard) = LogBuffer::install();
    let redactor = Redactor::new();
    let rotator = rotator_with(moto, world.postgres(&redactor), redactor.clone());
    let tags = governance_tags("postgres-single-user", &[]);
    let good = world.document("victim", "Victim-Initial-Pa55", json!({}));
    let arn = create_secret(&sm, &unique("/acme/prod/payments/victim-db"), &good, &tags).await;
    let other = create_secret(&sm, &unique("/acme/prod/payments/other-db"), &good, &tags).await;
    let token_of_other = start_rotation(moto, &other).await;
    let token = start_rotation(moto, &arn).await;

    let unknown = rotator
        .handle_event(
            &json!({"Step": "deleteSecret", "SecretId": arn, "ClientRequestToken": token}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown rotation step `deleteSecret`"),
        "{unknown}"
    );

    let foreign = run_step(&rotator, &arn, "createSecret", &token_of_other)
        .await
        .unwrap_err();
    assert!(
        matches!(foreign, RotationError::UnknownVersion { .. }),
        "{foreign}"
    );

    // Malformed JSON in AWSCURRENT.
    let broken = r#"{"engine":"postgres","username":"victim","password":"Victim-Initial-Pa55""#;
    let broken_arn =
        create_secret(&sm, &unique("/acme/prod/payments/broken-db"), broken, &tags).await;
    let broken_token = start_rotation(moto, &broken_arn).await;
    let malformed = failing_step(&rotator, &broken_arn, "createSecret", &broken_token).await;
    assert!(malformed.contains("not valid JSON"), "{malformed}");
    assert_eq!(stage(&sm, &broken_arn, "AWSCURRENT").await.unwrap(), broken);

    // An unreachable database: createSecret succeeds (no database involved), setSecret fails.
    let closed_port = keyward_integration::free_port().unwrap();
    let unreachable_doc = good.replace(&world.cluster.port.to_string(), &closed_port.to_string());
    let gone = (
        "/acme/prod/payments/gone-db",
        unreachable_doc.as_str(),
        &tags[..],
    );
    let (unreachable, down) = setsecret_fails(moto, &rotator, gone).await;
    assert!(
        down.contains("cannot reach PostgreSQL") && down.contains(&closed_port.to_string()),
        "{down}"
    );
    assert_eq!(
        stage(&sm, &unreachable, "AWSCURRENT").await.unwrap(),
        unreachable_doc
    );

    // The wrong CA: verify-full refuses the server's certificate; nothing falls back to plaintext.
    let other_ca = TestCa::new("somebody else's CA").unwrap();
    let wrong_bundle = world.ca_dir.path().join("wrong.pem");
    std::fs::write(&wrong_bundle, other_ca.pem()).unwrap();
    let wrong_ca = rotator_with(
        moto,
        world.postgres_trusting(wrong_bundle, &redactor),
        redactor.clone(),
    );
    run_step(&wrong_ca, &arn, "createSecret", &token)
        .await
        .unwrap();
    let tls = failing_step(&wrong_ca, &arn, "setSecret", &token).await;
    assert!(tls.contains("TLS") && tls.contains("certificate"), "{tls}");
    assert_eq!(stage(&sm, &arn, "AWSCURRENT").await.unwrap(), good);
    assert!(world.logs_in(&good).await, "AWSCURRENT still logs in");

    // Plaintext asked for by the secret, refused by the function's configuration.
    let plaintext_doc = world.document(
        "victim",
        "Victim-Initial-Pa55",
        json!({"sslmode": "disable"}),
    );
    let plain = (
        "/acme/prod/payments/plain-db",
        plaintext_doc.as_str(),
        &tags[..],
    );
    let (plaintext, refused) = setsecret_fails(moto, &rotator, plain).await;
    assert!(refused.contains("KEYWARD_DB_ALLOW_PLAINTEXT"), "{refused}");

    // Nothing logged, returned or published holds a password.
    let mut outputs = vec![
        logs.text(),
        unknown,
        malformed,
        down,
        tls,
        refused,
        foreign.to_string(),
    ];
    outputs.extend(
        rotator
            .publisher
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.to_detail_json().unwrap()),
    );
    let mut passwords = vec!["Victim-Initial-Pa55".to_owned()];
    for secret in [&arn, &unreachable, &plaintext] {
        if let Some(doc) = stage(&sm, secret, "AWSPENDING").await {
            let doc: Value = serde_json::from_str(&doc).unwrap();
            passwords.push(doc["password"].as_str().unwrap().to_owned());
        }
    }
    assert!(passwords.len() >= 3, "the pending passwords were read back");
    for output in outputs {
        for password in &passwords {
            assert!(
                !output.contains(password.as_str()),
                "a password leaked into: {output}"
            );
        }
    }
}

/// The template's rotation schedules are the manifest's: every rotating secret has one, in the
/// environments that declare it, at its interval; manual secrets have none.
#[test]
fn rotation_schedules_in_the_template_match_the_manifest() {
    use keyward_shared::governance::RotationStrategy;
    use keyward_shared::manifest::Manifest;
    use serde_yaml_ng::Value as Yaml;
    use std::collections::{BTreeMap, BTreeSet};

    let root = keyward_integration::repo_root();
    let manifest = Manifest::load(&root.join("infra/config/manifest")).unwrap();
    // service/name -> (environments, days)
    let mut declared: BTreeMap<String, (BTreeSet<String>, BTreeSet<u32>)> = BTreeMap::new();
    for secret in &manifest.secrets {
        if secret.governance.rotation.strategy == RotationStrategy::Manual {
            continue;
        }
        let key = format!(
            "{}/{}",
            secret.name.service().as_str(),
            secret.name.name().as_str()
        );
        let entry = declared.entry(key).or_default();
        entry.0.insert(secret.name.env().as_str().to_owned());
        entry.1.insert(secret.governance.rotation.interval.days());
    }

    let template: Yaml = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("infra/template.yaml")).unwrap(),
    )
    .unwrap();
    let conditions = &template["Conditions"];
    fn environments(node: &Yaml, conditions: &Yaml, out: &mut BTreeSet<String>) {
        match node {
            Yaml::Tagged(tagged) if tagged.tag == "Equals" => {
                let pair = tagged.value.as_sequence().unwrap();
                let is_env = matches!(&pair[0], Yaml::Tagged(r) if r.tag == "Ref" && r.value.as_str() == Some("Environment"));
                if is_env {
                    out.insert(pair[1].as_str().unwrap().to_owned());
                }
            }
            Yaml::Tagged(tagged) if tagged.tag == "Condition" => {
                environments(&conditions[tagged.value.as_str().unwrap()], conditions, out);
            }
            Yaml::Tagged(tagged) => environments(&tagged.value, conditions, out),
            Yaml::Sequence(items) => items.iter().for_each(|i| environments(i, conditions, out)),
            _ => {}
        }
    }
    let mut scheduled: BTreeMap<String, (BTreeSet<String>, BTreeSet<u32>)> = BTreeMap::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::SecretsManager::RotationSchedule") {
            continue;
        }
        let secret = resource["Metadata"]["keyward"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut envs = BTreeSet::new();
        let condition = resource["Condition"].as_str().unwrap();
        environments(&conditions[condition], conditions, &mut envs);
        let expression = resource["Properties"]["RotationRules"]["ScheduleExpression"]
            .as_str()
            .unwrap();
        let days: u32 = expression
            .strip_prefix("rate(")
            .and_then(|r| r.strip_suffix(" days)"))
            .unwrap()
            .parse()
            .unwrap();
        let Yaml::Tagged(sub) = &resource["Properties"]["SecretId"] else {
            panic!("SecretId of {secret} is not a !Sub");
        };
        assert_eq!(
            sub.value.as_str().unwrap(),
            format!("/${{Org}}/${{Environment}}/{secret}")
        );
        assert_eq!(
            resource["Properties"]["RotateImmediatelyOnUpdate"].as_bool(),
            Some(false)
        );
        scheduled.insert(secret, (envs, BTreeSet::from([days])));
    }
    assert!(!declared.is_empty());
    assert_eq!(scheduled, declared);
}

/// Someone with `PutSecretValue` on one secret points it at their own host: the rotation is
/// refused before any connection, the password stays what it was, and the refusal names the
/// field, never a value.
#[tokio::test]
async fn a_value_pointing_rotation_elsewhere_is_refused_before_anything_is_sent() {
    let moto = MotoServer::shared().await;
    let sm = Sm::new(&moto.sdk_config());
    let world = PgWorld::start().await;
    world.app_user("redirect", "Redirect-Initial-Pa55").await;
    let declared_doc = world.document("redirect", "Redirect-Initial-Pa55", json!({}));
    let arn = create_secret(
        &sm,
        &unique("/acme/prod/payments/redirect-db"),
        &declared_doc,
        &governance_tags("postgres-single-user", &[]),
    )
    .await;
    let moved = declared_doc.replace("127.0.0.1", "db.attacker.example");
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(&moved)
        .send()
        .await
        .unwrap();
    let redactor = Redactor::new();
    let rotator = rotator_with(moto, world.postgres(&redactor), redactor);
    let token = start_rotation(moto, &arn).await;
    let err = rotate(&rotator, &arn, &token).await.unwrap_err();
    assert!(
        matches!(err, RotationError::DestinationMismatch { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("host"), "{text}");
    assert!(!text.contains("Redirect-Initial-Pa55"), "{text}");
    assert_eq!(stage(&sm, &arn, "AWSCURRENT").await.unwrap(), moved);
    assert!(
        world.logs_in(&declared_doc).await,
        "the password was not changed"
    );
    let failed = rotator.publisher.published.lock().unwrap().clone();
    assert!(
        failed
            .iter()
            .any(|e| matches!(e.data, EventData::RotationFailed { .. })),
        "{failed:?}"
    );
}
