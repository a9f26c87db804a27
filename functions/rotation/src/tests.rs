//! Protocol tests against in-memory ports: the guard, re-entrancy, races, governance errors,
//! declared destinations, Auth0's fault cases and what reaches events. The strategies' real
//! systems (moto, PostgreSQL, an Auth0 fake over HTTP) are exercised in
//! `integration/tests/rotation.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

use keyward_shared::events::{EventData, Outcome};
use keyward_shared::lambda::FailureKind;
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::{InMemoryEventPublisher, StaticManifest};
use keyward_shared::redact::SafeText;
use keyward_shared::tags::Tag;
use serde_json::json;

use super::*;
use crate::store::InMemoryStore;

const NAME: &str = "/acme/dev/web/session-key";
const DB: &str = "/acme/dev/payments/db";
const DB_ALT: &str = "/acme/dev/payments/db-alt";
const DB_ADMIN: &str = "/acme/dev/payments/db-admin";
const M2M: &str = "/acme/dev/web/auth0-m2m";
const ROTATOR: &str = "/acme/dev/web/auth0-rotator";
const HOST: &str = "db.internal";
const DOMAIN: &str = "acme.eu.auth0.com";

const ENUMS: &str = include_str!("../../../infra/config/manifest/enums.yaml");

/// The declared governance the tests rotate under: where each database and Auth0 secret's
/// credentials may go.
const MANIFEST: &str = "version: 1
org: acme
environments: [dev]
secrets:
  - {service: payments, name: db-admin, type: postgres-master, domain: payments, owner: team-payments,
     classification: restricted, rotation: {strategy: manual, days: 90}, environments: [dev]}
  - service: payments
    name: db
    type: postgres-credentials
    domain: payments
    owner: team-payments
    classification: restricted
    rotation:
      strategy: postgres-single-user
      days: 30
      database: {host: db.internal, port: 5432, dbname: app}
    environments: [dev]
  - service: payments
    name: db-alt
    type: postgres-credentials
    domain: payments
    owner: team-payments
    classification: restricted
    rotation:
      strategy: postgres-alternating-users
      days: 30
      database: {host: db.internal, dbname: app, master_secret: /acme/dev/payments/db-admin}
    environments: [dev]
  - service: payments
    name: db-undeclared
    type: postgres-credentials
    domain: payments
    owner: team-payments
    classification: restricted
    rotation: {strategy: postgres-single-user, days: 30}
    environments: [dev]
  - {service: web, name: auth0-rotator, type: oauth-client, domain: identity, owner: team-identity,
     classification: restricted, rotation: {strategy: manual, days: 90}, environments: [dev]}
  - service: web
    name: auth0-m2m
    type: oauth-client
    domain: identity
    owner: team-identity
    classification: confidential
    rotation:
      strategy: auth0-client-secret
      days: 60
      auth0: {domain: acme.eu.auth0.com, management_secret: /acme/dev/web/auth0-rotator}
    environments: [dev]
";

fn manifest() -> Manifest {
    Manifest::from_sources(&[("m.yaml", MANIFEST)], ("enums.yaml", ENUMS)).unwrap()
}

fn tags(strategy: &str, extra: &[(&str, &str)]) -> Vec<Tag> {
    let mut tags = vec![
        Tag::new("keyward:contract", "1"),
        Tag::new("keyward:type", "signing-key"),
        Tag::new("keyward:domain", "web"),
        Tag::new("keyward:owner", "team-web"),
        Tag::new("keyward:classification", "confidential"),
        Tag::new("keyward:rotation", strategy),
        Tag::new("keyward:rotation-days", "30"),
    ];
    tags.extend(extra.iter().map(|(k, v)| Tag::new(*k, *v)));
    tags
}

/// Users and passwords of a pretend database; the in-memory side of [`Database`]. Every
/// connection attempt is recorded as `user@host:port/dbname`.
#[derive(Default)]
struct FakeDatabase {
    passwords: Mutex<HashMap<String, String>>,
    connections: Mutex<Vec<(String, Roots)>>,
}

impl FakeDatabase {
    fn connections(&self) -> Vec<(String, Roots)> {
        self.connections.lock().unwrap().clone()
    }
}

impl Database for FakeDatabase {
    async fn check_login(&self, login: &PgLogin) -> Result<(), DbError> {
        self.connections.lock().unwrap().push((
            format!(
                "{}@{}:{}/{}",
                login.username, login.host, login.port, login.dbname
            ),
            login.roots,
        ));
        let ok = self.passwords.lock().unwrap().get(&login.username)
            == Some(&login.password.expose_secret().to_owned());
        ok.then_some(()).ok_or(DbError::Auth {
            endpoint: "fake".into(),
            user: login.username.clone(),
        })
    }
    async fn set_own_password(&self, login: &PgLogin, new: &SecretString) -> Result<(), DbError> {
        self.check_login(login).await?;
        self.passwords
            .lock()
            .unwrap()
            .insert(login.username.clone(), new.expose_secret().to_owned());
        Ok(())
    }
    async fn prepare_alternate(
        &self,
        master: &PgLogin,
        users: &AlternatingUsers,
        new: &SecretString,
    ) -> Result<(), DbError> {
        self.check_login(master).await?;
        self.passwords
            .lock()
            .unwrap()
            .insert(users.pending.clone(), new.expose_secret().to_owned());
        Ok(())
    }
}

const MGMT_TOKEN: &str = "mgmt-access-token-0123456789";

/// An Auth0 tenant in memory: client secrets, which clients have an API grant, every call (as
/// `<what> <client> <base url>`), and injected faults.
#[derive(Default)]
struct FakeAuth0 {
    state: Mutex<Auth0State>,
}

#[derive(Default)]
struct Auth0State {
    secrets: HashMap<String, String>,
    /// Clients whose grant for the asked audience is missing (Auth0 answers 403 access_denied).
    no_grant: Vec<String>,
    calls: Vec<String>,
    /// The PATCH is applied but its response is lost this many times.
    lose_patch_responses: u32,
    /// A proxy in front of the tenant answers `/oauth/token` with its own 403 page.
    proxy_403: bool,
}

impl FakeAuth0 {
    fn with_clients(clients: &[(&str, &str)]) -> Self {
        let fake = Self::default();
        fake.state.lock().unwrap().secrets = clients
            .iter()
            .map(|(id, secret)| ((*id).to_owned(), (*secret).to_owned()))
            .collect();
        fake
    }
    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }
    fn secret_of(&self, id: &str) -> String {
        self.state.lock().unwrap().secrets[id].clone()
    }
}

impl Auth0Api for FakeAuth0 {
    async fn token(
        &self,
        tenant: &Tenant,
        client_id: &str,
        client_secret: &SecretString,
        _audience: &str,
    ) -> Result<SecretString, Auth0Error> {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("token {client_id} {}", tenant.base_url()));
        if state.proxy_403 {
            return Err(Auth0Error::NotAuth0 {
                what: "the tenant's /oauth/token",
                status: 403,
                excerpt: SafeText::fixed("<html><h1>403 Forbidden</h1>Request blocked</html>"),
            });
        }
        if state.secrets.get(client_id).map(String::as_str) != Some(client_secret.expose_secret()) {
            return Err(Auth0Error::Unauthorized {
                client_id: client_id.to_owned(),
            });
        }
        if client_id == "rotator" {
            return Ok(SecretString::from(MGMT_TOKEN.to_owned()));
        }
        if state.no_grant.iter().any(|c| c == client_id) {
            return Err(Auth0Error::GrantRefused {
                client_id: client_id.to_owned(),
                error: "access_denied".into(),
                message: SafeText::fixed("Client is not authorized to access the API"),
            });
        }
        Ok(SecretString::from("app-access-token-0123456789".to_owned()))
    }

    async fn set_client_secret(
        &self,
        tenant: &Tenant,
        management_token: &SecretString,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<(), Auth0Error> {
        let mut state = self.state.lock().unwrap();
        state
            .calls
            .push(format!("patch {client_id} {}", tenant.base_url()));
        if management_token.expose_secret() != MGMT_TOKEN {
            return Err(Auth0Error::Forbidden {
                message: SafeText::fixed("Forbidden: insufficient_scope"),
            });
        }
        let Some(secret) = state.secrets.get_mut(client_id) else {
            return Err(Auth0Error::NoSuchClient {
                client_id: client_id.to_owned(),
            });
        };
        *secret = client_secret.expose_secret().to_owned();
        if state.lose_patch_responses > 0 {
            state.lose_patch_responses -= 1;
            return Err(Auth0Error::Http(
                keyward_shared::adapters::http::HttpError::Transport {
                    method: keyward_shared::adapters::http::Method::PATCH,
                    url: SafeText::fixed("https://acme.eu.auth0.com/api/v2/clients/app"),
                    message: SafeText::fixed("connection reset by peer"),
                    attempts: 3,
                },
            ));
        }
        Ok(())
    }
}

/// Everything the code under test logs on this thread, as JSON lines.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

type TestRotator =
    Rotator<InMemoryStore, FakeDatabase, FakeAuth0, InMemoryEventPublisher, StaticManifest>;

fn settings() -> Settings {
    Settings {
        auth0_propagation: Duration::from_millis(200),
        auth0_retry_base: Duration::from_millis(10),
        db_ca_bundle: true,
        ..Settings::default()
    }
}

fn rotator() -> TestRotator {
    rotator_with(FakeAuth0::default(), settings())
}

fn rotator_with(auth0: FakeAuth0, settings: Settings) -> TestRotator {
    Rotator {
        store: InMemoryStore::default(),
        db: FakeDatabase::default(),
        auth0,
        publisher: InMemoryEventPublisher::default(),
        manifests: StaticManifest(manifest()),
        settings,
        redactor: Redactor::new(),
    }
}

fn token(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

async fn step(r: &TestRotator, name: &str, step: &str, token: &str) -> Result<(), RotationError> {
    r.handle_event(&json!({"Step": step, "SecretId": name, "ClientRequestToken": token}))
        .await
}

async fn rotate(r: &TestRotator, name: &str, token: &str) -> Result<(), RotationError> {
    for s in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        step(r, name, s, token).await?;
    }
    Ok(())
}

fn events(r: &TestRotator) -> Vec<DomainEvent> {
    r.publisher.published.lock().unwrap().clone()
}

#[tokio::test]
async fn random_rotation_runs_the_four_steps_and_reports_once() {
    let r = rotator();
    r.store.create(
        NAME,
        "old-value-1234567890",
        tags("random", &[("keyward:password-length", "48")]),
    );
    r.store.start_rotation(NAME, &token(1));
    rotate(&r, NAME, &token(1)).await.unwrap();
    let current = r.store.stage_value(NAME, AWSCURRENT).unwrap();
    assert_eq!(current.len(), 48);
    assert!(!current.contains(['/', '@', '"', '\'', '\\']));
    assert_eq!(
        r.store.stage_value(NAME, AWSPREVIOUS).unwrap(),
        "old-value-1234567890"
    );
    let published = events(&r);
    assert_eq!(published.len(), 1);
    assert!(matches!(
        &published[0].data,
        EventData::SecretRotated { strategy: RotationStrategy::Random, version_id, .. } if *version_id == token(1)
    ));
    let json = published[0].to_detail_json().unwrap();
    assert!(
        !json.contains(&current) && !json.contains("old-value"),
        "{json}"
    );
}

#[tokio::test]
async fn every_step_is_reentrant_and_a_finished_token_is_a_no_op() {
    let r = rotator();
    r.store
        .create(NAME, "old-value-1234567890", tags("random", &[]));
    r.store.start_rotation(NAME, &token(1));
    step(&r, NAME, "createSecret", &token(1)).await.unwrap();
    let pending = r.store.stage_value(NAME, AWSPENDING).unwrap();
    // Secrets Manager retries the whole rotation: createSecret keeps the stored value.
    rotate(&r, NAME, &token(1)).await.unwrap();
    assert_eq!(r.store.stage_value(NAME, AWSCURRENT).unwrap(), pending);
    // And again after it finished: every step succeeds without changing anything.
    rotate(&r, NAME, &token(1)).await.unwrap();
    assert_eq!(r.store.stage_value(NAME, AWSCURRENT).unwrap(), pending);
    assert_eq!(
        r.store.stage_value(NAME, AWSPREVIOUS).unwrap(),
        "old-value-1234567890"
    );
}

#[tokio::test]
async fn json_field_rotation_keeps_the_other_fields() {
    let r = rotator();
    r.store.create(
        NAME,
        r#"{"api_key":"old-key-123456","endpoint":"https://api.example.com"}"#,
        tags("random", &[("keyward:json-key", "api_key")]),
    );
    r.store.start_rotation(NAME, &token(1));
    rotate(&r, NAME, &token(1)).await.unwrap();
    let current: serde_json::Value =
        serde_json::from_str(&r.store.stage_value(NAME, AWSCURRENT).unwrap()).unwrap();
    assert_eq!(current["endpoint"], "https://api.example.com");
    assert_eq!(current["api_key"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn the_guard_refuses_foreign_tokens_disabled_rotation_and_lost_races() {
    let r = rotator();
    r.store
        .create(NAME, "old-value-1234567890", tags("random", &[]));
    r.store.create(
        "/acme/dev/web/other",
        "x-value-1234567890",
        tags("random", &[]),
    );
    r.store.start_rotation("/acme/dev/web/other", &token(9));
    r.store.start_rotation(NAME, &token(1));

    let err = step(&r, NAME, "createSecret", &token(9)).await.unwrap_err();
    assert!(matches!(err, RotationError::UnknownVersion { .. }), "{err}");

    // Two rotations racing: the second token takes AWSPENDING, the first fails at its next step
    // and the second completes cleanly.
    step(&r, NAME, "createSecret", &token(1)).await.unwrap();
    r.store.start_rotation(NAME, &token(2));
    step(&r, NAME, "createSecret", &token(2)).await.unwrap();
    let winner = r.store.stage_value(NAME, AWSPENDING).unwrap();
    // On AWS a version without labels drops out of VersionIdsToStages (UnknownVersion); a store
    // that keeps listing it gives NotPending. Either way the loser stops.
    let lost = |err: &RotationError| {
        matches!(
            err,
            RotationError::NotPending { .. } | RotationError::UnknownVersion { .. }
        )
    };
    let err = step(&r, NAME, "setSecret", &token(1)).await.unwrap_err();
    assert!(lost(&err), "{err}");
    rotate(&r, NAME, &token(2)).await.unwrap();
    let err = step(&r, NAME, "finishSecret", &token(1)).await.unwrap_err();
    assert!(lost(&err), "{err}");
    assert_eq!(r.store.stage_value(NAME, AWSCURRENT).unwrap(), winner);

    r.store.set_rotation_enabled(NAME, false);
    let err = step(&r, NAME, "createSecret", &token(2)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::RotationDisabled { .. }),
        "{err}"
    );

    let failures = events(&r)
        .into_iter()
        .filter(|e| e.outcome == Outcome::Failure)
        .count();
    assert_eq!(failures, 4, "every refused step is reported");
}

#[tokio::test]
async fn governance_decides_the_strategy() {
    let r = rotator();
    r.store
        .create("/acme/dev/payments/untagged", "v-1234567890", vec![]);
    r.store.create(
        "/acme/dev/payments/manual",
        "v-1234567890",
        tags("manual", &[]),
    );
    r.store.create(
        "/acme/dev/payments/misspelt",
        "v-1234567890",
        [
            tags("random", &[]),
            vec![Tag::new("keyward:rotaton-days", "30")],
        ]
        .concat(),
    );
    for name in [
        "/acme/dev/payments/untagged",
        "/acme/dev/payments/manual",
        "/acme/dev/payments/misspelt",
    ] {
        r.store.start_rotation(name, &token(1));
    }
    let untagged = step(&r, "/acme/dev/payments/untagged", "createSecret", &token(1)).await;
    assert!(matches!(untagged, Err(RotationError::NotGoverned { .. })));
    let manual = step(&r, "/acme/dev/payments/manual", "createSecret", &token(1)).await;
    assert!(matches!(manual, Err(RotationError::Manual { .. })));
    let misspelt = step(&r, "/acme/dev/payments/misspelt", "createSecret", &token(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(misspelt.contains("keyward:rotaton-days"), "{misspelt}");
    // Nothing was written: AWSCURRENT is untouched, no AWSPENDING value exists.
    for name in [
        "/acme/dev/payments/untagged",
        "/acme/dev/payments/manual",
        "/acme/dev/payments/misspelt",
    ] {
        assert_eq!(
            r.store.stage_value(name, AWSCURRENT).unwrap(),
            "v-1234567890"
        );
        assert_eq!(r.store.stage_value(name, AWSPENDING), None);
    }
}

#[tokio::test]
async fn malformed_secrets_fail_without_quoting_them() {
    let r = rotator();
    let secret = "{\"engine\":\"postgres\",\"host\":\"db\",\"username\":\"app\",\"password\":\"Tr0ub4dor&3-secret\"";
    r.store
        .create(DB, secret, tags("postgres-single-user", &[]));
    r.store.start_rotation(DB, &token(1));
    let err = step(&r, DB, "createSecret", &token(1)).await.unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("not valid JSON"), "{text}");
    let diagnostic = keyward_shared::lambda::diagnostic(&err);
    let event = events(&r).pop().unwrap().to_detail_json().unwrap();
    for output in [text, diagnostic.error_message, event] {
        assert!(!output.contains("Tr0ub4dor"), "{output}");
    }
    assert_eq!(r.store.stage_value(DB, AWSCURRENT).unwrap(), secret);
}

#[tokio::test]
async fn single_user_rotation_changes_the_password_as_the_user() {
    let r = rotator();
    let doc_for = |user: &str, pw: &str| {
        json!({"engine": "postgres", "host": HOST, "port": 5432, "username": user, "password": pw, "dbname": "app"})
            .to_string()
    };
    let doc = |pw: &str| doc_for("app", pw);
    r.db.passwords
        .lock()
        .unwrap()
        .insert("app".into(), "first-password-123".into());
    r.store.create(
        DB,
        &doc("first-password-123"),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(DB, &token(1));
    step(&r, DB, "createSecret", &token(1)).await.unwrap();
    step(&r, DB, "setSecret", &token(1)).await.unwrap();
    // The database already holds the pending password: a retried setSecret is a no-op.
    step(&r, DB, "setSecret", &token(1)).await.unwrap();
    step(&r, DB, "testSecret", &token(1)).await.unwrap();
    step(&r, DB, "finishSecret", &token(1)).await.unwrap();
    let current = PgSecret::parse("c", &r.store.stage_value(DB, AWSCURRENT).unwrap()).unwrap();
    assert_eq!(
        r.db.passwords.lock().unwrap()["app"],
        current.password.expose_secret()
    );
    // A pending document naming another user is refused (confused-deputy guard).
    r.store.start_rotation(DB, &token(2));
    r.store
        .put_pending(
            &r.store.describe(DB).await.unwrap().arn,
            &token(2),
            &SecretString::from(doc_for("admin", "x-1234567890")),
            None,
        )
        .await
        .unwrap();
    let err = step(&r, DB, "setSecret", &token(2)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::IdentityChanged { field: "username" }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Declared destinations.

const APP_PW: &str = "App-Initial-Pa55word-1";
const MASTER_PW: &str = "Master-Pa55word-Never-Sent";

fn pg_doc(user: &str, password: &str, changes: serde_json::Value) -> String {
    let mut doc = json!({
        "engine": "postgres", "host": HOST, "port": 5432, "username": user,
        "password": password, "dbname": "app",
    });
    if let (serde_json::Value::Object(doc), serde_json::Value::Object(changes)) =
        (&mut doc, changes)
    {
        doc.extend(changes);
    }
    doc.to_string()
}

fn master_arn() -> String {
    format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{DB_ADMIN}-AbCdEf")
}

/// A single-user and an alternating-users secret, their master and users, as declared.
fn pg_world(r: &TestRotator) {
    r.db.passwords.lock().unwrap().extend([
        ("app".to_owned(), APP_PW.to_owned()),
        ("master".to_owned(), MASTER_PW.to_owned()),
    ]);
    r.store.create(
        DB_ADMIN,
        &json!({"username": "master", "password": MASTER_PW}).to_string(),
        tags("manual", &[]),
    );
}

/// What a refused rotation must leave behind: the refusal as a typed error and a
/// `RotationFailed` naming the field, no AWSPENDING value, no connection, no read of the master,
/// and no secret value in any text.
fn assert_refused(
    r: &TestRotator,
    name: &str,
    err: &RotationError,
    field: &str,
    planted: &[&str],
    logs: &Logs,
) {
    let log_text = logs.text();
    assert!(log_text.contains(&format!("`{field}`")), "{log_text}");
    assert!(
        matches!(err, RotationError::DestinationMismatch { field: f, .. } if *f == field),
        "{err}"
    );
    assert_eq!(err.kind(), "DestinationMismatch");
    assert!(r.db.connections().is_empty(), "{:?}", r.db.connections());
    assert!(
        !r.store
            .reads()
            .iter()
            .any(|s| s == DB_ADMIN || s == ROTATOR)
    );
    assert!(r.auth0.calls().is_empty(), "{:?}", r.auth0.calls());
    let event = events(r).pop().unwrap();
    assert_eq!(event.outcome, Outcome::Failure);
    let EventData::RotationFailed { error, .. } = &event.data else {
        panic!("{event:?}")
    };
    assert!(
        error.as_str().contains(&format!("`{field}`")),
        "{}",
        error.as_str()
    );
    let texts = [
        log_text,
        error_chain(err),
        keyward_shared::lambda::diagnostic(err).error_message,
        event.to_detail_json().unwrap(),
    ];
    for text in texts {
        for value in planted.iter().chain([&APP_PW, &MASTER_PW]) {
            assert!(!text.contains(value), "{value} in {text}");
        }
    }
    assert!(r.store.stage_value(name, AWSCURRENT).is_some());
}

#[tokio::test]
async fn a_put_that_moves_any_database_destination_field_is_refused_before_anything_is_sent() {
    let cases = [
        (
            "host",
            json!({"host": "db.attacker.example"}),
            "db.attacker.example",
        ),
        ("port", json!({"port": 6543}), "6543"),
        ("dbname", json!({"dbname": "elsewhere"}), "elsewhere"),
        (
            "masterarn",
            json!({"masterarn": "arn:aws:secretsmanager:eu-west-1:999999999999:secret:/acme/dev/payments/db-admin-ZzZzZz"}),
            "999999999999",
        ),
    ];
    for (strategy, name) in [
        ("postgres-single-user", DB),
        ("postgres-alternating-users", DB_ALT),
    ] {
        for (field, change, planted) in &cases {
            let r = rotator();
            pg_world(&r);
            let (logs, _guard) = Logs::install();
            // The value as someone with PutSecretValue left it before rotation started.
            r.store.create(
                name,
                &pg_doc("app", APP_PW, change.clone()),
                tags(strategy, &[]),
            );
            r.store.start_rotation(name, &token(1));
            let err = rotate(&r, name, &token(1)).await.unwrap_err();
            assert_refused(&r, name, &err, field, &[planted], &logs);
            assert_eq!(
                r.store.stage_value(name, AWSPENDING),
                None,
                "{strategy} {field}"
            );
        }
    }
}

#[tokio::test]
async fn a_pending_value_naming_another_host_is_refused_at_set_and_test() {
    let r = rotator();
    pg_world(&r);
    let (logs, _guard) = Logs::install();
    r.store.create(
        DB,
        &pg_doc("app", APP_PW, json!({})),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(DB, &token(1));
    let arn = r.store.describe(DB).await.unwrap().arn;
    r.store
        .put_pending(
            &arn,
            &token(1),
            &SecretString::from(pg_doc(
                "app",
                "Pending-Pa55-xyz",
                json!({"host": "evil.example"}),
            )),
            None,
        )
        .await
        .unwrap();
    for s in ["setSecret", "testSecret"] {
        let err = step(&r, DB, s, &token(1)).await.unwrap_err();
        assert_refused(
            &r,
            DB,
            &err,
            "host",
            &["evil.example", "Pending-Pa55-xyz"],
            &logs,
        );
    }
    assert_eq!(r.db.passwords.lock().unwrap()["app"], APP_PW);
}

#[tokio::test]
async fn alternating_users_log_in_as_the_declared_master_at_the_declared_endpoint() {
    let r = rotator();
    pg_world(&r);
    r.store.create(
        DB_ALT,
        &pg_doc("app", APP_PW, json!({"masterarn": master_arn()})),
        tags("postgres-alternating-users", &[]),
    );
    r.store.start_rotation(DB_ALT, &token(1));
    rotate(&r, DB_ALT, &token(1)).await.unwrap();
    let current = PgSecret::parse("c", &r.store.stage_value(DB_ALT, AWSCURRENT).unwrap()).unwrap();
    assert_eq!(current.username, "app_clone");
    let connections = r.db.connections();
    assert!(
        connections
            .iter()
            .all(|(c, roots)| c.ends_with("@db.internal:5432/app") && *roots == Roots::Pinned),
        "{connections:?}"
    );
    assert_eq!(connections[0].0, "master@db.internal:5432/app");
    // The master is read once, in setSecret, after the checks.
    assert_eq!(r.store.reads().iter().filter(|s| *s == DB_ADMIN).count(), 1);

    // Without `masterarn` in the value the declared master is used.
    let r = rotator();
    pg_world(&r);
    r.store.create(
        DB_ALT,
        &pg_doc("app", APP_PW, json!({})),
        tags("postgres-alternating-users", &[]),
    );
    r.store.start_rotation(DB_ALT, &token(1));
    rotate(&r, DB_ALT, &token(1)).await.unwrap();
}

#[tokio::test]
async fn a_master_secret_naming_another_host_or_port_is_refused() {
    for (field, master) in [
        (
            "host",
            json!({"username": "master", "password": MASTER_PW, "host": "db.attacker.example"}),
        ),
        (
            "port",
            json!({"username": "master", "password": MASTER_PW, "host": HOST, "port": 15432}),
        ),
    ] {
        let r = rotator();
        pg_world(&r);
        r.store
            .create(DB_ADMIN, &master.to_string(), tags("manual", &[]));
        r.store.create(
            DB_ALT,
            &pg_doc("app", APP_PW, json!({"masterarn": master_arn()})),
            tags("postgres-alternating-users", &[]),
        );
        r.store.start_rotation(DB_ALT, &token(1));
        step(&r, DB_ALT, "createSecret", &token(1)).await.unwrap();
        let err = step(&r, DB_ALT, "setSecret", &token(1)).await.unwrap_err();
        assert!(
            matches!(&err, RotationError::DestinationMismatch { which: "master secret's value", field: f, .. } if *f == field),
            "{err}"
        );
        assert!(r.db.connections().is_empty(), "{:?}", r.db.connections());
        let text = events(&r).pop().unwrap().to_detail_json().unwrap();
        assert!(
            text.contains(&format!("`{field}`"))
                && !text.contains("attacker")
                && !text.contains(MASTER_PW),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_undeclared_destination_or_a_disagreeing_strategy_is_refused() {
    let r = rotator();
    pg_world(&r);
    for name in [
        "/acme/dev/payments/db-undeclared",
        "/acme/dev/payments/not-in-manifest",
        "not-a-keyward-name",
    ] {
        r.store.create(
            name,
            &pg_doc("app", APP_PW, json!({})),
            tags("postgres-single-user", &[]),
        );
        r.store.start_rotation(name, &token(1));
        let err = rotate(&r, name, &token(1)).await.unwrap_err();
        assert!(
            matches!(err, RotationError::DestinationUndeclared { .. }),
            "{name}: {err}"
        );
        assert_eq!(err.kind(), "DestinationUndeclared");
        assert_eq!(r.store.stage_value(name, AWSPENDING), None);
    }
    // Tags claiming single user for a secret the manifest declares as alternating users.
    r.store.create(
        DB_ALT,
        &pg_doc("app", APP_PW, json!({})),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(DB_ALT, &token(1));
    let err = rotate(&r, DB_ALT, &token(1)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::StrategyDisagrees { .. }),
        "{err}"
    );
    assert!(r.db.connections().is_empty());
    assert!(!r.store.reads().iter().any(|s| s == DB_ADMIN));
}

#[tokio::test]
async fn without_a_ca_bundle_only_opted_out_secrets_use_the_system_trust_store() {
    let r = rotator_with(
        FakeAuth0::default(),
        Settings {
            db_ca_bundle: false,
            ..settings()
        },
    );
    pg_world(&r);
    r.store.create(
        DB,
        &pg_doc("app", APP_PW, json!({})),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(DB, &token(1));
    let err = rotate(&r, DB, &token(1)).await.unwrap_err();
    assert!(matches!(err, RotationError::NoCaBundle { .. }), "{err}");
    assert!(err.to_string().contains("KEYWARD_DB_CA_BUNDLE"), "{err}");
    assert!(r.db.connections().is_empty());
    assert_eq!(r.store.stage_value(DB, AWSPENDING), None);

    let r = rotator_with(
        FakeAuth0::default(),
        Settings {
            db_ca_bundle: false,
            db_system_trust: BTreeSet::from([DB.to_owned()]),
            ..settings()
        },
    );
    pg_world(&r);
    r.store.create(
        DB,
        &pg_doc("app", APP_PW, json!({})),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(DB, &token(1));
    rotate(&r, DB, &token(1)).await.unwrap();
    assert!(
        r.db.connections()
            .iter()
            .all(|(_, roots)| *roots == Roots::System)
    );
}

#[test]
fn the_opt_out_list_holds_secret_names() {
    let env = |extra: &[(&str, &str)]| {
        let mut vars: HashMap<String, String> = [
            ("KEYWARD_EVENT_BUS", "bus"),
            ("KEYWARD_MANIFEST_S3_URI", "s3://config/manifest/"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<HashMap<_, _>>();
        vars.retain(|_, v| !v.is_empty());
        vars
    };
    let config = Config::from_env(&env(&[(
        "KEYWARD_DB_SYSTEM_TRUST_SECRETS",
        " /acme/dev/payments/db , /acme/dev/payments/db-alt,",
    )]))
    .unwrap();
    assert_eq!(config.settings.db_system_trust.len(), 2);
    assert!(!config.settings.db_ca_bundle);
    assert_eq!(config.manifest_bucket, "config");
    assert_eq!(config.manifest_prefix, "manifest/");
    let config = Config::from_env(&env(&[("KEYWARD_DB_CA_BUNDLE", "/opt/rds.pem")])).unwrap();
    assert!(config.settings.db_ca_bundle);
    assert!(Config::from_env(&env(&[("KEYWARD_DB_SYSTEM_TRUST_SECRETS", "*")])).is_err());
    let mut no_manifest = env(&[]);
    no_manifest.remove("KEYWARD_MANIFEST_S3_URI");
    assert!(Config::from_env(&no_manifest).is_err());
}

// ---------------------------------------------------------------------------------------------
// Auth0 without a gap.

const APP_SECRET: &str = "app-secret-initial-0123456789";
const ROTATOR_SECRET: &str = "rotator-secret-0123456789";

fn rotator_arn() -> String {
    format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{ROTATOR}-AbCdEf")
}

fn auth0_doc(changes: serde_json::Value) -> String {
    let mut doc = json!({
        "domain": DOMAIN, "client_id": "app", "client_secret": APP_SECRET,
        "management_secret_arn": rotator_arn(), "audience": "https://api.acme.example/",
    });
    if let (serde_json::Value::Object(doc), serde_json::Value::Object(changes)) =
        (&mut doc, changes)
    {
        doc.extend(changes);
    }
    doc.to_string()
}

fn auth0_rotator() -> TestRotator {
    let r = rotator_with(
        FakeAuth0::with_clients(&[("app", APP_SECRET), ("rotator", ROTATOR_SECRET)]),
        settings(),
    );
    r.store.create(
        ROTATOR,
        &json!({"client_id": "rotator", "client_secret": ROTATOR_SECRET}).to_string(),
        tags("manual", &[]),
    );
    r.store
        .create(M2M, &auth0_doc(json!({})), tags("auth0-client-secret", &[]));
    r.store.start_rotation(M2M, &token(1));
    r
}

fn current_client_secret(r: &TestRotator) -> String {
    let current: serde_json::Value =
        serde_json::from_str(&r.store.stage_value(M2M, AWSCURRENT).unwrap()).unwrap();
    current["client_secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn auth0_rotation_stores_first_then_sets_the_same_secret_then_tests_it() {
    let r = auth0_rotator();
    step(&r, M2M, "createSecret", &token(1)).await.unwrap();
    // createSecret talks to nobody but Secrets Manager and never reads the management secret.
    assert!(r.auth0.calls().is_empty(), "{:?}", r.auth0.calls());
    assert!(!r.store.reads().iter().any(|s| s == ROTATOR));
    let pending: serde_json::Value =
        serde_json::from_str(&r.store.stage_value(M2M, AWSPENDING).unwrap()).unwrap();
    let new_secret = pending["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(new_secret.len(), 64);
    assert!(
        new_secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "{new_secret}"
    );
    assert_eq!(pending["audience"], "https://api.acme.example/");
    assert_eq!(
        r.auth0.secret_of("app"),
        APP_SECRET,
        "old secret still works"
    );
    step(&r, M2M, "setSecret", &token(1)).await.unwrap();
    assert_eq!(r.auth0.secret_of("app"), new_secret);
    step(&r, M2M, "testSecret", &token(1)).await.unwrap();
    step(&r, M2M, "finishSecret", &token(1)).await.unwrap();
    assert_eq!(current_client_secret(&r), new_secret);
    assert_eq!(
        r.auth0.calls(),
        [
            "token rotator https://acme.eu.auth0.com",
            "patch app https://acme.eu.auth0.com",
            "token app https://acme.eu.auth0.com",
        ]
    );
    // A finished rotation rerun calls Auth0 no more.
    rotate(&r, M2M, &token(1)).await.unwrap();
    assert_eq!(r.auth0.calls().len(), 3);
    let json = events(&r).last().unwrap().to_detail_json().unwrap();
    for secret in [new_secret.as_str(), APP_SECRET, ROTATOR_SECRET, MGMT_TOKEN] {
        assert!(!json.contains(secret), "{json}");
    }
}

#[tokio::test]
async fn a_put_that_moves_the_auth0_domain_or_management_secret_is_refused_before_anything_is_sent()
{
    let cases = [
        (
            "domain",
            json!({"domain": "attacker.example"}),
            "attacker.example",
        ),
        (
            "domain",
            json!({"domain": "https://evil.eu.auth0.com"}),
            "evil.eu.auth0.com",
        ),
        (
            "management_secret_arn",
            json!({"management_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/dev/web/other-AbCdEf"}),
            "web/other",
        ),
    ];
    for (field, change, planted) in cases {
        let r = auth0_rotator();
        let (logs, _guard) = Logs::install();
        r.store
            .create(M2M, &auth0_doc(change), tags("auth0-client-secret", &[]));
        r.store.start_rotation(M2M, &token(1));
        let err = rotate(&r, M2M, &token(1)).await.unwrap_err();
        assert_refused(
            &r,
            M2M,
            &err,
            field,
            &[planted, APP_SECRET, ROTATOR_SECRET],
            &logs,
        );
        assert_eq!(r.store.stage_value(M2M, AWSPENDING), None);
        assert_eq!(r.auth0.secret_of("app"), APP_SECRET);
    }
    // The declared management secret by name is accepted as well as by ARN.
    let r = auth0_rotator();
    r.store.create(
        M2M,
        &auth0_doc(
            json!({"management_secret_arn": ROTATOR, "domain": "https://ACME.eu.auth0.com/"}),
        ),
        tags("auth0-client-secret", &[]),
    );
    r.store.start_rotation(M2M, &token(1));
    rotate(&r, M2M, &token(1)).await.unwrap();
}

#[tokio::test]
async fn auth0_storing_the_pending_secret_fails_nothing_reaches_auth0_and_a_retry_converges() {
    let r = auth0_rotator();
    r.store.fail_next_puts(1);
    let err = step(&r, M2M, "createSecret", &token(1)).await.unwrap_err();
    assert!(matches!(err, RotationError::Store(_)), "{err}");
    assert!(r.auth0.calls().is_empty(), "{:?}", r.auth0.calls());
    assert_eq!(r.store.stage_value(M2M, AWSPENDING), None);
    // The old secret works: Auth0 and AWSCURRENT still agree.
    assert_eq!(r.auth0.secret_of("app"), APP_SECRET);
    assert_eq!(current_client_secret(&r), APP_SECRET);
    // Secrets Manager's retry of the rotation completes it.
    rotate(&r, M2M, &token(1)).await.unwrap();
    assert_eq!(r.auth0.secret_of("app"), current_client_secret(&r));
    assert_ne!(current_client_secret(&r), APP_SECRET);
}

#[tokio::test]
async fn auth0_a_lost_patch_response_is_converged_by_the_retried_set() {
    let r = auth0_rotator();
    r.auth0.state.lock().unwrap().lose_patch_responses = 1;
    step(&r, M2M, "createSecret", &token(1)).await.unwrap();
    let pending: serde_json::Value =
        serde_json::from_str(&r.store.stage_value(M2M, AWSPENDING).unwrap()).unwrap();
    let new_secret = pending["client_secret"].as_str().unwrap().to_owned();
    let err = step(&r, M2M, "setSecret", &token(1)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::Auth0(Auth0Error::Http(_))),
        "{err}"
    );
    // Auth0 applied it; the stored pending value is the one it holds, so nothing is lost.
    assert_eq!(r.auth0.secret_of("app"), new_secret);
    // Secrets Manager retries the rotation from the start: the same value is set again.
    rotate(&r, M2M, &token(1)).await.unwrap();
    assert_eq!(current_client_secret(&r), new_secret);
    assert_eq!(r.auth0.secret_of("app"), new_secret);
    let patches = r
        .auth0
        .calls()
        .iter()
        .filter(|c| c.starts_with("patch"))
        .count();
    assert_eq!(patches, 2);
}

#[tokio::test]
async fn auth0_a_proxy_403_in_test_secret_is_a_failure_and_auth0s_own_403_is_not() {
    let r = auth0_rotator();
    step(&r, M2M, "createSecret", &token(1)).await.unwrap();
    step(&r, M2M, "setSecret", &token(1)).await.unwrap();
    r.auth0.state.lock().unwrap().proxy_403 = true;
    let err = step(&r, M2M, "testSecret", &token(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            RotationError::Auth0(Auth0Error::NotAuth0 { status: 403, .. })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), "Auth0Error");
    // finishSecret is never reached: AWSCURRENT is untouched.
    assert_eq!(current_client_secret(&r), APP_SECRET);

    // Auth0's own access_denied for a client without an API grant: the secret was accepted.
    let r = auth0_rotator();
    r.auth0.state.lock().unwrap().no_grant.push("app".into());
    rotate(&r, M2M, &token(1)).await.unwrap();
    assert_eq!(r.auth0.secret_of("app"), current_client_secret(&r));

    // A secret Auth0 keeps refusing (401) fails once the propagation wait is over.
    let r = auth0_rotator();
    step(&r, M2M, "createSecret", &token(1)).await.unwrap();
    let err = step(&r, M2M, "testSecret", &token(1)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::Auth0NotPropagated { .. }),
        "{err}"
    );
    assert_eq!(current_client_secret(&r), APP_SECRET);
}
