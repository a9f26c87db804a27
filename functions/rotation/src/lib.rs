//! keyward's rotation function: Secrets Manager's four-step rotation protocol
//!
//! - **Trigger**: Secrets Manager, once per rotation step.
//! - **Input**: `{Step, SecretId, ClientRequestToken}`; the strategy from the `keyward:rotation`
//!   tag.
//! - **Events out**: `SecretRotated` after finishSecret, `RotationFailed` with the step.
//! - **State**: none of its own: the version stages carry the protocol.
//! - **Code**: this crate ([`Rotator`]).
//!
//! (createSecret → setSecret → testSecret → finishSecret) with the strategy chosen by the
//! secret's `keyward:rotation` tag.
//!
//! | strategy                     | createSecret                          | setSecret                           | testSecret                     |
//! |------------------------------|---------------------------------------|-------------------------------------|--------------------------------|
//! | `random`                     | `GetRandomPassword` (whole value or `keyward:json-key` field) | nothing                  | value well-formed, new          |
//! | `postgres-single-user`       | same document, new password           | `ALTER ROLE` as the user (CURRENT, else PREVIOUS) | PENDING logs in    |
//! | `postgres-alternating-users` | other user of `app`/`app_clone`, new password | as master: create/alter, copy grants | PENDING logs in       |
//! | `auth0-client-secret`        | `GetRandomPassword`, stored as AWSPENDING (no Auth0 call) | Management API `PATCH` of the client's `client_secret` to the pending value | client credentials grant, Auth0's own answers only |
//!
//! Where a credential goes is declared governance, never the secret's value: for `postgres-*`
//! and `auth0-client-secret` secrets every step reads the manifest (per invocation) and refuses,
//! before anything is sent, a secret without a declared `rotation.database` / `rotation.auth0`
//! or whose value (AWSCURRENT, AWSPENDING, the master secret's host and port) names another host,
//! port, database, master secret, tenant or management secret. Database TLS is verified against
//! the pinned CA bundle; the system trust store only for secrets the operator names.
//!
//! Before every step the guard checks: rotation enabled; the token is a version of this secret;
//! a token already `AWSCURRENT` means the step is done; otherwise it must hold `AWSPENDING`.
//! Every step is re-entrant, so Secrets Manager's retries (of the whole rotation) converge, and
//! nothing moves `AWSCURRENT` until testSecret has passed.
//!
//! Ports: [`store::SecretStore`], [`pg::Database`], [`auth0::Auth0Api`], the shared
//! [`ManifestSource`] and [`EventPublisher`]; [`DeployedRotator::from_config`] wires the AWS,
//! PostgreSQL and HTTP adapters.

pub mod auth0;
pub mod documents;
pub mod pg;
pub mod request;
pub mod scram;
pub mod store;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keyward_shared::config::{CommonConfig, ConfigError, EnvSource, flag, parsed_or, s3_location};
use keyward_shared::events::{
    Actor, CorrelationId, DomainEvent, EventData, Outcome, RotationStep, SecretRef,
};
use keyward_shared::governance::{RotationPolicy, RotationStrategy};
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::manifest::{Auth0Target, DatabaseTarget, RotationTarget};
use keyward_shared::naming::SecretName;
use keyward_shared::ports::{EventPublisher, ManifestReadError, ManifestSource, PublishError};
use keyward_shared::redact::{Redactor, error_chain};
use keyward_shared::tags::{self, TagContractError};
use secrecy::{ExposeSecret, SecretString};

use crate::auth0::{Auth0Api, Auth0Error, Tenant, TenantError};
use crate::documents::{
    Auth0Secret, ClientCredentials, DocumentError, MasterSecret, PgSecret, alternate_user,
    base_user,
};
use crate::pg::{AlternatingUsers, Database, DbError, PgLogin, PostgresConfig, Roots};
use crate::request::{RequestError, RotationRequest};
use crate::store::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, PasswordRequest, SecretState, SecretStore, Selector,
    StoreError,
};

pub const FUNCTION: &str = "rotation";

/// Configuration, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub postgres: PostgresConfig,
    pub settings: Settings,
    /// `KEYWARD_MANIFEST_S3_URI`: `s3://<bucket>/<prefix>/`, the declared manifest CI
    /// publishes; read on every step of a database or Auth0 rotation.
    pub manifest_bucket: String,
    pub manifest_prefix: String,
}

/// What the protocol itself needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long testSecret keeps retrying a freshly set Auth0 secret: Auth0 documents that a
    /// change may take up to 30 seconds to apply (`KEYWARD_AUTH0_PROPAGATION_SECS`, 40).
    pub auth0_propagation: Duration,
    /// First wait between those retries; it doubles up to 8 s.
    pub auth0_retry_base: Duration,
    /// Whether a CA bundle is configured (`KEYWARD_DB_CA_BUNDLE`): database logins are verified
    /// against it.
    pub db_ca_bundle: bool,
    /// `KEYWARD_DB_SYSTEM_TRUST_SECRETS`: the secrets (by name) whose database may be verified
    /// against the system trust store when no bundle is configured. Any other database secret
    /// without a bundle is refused.
    pub db_system_trust: BTreeSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auth0_propagation: Duration::from_secs(40),
            auth0_retry_base: Duration::from_secs(1),
            db_ca_bundle: false,
            db_system_trust: BTreeSet::new(),
        }
    }
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let ca_bundle = env
            .get("KEYWARD_DB_CA_BUNDLE")
            .filter(|path| !path.trim().is_empty())
            .map(PathBuf::from);
        let mut db_system_trust = BTreeSet::new();
        for name in env
            .get("KEYWARD_DB_SYSTEM_TRUST_SECRETS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            if name.parse::<SecretName>().is_err() {
                return Err(ConfigError::Invalid {
                    name: "KEYWARD_DB_SYSTEM_TRUST_SECRETS",
                    reason: format!(
                        "`{name}` is not a secret name /<org>/<env>/<service>/<name> (the list is comma-separated)"
                    ),
                });
            }
            db_system_trust.insert(name.to_owned());
        }
        let (manifest_bucket, manifest_prefix) = s3_location(env, "KEYWARD_MANIFEST_S3_URI")?;
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            settings: Settings {
                auth0_propagation: Duration::from_secs(parsed_or(
                    env,
                    "KEYWARD_AUTH0_PROPAGATION_SECS",
                    40u64,
                )?),
                db_ca_bundle: ca_bundle.is_some(),
                db_system_trust,
                ..Settings::default()
            },
            postgres: PostgresConfig {
                ca_bundle,
                allow_plaintext: flag(env, "KEYWARD_DB_ALLOW_PLAINTEXT", false)?,
                connect_timeout: Duration::from_secs(parsed_or(
                    env,
                    "KEYWARD_DB_CONNECT_TIMEOUT_SECS",
                    5u64,
                )?),
            },
            manifest_bucket,
            manifest_prefix,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rotation is disabled for {secret}")]
    RotationDisabled { secret: String },
    #[error(
        "version {token} is not a labelled version of {secret}: a token of another secret, or one whose rotation another has replaced"
    )]
    UnknownVersion { token: String, secret: String },
    #[error(
        "version {token} of {secret} is neither AWSCURRENT nor AWSPENDING: another rotation has taken over, or it was stopped by hand"
    )]
    NotPending { token: String, secret: String },
    #[error("{secret} carries no keyward governance tags: tag it `keyward:rotation` to rotate it")]
    NotGoverned { secret: String },
    #[error("the governance tags of {secret} break the contract: {source}")]
    Tags {
        secret: String,
        #[source]
        source: TagContractError,
    },
    #[error("{secret} is rotated by hand (`keyward:rotation` = manual); no function rotates it")]
    Manual { secret: String },
    #[error("{secret} has no AWSCURRENT value")]
    NoCurrentValue { secret: String },
    #[error("version {token} (AWSPENDING) holds no value: createSecret has not completed")]
    MissingPending { token: String },
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("AWSPENDING changes the `{field}` of AWSCURRENT; refusing to act on another identity")]
    IdentityChanged { field: &'static str },
    #[error(
        "alternating users need a master secret: declare rotation.database.master_secret in the manifest"
    )]
    NoMaster,
    #[error(
        "{secret} is not rotated: {detail}; a database or Auth0 rotation sends credentials only where the manifest declares (rotation.database / rotation.auth0)"
    )]
    DestinationUndeclared {
        secret: String,
        detail: &'static str,
    },
    #[error(
        "the manifest declares {secret} with rotation `{declared}` but its tags say `{tagged}`; nothing was sent"
    )]
    StrategyDisagrees {
        secret: String,
        declared: RotationStrategy,
        tagged: RotationStrategy,
    },
    #[error(
        "the {which} of {secret} names a `{field}` other than the rotation destination the manifest declares; nothing was sent (correct the value, or change the manifest through review)"
    )]
    DestinationMismatch {
        secret: String,
        which: &'static str,
        field: &'static str,
    },
    #[error("the declared manifest could not be read, so no destination can be trusted: {source}")]
    ManifestUnavailable {
        #[source]
        source: ManifestReadError,
    },
    #[error(
        "{secret} would be verified against the system trust store (any publicly trusted certificate for its host): configure KEYWARD_DB_CA_BUNDLE, or name the secret in KEYWARD_DB_SYSTEM_TRUST_SECRETS to accept that"
    )]
    NoCaBundle { secret: String },
    #[error("the secret {arn} named by `{field}` has no AWSCURRENT value")]
    LinkedSecretMissing { field: &'static str, arn: String },
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(
        "none of the stored credentials of `{user}` logs in (AWSCURRENT, AWSPREVIOUS), so its password cannot be changed as the user itself"
    )]
    NoWorkingLogin { user: String },
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Auth0(#[from] Auth0Error),
    #[error("the new client secret of `{client_id}` was still refused after {waited_secs}s")]
    Auth0NotPropagated { client_id: String, waited_secs: u64 },
    #[error("the AWSPENDING value {problem}")]
    BadPending { problem: &'static str },
    #[error("{secret} has no version labelled AWSCURRENT")]
    NoCurrentVersion { secret: String },
    #[error("the rotation succeeded but its event was not published: {0}")]
    Publish(#[from] PublishError),
}

impl FailureKind for RotationError {
    /// The `errorType` Secrets Manager and CloudWatch show.
    fn kind(&self) -> &'static str {
        match self {
            Self::Request(_) => "InvalidRotationEvent",
            Self::Store(_) => "SecretsManagerError",
            Self::RotationDisabled { .. }
            | Self::UnknownVersion { .. }
            | Self::NotPending { .. }
            | Self::NoCurrentVersion { .. } => "RotationProtocolError",
            Self::NotGoverned { .. }
            | Self::Tags { .. }
            | Self::Manual { .. }
            | Self::ManifestUnavailable { .. } => "GovernanceError",
            Self::DestinationUndeclared { .. } | Self::StrategyDisagrees { .. } => {
                "DestinationUndeclared"
            }
            Self::DestinationMismatch { .. } => "DestinationMismatch",
            Self::NoCaBundle { .. } => "ConfigurationError",
            Self::NoCurrentValue { .. }
            | Self::MissingPending { .. }
            | Self::Document(_)
            | Self::IdentityChanged { .. }
            | Self::NoMaster
            | Self::LinkedSecretMissing { .. }
            | Self::BadPending { .. } => "SecretValueError",
            Self::Database(_) | Self::NoWorkingLogin { .. } => "DatabaseError",
            Self::Tenant(_) | Self::Auth0(_) | Self::Auth0NotPropagated { .. } => "Auth0Error",
            Self::Publish(_) => "EventPublishError",
        }
    }
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step's work is (now) done.
    Done,
    /// The token already holds AWSCURRENT: nothing to do.
    AlreadyCurrent,
    /// finishSecret moved AWSCURRENT (or found it moved by an earlier attempt).
    Finished { previous_version: Option<String> },
}

/// The rotation function as deployed.
pub type DeployedRotator = Rotator<
    store::SecretsManagerStore,
    pg::Postgres,
    auth0::Auth0Client,
    keyward_shared::adapters::aws::EventBridgePublisher,
    keyward_shared::adapters::aws::S3Manifest,
>;

impl DeployedRotator {
    /// One registry of values to scrub, shared by every adapter. The Auth0 HTTP client, the bus
    /// client and the manifest's S3 client are built on first use: a step that does not call
    /// them does not build them.
    pub fn from_config(config: &Config, sdk: &keyward_shared::adapters::aws::SdkConfig) -> Self {
        let redactor = Redactor::new();
        let http_redactor = redactor.clone();
        Rotator {
            store: store::SecretsManagerStore::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                redactor.clone(),
            ),
            db: pg::Postgres::new(config.postgres.clone(), redactor.clone()),
            auth0: auth0::Auth0Client::lazy(move || {
                keyward_shared::adapters::http::HttpClient::for_function(
                    "rotation",
                    Duration::from_secs(10),
                    http_redactor.clone(),
                )
            }),
            publisher: keyward_shared::adapters::aws::EventBridgePublisher::for_sdk(
                sdk,
                &config.common.event_bus_name,
            ),
            manifests: keyward_shared::adapters::aws::S3Manifest {
                s3: keyward_shared::adapters::aws::lazy_s3_client(
                    sdk,
                    config.common.s3_force_path_style,
                ),
                bucket: config.manifest_bucket.clone(),
                prefix: config.manifest_prefix.clone(),
            },
            settings: config.settings.clone(),
            redactor,
        }
    }
}

impl<S, D, A, P, M> Handler for Rotator<S, D, A, P, M>
where
    S: SecretStore,
    D: Database,
    A: Auth0Api,
    P: EventPublisher,
    M: ManifestSource,
{
    type Output = ();
    type Error = RotationError;

    async fn handle(&self, payload: &str) -> Result<(), RotationError> {
        // Not JSON reads as no object at all: the request parser names what is missing.
        let event = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
        self.handle_event(&event).await
    }
}

pub struct Rotator<S, D, A, P, M> {
    pub store: S,
    pub db: D,
    pub auth0: A,
    pub publisher: P,
    /// The declared manifest: where database and Auth0 rotations may send credentials. Read on
    /// every such step, never cached.
    pub manifests: M,
    pub settings: Settings,
    pub redactor: Redactor,
}

/// A master or management secret the manifest names, with the ARN `DescribeSecret` gives it
/// (metadata only: its value is read after every check has passed).
#[derive(Debug, Clone)]
struct Linked {
    name: SecretName,
    arn: String,
}

impl Linked {
    /// A value's reference (`masterarn`, `management_secret_arn`) names this secret: its full
    /// ARN or its name.
    fn is(&self, reference: &str) -> bool {
        reference == self.arn || reference == self.name.to_string()
    }
}

/// What a database step needs before it may connect.
struct PgContext {
    target: DatabaseTarget,
    roots: Roots,
    master: Option<Linked>,
}

/// What an Auth0 step needs before it may call.
struct Auth0Context {
    tenant: Tenant,
    management: Linked,
}

enum Guard {
    AlreadyCurrent,
    Pending,
}

impl<S, D, A, P, M> Rotator<S, D, A, P, M>
where
    S: SecretStore,
    D: Database,
    A: Auth0Api,
    P: EventPublisher,
    M: ManifestSource,
{
    /// The Lambda entry: parses the invocation and runs one step.
    pub async fn handle_event(&self, event: &serde_json::Value) -> Result<(), RotationError> {
        let request = RotationRequest::parse(event).inspect_err(|e| {
            tracing::error!(error = %e, "rejected a rotation invocation");
        })?;
        self.handle(&request).await
    }

    pub async fn handle(&self, request: &RotationRequest) -> Result<(), RotationError> {
        let step = request.step.as_str();
        let correlation = CorrelationId::new(format!("rotation:{}", request.token))
            .unwrap_or_else(|_| CorrelationId::generate());
        let state = match self.store.describe(&request.secret_id).await {
            Ok(state) => state,
            Err(err) => {
                let err = RotationError::from(err);
                let secret = SecretRef {
                    name: request.secret_id.clone(),
                    arn: None,
                };
                self.report_failure(request, secret, None, &err, &correlation)
                    .await;
                return Err(err);
            }
        };
        let secret = SecretRef {
            name: state.name.clone(),
            arn: Some(state.arn.clone()),
        };
        let started = Instant::now();
        let (strategy, result) = self.run(request, &state).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let strategy_name = strategy.map(RotationStrategy::as_str).unwrap_or("unknown");
        match result {
            Ok(StepOutcome::Finished { previous_version }) => {
                tracing::info!(secret = %state.name, step, version = %request.token, strategy = strategy_name, elapsed_ms, "rotation finished: AWSCURRENT moved");
                if let Some(strategy) = strategy {
                    let event = DomainEvent::new(
                        correlation,
                        Actor::service(FUNCTION),
                        Some(secret),
                        Outcome::Success,
                        EventData::SecretRotated {
                            strategy,
                            version_id: request.token.clone(),
                            previous_version_id: previous_version,
                        },
                    );
                    // Returning the error makes Secrets Manager retry; finishSecret then finds
                    // the token current and publishes again (at least once).
                    self.publisher.publish(&[event]).await?;
                }
                Ok(())
            }
            Ok(outcome) => {
                tracing::info!(secret = %state.name, step, version = %request.token, strategy = strategy_name, elapsed_ms, already_current = outcome == StepOutcome::AlreadyCurrent, "rotation step done");
                Ok(())
            }
            Err(err) => {
                self.report_failure(request, secret, strategy, &err, &correlation)
                    .await;
                Err(err)
            }
        }
    }

    async fn report_failure(
        &self,
        request: &RotationRequest,
        secret: SecretRef,
        strategy: Option<RotationStrategy>,
        err: &RotationError,
        correlation: &CorrelationId,
    ) {
        let message = self.redactor.safe(&error_chain(err));
        tracing::error!(secret = %secret.name, step = request.step.as_str(), version = %request.token, error = %message.as_str(), "rotation step failed; AWSCURRENT untouched");
        let event = DomainEvent::new(
            correlation.clone(),
            Actor::service(FUNCTION),
            Some(secret),
            Outcome::Failure,
            EventData::RotationFailed {
                strategy,
                step: request.step,
                version_id: request.token.clone(),
                error: message,
            },
        );
        // The step's own error is what Secrets Manager must see; a bus failure is logged.
        if let Err(publish) = self.publisher.publish(&[event]).await {
            tracing::error!(error = %self.redactor.safe(&publish.to_string()).as_str(), "RotationFailed event not published");
        }
    }

    async fn run(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> (Option<RotationStrategy>, Result<StepOutcome, RotationError>) {
        let guard = match guard(state, &request.token) {
            Ok(guard) => guard,
            Err(err) => return (governed_strategy(state), Err(err)),
        };
        let policy = match policy(state) {
            Ok(policy) => policy,
            Err(err) => return (None, Err(err)),
        };
        let strategy = policy.strategy;
        let result = match guard {
            Guard::AlreadyCurrent if request.step == RotationStep::FinishSecret => {
                Ok(StepOutcome::Finished {
                    previous_version: state.version_with(AWSPREVIOUS).map(str::to_owned),
                })
            }
            Guard::AlreadyCurrent => Ok(StepOutcome::AlreadyCurrent),
            Guard::Pending => self.step(request, state, &policy).await,
        };
        (Some(strategy), result)
    }

    async fn step(
        &self,
        request: &RotationRequest,
        state: &SecretState,
        policy: &RotationPolicy,
    ) -> Result<StepOutcome, RotationError> {
        use RotationStrategy as S;
        match (request.step, policy.strategy) {
            (_, S::Manual) => Err(RotationError::Manual {
                secret: state.name.clone(),
            }),
            (RotationStep::CreateSecret, _) => self.create(request, state, policy).await,
            (RotationStep::SetSecret, S::Random) => Ok(StepOutcome::Done),
            (RotationStep::SetSecret, S::PostgresSingleUser) => {
                self.set_single_user(request, state).await
            }
            (RotationStep::SetSecret, S::PostgresAlternatingUsers) => {
                self.set_alternating_users(request, state).await
            }
            (RotationStep::SetSecret, S::Auth0ClientSecret) => self.set_auth0(request, state).await,
            (RotationStep::TestSecret, S::Random) => self.test_random(request, state, policy).await,
            (RotationStep::TestSecret, S::PostgresSingleUser | S::PostgresAlternatingUsers) => {
                let ctx = self.pg_context(state, policy.strategy).await?;
                let pending = self.pending_pg(request, state).await?;
                check_pg(state, "AWSPENDING value", &pending, &ctx)?;
                self.db.check_login(&login_at(&ctx, &pending)).await?;
                Ok(StepOutcome::Done)
            }
            (RotationStep::TestSecret, S::Auth0ClientSecret) => {
                self.test_auth0(request, state).await
            }
            (RotationStep::FinishSecret, _) => {
                let current = state
                    .version_with(AWSCURRENT)
                    .ok_or_else(|| RotationError::NoCurrentVersion {
                        secret: state.name.clone(),
                    })?
                    .to_owned();
                self.store
                    .promote(&state.arn, &request.token, &current)
                    .await?;
                Ok(StepOutcome::Finished {
                    previous_version: Some(current),
                })
            }
        }
    }

    async fn current_value(&self, state: &SecretState) -> Result<SecretString, RotationError> {
        self.store
            .value(&state.arn, Selector::Stage(AWSCURRENT))
            .await?
            .ok_or_else(|| RotationError::NoCurrentValue {
                secret: state.name.clone(),
            })
    }

    async fn pending_value(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<SecretString, RotationError> {
        self.store
            .value(&state.arn, Selector::Pending(&request.token))
            .await?
            .ok_or_else(|| RotationError::MissingPending {
                token: request.token.clone(),
            })
    }

    async fn new_password(&self, policy: &RotationPolicy) -> Result<SecretString, RotationError> {
        let request = PasswordRequest {
            // Auth0's own client secrets are 64 characters.
            length: policy.password.length.unwrap_or(match policy.strategy {
                RotationStrategy::Auth0ClientSecret => 64,
                _ => 32,
            }),
            exclude_characters: policy
                .password
                .exclude_characters
                .clone()
                .unwrap_or_else(|| policy.strategy.default_excluded_characters().to_owned()),
            // Letters and digits only, like Auth0's own secrets: client applications send them
            // in form bodies and Basic auth, where punctuation needs encoding.
            exclude_punctuation: policy.strategy == RotationStrategy::Auth0ClientSecret,
        };
        let password = self.store.random_password(&request).await?;
        self.redactor.register(&password);
        Ok(password)
    }

    /// The destination the manifest declares for this secret, read now (never cached).
    async fn declared_target(
        &self,
        state: &SecretState,
        strategy: RotationStrategy,
    ) -> Result<RotationTarget, RotationError> {
        use RotationStrategy as S;
        let undeclared = |detail| RotationError::DestinationUndeclared {
            secret: state.name.clone(),
            detail,
        };
        let name: SecretName = state.name.parse().map_err(|_| {
            undeclared("its name is not a keyward name /<org>/<env>/<service>/<name>, so no manifest declares it")
        })?;
        let manifest = self
            .manifests
            .manifest()
            .await
            .map_err(|source| RotationError::ManifestUnavailable { source })?;
        let declared = manifest
            .secret(&name)
            .ok_or_else(|| undeclared("the manifest does not declare it"))?;
        if declared.governance.rotation.strategy != strategy {
            return Err(RotationError::StrategyDisagrees {
                secret: state.name.clone(),
                declared: declared.governance.rotation.strategy,
                tagged: strategy,
            });
        }
        match (&declared.rotation_target, strategy) {
            (
                Some(target @ RotationTarget::Database(_)),
                S::PostgresSingleUser | S::PostgresAlternatingUsers,
            )
            | (Some(target @ RotationTarget::Auth0(_)), S::Auth0ClientSecret) => Ok(target.clone()),
            (_, S::Auth0ClientSecret) => Err(undeclared(
                "the manifest declares no rotation.auth0 {domain, management_secret} for it",
            )),
            _ => Err(undeclared(
                "the manifest declares no rotation.database {host, port, dbname, master_secret} for it",
            )),
        }
    }

    /// A linked secret's ARN, from `DescribeSecret` (metadata; its value is not read here).
    async fn linked(&self, name: &SecretName) -> Result<Linked, RotationError> {
        let described = self.store.describe(&name.to_string()).await?;
        Ok(Linked {
            name: name.clone(),
            arn: described.arn,
        })
    }

    /// The declared database, the trust anchors and the declared master, checked before any
    /// value is compared or any connection made.
    async fn pg_context(
        &self,
        state: &SecretState,
        strategy: RotationStrategy,
    ) -> Result<PgContext, RotationError> {
        let RotationTarget::Database(target) = self.declared_target(state, strategy).await? else {
            unreachable!("declared_target returns a database target for postgres strategies");
        };
        let roots = if self.settings.db_ca_bundle {
            Roots::Pinned
        } else if self.settings.db_system_trust.contains(&state.name) {
            Roots::System
        } else {
            return Err(RotationError::NoCaBundle {
                secret: state.name.clone(),
            });
        };
        let master = match (&target.master_secret, strategy) {
            (Some(name), _) => Some(self.linked(name).await?),
            (None, RotationStrategy::PostgresAlternatingUsers) => {
                return Err(RotationError::NoMaster);
            }
            (None, _) => None,
        };
        Ok(PgContext {
            target,
            roots,
            master,
        })
    }

    async fn auth0_context(&self, state: &SecretState) -> Result<Auth0Context, RotationError> {
        let RotationTarget::Auth0(Auth0Target {
            domain,
            management_secret,
        }) = self
            .declared_target(state, RotationStrategy::Auth0ClientSecret)
            .await?
        else {
            unreachable!("declared_target returns an Auth0 target for auth0-client-secret");
        };
        Ok(Auth0Context {
            tenant: Tenant::parse(&domain)?,
            management: self.linked(&management_secret).await?,
        })
    }

    async fn create(
        &self,
        request: &RotationRequest,
        state: &SecretState,
        policy: &RotationPolicy,
    ) -> Result<StepOutcome, RotationError> {
        // Nothing is stored for a secret whose destination is undeclared or disagrees.
        let pg = match policy.strategy {
            RotationStrategy::PostgresSingleUser | RotationStrategy::PostgresAlternatingUsers => {
                Some(self.pg_context(state, policy.strategy).await?)
            }
            _ => None,
        };
        let auth0 = match policy.strategy {
            RotationStrategy::Auth0ClientSecret => Some(self.auth0_context(state).await?),
            _ => None,
        };
        let current = self.current_value(state).await?;
        self.redactor.register(&current);
        // Re-entrant: a value already stored under the token is the one this rotation uses.
        if self
            .store
            .value(&state.arn, Selector::Pending(&request.token))
            .await?
            .is_some()
        {
            return Ok(StepOutcome::Done);
        }
        let pending = match policy.strategy {
            RotationStrategy::Random => {
                let password = self.new_password(policy).await?;
                match &policy.password.json_key {
                    None => password,
                    Some(key) => {
                        let mut document =
                            documents::object("AWSCURRENT", current.expose_secret())?;
                        document.insert(
                            key.as_str().to_owned(),
                            serde_json::Value::String(password.expose_secret().to_owned()),
                        );
                        SecretString::from(serde_json::Value::Object(document).to_string())
                    }
                }
            }
            strategy @ (RotationStrategy::PostgresSingleUser
            | RotationStrategy::PostgresAlternatingUsers) => {
                let current = PgSecret::parse("AWSCURRENT", current.expose_secret())?;
                check_pg(
                    state,
                    "AWSCURRENT value",
                    &current,
                    pg.as_ref().expect("set above"),
                )?;
                // Single user: a new password for the same user; alternating: for the other one.
                let user = match strategy {
                    RotationStrategy::PostgresAlternatingUsers => {
                        alternate_user(&current.username)?
                    }
                    _ => current.username.clone(),
                };
                let password = self.new_password(policy).await?;
                current.next_version(&user, &password)
            }
            RotationStrategy::Auth0ClientSecret => {
                // keyward makes the new secret and stores it first; Auth0 hears of it only in
                // setSecret, so a failure here leaves the old secret working everywhere.
                let current = Auth0Secret::parse("AWSCURRENT", current.expose_secret())?;
                check_auth0(
                    state,
                    "AWSCURRENT value",
                    &current,
                    auth0.as_ref().expect("set above"),
                )?;
                let password = self.new_password(policy).await?;
                current.next_version(&password)
            }
            RotationStrategy::Manual => {
                return Err(RotationError::Manual {
                    secret: state.name.clone(),
                });
            }
        };
        self.store
            .put_pending(
                &state.arn,
                &request.token,
                &pending,
                request.rotation_token.as_ref(),
            )
            .await?;
        Ok(StepOutcome::Done)
    }

    async fn current_pg(&self, state: &SecretState) -> Result<PgSecret, RotationError> {
        let current = self.current_value(state).await?;
        Ok(PgSecret::parse("AWSCURRENT", current.expose_secret())?)
    }

    async fn pending_pg(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<PgSecret, RotationError> {
        let pending = self.pending_value(request, state).await?;
        Ok(PgSecret::parse("AWSPENDING", pending.expose_secret())?)
    }

    async fn set_single_user(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<StepOutcome, RotationError> {
        let ctx = self
            .pg_context(state, RotationStrategy::PostgresSingleUser)
            .await?;
        let current = self.current_pg(state).await?;
        let pending = self.pending_pg(request, state).await?;
        check_pg(state, "AWSCURRENT value", &current, &ctx)?;
        check_pg(state, "AWSPENDING value", &pending, &ctx)?;
        same_database(&current, &pending)?;
        if current.username != pending.username {
            return Err(RotationError::IdentityChanged { field: "username" });
        }
        match self.db.check_login(&login_at(&ctx, &pending)).await {
            Ok(()) => return Ok(StepOutcome::Done),
            Err(err) if err.is_auth() => {}
            Err(err) => return Err(err.into()),
        }
        // The previous password still works when an earlier attempt changed nothing yet but the
        // current one was rotated out from under us by hand; try it second.
        let previous = self
            .store
            .value(&state.arn, Selector::Stage(AWSPREVIOUS))
            .await
            .ok()
            .flatten()
            .and_then(|text| PgSecret::parse("AWSPREVIOUS", text.expose_secret()).ok())
            .filter(|p| {
                check_pg(state, "AWSPREVIOUS value", p, &ctx).is_ok()
                    && same_database(&current, p).is_ok()
                    && p.username == current.username
            });
        for candidate in std::iter::once(&current).chain(previous.as_ref()) {
            match self
                .db
                .set_own_password(&login_at(&ctx, candidate), &pending.password)
                .await
            {
                Ok(()) => return Ok(StepOutcome::Done),
                Err(err) if err.is_auth() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(RotationError::NoWorkingLogin {
            user: current.username,
        })
    }

    async fn set_alternating_users(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<StepOutcome, RotationError> {
        let ctx = self
            .pg_context(state, RotationStrategy::PostgresAlternatingUsers)
            .await?;
        let current = self.current_pg(state).await?;
        let pending = self.pending_pg(request, state).await?;
        check_pg(state, "AWSCURRENT value", &current, &ctx)?;
        check_pg(state, "AWSPENDING value", &pending, &ctx)?;
        same_database(&current, &pending)?;
        if pending.username != alternate_user(&current.username)? {
            return Err(RotationError::IdentityChanged { field: "username" });
        }
        if pending.masterarn != current.masterarn {
            return Err(RotationError::IdentityChanged { field: "masterarn" });
        }
        let master_ref = ctx.master.as_ref().ok_or(RotationError::NoMaster)?;
        // Every destination check has passed: only now is the master's value read.
        let master = self
            .store
            .value(&master_ref.arn, Selector::Stage(AWSCURRENT))
            .await?
            .ok_or_else(|| RotationError::LinkedSecretMissing {
                field: "master_secret",
                arn: master_ref.arn.clone(),
            })?;
        self.redactor.register(&master);
        let master = MasterSecret::parse(master.expose_secret())?;
        // A master that names its own endpoint must name the declared one.
        let mismatch = |field| RotationError::mismatch(state, "master secret's value", field);
        if let Some(host) = &master.host
            && !host.eq_ignore_ascii_case(&ctx.target.host)
        {
            return Err(mismatch("host"));
        }
        if let Some(port) = master.port
            && port != ctx.target.port
        {
            return Err(mismatch("port"));
        }
        let master_login = PgLogin {
            host: ctx.target.host.clone(),
            port: ctx.target.port,
            dbname: ctx.target.dbname.clone(),
            username: master.username.clone(),
            password: master.password.clone(),
            tls: current.tls,
            roots: ctx.roots,
        };
        let base = base_user(&current.username).to_owned();
        let users = AlternatingUsers {
            clone: format!("{base}{}", documents::CLONE_SUFFIX),
            base,
            current: current.username.clone(),
            pending: pending.username.clone(),
        };
        self.db
            .prepare_alternate(&master_login, &users, &pending.password)
            .await?;
        Ok(StepOutcome::Done)
    }

    async fn set_auth0(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<StepOutcome, RotationError> {
        let ctx = self.auth0_context(state).await?;
        let current = Auth0Secret::parse(
            "AWSCURRENT",
            self.current_value(state).await?.expose_secret(),
        )?;
        let pending = Auth0Secret::parse(
            "AWSPENDING",
            self.pending_value(request, state).await?.expose_secret(),
        )?;
        check_auth0(state, "AWSCURRENT value", &current, &ctx)?;
        check_auth0(state, "AWSPENDING value", &pending, &ctx)?;
        if current.client_id != pending.client_id {
            return Err(RotationError::IdentityChanged { field: "client_id" });
        }
        // Every destination check has passed: only now is the management secret read.
        let management = self
            .store
            .value(&ctx.management.arn, Selector::Stage(AWSCURRENT))
            .await?
            .ok_or_else(|| RotationError::LinkedSecretMissing {
                field: "management_secret",
                arn: ctx.management.arn.clone(),
            })?;
        self.redactor.register(&management);
        let management = ClientCredentials::parse(management.expose_secret())?;
        let token = self
            .auth0
            .token(
                &ctx.tenant,
                &management.client_id,
                &management.client_secret,
                &ctx.tenant.management_audience(),
            )
            .await?;
        self.redactor.register(&token);
        // Idempotent: a retried setSecret sets the same pending value again.
        self.auth0
            .set_client_secret(
                &ctx.tenant,
                &token,
                &pending.client_id,
                &pending.client_secret,
            )
            .await?;
        Ok(StepOutcome::Done)
    }

    async fn test_auth0(
        &self,
        request: &RotationRequest,
        state: &SecretState,
    ) -> Result<StepOutcome, RotationError> {
        let ctx = self.auth0_context(state).await?;
        let pending = Auth0Secret::parse(
            "AWSPENDING",
            self.pending_value(request, state).await?.expose_secret(),
        )?;
        check_auth0(state, "AWSPENDING value", &pending, &ctx)?;
        let tenant = ctx.tenant;
        let audience = pending
            .audience
            .clone()
            .unwrap_or_else(|| tenant.management_audience());
        let started = Instant::now();
        let mut wait = self.settings.auth0_retry_base;
        loop {
            match self
                .auth0
                .token(
                    &tenant,
                    &pending.client_id,
                    &pending.client_secret,
                    &audience,
                )
                .await
            {
                Ok(_) => return Ok(StepOutcome::Done),
                // Auth0 authenticates the client before it checks the grant: its own
                // `access_denied` / `unauthorized_client` answer means the secret was accepted
                // and only the audience or grant type is not granted. Anything else on a 403 (a
                // proxy's or a WAF's page) is `NotAuth0`, a failure.
                Err(Auth0Error::GrantRefused { error, .. }) => {
                    tracing::info!(client_id = %pending.client_id, auth0_error = %error, "Auth0 accepted the new client secret and refused only the grant");
                    return Ok(StepOutcome::Done);
                }
                Err(Auth0Error::Unauthorized { .. })
                    if started.elapsed() + wait <= self.settings.auth0_propagation =>
                {
                    tracing::info!(client_id = %pending.client_id, wait_ms = wait.as_millis() as u64, "new Auth0 client secret not accepted yet; waiting for propagation");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                Err(Auth0Error::Unauthorized { client_id }) => {
                    return Err(RotationError::Auth0NotPropagated {
                        client_id,
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn test_random(
        &self,
        request: &RotationRequest,
        state: &SecretState,
        policy: &RotationPolicy,
    ) -> Result<StepOutcome, RotationError> {
        let pending = self.pending_value(request, state).await?;
        let current = self.current_value(state).await?;
        if pending.expose_secret() == current.expose_secret() {
            return Err(RotationError::BadPending {
                problem: "equals AWSCURRENT",
            });
        }
        match &policy.password.json_key {
            None if pending.expose_secret().is_empty() => Err(RotationError::BadPending {
                problem: "is empty",
            }),
            None => Ok(StepOutcome::Done),
            Some(key) => {
                let document = documents::object("AWSPENDING", pending.expose_secret())?;
                match document.get(key.as_str()) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(StepOutcome::Done),
                    _ => Err(RotationError::BadPending {
                        problem: "lacks a non-empty string under the secret's keyward:json-key",
                    }),
                }
            }
        }
    }
}

fn guard(state: &SecretState, token: &str) -> Result<Guard, RotationError> {
    if state.rotation_enabled == Some(false) {
        return Err(RotationError::RotationDisabled {
            secret: state.name.clone(),
        });
    }
    let stages = state
        .versions
        .get(token)
        .ok_or_else(|| RotationError::UnknownVersion {
            token: token.to_owned(),
            secret: state.name.clone(),
        })?;
    if stages.contains(AWSCURRENT) {
        return Ok(Guard::AlreadyCurrent);
    }
    if !stages.contains(AWSPENDING) {
        return Err(RotationError::NotPending {
            token: token.to_owned(),
            secret: state.name.clone(),
        });
    }
    Ok(Guard::Pending)
}

fn policy(state: &SecretState) -> Result<RotationPolicy, RotationError> {
    match tags::decode(&state.tags) {
        Ok(Some(governance)) => Ok(governance.rotation),
        Ok(None) => Err(RotationError::NotGoverned {
            secret: state.name.clone(),
        }),
        Err(source) => Err(RotationError::Tags {
            secret: state.name.clone(),
            source,
        }),
    }
}

fn governed_strategy(state: &SecretState) -> Option<RotationStrategy> {
    policy(state).ok().map(|p| p.strategy)
}

fn same_database(current: &PgSecret, other: &PgSecret) -> Result<(), RotationError> {
    if current.host != other.host {
        return Err(RotationError::IdentityChanged { field: "host" });
    }
    if current.port != other.port {
        return Err(RotationError::IdentityChanged { field: "port" });
    }
    if current.dbname != other.dbname {
        return Err(RotationError::IdentityChanged { field: "dbname" });
    }
    Ok(())
}

/// A login at the declared endpoint (the value's endpoint has been checked equal to it).
fn login_at(ctx: &PgContext, secret: &PgSecret) -> PgLogin {
    PgLogin {
        host: ctx.target.host.clone(),
        port: ctx.target.port,
        dbname: ctx.target.dbname.clone(),
        username: secret.username.clone(),
        password: secret.password.clone(),
        tls: secret.tls,
        roots: ctx.roots,
    }
}

impl RotationError {
    /// A value field that names something other than the declared destination.
    fn mismatch(state: &SecretState, which: &'static str, field: &'static str) -> Self {
        Self::DestinationMismatch {
            secret: state.name.clone(),
            which,
            field,
        }
    }
}

/// The value's endpoint and master secret are the declared ones. Errors name the field only.
fn check_pg(
    state: &SecretState,
    which: &'static str,
    secret: &PgSecret,
    ctx: &PgContext,
) -> Result<(), RotationError> {
    let mismatch = |field| RotationError::mismatch(state, which, field);
    if !secret.host.eq_ignore_ascii_case(&ctx.target.host) {
        return Err(mismatch("host"));
    }
    if secret.port != ctx.target.port {
        return Err(mismatch("port"));
    }
    if secret.dbname != ctx.target.dbname {
        return Err(mismatch("dbname"));
    }
    // Without a `masterarn` the declared master is used; with one, it must be the declared one.
    match (&secret.masterarn, &ctx.master) {
        (None, _) => Ok(()),
        (Some(reference), Some(master)) if master.is(reference) => Ok(()),
        (Some(_), _) => Err(mismatch("masterarn")),
    }
}

/// The value's tenant and management secret are the declared ones.
fn check_auth0(
    state: &SecretState,
    which: &'static str,
    secret: &Auth0Secret,
    ctx: &Auth0Context,
) -> Result<(), RotationError> {
    let mismatch = |field| RotationError::mismatch(state, which, field);
    let same_tenant = Tenant::parse(&secret.domain)
        .is_ok_and(|t| t.base_url().eq_ignore_ascii_case(ctx.tenant.base_url()));
    if !same_tenant {
        return Err(mismatch("domain"));
    }
    if !ctx.management.is(&secret.management_secret_arn) {
        return Err(mismatch("management_secret_arn"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
