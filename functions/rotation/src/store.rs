//! The secret store port (what rotation needs from Secrets Manager), its AWS adapter, and an
//! in-memory model of Secrets Manager's version/stage rules for unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use keyward_shared::adapters::aws::tags_from_sdk;
use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tags::Tag;
use secrecy::{ExposeSecret, SecretString};

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPENDING: &str = "AWSPENDING";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// What `DescribeSecret` says about a secret.
#[derive(Debug, Clone)]
pub struct SecretState {
    pub arn: String,
    pub name: String,
    /// Absent until rotation has been configured (moto) or on an old describe shape.
    pub rotation_enabled: Option<bool>,
    pub versions: BTreeMap<String, BTreeSet<String>>,
    pub tags: Vec<Tag>,
}

impl SecretState {
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.contains(stage))
            .map(|(id, _)| id.as_str())
    }
}

/// Which value to read.
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    /// The version holding a staging label.
    Stage(&'a str),
    /// The version `id`, which must still hold `AWSPENDING`.
    Pending(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Secrets Manager {operation} failed: {message}")]
    Api {
        operation: &'static str,
        message: SafeText,
    },
    #[error("Secrets Manager {operation} returned no {field}")]
    Incomplete {
        operation: &'static str,
        field: &'static str,
    },
    #[error("the secret's value is binary; keyward rotates SecretString values only")]
    Binary,
}

/// How `GetRandomPassword` is asked for a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRequest {
    pub length: u32,
    pub exclude_characters: String,
    /// `ExcludePunctuation`: letters and digits only.
    pub exclude_punctuation: bool,
}

pub trait SecretStore: Send + Sync {
    fn describe(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<SecretState, StoreError>> + Send;

    /// `Ok(None)` when there is no such version or it holds no value yet (the placeholder
    /// `RotateSecret` creates).
    fn value(
        &self,
        secret_id: &str,
        selector: Selector<'_>,
    ) -> impl Future<Output = Result<Option<SecretString>, StoreError>> + Send;

    /// `PutSecretValue` of the new version with `AWSPENDING`.
    fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn random_password(
        &self,
        request: &PasswordRequest,
    ) -> impl Future<Output = Result<SecretString, StoreError>> + Send;

    /// Moves `AWSCURRENT` from `from_version` to `token` (`AWSPREVIOUS` follows).
    fn promote(
        &self,
        secret_id: &str,
        token: &str,
        from_version: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The AWS adapter.
#[derive(Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
    redactor: Redactor,
}

impl SecretsManagerStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, redactor: Redactor) -> Self {
        Self { client, redactor }
    }

    fn api_error<E>(&self, operation: &'static str, err: &E) -> StoreError
    where
        E: std::error::Error,
    {
        let text = aws_smithy_types::error::display::DisplayErrorContext(err).to_string();
        StoreError::Api {
            operation,
            message: self.redactor.safe(&text),
        }
    }
}

impl SecretStore for SecretsManagerStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretState, StoreError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| self.api_error("DescribeSecret", &e))?;
        let versions = out
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .map(|(id, stages)| (id, stages.into_iter().collect()))
            .collect();
        Ok(SecretState {
            arn: out.arn.ok_or(StoreError::Incomplete {
                operation: "DescribeSecret",
                field: "ARN",
            })?,
            name: out.name.ok_or(StoreError::Incomplete {
                operation: "DescribeSecret",
                field: "Name",
            })?,
            rotation_enabled: out.rotation_enabled,
            versions,
            tags: tags_from_sdk(out.tags.as_deref().unwrap_or_default()),
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        selector: Selector<'_>,
    ) -> Result<Option<SecretString>, StoreError> {
        // Always name the stage: moto's request without one reads a pointer that finishSecret
        // does not move, and on AWS naming it guards against reading a stale version.
        let request = self.client.get_secret_value().secret_id(secret_id);
        let request = match selector {
            Selector::Stage(stage) => request.version_stage(stage),
            Selector::Pending(id) => request.version_id(id).version_stage(AWSPENDING),
        };
        match request.send().await {
            Ok(out) => match (out.secret_string, out.secret_binary) {
                (Some(text), _) => {
                    let value = SecretString::from(text);
                    self.redactor.register(&value);
                    Ok(Some(value))
                }
                (None, Some(_)) => Err(StoreError::Binary),
                (None, None) => Ok(None),
            },
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.api_error("GetSecretValue", &err)),
        }
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        self.redactor.register(value);
        let mut request = self
            .client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose_secret())
            .version_stages(AWSPENDING);
        if let Some(rotation_token) = rotation_token {
            self.redactor.register(rotation_token);
            request = request.rotation_token(rotation_token.expose_secret());
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.api_error("PutSecretValue", &e))
    }

    async fn random_password(&self, request: &PasswordRequest) -> Result<SecretString, StoreError> {
        let out = self
            .client
            .get_random_password()
            .password_length(i64::from(request.length))
            .exclude_characters(&request.exclude_characters)
            .exclude_punctuation(request.exclude_punctuation)
            .require_each_included_type(true)
            .send()
            .await
            .map_err(|e| self.api_error("GetRandomPassword", &e))?;
        let password = SecretString::from(out.random_password.ok_or(StoreError::Incomplete {
            operation: "GetRandomPassword",
            field: "RandomPassword",
        })?);
        self.redactor.register(&password);
        Ok(password)
    }

    async fn promote(
        &self,
        secret_id: &str,
        token: &str,
        from_version: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(AWSCURRENT)
            .move_to_version_id(token)
            .remove_from_version_id(from_version)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.api_error("UpdateSecretVersionStage", &e))
    }
}

/// Secrets Manager's version and staging-label rules in memory, for unit tests of the protocol.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    inner: std::sync::Mutex<InMemoryState>,
    /// How many of the next `PutSecretValue` calls fail (fault injection).
    failing_puts: std::sync::atomic::AtomicU32,
    /// The secret (by name) of every `GetSecretValue`, in order.
    reads: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct InMemoryState {
    secrets: BTreeMap<String, InMemorySecret>,
    passwords_issued: u32,
}

#[derive(Debug, Clone)]
struct InMemorySecret {
    arn: String,
    rotation_enabled: Option<bool>,
    tags: Vec<Tag>,
    versions: BTreeMap<String, (Option<String>, BTreeSet<String>)>,
}

impl InMemoryStore {
    pub fn create(&self, name: &str, value: &str, tags: Vec<Tag>) {
        let mut state = self.inner.lock().expect("store lock");
        let versions = BTreeMap::from([(
            format!("initial-{name}-0000000000000000000000"),
            (
                Some(value.to_owned()),
                BTreeSet::from([AWSCURRENT.to_owned()]),
            ),
        )]);
        state.secrets.insert(
            name.to_owned(),
            InMemorySecret {
                arn: format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf"),
                rotation_enabled: None,
                tags,
                versions,
            },
        );
    }

    /// What `RotateSecret` does before invoking the function: enable rotation and create an
    /// empty version labelled `AWSPENDING`.
    pub fn start_rotation(&self, name: &str, token: &str) {
        let mut state = self.inner.lock().expect("store lock");
        let secret = state.secrets.get_mut(name).expect("secret exists");
        secret.rotation_enabled = Some(true);
        for (_, stages) in secret.versions.values_mut() {
            stages.remove(AWSPENDING);
        }
        secret.versions.insert(
            token.to_owned(),
            (None, BTreeSet::from([AWSPENDING.to_owned()])),
        );
    }

    /// The next `n` `PutSecretValue` calls fail as Secrets Manager's throttling would.
    pub fn fail_next_puts(&self, n: u32) {
        self.failing_puts
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The names of the secrets whose values were read, in order.
    pub fn reads(&self) -> Vec<String> {
        self.reads.lock().expect("reads lock").clone()
    }

    pub fn set_rotation_enabled(&self, name: &str, enabled: bool) {
        let mut state = self.inner.lock().expect("store lock");
        state
            .secrets
            .get_mut(name)
            .expect("secret exists")
            .rotation_enabled = Some(enabled);
    }

    pub fn stage_value(&self, name: &str, stage: &str) -> Option<String> {
        let state = self.inner.lock().expect("store lock");
        let secret = state.secrets.get(name)?;
        secret
            .versions
            .values()
            .find(|(_, stages)| stages.contains(stage))
            .and_then(|(value, _)| value.clone())
    }

    fn with_secret<T>(
        &self,
        secret_id: &str,
        operation: &'static str,
        f: impl FnOnce(&mut InMemorySecret, &mut u32) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let mut state = self.inner.lock().expect("store lock");
        let InMemoryState {
            secrets,
            passwords_issued,
        } = &mut *state;
        // Like Secrets Manager, accept the ARN or the name.
        let key = secrets
            .iter()
            .find(|(name, s)| s.arn == secret_id || *name == secret_id)
            .map(|(name, _)| name.clone());
        let secret = key
            .and_then(|key| secrets.get_mut(&key))
            .ok_or_else(|| StoreError::Api {
                operation,
                message: SafeText::fixed(
                    "ResourceNotFoundException: Secrets Manager can't find the specified secret.",
                ),
            })?;
        f(secret, passwords_issued).map_err(|message| StoreError::Api {
            operation,
            message: Redactor::new().safe(&message),
        })
    }
}

impl SecretStore for InMemoryStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretState, StoreError> {
        let name = self
            .inner
            .lock()
            .expect("store lock")
            .secrets
            .iter()
            .find(|(name, s)| s.arn == secret_id || *name == secret_id)
            .map(|(name, _)| name.clone());
        self.with_secret(secret_id, "DescribeSecret", |secret, _| {
            Ok(SecretState {
                arn: secret.arn.clone(),
                name: name.unwrap_or_default(),
                rotation_enabled: secret.rotation_enabled,
                versions: secret
                    .versions
                    .iter()
                    .filter(|(_, (_, stages))| !stages.is_empty())
                    .map(|(id, (_, stages))| (id.clone(), stages.clone()))
                    .collect(),
                tags: secret.tags.clone(),
            })
        })
    }

    async fn value(
        &self,
        secret_id: &str,
        selector: Selector<'_>,
    ) -> Result<Option<SecretString>, StoreError> {
        let name = self
            .inner
            .lock()
            .expect("store lock")
            .secrets
            .iter()
            .find(|(name, s)| s.arn == secret_id || *name == secret_id)
            .map_or_else(|| secret_id.to_owned(), |(name, _)| name.clone());
        self.reads.lock().expect("reads lock").push(name);
        self.with_secret(secret_id, "GetSecretValue", |secret, _| {
            let found = match selector {
                Selector::Stage(stage) => secret
                    .versions
                    .values()
                    .find(|(_, stages)| stages.contains(stage)),
                Selector::Pending(id) => match secret.versions.get(id) {
                    Some(version) if version.1.contains(AWSPENDING) => Some(version),
                    Some(_) => {
                        return Err(
                            "InvalidRequestException: version does not hold AWSPENDING".into()
                        );
                    }
                    None => None,
                },
            };
            Ok(found
                .and_then(|(value, _)| value.clone())
                .map(SecretString::from))
        })
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        _rotation_token: Option<&SecretString>,
    ) -> Result<(), StoreError> {
        let fail = self
            .failing_puts
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if fail {
            return Err(StoreError::Api {
                operation: "PutSecretValue",
                message: SafeText::fixed("ThrottlingException: Rate exceeded"),
            });
        }
        self.with_secret(secret_id, "PutSecretValue", |secret, _| {
            if let Some((Some(existing), _)) = secret.versions.get(token)
                && existing != value.expose_secret()
            {
                return Err("ResourceExistsException: a version with this token already holds another value".into());
            }
            for (_, stages) in secret.versions.values_mut() {
                stages.remove(AWSPENDING);
            }
            let version = secret.versions.entry(token.to_owned()).or_default();
            version.0 = Some(value.expose_secret().to_owned());
            version.1.insert(AWSPENDING.to_owned());
            Ok(())
        })
    }

    async fn random_password(&self, request: &PasswordRequest) -> Result<SecretString, StoreError> {
        let mut state = self.inner.lock().expect("store lock");
        state.passwords_issued += 1;
        let alphabet: Vec<char> = ('!'..='~')
            .filter(|c| !request.exclude_characters.contains(*c))
            .filter(|c| !(request.exclude_punctuation && c.is_ascii_punctuation()))
            .collect();
        let mut rng = fastrand::Rng::with_seed(u64::from(state.passwords_issued));
        let password: String = (0..request.length)
            .map(|_| alphabet[rng.usize(0..alphabet.len())])
            .collect();
        Ok(SecretString::from(password))
    }

    async fn promote(
        &self,
        secret_id: &str,
        token: &str,
        from_version: &str,
    ) -> Result<(), StoreError> {
        self.with_secret(secret_id, "UpdateSecretVersionStage", |secret, _| {
            if !secret.versions.contains_key(token) {
                return Err("InvalidParameterException: Not a valid version".into());
            }
            let holds_current = secret
                .versions
                .get(from_version)
                .is_some_and(|(_, stages)| stages.contains(AWSCURRENT));
            if !holds_current {
                return Err(
                    "InvalidParameterException: Version stage AWSCURRENT not found in version"
                        .into(),
                );
            }
            for (_, stages) in secret.versions.values_mut() {
                stages.remove(AWSPREVIOUS);
            }
            let old = secret
                .versions
                .get_mut(from_version)
                .expect("checked above");
            old.1.remove(AWSCURRENT);
            old.1.insert(AWSPREVIOUS.to_owned());
            secret
                .versions
                .get_mut(token)
                .expect("checked above")
                .1
                .insert(AWSCURRENT.to_owned());
            Ok(())
        })
    }
}
