//! Protocol tests against in-memory ports: the guard, re-entrancy, races, governance errors and
//! what reaches events. The strategies' real systems (moto, PostgreSQL, an Auth0 fake over HTTP)
//! are exercised in `integration/tests/rotation.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

use keyward_shared::events::{EventData, Outcome};
use keyward_shared::ports::InMemoryEventPublisher;
use keyward_shared::tags::Tag;
use serde_json::json;

use super::*;
use crate::store::InMemoryStore;

const NAME: &str = "/acme/dev/web/session-key";

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

/// Users and passwords of a pretend database; the in-memory side of [`Database`].
#[derive(Default)]
struct FakeDatabase {
    passwords: Mutex<HashMap<String, String>>,
}

impl Database for FakeDatabase {
    async fn check_login(&self, login: &PgLogin) -> Result<(), DbError> {
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

/// Auth0 is exercised over HTTP in the integration tests; here it must not be called at all.
struct NoAuth0;

impl Auth0Api for NoAuth0 {
    async fn token(
        &self,
        _: &Tenant,
        client_id: &str,
        _: &SecretString,
        _: &str,
    ) -> Result<SecretString, Auth0Error> {
        Err(Auth0Error::Unauthorized {
            client_id: client_id.to_owned(),
        })
    }
    async fn rotate_client_secret(
        &self,
        _: &Tenant,
        _: &SecretString,
        client_id: &str,
    ) -> Result<SecretString, Auth0Error> {
        Err(Auth0Error::NoSuchClient {
            client_id: client_id.to_owned(),
        })
    }
}

type TestRotator = Rotator<InMemoryStore, FakeDatabase, NoAuth0, InMemoryEventPublisher>;

fn rotator() -> TestRotator {
    Rotator {
        store: InMemoryStore::default(),
        db: FakeDatabase::default(),
        auth0: NoAuth0,
        publisher: InMemoryEventPublisher::default(),
        settings: Settings::default(),
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
        .create(NAME, secret, tags("postgres-single-user", &[]));
    r.store.start_rotation(NAME, &token(1));
    let err = step(&r, NAME, "createSecret", &token(1)).await.unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("not valid JSON"), "{text}");
    let diagnostic = keyward_shared::lambda::diagnostic(&err);
    let event = events(&r).pop().unwrap().to_detail_json().unwrap();
    for output in [text, diagnostic.error_message, event] {
        assert!(!output.contains("Tr0ub4dor"), "{output}");
    }
    assert_eq!(r.store.stage_value(NAME, AWSCURRENT).unwrap(), secret);
}

#[tokio::test]
async fn single_user_rotation_changes_the_password_as_the_user() {
    let r = rotator();
    let doc_for = |user: &str, pw: &str| {
        json!({"engine": "postgres", "host": "db", "port": 5432, "username": user, "password": pw, "dbname": "app"})
            .to_string()
    };
    let doc = |pw: &str| doc_for("app", pw);
    r.db.passwords
        .lock()
        .unwrap()
        .insert("app".into(), "first-password-123".into());
    r.store.create(
        NAME,
        &doc("first-password-123"),
        tags("postgres-single-user", &[]),
    );
    r.store.start_rotation(NAME, &token(1));
    step(&r, NAME, "createSecret", &token(1)).await.unwrap();
    step(&r, NAME, "setSecret", &token(1)).await.unwrap();
    // The database already holds the pending password: a retried setSecret is a no-op.
    step(&r, NAME, "setSecret", &token(1)).await.unwrap();
    step(&r, NAME, "testSecret", &token(1)).await.unwrap();
    step(&r, NAME, "finishSecret", &token(1)).await.unwrap();
    let current = PgSecret::parse("c", &r.store.stage_value(NAME, AWSCURRENT).unwrap()).unwrap();
    assert_eq!(
        r.db.passwords.lock().unwrap()["app"],
        current.password.expose_secret()
    );
    // A pending document naming another user is refused (confused-deputy guard).
    r.store.start_rotation(NAME, &token(2));
    r.store
        .put_pending(
            &r.store.describe(NAME).await.unwrap().arn,
            &token(2),
            &SecretString::from(doc_for("admin", "x-1234567890")),
            None,
        )
        .await
        .unwrap();
    let err = step(&r, NAME, "setSecret", &token(2)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::IdentityChanged { field: "username" }),
        "{err}"
    );
}
