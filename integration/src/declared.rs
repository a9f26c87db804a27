//! A moto account exactly as a manifest declares it, for the drift detector's and `keyward
//! plan`'s tests: the sample manifest under a fresh org, every secret of one environment
//! created with its tags, a customer-managed key, rotation (automatic strategies), replicas and
//! a resource policy naming only its readers.

use std::collections::BTreeMap;

use keyward_shared::adapters::aws::tags_to_sdk;
use keyward_shared::governance::{Governance, RotationStrategy};
use keyward_shared::manifest::{DeclaredSecret, Enums, Manifest, Origin, RotationTarget};
use keyward_shared::naming::{SecretName, Segment, SegmentKind};
use keyward_shared::ports::{ManifestReadError, ManifestSource};

use crate::moto::MotoServer;

/// The sample manifest's files (`infra/config/manifest`) with the org renamed to `org` (in
/// the header and in the secret names it links).
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
                        .replace("org: acme", &format!("org: {org}"))
                        // Linked secrets (rotation destinations) are named in full.
                        .replace("/acme/", &format!("/{org}/"));
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

/// A manifest a test declares secret by secret, as a reviewed manifest would, and reads back
/// through the [`ManifestSource`] port: what vercel-sync (and the other readers of declared
/// governance) see.
#[derive(Clone, Default)]
pub struct LiveManifest {
    declared: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Declared>>>,
}

#[derive(Clone)]
struct Declared {
    governance: Governance,
    rotation_target: Option<RotationTarget>,
}

impl LiveManifest {
    /// Declares (or re-declares) `name` with `governance`.
    pub fn declare(&self, name: &str, governance: Governance) {
        self.declare_rotating(name, governance, None);
    }

    /// Declares `name` with `governance` and where its rotation sends credentials.
    pub fn declare_rotating(
        &self,
        name: &str,
        governance: Governance,
        rotation_target: Option<RotationTarget>,
    ) {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_owned(),
                Declared {
                    governance,
                    rotation_target,
                },
            );
    }

    /// Declares `name` with the governance its tags carry (as CI applies a declaration).
    pub fn declare_tags(&self, name: &str, tags: &[keyward_shared::tags::Tag]) {
        if let Ok(Some(governance)) = keyward_shared::tags::decode(tags) {
            self.declare(name, governance);
        }
    }

    pub fn undeclare(&self, name: &str) {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The manifest as of now: every declared secret (all of one org).
    pub fn snapshot(&self) -> Result<Manifest, ManifestReadError> {
        let declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        let mut secrets = Vec::new();
        let mut environments = std::collections::BTreeSet::new();
        let mut org = None;
        for (name, entry) in declared.iter() {
            let name: SecretName = name
                .parse()
                .map_err(|e| ManifestReadError(format!("{name}: {e}")))?;
            org.get_or_insert_with(|| name.org().clone());
            environments.insert(name.env().clone());
            secrets.push(DeclaredSecret {
                name,
                description: None,
                governance: entry.governance.clone(),
                rotation_target: entry.rotation_target.clone(),
                kubernetes: None,
                origin: Origin {
                    file: "declared-by-test.yaml".into(),
                    path: String::new(),
                },
            });
        }
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Manifest {
            org: match org {
                Some(org) => org,
                None => Segment::parse(SegmentKind::Org, "empty")
                    .map_err(|e| ManifestReadError(e.to_string()))?,
            },
            environments: environments.into_iter().collect(),
            enums: Enums {
                secret_types: BTreeMap::new(),
                domains: Default::default(),
                owners: Default::default(),
                rotation: RotationStrategy::ALL.to_vec(),
            },
            secrets,
        })
    }
}

impl ManifestSource for LiveManifest {
    async fn manifest(&self) -> Result<Manifest, ManifestReadError> {
        self.snapshot()
    }
}
