//! The database port and its PostgreSQL adapter.
//!
//! - TLS is `verify-full` unless a secret says `sslmode: disable` *and* the function allows
//!   plaintext; a server without TLS is an error, never a silent downgrade. Roots come from the
//!   configured CA bundle (the RDS bundle on AWS); the process's public roots only for a login the
//!   rotation marked [`Roots::System`] (a secret the operator opted out by name).
//! - Connections are built from typed fields, never a connection string, so no password
//!   character can break one; passwords reach the server only as SCRAM verifiers.
//! - Alternating users: the clone is a member of the base user and its sessions act as the base
//!   user (`ALTER ROLE clone SET role = base`), so every object either creates is owned by the
//!   base user and readable by both; memberships and object privileges held by the current user
//!   are copied to the pending one on every rotation, and checked afterwards.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tls::{TlsError, TrustRoots};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

use crate::documents::TlsMode;
use crate::scram;

/// Everything needed to log in as one user.
#[derive(Debug, Clone)]
pub struct PgLogin {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub username: String,
    pub password: SecretString,
    pub tls: TlsMode,
    /// Which certificate authorities verify the server.
    pub roots: Roots,
}

/// The trust anchors of one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The pinned CA bundle (`KEYWARD_DB_CA_BUNDLE`); an error when none is configured.
    Pinned,
    /// The public roots every connection of the process trusts (`keyward_shared::tls`: the
    /// built-in Mozilla anchors, or `SSL_CERT_FILE`): any publicly trusted certificate for the
    /// host passes. Only for secrets named in `KEYWARD_DB_SYSTEM_TRUST_SECRETS`.
    System,
}

impl PgLogin {
    fn endpoint(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }
}

/// The two users of an alternating pair, and which is which this rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternatingUsers {
    pub base: String,
    pub clone: String,
    pub current: String,
    pub pending: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "PostgreSQL at {endpoint} refused the login of `{user}` (wrong password or no such role)"
    )]
    Auth { endpoint: String, user: String },
    #[error("cannot reach PostgreSQL at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: SafeText },
    #[error("TLS to PostgreSQL at {endpoint} failed (verify-full): {message}")]
    Tls { endpoint: String, message: SafeText },
    #[error("PostgreSQL at {endpoint}: {message}")]
    Sql { endpoint: String, message: SafeText },
    #[error(
        "the secret asks for a plaintext connection (sslmode disable) to {endpoint}; set KEYWARD_DB_ALLOW_PLAINTEXT=true on the rotation function to allow it"
    )]
    PlaintextRefused { endpoint: String },
    #[error("{0}")]
    Setup(SafeText),
    #[error(transparent)]
    Password(#[from] scram::ScramError),
    #[error(
        "after copying grants, `{pending}` still lacks {missing}: the master user cannot grant them (it needs ownership or GRANT OPTION)"
    )]
    GrantsNotCopied { pending: String, missing: String },
}

impl DbError {
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Auth { .. })
    }
}

pub trait Database: Send + Sync {
    /// Logs in and runs a query.
    fn check_login(&self, login: &PgLogin) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Logged in as `login`, sets the same user's password (single-user rotation).
    fn set_own_password(
        &self,
        login: &PgLogin,
        new_password: &SecretString,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Logged in as the master user: creates or updates the pending user and copies grants.
    fn prepare_alternate(
        &self,
        master: &PgLogin,
        users: &AlternatingUsers,
        new_password: &SecretString,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// Adapter settings, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct PostgresConfig {
    /// PEM file of trusted CAs (`KEYWARD_DB_CA_BUNDLE`). Without it only [`Roots::System`]
    /// logins connect over TLS.
    pub ca_bundle: Option<PathBuf>,
    /// `KEYWARD_DB_ALLOW_PLAINTEXT`: whether `sslmode: disable` in a secret is honoured.
    pub allow_plaintext: bool,
    pub connect_timeout: Duration,
}

pub struct Postgres {
    config: PostgresConfig,
    /// Loaded on first use: functions that never rotate a database never read the bundle.
    pinned: OnceLock<Result<Arc<rustls::ClientConfig>, TlsError>>,
    redactor: Redactor,
}

impl Postgres {
    pub fn new(config: PostgresConfig, redactor: Redactor) -> Self {
        Self {
            config,
            pinned: OnceLock::new(),
            redactor,
        }
    }

    fn tls_config(&self, roots: Roots) -> Result<Arc<rustls::ClientConfig>, DbError> {
        let loaded = match (roots, self.config.ca_bundle.as_ref()) {
            (Roots::Pinned, None) => {
                return Err(DbError::Setup(SafeText::fixed(
                    "no CA bundle is configured (KEYWARD_DB_CA_BUNDLE); only secrets named in KEYWARD_DB_SYSTEM_TRUST_SECRETS may use the system trust store",
                )));
            }
            (Roots::Pinned, Some(bundle)) => self
                .pinned
                .get_or_init(|| {
                    TrustRoots::Bundle(bundle.clone())
                        .client_config()
                        .map(Arc::new)
                })
                .clone(),
            (Roots::System, _) => keyward_shared::tls::process_client_config(),
        };
        loaded.map_err(|e| DbError::Setup(self.redactor.safe(&e.to_string())))
    }

    async fn connect(&self, login: &PgLogin) -> Result<tokio_postgres::Client, DbError> {
        self.redactor.register(&login.password);
        let endpoint = login.endpoint();
        let mut config = tokio_postgres::Config::new();
        config
            .host(&login.host)
            .port(login.port)
            .dbname(&login.dbname)
            .user(&login.username)
            .password(login.password.expose_secret())
            .application_name("keyward-rotation")
            .connect_timeout(self.config.connect_timeout);
        let result = match login.tls {
            TlsMode::VerifyFull => {
                // Require: a server that does not speak TLS is an error, not a plaintext session.
                config.ssl_mode(SslMode::Require);
                let connector = tls::MakeRustlsConnect::new(self.tls_config(login.roots)?);
                config.connect(connector).await.map(|(client, connection)| {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                })
            }
            TlsMode::Disable => {
                if !self.config.allow_plaintext {
                    return Err(DbError::PlaintextRefused { endpoint });
                }
                tracing::warn!(endpoint = %endpoint, "connecting to PostgreSQL without TLS, as the secret and KEYWARD_DB_ALLOW_PLAINTEXT allow");
                config.ssl_mode(SslMode::Disable);
                config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map(|(client, connection)| {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        client
                    })
            }
        };
        result.map_err(|e| self.classify(&endpoint, &login.username, &e))
    }

    fn classify(&self, endpoint: &str, user: &str, err: &tokio_postgres::Error) -> DbError {
        if let Some(db) = err.as_db_error()
            && (*db.code() == SqlState::INVALID_PASSWORD
                || *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
        {
            return DbError::Auth {
                endpoint: endpoint.to_owned(),
                user: user.to_owned(),
            };
        }
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        let mut is_tls = false;
        let mut is_io = false;
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            is_tls |= inner.downcast_ref::<rustls::Error>().is_some();
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                is_io = true;
                is_tls |= io
                    .get_ref()
                    .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
            }
            source = inner.source();
        }
        let message = self.redactor.safe(&text);
        let endpoint = endpoint.to_owned();
        if is_tls || text.contains("TLS") || text.contains("certificate") {
            DbError::Tls { endpoint, message }
        } else if err.as_db_error().is_some() {
            DbError::Sql { endpoint, message }
        } else if is_io || text.contains("timed out") || text.contains("connect") {
            DbError::Unreachable { endpoint, message }
        } else {
            DbError::Sql { endpoint, message }
        }
    }

    fn sql_error(&self, login: &PgLogin, err: &tokio_postgres::Error) -> DbError {
        self.classify(&login.endpoint(), &login.username, err)
    }
}

/// `"name"` with embedded quotes doubled (PostgreSQL's quote_ident).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled; with `standard_conforming_strings` (on since 9.1)
/// backslashes are ordinary characters.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Privilege names PostgreSQL's `aclexplode` reports; anything else is never spliced into SQL.
const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "USAGE",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "EXECUTE",
    "MAINTAIN",
];

/// Objects with ACLs, how to name them in GRANT, and how to check the effective privilege.
const ACL_SOURCES: &[(&str, &str)] = &[
    (
        // Tables, views, materialized views, foreign and partitioned tables.
        "SELECT 'TABLE', c.oid::regclass::text, a.privilege_type, a.is_grantable,
                has_table_privilege($2, c.oid, a.privilege_type)
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
          WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
            AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
        "tables",
    ),
    (
        "SELECT 'SEQUENCE', c.oid::regclass::text, a.privilege_type, a.is_grantable,
                has_sequence_privilege($2, c.oid, a.privilege_type)
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
          WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
            AND c.relkind = 'S'",
        "sequences",
    ),
    (
        "SELECT 'SCHEMA', quote_ident(n.nspname), a.privilege_type, a.is_grantable,
                has_schema_privilege($2, n.oid, a.privilege_type)
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
          WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        "schemas",
    ),
    (
        "SELECT 'DATABASE', quote_ident(d.datname), a.privilege_type, a.is_grantable,
                has_database_privilege($2, d.oid, a.privilege_type)
           FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
          WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        "databases",
    ),
    (
        "SELECT 'FUNCTION', p.oid::regprocedure::text, a.privilege_type, a.is_grantable,
                has_function_privilege($2, p.oid, a.privilege_type)
           FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
          WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        "functions",
    ),
];

impl Database for Postgres {
    async fn check_login(&self, login: &PgLogin) -> Result<(), DbError> {
        let client = self.connect(login).await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(|e| self.sql_error(login, &e))
    }

    async fn set_own_password(
        &self,
        login: &PgLogin,
        new_password: &SecretString,
    ) -> Result<(), DbError> {
        self.redactor.register(new_password);
        let verifier = scram::verifier(new_password.expose_secret())?;
        let client = self.connect(login).await?;
        client
            .batch_execute(&format!(
                "ALTER ROLE CURRENT_USER WITH PASSWORD {}",
                quote_literal(&verifier)
            ))
            .await
            .map_err(|e| self.sql_error(login, &e))
    }

    async fn prepare_alternate(
        &self,
        master: &PgLogin,
        users: &AlternatingUsers,
        new_password: &SecretString,
    ) -> Result<(), DbError> {
        self.redactor.register(new_password);
        let verifier = scram::verifier(new_password.expose_secret())?;
        let mut client = self.connect(master).await?;
        let err = |e: tokio_postgres::Error| self.sql_error(master, &e);
        let tx = client.transaction().await.map_err(err)?;
        let pending = quote_ident(&users.pending);
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&users.pending],
            )
            .await
            .map_err(err)?
            .is_some();
        let set_password = if exists {
            format!(
                "ALTER ROLE {pending} WITH LOGIN PASSWORD {}",
                quote_literal(&verifier)
            )
        } else {
            format!(
                "CREATE ROLE {pending} WITH LOGIN PASSWORD {}",
                quote_literal(&verifier)
            )
        };
        tx.batch_execute(&set_password).await.map_err(err)?;

        // Re-asserted every rotation: the clone acts as the base user, so both read everything.
        let base = quote_ident(&users.base);
        let clone = quote_ident(&users.clone);
        let already_member = tx
            .query_opt(
                "SELECT 1 FROM pg_auth_members m
                   JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                  WHERE r.rolname = $1 AND u.rolname = $2",
                &[&users.base, &users.clone],
            )
            .await
            .map_err(err)?
            .is_some();
        if !already_member {
            tx.batch_execute(&format!("GRANT {base} TO {clone}"))
                .await
                .map_err(err)?;
        }
        tx.batch_execute(&format!(
            "ALTER ROLE {clone} SET role = {}",
            quote_literal(&users.base)
        ))
        .await
        .map_err(err)?;

        // Role memberships of the current user, copied to the pending one.
        let memberships = tx
            .query(
                "SELECT r.rolname, m.admin_option FROM pg_auth_members m
                   JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                  WHERE u.rolname = $1",
                &[&users.current],
            )
            .await
            .map_err(err)?;
        for row in memberships {
            let role: String = row.get(0);
            let admin: bool = row.get(1);
            if role == users.pending {
                continue;
            }
            let with_admin = if admin { " WITH ADMIN OPTION" } else { "" };
            tx.batch_execute(&format!(
                "GRANT {} TO {pending}{with_admin}",
                quote_ident(&role)
            ))
            .await
            .map_err(err)?;
        }

        // Object privileges granted directly to the current user.
        let mut missing = Vec::new();
        for (query, _) in ACL_SOURCES {
            let rows = tx
                .query(*query, &[&users.current, &users.pending])
                .await
                .map_err(err)?;
            for row in rows {
                let kind: String = row.get(0);
                let object: String = row.get(1);
                let privilege: String = row.get(2);
                let grantable: bool = row.get(3);
                let held: bool = row.get(4);
                let Some(privilege) = PRIVILEGES.iter().find(|p| **p == privilege) else {
                    continue;
                };
                if !held || grantable {
                    let with_grant = if grantable { " WITH GRANT OPTION" } else { "" };
                    tx.batch_execute(&format!(
                        "GRANT {privilege} ON {kind} {object} TO {pending}{with_grant}"
                    ))
                    .await
                    .map_err(err)?;
                }
            }
            // What still is not held after the grants (a master without GRANT OPTION gets a
            // warning from PostgreSQL, not an error).
            for row in tx
                .query(*query, &[&users.current, &users.pending])
                .await
                .map_err(err)?
            {
                let held: bool = row.get(4);
                if !held {
                    let kind: String = row.get(0);
                    let object: String = row.get(1);
                    let privilege: String = row.get(2);
                    missing.push(format!("{privilege} on {} {object}", kind.to_lowercase()));
                }
            }
        }
        if !missing.is_empty() {
            let shown = missing.len().min(5);
            let more = missing.len() - shown;
            let mut list = missing[..shown].join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            // Dropping the transaction rolls everything back: the pending user stays as it was.
            return Err(DbError::GrantsNotCopied {
                pending: users.pending.clone(),
                missing: list,
            });
        }
        tx.commit().await.map_err(err)
    }
}

/// tokio-postgres over tokio-rustls: the connector verifies the chain and the host name (or IP
/// address) tokio-postgres passes in, which is what `verify-full` means.
mod tls {
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

    #[derive(Clone)]
    pub struct MakeRustlsConnect {
        config: Arc<rustls::ClientConfig>,
    }

    impl MakeRustlsConnect {
        pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
            Self { config }
        }
    }

    impl<S> MakeTlsConnect<S> for MakeRustlsConnect
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = RustlsStream<S>;
        type TlsConnect = RustlsConnect;
        type Error = io::Error;

        fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
            let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{domain}` is not a valid TLS server name"),
                )
            })?;
            Ok(RustlsConnect {
                connector: tokio_rustls::TlsConnector::from(self.config.clone()),
                name,
            })
        }
    }

    pub struct RustlsConnect {
        connector: tokio_rustls::TlsConnector,
        name: ServerName<'static>,
    }

    impl<S> TlsConnect<S> for RustlsConnect
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = RustlsStream<S>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            Box::pin(async move {
                self.connector
                    .connect(self.name, stream)
                    .await
                    .map(RustlsStream)
            })
        }
    }

    pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

    impl<S> tokio_postgres::tls::TlsStream for RustlsStream<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        fn channel_binding(&self) -> ChannelBinding {
            // SCRAM without channel binding: the TLS layer already authenticates the server.
            ChannelBinding::none()
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes_and_nothing_else() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal(r"it's \ fine"), r"'it''s \ fine'");
    }

    /// A login to a port nothing listens on, pinned to the (absent) bundle.
    fn unreachable_login(tls: TlsMode) -> PgLogin {
        PgLogin {
            host: "127.0.0.1".into(),
            port: 1,
            dbname: "x".into(),
            username: "app".into(),
            password: SecretString::from("pw-never-shown".to_owned()),
            tls,
            roots: Roots::Pinned,
        }
    }

    #[tokio::test]
    async fn plaintext_needs_the_function_to_allow_it() {
        let pg = Postgres::new(PostgresConfig::default(), Redactor::new());
        let login = unreachable_login(TlsMode::Disable);
        let err = pg.check_login(&login).await.unwrap_err();
        assert!(matches!(err, DbError::PlaintextRefused { .. }), "{err}");
    }

    #[tokio::test]
    async fn pinned_roots_need_a_bundle() {
        let pg = Postgres::new(PostgresConfig::default(), Redactor::new());
        let login = unreachable_login(TlsMode::VerifyFull);
        let err = pg.check_login(&login).await.unwrap_err().to_string();
        assert!(err.contains("KEYWARD_DB_CA_BUNDLE"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_ca_bundle_is_named() {
        let pg = Postgres::new(
            PostgresConfig {
                ca_bundle: Some(PathBuf::from("/nonexistent/rds-bundle.pem")),
                ..PostgresConfig::default()
            },
            Redactor::new(),
        );
        let login = unreachable_login(TlsMode::VerifyFull);
        let err = pg.check_login(&login).await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/rds-bundle.pem"), "{err}");
    }
}
