//! The JSON documents rotated secrets hold, read without ever echoing a value: serde's own
//! messages quote the offending input (`invalid type: string "hunter2"`), so errors here name the
//! field and the problem only.
//!
//! - PostgreSQL (`postgres-*` strategies): the AWS RDS shape `{engine, host, port, username,
//!   password, dbname, masterarn}` plus keyward's `sslmode` (`verify-full`, the default, or
//!   `disable`). Unknown fields are kept as they are. `host`, `port`, `dbname` and `masterarn`
//!   (optional; the master's ARN or name) must equal the manifest's `rotation.database`.
//! - Master secret (alternating users): `{username, password}` and optionally `host`, `port`
//!   (RDS-managed master secrets hold only the first two).
//! - Auth0 (`auth0-client-secret`): `{domain, client_id, client_secret, management_secret_arn,
//!   audience?}`; `domain` and `management_secret_arn` (its ARN or name) must equal the
//!   manifest's `rotation.auth0`. The management secret holds the rotator application's
//!   `{client_id, client_secret}`.

use secrecy::SecretString;
use serde_json::{Map, Value};

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_PG_IDENTIFIER: usize = 63;
pub const CLONE_SUFFIX: &str = "_clone";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the {which} value is not valid JSON (line {line}, column {column})")]
    NotJson {
        which: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the {which} value is not a JSON object")]
    NotAnObject { which: &'static str },
    #[error("the {which} value lacks `{field}`")]
    Missing {
        which: &'static str,
        field: &'static str,
    },
    #[error("the {which} value's `{field}` {problem}")]
    Invalid {
        which: &'static str,
        field: &'static str,
        problem: &'static str,
    },
}

/// Parses a secret value as a JSON object, with an error that quotes nothing from it.
pub fn object(which: &'static str, text: &str) -> Result<Map<String, Value>, DocumentError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DocumentError::NotAnObject { which }),
        Err(e) => Err(DocumentError::NotJson {
            which,
            line: e.line(),
            column: e.column(),
        }),
    }
}

fn string<'a>(
    which: &'static str,
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, DocumentError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(DocumentError::Missing { which, field }),
        Some(Value::String(s)) if s.is_empty() => Err(DocumentError::Invalid {
            which,
            field,
            problem: "is empty",
        }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DocumentError::Invalid {
            which,
            field,
            problem: "is not a string",
        }),
    }
}

fn optional_string<'a>(
    which: &'static str,
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, DocumentError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        _ => string(which, map, field).map(Some),
    }
}

fn port(which: &'static str, map: &Map<String, Value>) -> Result<Option<u16>, DocumentError> {
    let invalid = DocumentError::Invalid {
        which,
        field: "port",
        problem: "is not a port number (1-65535)",
    };
    match map.get("port") {
        None | Some(Value::Null) => Ok(None),
        // The RDS templates write the port as a number; people write it as a string too.
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or(invalid),
        Some(Value::String(s)) => s
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or(invalid),
        Some(_) => Err(invalid),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS required, certificate chain and host name verified.
    VerifyFull,
    /// Plaintext; refused unless the function is configured to allow it.
    Disable,
}

/// A PostgreSQL credential secret.
#[derive(Debug, Clone)]
pub struct PgSecret {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: SecretString,
    pub dbname: String,
    pub masterarn: Option<String>,
    pub tls: TlsMode,
    /// The whole document, so a new version keeps fields keyward does not know.
    document: Map<String, Value>,
}

impl PgSecret {
    pub fn parse(which: &'static str, text: &str) -> Result<Self, DocumentError> {
        let map = object(which, text)?;
        let engine = string(which, &map, "engine")?;
        if !matches!(engine, "postgres" | "aurora-postgresql") {
            return Err(DocumentError::Invalid {
                which,
                field: "engine",
                problem: "is not `postgres` or `aurora-postgresql`",
            });
        }
        let username = string(which, &map, "username")?;
        if username.len() > MAX_PG_IDENTIFIER {
            return Err(DocumentError::Invalid {
                which,
                field: "username",
                problem: "is longer than PostgreSQL's 63-byte identifier limit",
            });
        }
        let tls = match optional_string(which, &map, "sslmode")? {
            None | Some("verify-full") => TlsMode::VerifyFull,
            Some("disable") => TlsMode::Disable,
            Some(_) => {
                return Err(DocumentError::Invalid {
                    which,
                    field: "sslmode",
                    problem: "must be `verify-full` (the default) or `disable`; keyward never negotiates down to plaintext",
                });
            }
        };
        Ok(Self {
            host: string(which, &map, "host")?.to_owned(),
            port: port(which, &map)?.unwrap_or(5432),
            username: username.to_owned(),
            password: SecretString::from(string(which, &map, "password")?.to_owned()),
            dbname: optional_string(which, &map, "dbname")?
                .unwrap_or("postgres")
                .to_owned(),
            masterarn: optional_string(which, &map, "masterarn")?.map(str::to_owned),
            tls,
            document: map,
        })
    }

    /// The document of the next version: same fields, a new password and maybe another user.
    pub fn next_version(&self, username: &str, password: &SecretString) -> SecretString {
        use secrecy::ExposeSecret;
        let mut document = self.document.clone();
        document.insert("username".into(), Value::String(username.to_owned()));
        document.insert(
            "password".into(),
            Value::String(password.expose_secret().to_owned()),
        );
        SecretString::from(Value::Object(document).to_string())
    }
}

/// `app` <-> `app_clone`.
pub fn alternate_user(username: &str) -> Result<String, DocumentError> {
    let other = match username.strip_suffix(CLONE_SUFFIX) {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => format!("{username}{CLONE_SUFFIX}"),
    };
    if other.len() > MAX_PG_IDENTIFIER {
        return Err(DocumentError::Invalid {
            which: "AWSCURRENT",
            field: "username",
            problem: "leaves no room for the `_clone` suffix within PostgreSQL's 63-byte limit",
        });
    }
    Ok(other)
}

/// The user alternating users are based on (the one without the suffix).
pub fn base_user(username: &str) -> &str {
    match username.strip_suffix(CLONE_SUFFIX) {
        Some(base) if !base.is_empty() => base,
        _ => username,
    }
}

/// The master secret of alternating users.
#[derive(Debug, Clone)]
pub struct MasterSecret {
    pub username: String,
    pub password: SecretString,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl MasterSecret {
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        const WHICH: &str = "master secret";
        let map = object(WHICH, text)?;
        Ok(Self {
            username: string(WHICH, &map, "username")?.to_owned(),
            password: SecretString::from(string(WHICH, &map, "password")?.to_owned()),
            host: optional_string(WHICH, &map, "host")?.map(str::to_owned),
            port: port(WHICH, &map)?,
        })
    }
}

/// An Auth0 machine-to-machine client secret.
#[derive(Debug, Clone)]
pub struct Auth0Secret {
    pub domain: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub management_secret_arn: String,
    pub audience: Option<String>,
    document: Map<String, Value>,
}

impl Auth0Secret {
    pub fn parse(which: &'static str, text: &str) -> Result<Self, DocumentError> {
        let map = object(which, text)?;
        Ok(Self {
            domain: string(which, &map, "domain")?.to_owned(),
            client_id: string(which, &map, "client_id")?.to_owned(),
            client_secret: SecretString::from(string(which, &map, "client_secret")?.to_owned()),
            management_secret_arn: string(which, &map, "management_secret_arn")?.to_owned(),
            audience: optional_string(which, &map, "audience")?.map(str::to_owned),
            document: map,
        })
    }

    pub fn next_version(&self, client_secret: &SecretString) -> SecretString {
        use secrecy::ExposeSecret;
        let mut document = self.document.clone();
        document.insert(
            "client_secret".into(),
            Value::String(client_secret.expose_secret().to_owned()),
        );
        SecretString::from(Value::Object(document).to_string())
    }
}

/// The rotator application's credentials for the Management API.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl ClientCredentials {
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        const WHICH: &str = "Auth0 management secret";
        let map = object(WHICH, text)?;
        Ok(Self {
            client_id: string(WHICH, &map, "client_id")?.to_owned(),
            client_secret: SecretString::from(string(WHICH, &map, "client_secret")?.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const PG: &str = r#"{"engine":"postgres","host":"db.internal","port":"5433","username":"app","password":"hunter2-very-secret","dbname":"payments","extra":{"kept":true}}"#;

    #[test]
    fn reads_the_rds_shape_and_keeps_unknown_fields() {
        let secret = PgSecret::parse("AWSCURRENT", PG).unwrap();
        assert_eq!(secret.port, 5433);
        assert_eq!(secret.tls, TlsMode::VerifyFull);
        let next = secret.next_version("app_clone", &SecretString::from("n3w".to_owned()));
        let next: Value = serde_json::from_str(next.expose_secret()).unwrap();
        assert_eq!(next["username"], "app_clone");
        assert_eq!(next["password"], "n3w");
        assert_eq!(next["extra"]["kept"], true);
        assert_eq!(next["port"], "5433");
    }

    #[test]
    fn errors_never_quote_the_value() {
        let cases = [
            r#"{"engine":"postgres","host":"h","username":"u","password":"hunter2-very-secret","#,
            r#"["hunter2-very-secret"]"#,
            r#"{"engine":"postgres","host":"h","username":"u","password":["hunter2-very-secret"]}"#,
            r#"{"engine":"postgres","host":"h","username":"u","password":"hunter2-very-secret","port":"hunter2-very-secret"}"#,
            r#"{"engine":"postgres","host":"h","username":"u","password":"hunter2-very-secret","sslmode":"prefer"}"#,
            r#"{"engine":"mysql","host":"h","username":"u","password":"hunter2-very-secret"}"#,
        ];
        for text in cases {
            let err = PgSecret::parse("AWSCURRENT", text).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.starts_with("the AWSCURRENT value"), "{err}");
        }
    }

    #[test]
    fn alternates_users_within_the_identifier_limit() {
        assert_eq!(alternate_user("app").unwrap(), "app_clone");
        assert_eq!(alternate_user("app_clone").unwrap(), "app");
        assert_eq!(alternate_user("_clone").unwrap(), "_clone_clone");
        assert_eq!(base_user("app_clone"), "app");
        assert!(alternate_user(&"a".repeat(60)).is_err());
    }
}

#[cfg(test)]
mod mutation_tests {
    use super::*;
    use crate::request::RotationRequest;

    /// Seeded random mutations of valid inputs: every parser returns a value or an error, never
    /// panics, and no error quotes the planted password.
    #[test]
    fn mutated_inputs_never_panic_or_leak() {
        let seeds = [
            r#"{"engine":"postgres","host":"db","port":5432,"username":"app","password":"S3cret-planted-pw","dbname":"x","masterarn":"arn:aws:secretsmanager:eu-west-1:1:secret:m-AbCdEf","sslmode":"verify-full"}"#,
            r#"{"domain":"acme.eu.auth0.com","client_id":"abc","client_secret":"S3cret-planted-pw","management_secret_arn":"arn:m","audience":"https://api/"}"#,
            r#"{"Step":"createSecret","SecretId":"arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf","ClientRequestToken":"0190a6f2-4c3b-7d1e-9a2b-3c4d5e6f7a8b","RotationToken":"S3cret-planted-pw"}"#,
        ];
        let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D);
        let alphabet = br#"{}[]":,\0 -_/@'abcxyz19"#;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..rng.usize(1..5) {
                let at = rng.usize(0..bytes.len().max(1));
                match rng.u8(0..3) {
                    0 => bytes[at] = alphabet[rng.usize(0..alphabet.len())],
                    1 => bytes.insert(at, alphabet[rng.usize(0..alphabet.len())]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let errors = [
                PgSecret::parse("AWSCURRENT", &text)
                    .err()
                    .map(|e| e.to_string()),
                Auth0Secret::parse("AWSCURRENT", &text)
                    .err()
                    .map(|e| e.to_string()),
                MasterSecret::parse(&text).err().map(|e| e.to_string()),
                ClientCredentials::parse(&text).err().map(|e| e.to_string()),
                serde_json::from_str(&text)
                    .ok()
                    .and_then(|v| RotationRequest::parse(&v).err())
                    .map(|e| e.to_string()),
            ];
            for error in errors.into_iter().flatten() {
                assert!(!error.contains("S3cret-planted"), "{error}");
            }
        }
    }
}
