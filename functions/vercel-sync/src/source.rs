//! Secrets Manager as the sync reads it: which secrets exist with which tags and current
//! version (`ListSecrets` pages or one `DescribeSecret`), and a value by explicit version id,
//! so the value written is the very version recorded in the ledger even if a rotation lands
//! meanwhile.

use std::future::Future;

use keyward_shared::adapters::aws::{SecretsManagerCatalog, sdk_error_text, tags_from_sdk};
use keyward_shared::ports::SecretCatalog;
use keyward_shared::redact::{Redactor, SafeText};
use keyward_shared::tags::Tag;
use secrecy::SecretString;

/// One secret as the sync needs it (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSnapshot {
    pub arn: String,
    pub name: String,
    pub tags: Vec<Tag>,
    /// The `AWSCURRENT` version; `None` for a secret without a value yet.
    pub current_version: Option<String>,
    /// Scheduled for deletion: its variables are orphans.
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("Secrets Manager {operation} failed: {reason}")]
pub struct SourceError {
    pub operation: &'static str,
    pub reason: SafeText,
}

pub trait SecretSource: Send + Sync {
    /// `Ok(None)`: no such secret (deleted for good, or never existed).
    fn describe(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<Option<SecretSnapshot>, SourceError>> + Send;
    /// Every secret under `prefix`, those scheduled for deletion included.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<SecretSnapshot>, SourceError>> + Send;
    fn value(
        &self,
        arn: &str,
        version_id: &str,
    ) -> impl Future<Output = Result<SecretString, SourceError>> + Send;
}

pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    catalog: SecretsManagerCatalog,
    redactor: Redactor,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, redactor: Redactor) -> Self {
        Self {
            catalog: SecretsManagerCatalog::new(client.clone()),
            client,
            redactor,
        }
    }
}

impl SecretSource for SecretsManagerSource {
    async fn describe(&self, secret_id: &str) -> Result<Option<SecretSnapshot>, SourceError> {
        match self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
        {
            Ok(out) => Ok(Some(SecretSnapshot {
                arn: out.arn().unwrap_or_default().to_owned(),
                name: out.name().unwrap_or_default().to_owned(),
                tags: tags_from_sdk(out.tags()),
                current_version: out.version_ids_to_stages().and_then(|versions| {
                    versions
                        .iter()
                        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                        .map(|(v, _)| v.clone())
                }),
                deleted: out.deleted_date().is_some(),
            })),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(SourceError {
                operation: "DescribeSecret",
                reason: sdk_error_text(&err),
            }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<SecretSnapshot>, SourceError> {
        let entries = self.catalog.list(prefix).await.map_err(|e| SourceError {
            operation: "ListSecrets",
            reason: e.0,
        })?;
        Ok(entries
            .into_iter()
            .map(|e| SecretSnapshot {
                arn: e.arn,
                name: e.name,
                tags: e.tags,
                current_version: e.current_version,
                deleted: e.deleted.is_some(),
            })
            .collect())
    }

    async fn value(&self, arn: &str, version_id: &str) -> Result<SecretString, SourceError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| SourceError {
                operation: "GetSecretValue",
                reason: sdk_error_text(&e),
            })?;
        let value = out.secret_string().ok_or_else(|| SourceError {
            operation: "GetSecretValue",
            reason: SafeText::fixed(
                "the secret holds binary data; Vercel variables take text (store it as a string)",
            ),
        })?;
        let value = SecretString::from(value.to_owned());
        self.redactor.register(&value);
        Ok(value)
    }
}
