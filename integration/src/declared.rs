//! A moto account exactly as a manifest declares it, for the drift detector's and `keyward
//! plan`'s tests: the sample manifest under a fresh org, every secret of one environment
//! created with its tags, a customer-managed key, rotation (automatic strategies), replicas and
//! a resource policy naming only its readers.

use std::collections::BTreeMap;

use keyward_shared::adapters::aws::tags_to_sdk;
use keyward_shared::governance::RotationStrategy;
use keyward_shared::manifest::Manifest;

use crate::moto::MotoServer;

/// The sample manifest's files (`infra/config/manifest`) with the org renamed to `org`.
pub fn manifest_files(org: &str) -> Vec<(String, String)> {
    let dir = crate::repo_root().join("infra/config/manifest");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
                .map(|path| {
                    let name = path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .replace("org: acme", &format!("org: {org}"));
                    (name, text)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

pub fn manifest_from(files: &[(String, String)]) -> anyhow::Result<Manifest> {
    let docs: Vec<(&str, &str)> = files
        .iter()
        .filter(|(n, _)| n != "enums.yaml")
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let enums = files
        .iter()
        .find(|(n, _)| n == "enums.yaml")
        .ok_or_else(|| anyhow::anyhow!("no enums.yaml"))?;
    Ok(Manifest::from_sources(
        &docs,
        (enums.0.as_str(), enums.1.as_str()),
    )?)
}

pub const SEEDED_VALUE: &str = r#"{"username":"app","password":"not-a-real-password-1"}"#;

/// `RotateSecret` without invoking anything.
///
/// moto workaround: its `RotateSecret` checks the Lambda after setting the rotation fields and
/// starting AWSPENDING; with `prepare_rotation`'s placeholder function it succeeds, and
/// `RotateImmediately=false` keeps it from invoking anything (as on AWS).
pub async fn enable_rotation(moto: &MotoServer, arn: &str, days: u32) -> anyhow::Result<()> {
    let lambda = moto.prepare_rotation().await?;
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .rotate_secret()
        .secret_id(arn)
        .rotation_lambda_arn(lambda)
        .rotate_immediately(false)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(i64::from(days))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// A resource policy allowing `GetSecretValue` to `principal` (a JSON principal value).
pub async fn put_policy(
    moto: &MotoServer,
    arn: &str,
    principal: &serde_json::Value,
) -> anyhow::Result<()> {
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": principal, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .put_resource_policy()
        .secret_id(arn)
        .resource_policy(policy.to_string())
        .send()
        .await?;
    Ok(())
}

/// Creates every secret `manifest` declares in `env`, as declared. Returns name → (ARN,
/// version id).
pub async fn seed(
    moto: &MotoServer,
    manifest: &Manifest,
    env: &str,
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let key = aws_sdk_kms::Client::new(&moto.sdk_config())
        .create_key()
        .send()
        .await?
        .key_metadata
        .and_then(|m| m.arn)
        .ok_or_else(|| anyhow::anyhow!("CreateKey returned no ARN"))?;
    let mut out = BTreeMap::new();
    for d in manifest.scope(env, None) {
        let name = d.name.to_string();
        let mut create = sm
            .create_secret()
            .name(&name)
            .secret_string(SEEDED_VALUE)
            .kms_key_id(&key)
            .set_tags(Some(tags_to_sdk(&keyward_shared::tags::encode(
                &d.governance,
            )?)));
        for region in &d.governance.replicas {
            create = create.add_replica_regions(
                aws_sdk_secretsmanager::types::ReplicaRegionType::builder()
                    .region(region.as_str())
                    .build(),
            );
        }
        let created = create.send().await?;
        let arn = created.arn.unwrap_or_default();
        if d.governance.rotation.strategy != RotationStrategy::Manual {
            enable_rotation(moto, &arn, d.governance.rotation.interval.days()).await?;
        }
        if !d.governance.readers.is_empty() {
            let principals: Vec<&str> = d.governance.readers.iter().map(|r| r.as_str()).collect();
            put_policy(moto, &arn, &serde_json::json!({ "AWS": principals })).await?;
        }
        out.insert(name, (arn, created.version_id.unwrap_or_default()));
    }
    Ok(out)
}
