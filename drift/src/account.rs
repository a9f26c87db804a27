//! The ports detection reads through, and their AWS adapters. The declared state: the manifest
//! CI wrote to S3 ([`ManifestSource`]). The actual state ([`Account`]): the secrets as
//! `ListSecrets` shows them,
//! replication status (`DescribeSecret`, only for secrets that declare replicas) and resource
//! policies (`GetResourcePolicy`, bounded concurrency: it shares a 50 TPS quota with
//! Get/Put/DeleteResourcePolicy). Every call is counted, so a run reports what it cost.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use keyward_shared::adapters::aws::{SecretsManagerCatalog, sdk_error_text};
use keyward_shared::ports::{CatalogEntry, ResourcePolicies, SecretCatalog};
use keyward_shared::redact::SafeText;
use serde::Serialize;

use crate::findings::{PolicyGrants, ReplicaStatus};

pub use keyward_shared::adapters::aws::S3Manifest;
pub use keyward_shared::ports::ManifestSource;

impl From<keyward_shared::ports::ManifestReadError> for AccountError {
    fn from(e: keyward_shared::ports::ManifestReadError) -> Self {
        Self::Manifest(e.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("reading the manifest: {0}")]
    Manifest(String),
    #[error("{operation} failed: {reason}")]
    Aws {
        operation: &'static str,
        reason: SafeText,
    },
}

/// API calls made in one run, by operation.
#[derive(Debug, Default)]
pub struct CallCounter {
    pub list_pages: AtomicU64,
    pub describe: AtomicU64,
    pub get_policy: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Calls {
    pub list_secrets_pages: u64,
    pub describe_secret: u64,
    pub get_resource_policy: u64,
}

impl Calls {
    /// The calls made since `earlier` was taken.
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls {
            list_secrets_pages: self.list_secrets_pages - earlier.list_secrets_pages,
            describe_secret: self.describe_secret - earlier.describe_secret,
            get_resource_policy: self.get_resource_policy - earlier.get_resource_policy,
        }
    }
}

impl CallCounter {
    pub fn snapshot(&self) -> Calls {
        Calls {
            list_secrets_pages: self.list_pages.load(Ordering::Relaxed),
            describe_secret: self.describe.load(Ordering::Relaxed),
            get_resource_policy: self.get_policy.load(Ordering::Relaxed),
        }
    }
}

/// The account as it is.
pub trait Account: Send + Sync {
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<CatalogEntry>, AccountError>> + Send;
    fn replication(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Vec<ReplicaStatus>, AccountError>> + Send;
    /// `Ok(None)`: the secret has no resource policy.
    fn policy(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<String>, AccountError>> + Send;
    fn calls(&self) -> Calls;
}

/// How many `GetResourcePolicy` calls are in flight at once (the SDK's standard retry backs off
/// on throttling; 8 in flight stays well under the shared 50 TPS).
pub const POLICY_CONCURRENCY: usize = 8;

/// The account through Secrets Manager.
pub struct AwsAccount {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub counter: CallCounter,
}

impl AwsAccount {
    pub fn new(secrets: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            secrets,
            counter: CallCounter::default(),
        }
    }
}

impl Account for AwsAccount {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, AccountError> {
        // The catalog adapter asks for pages of 100 (`MaxResults`), so the walk took
        // ceil(n / 100) pages (at least one).
        let entries = SecretsManagerCatalog::new(self.secrets.clone())
            .list(prefix)
            .await
            .map_err(|e| AccountError::Aws {
                operation: "ListSecrets",
                reason: e.0,
            })?;
        self.counter.list_pages.fetch_add(
            (entries.len() as u64).div_ceil(100).max(1),
            Ordering::Relaxed,
        );
        Ok(entries)
    }

    async fn replication(&self, arn: &str) -> Result<Vec<ReplicaStatus>, AccountError> {
        self.counter.describe.fetch_add(1, Ordering::Relaxed);
        let out = self
            .secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| AccountError::Aws {
                operation: "DescribeSecret",
                reason: sdk_error_text(&e),
            })?;
        Ok(out
            .replication_status()
            .iter()
            .map(|r| ReplicaStatus {
                region: r.region().unwrap_or_default().to_owned(),
                status: r
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                message: r.status_message().map(str::to_owned),
            })
            .collect())
    }

    async fn policy(&self, arn: &str) -> Result<Option<String>, AccountError> {
        self.counter.get_policy.fetch_add(1, Ordering::Relaxed);
        SecretsManagerCatalog::new(self.secrets.clone())
            .policy(arn)
            .await
            .map_err(|e| AccountError::Aws {
                operation: "GetResourcePolicy",
                reason: e.0,
            })
    }

    fn calls(&self) -> Calls {
        self.counter.snapshot()
    }
}

/// Replication status of every listed secret that declares replicas.
pub async fn replication_of<A: Account>(
    account: &A,
    wanted: &[(String, String)],
) -> Result<BTreeMap<String, Vec<ReplicaStatus>>, AccountError> {
    let mut out = BTreeMap::new();
    for (name, arn) in wanted {
        out.insert(name.clone(), account.replication(arn).await?);
    }
    Ok(out)
}

/// Resource policies of the given secrets, `POLICY_CONCURRENCY` at a time.
pub async fn policies_of<A: Account>(
    account: &A,
    secrets: &[(String, String)],
) -> Result<BTreeMap<String, Option<PolicyGrants>>, AccountError> {
    let results: Vec<(String, Result<Option<String>, AccountError>)> =
        // Owned items: a closure over borrowed tuples makes the future's `Send` bound
        // lifetime-generic, which the compiler cannot prove.
        futures::stream::iter(secrets.iter().cloned().map(|(name, arn)| async move {
            let result = account.policy(&arn).await;
            (name, result)
        }))
        .buffer_unordered(POLICY_CONCURRENCY)
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for (name, result) in results {
        let grants = result?.as_deref().map(PolicyGrants::parse_or_public);
        out.insert(name, grants);
    }
    Ok(out)
}
