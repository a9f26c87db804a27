//! The rotation function's part: what rotating secrets point at (PostgreSQL over TLS with its
//! own CA, and an Auth0 tenant), real values for the secrets of those strategies, and playing
//! Secrets Manager's rotation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use keyward_shared::governance::RotationStrategy;
use keyward_shared::manifest::DeclaredSecret;
use serde_json::json;

use super::{INVOKE_TIMEOUT, LocalStack, Part};
use crate::fakes::auth0::{FakeAuth0, ROTATE_SCOPE, RunningAuth0};
use crate::postgres::PostgresCluster;

/// The database the local stack's PostgreSQL secrets log in to.
pub const APP_DATABASE: &str = "keyward_app";
/// The audience the local Auth0 clients are granted (what testSecret asks a token for).
pub const AUTH0_API_AUDIENCE: &str = "https://api.acme.example/";

pub struct Rotation {
    /// The database the PostgreSQL secrets log in to (TLS, verified against `ca_bundle`).
    pub postgres: PostgresCluster,
    pub ca_bundle: PathBuf,
    /// The Auth0 tenant the `auth0-client-secret` secrets belong to.
    pub auth0: RunningAuth0,
    /// Secret name -> Auth0 client id, for the secrets that are Auth0 clients.
    pub auth0_clients: BTreeMap<String, String>,
    _ca_dir: tempfile::TempDir,
}

impl Rotation {
    pub async fn create() -> Result<Self> {
        let ca = crate::tls::TestCa::new("keyward local stack CA")?;
        let postgres =
            PostgresCluster::start_with_tls(&ca.server_cert(&["127.0.0.1", "localhost"])?)
                .await
                .context("start PostgreSQL")?;
        let ca_dir = tempfile::tempdir()?;
        let ca_bundle = ca_dir.path().join("db-ca-bundle.pem");
        std::fs::write(&ca_bundle, ca.pem())?;
        postgres
            .connect_superuser()
            .await?
            .batch_execute(&format!("CREATE DATABASE {APP_DATABASE}"))
            .await?;
        Ok(Self {
            postgres,
            ca_bundle,
            auth0: FakeAuth0::start().await?,
            auth0_clients: BTreeMap::new(),
            _ca_dir: ca_dir,
        })
    }

    /// Credentials other secrets name, so provisioned first: PostgreSQL masters (`masterarn`)
    /// and the Auth0 rotator (`management_secret_arn`).
    pub fn is_linked_credential(secret: &DeclaredSecret) -> bool {
        secret.governance.secret_type.as_str() == "postgres-master"
            || secret.name.name().as_str() == "auth0-rotator"
    }

    /// Gives a declared secret a real value: a PostgreSQL role that exists, an Auth0 client the
    /// tenant knows, or the random password itself. `arns` holds the secrets created so far.
    pub async fn value(
        &mut self,
        declared: &DeclaredSecret,
        password: &str,
        arns: &BTreeMap<String, String>,
    ) -> Result<String> {
        let name = &declared.name;
        let env = name.env().as_str().replace('-', "_");
        let sibling = |secret: &str| {
            let sibling = format!(
                "/{}/{}/{}/{secret}",
                name.org().as_str(),
                name.env().as_str(),
                name.service().as_str()
            );
            arns.get(&sibling).cloned().with_context(|| {
                format!("{name} needs {sibling}, which the manifest does not declare")
            })
        };
        if declared.governance.secret_type.as_str() == "postgres-master" {
            return self.postgres_master(&env, password).await;
        }
        if name.name().as_str() == "auth0-rotator" {
            let id = self.auth0_client(declared, "keyward-rotator", password);
            let audience = self.auth0.management_audience();
            self.auth0.fake.grant(&id, &audience, &[ROTATE_SCOPE]);
            return Ok(json!({"client_id": id, "client_secret": password}).to_string());
        }
        let strategy = declared.governance.rotation.strategy;
        match strategy {
            RotationStrategy::PostgresSingleUser | RotationStrategy::PostgresAlternatingUsers => {
                let user = format!("{}_{env}", name.service().as_str().replace('-', "_"));
                let mut doc = self.postgres_user(&user, password).await?;
                if strategy == RotationStrategy::PostgresAlternatingUsers {
                    let master = format!("keyward_admin_{env}");
                    self.sql(&format!("GRANT {user} TO {master} WITH ADMIN OPTION"))
                        .await?;
                    doc["masterarn"] = sibling("db-admin")?.into();
                }
                Ok(doc.to_string())
            }
            RotationStrategy::Auth0ClientSecret => {
                let id = self.auth0_client(declared, name.name().as_str(), password);
                self.auth0
                    .fake
                    .grant(&id, AUTH0_API_AUDIENCE, &["read:orders"]);
                let doc = json!({
                    "domain": self.auth0.domain(),
                    "client_id": id,
                    "client_secret": password,
                    "management_secret_arn": sibling("auth0-rotator")?,
                    "audience": AUTH0_API_AUDIENCE,
                });
                Ok(doc.to_string())
            }
            RotationStrategy::Random | RotationStrategy::Manual => Ok(password.to_owned()),
        }
    }

    async fn sql(&self, statement: &str) -> Result<()> {
        let admin = self.postgres.connect_superuser().await?;
        admin.batch_execute(statement).await?;
        Ok(())
    }

    async fn postgres_master(&self, env: &str, password: &str) -> Result<String> {
        let user = format!("keyward_admin_{env}");
        let literal = quote_literal(password);
        self.sql(&format!(
            "CREATE ROLE {user} LOGIN CREATEROLE PASSWORD {literal}"
        ))
        .await?;
        Ok(json!({"username": user, "password": password}).to_string())
    }

    /// A login role that may connect to the app database; its secret document.
    async fn postgres_user(&self, user: &str, password: &str) -> Result<serde_json::Value> {
        let literal = quote_literal(password);
        self.sql(&format!("CREATE ROLE {user} LOGIN PASSWORD {literal}"))
            .await?;
        self.sql(&format!(
            "GRANT CONNECT ON DATABASE {APP_DATABASE} TO {user}"
        ))
        .await?;
        Ok(json!({
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.postgres.port,
            "username": user,
            "password": password,
            "dbname": APP_DATABASE,
        }))
    }

    /// An application of the tenant, remembered as the secret's client.
    fn auth0_client(&mut self, declared: &DeclaredSecret, app: &str, password: &str) -> String {
        let id = self.auth0.fake.add_client(app, password);
        self.auth0_clients
            .insert(declared.name.to_string(), id.clone());
        id
    }
}

/// A PostgreSQL string literal: single quotes, inner quotes doubled (standard strings are on).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Part for Rotation {
    fn env(&self, var: &str) -> Option<String> {
        match var {
            "KEYWARD_DB_CA_BUNDLE" => Some(self.ca_bundle.display().to_string()),
            // Every database here is verified against the bundle: no secret opts out.
            "KEYWARD_DB_SYSTEM_TRUST_SECRETS" => Some(String::new()),
            _ => None,
        }
    }
}

impl Rotation {
    /// The manifest as this stack declares it: its PostgreSQL cluster and Auth0 tenant where
    /// the sample declares the organisation's.
    pub fn localise_manifest(&self, text: String) -> String {
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let indent = &line[..line.len() - line.trim_start().len()];
            let local = match line.trim_start().split_once(": ") {
                Some(("host", h)) if h.ends_with(".acme.internal") => {
                    Some(format!("{indent}host: 127.0.0.1"))
                }
                Some(("port", "5432")) => Some(format!("{indent}port: {}", self.postgres.port)),
                Some(("dbname", "payments")) => Some(format!("{indent}dbname: {APP_DATABASE}")),
                Some(("domain", d)) if d.ends_with(".auth0.com") => {
                    Some(format!("{indent}domain: {}", self.auth0.domain()))
                }
                _ => None,
            };
            out.push_str(local.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

impl LocalStack {
    /// Rotates a secret as Secrets Manager does: `RotateSecret` (moto, Lambda execution off)
    /// creates the AWSPENDING version, then the rotation function gets each step through its
    /// Runtime API with the secret's name as `SecretId` (what moto sends; AWS sends the ARN).
    pub async fn rotate(&mut self, secret: &str, token: &str) -> Result<()> {
        self.moto.start_rotation(secret, token).await?;
        let function = self.function("RotationFunction")?;
        let mut outcome = Ok(());
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            let payload = json!({"Step": step, "SecretId": secret, "ClientRequestToken": token});
            if let Err(err) = function.invoke(&payload, INVOKE_TIMEOUT).await {
                outcome = Err(anyhow::anyhow!(
                    "{step}: {}: {}",
                    err.error_type,
                    err.error_message
                ));
                break;
            }
        }
        let summary = match &outcome {
            Ok(()) => "rotated".to_owned(),
            Err(err) => format!("failed: {err}"),
        };
        self.record(
            &format!("RotateSecret {secret}"),
            "Secrets Manager rotation",
            "RotationFunction",
            summary,
        );
        // moto workaround: clear AWSPENDING so the next RotateSecret is accepted (AWS does this).
        self.moto.strip_pending(secret).await?;
        outcome
    }
}
