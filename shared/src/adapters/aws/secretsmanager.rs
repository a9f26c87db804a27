//! Secrets Manager: the catalogue of secrets, their resource policies, and configuration
//! secrets read at cold start.

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::{sdk_error_text, to_chrono};
use crate::ports::{CatalogEntry, CatalogError, ResourcePolicies, SecretCatalog};
use crate::tags::{self, Tag};

/// The string value of a configuration secret (a token, a webhook URL), read once at cold
/// start. `what` names it in errors (e.g. "the webhook secret"); the value never appears there.
pub async fn config_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    what: &str,
) -> Result<String, String> {
    client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| format!("reading {what}: {}", sdk_error_text(&e)))?
        .secret_string
        .ok_or_else(|| format!("{what} holds no string value"))
}

/// Lists secrets with `ListSecrets` (which carries tags, rotation and access dates and the KMS
/// key, so no per-secret `DescribeSecret` is needed).
#[derive(Debug, Clone)]
pub struct SecretsManagerCatalog {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerCatalog {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

pub fn tags_from_sdk(tags: &[aws_sdk_secretsmanager::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect()
}

pub fn tags_to_sdk(tags: &[Tag]) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

impl SecretCatalog for SecretsManagerCatalog {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut pages = self
            .client
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .include_planned_deletion(true)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CatalogError(sdk_error_text(&e)))?;
            for s in page.secret_list() {
                let name = s.name().unwrap_or_default();
                // The name filter is a prefix match on AWS; keep the check so a looser
                // implementation cannot leak other secrets into the result.
                if !name.starts_with(prefix) {
                    continue;
                }
                let tags = tags_from_sdk(s.tags());
                out.push(CatalogEntry {
                    arn: s.arn().unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                    governance: tags::decode(&tags),
                    tags,
                    rotation_enabled: s.rotation_enabled().unwrap_or(false),
                    rotation_days: s
                        .rotation_rules()
                        .and_then(|r| r.automatically_after_days()),
                    rotation_lambda_arn: s.rotation_lambda_arn().map(str::to_owned),
                    last_rotated: s.last_rotated_date().and_then(to_chrono),
                    next_rotation: s.next_rotation_date().and_then(to_chrono),
                    last_changed: s.last_changed_date().and_then(to_chrono),
                    last_accessed: s.last_accessed_date().and_then(to_chrono),
                    created: s.created_date().and_then(to_chrono),
                    deleted: s.deleted_date().and_then(to_chrono),
                    kms_key_id: s.kms_key_id().map(str::to_owned),
                    primary_region: s.primary_region().map(str::to_owned),
                    current_version: s.secret_versions_to_stages().and_then(|versions| {
                        versions
                            .iter()
                            .find(|(_, stages)| stages.iter().any(|st| st == "AWSCURRENT"))
                            .map(|(version, _)| version.clone())
                    }),
                });
            }
        }
        Ok(out)
    }
}

impl ResourcePolicies for SecretsManagerCatalog {
    async fn policy(&self, arn: &str) -> Result<Option<String>, CatalogError> {
        let out = self
            .client
            .get_resource_policy()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| CatalogError(sdk_error_text(&e)))?;
        Ok(out.resource_policy().map(str::to_owned))
    }
}
