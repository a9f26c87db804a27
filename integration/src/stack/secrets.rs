//! The manifest's secrets, tagged by the tag contract, each with a value of the shape its
//! strategy rotates.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use keyward_shared::adapters::aws::tags_to_sdk;
use keyward_shared::manifest::{DeclaredSecret, Manifest};
use keyward_shared::redact::SecretString;
use keyward_shared::tags;

use super::Rotation;
use crate::moto::MotoServer;

/// Creates every declared secret (the credentials others name first); returns the passwords
/// and values it provisioned.
pub async fn provision(
    moto: &MotoServer,
    manifest: &Manifest,
    rotation: &mut Rotation,
) -> Result<Vec<SecretString>> {
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let mut ordered: Vec<_> = manifest.secrets.iter().collect();
    ordered.sort_by_key(|s| !Rotation::is_linked_credential(s));
    let mut provisioned = Vec::new();
    let mut arns: BTreeMap<String, String> = BTreeMap::new();
    for declared in ordered {
        let password = random_password(&secrets, declared).await?;
        let value = rotation.value(declared, &password, &arns).await?;
        let tags = tags::encode(&declared.governance)?;
        let arn = secrets
            .create_secret()
            .name(declared.name.to_string())
            .set_description(declared.description.clone())
            .secret_string(&value)
            .set_tags(Some(tags_to_sdk(&tags)))
            .send()
            .await
            .with_context(|| format!("create {}", declared.name))?
            .arn
            .context("CreateSecret returned no ARN")?;
        arns.insert(declared.name.to_string(), arn);
        provisioned.push(SecretString::from(password));
        provisioned.push(SecretString::from(value));
    }
    Ok(provisioned)
}

/// A password without the characters the secret's strategy excludes.
async fn random_password(
    secrets: &aws_sdk_secretsmanager::Client,
    declared: &DeclaredSecret,
) -> Result<String> {
    let strategy = declared.governance.rotation.strategy;
    secrets
        .get_random_password()
        .password_length(40)
        .exclude_characters(strategy.default_excluded_characters())
        .send()
        .await?
        .random_password
        .context("GetRandomPassword returned no password")
}
