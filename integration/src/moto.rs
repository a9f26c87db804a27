//! A moto server (PyPI `moto[server]`) on 127.0.0.1, started from the project's virtualenv.
//!
//! moto diverges from AWS in known places (see `../shared/reference/`); tests are written to hold
//! on real AWS too, and any workaround for moto is named where it is made.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::process::Supervised;
use crate::{free_port, venv_dir, wait_until};

pub const REGION: &str = "eu-west-1";

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error(
        "moto_server not found at {0}: run `scripts/test.sh` (or `source scripts/lib.sh && ensure_python_tools`) to create the virtualenv"
    )]
    NotInstalled(PathBuf),
    #[error("starting moto failed: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("moto did not become ready on {endpoint} within {secs}s (log: {log})")]
    NotReady {
        endpoint: String,
        secs: u64,
        log: String,
    },
}

#[derive(Debug)]
pub struct MotoServer {
    pub endpoint: String,
    pub log_path: PathBuf,
    _process: Supervised,
}

impl MotoServer {
    /// Starts a fresh moto server on a free loopback port and waits until it answers.
    pub async fn start() -> Result<Self, MotoError> {
        let binary = venv_dir().join("bin/moto_server");
        if !binary.exists() {
            return Err(MotoError::NotInstalled(binary));
        }
        // moto's server through a wrapper that corrects its RSASSA-PSS salt length to KMS's
        // (integration/moto/serve.py says why).
        let python = venv_dir().join("bin/python");
        let wrapper = crate::repo_root().join("integration/moto/serve.py");
        let log_dir = crate::target_dir().join("keyward-logs");
        std::fs::create_dir_all(&log_dir)?;
        let mut last_error = None;
        // The free port can be taken between probing and binding: try a few.
        for _ in 0..3 {
            let port = free_port()?;
            let endpoint = format!("http://127.0.0.1:{port}");
            let log_path = log_dir.join(format!("moto-{port}.log"));
            let log = std::fs::File::create(&log_path)?;
            let mut command = Command::new(&python);
            command
                .arg(&wrapper)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            let mut process = Supervised::spawn("moto", command)?;
            let probe = reqwest::Client::new();
            let url = format!("{endpoint}/moto-api/");
            let ready = wait_until(Duration::from_secs(60), || {
                let probe = probe.clone();
                let url = url.clone();
                async move {
                    probe
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            })
            .await;
            if ready {
                return Ok(Self {
                    endpoint,
                    log_path,
                    _process: process,
                });
            }
            process.terminate();
            last_error = Some(MotoError::NotReady {
                endpoint,
                secs: 60,
                log: log_path.display().to_string(),
            });
        }
        Err(last_error
            .unwrap_or_else(|| MotoError::Spawn(std::io::Error::other("no attempt made"))))
    }

    /// One moto per test process, started on first use: moto keeps state per account and
    /// region, so tests isolate themselves with unique resource names instead of restarts.
    pub async fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        if let Some(server) = SHARED.get() {
            return server;
        }
        let _guard = STARTING.lock().await;
        if let Some(server) = SHARED.get() {
            return server;
        }
        let server = Self::start().await.unwrap_or_else(|e| panic!("{e}"));
        SHARED.get_or_init(|| server)
    }

    /// SDK configuration for talking to this server, as the functions' default chain would build
    /// it from `AWS_ENDPOINT_URL` and test credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::for_tests(),
            ))
            .http_client(
                keyward_shared::adapters::aws::sdk_http_client()
                    .expect("the built-in trust roots always load"),
            )
            .build()
    }

    /// The environment a function process needs to reach this server through the default chain.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            // moto serves every bucket on one host: path-style addressing.
            ("KEYWARD_S3_FORCE_PATH_STYLE", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        keyward_shared::adapters::aws::s3_client(&self.sdk_config(), true)
    }
}

/// How a test bucket is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// Versioned, without Object Lock: plays an attacker who got past the lock.
    Versioned,
    /// As the template declares the audit bucket: Object Lock, COMPLIANCE default retention.
    ObjectLockCompliance { days: i32 },
}

impl MotoServer {
    /// Writes manifest files (name, YAML text) under `manifest/` in the bucket, as CI does.
    pub async fn put_manifest(
        &self,
        bucket: &str,
        files: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> anyhow::Result<()> {
        let s3 = self.s3();
        for (name, text) in files {
            let key = format!("manifest/{}", name.as_ref());
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(text.as_ref().as_bytes().to_vec().into())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("upload {key}: {e}"))?;
        }
        Ok(())
    }

    pub async fn create_bucket(&self, name: &str, kind: BucketKind) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{
            BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
            DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
            ObjectLockRule, VersioningConfiguration,
        };
        let s3 = self.s3();
        s3.create_bucket()
            .bucket(name)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(REGION))
                    .build(),
            )
            .object_lock_enabled_for_bucket(matches!(kind, BucketKind::ObjectLockCompliance { .. }))
            .send()
            .await?;
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await?;
        if let BucketKind::ObjectLockCompliance { days } = kind {
            let retention = DefaultRetention::builder()
                .mode(ObjectLockRetentionMode::Compliance)
                .days(days)
                .build();
            s3.put_object_lock_configuration()
                .bucket(name)
                .object_lock_configuration(
                    ObjectLockConfiguration::builder()
                        .object_lock_enabled(ObjectLockEnabled::Enabled)
                        .rule(
                            ObjectLockRule::builder()
                                .default_retention(retention)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await?;
        }
        Ok(())
    }

    /// An asymmetric RSA key for signing audit digests, as the template's `AuditDigestKey`.
    pub async fn create_signing_key(&self) -> anyhow::Result<String> {
        let out = aws_sdk_kms::Client::new(&self.sdk_config())
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .description("keyward audit digest signing key (local)")
            .send()
            .await?;
        out.key_metadata
            .map(|m| m.key_id)
            .ok_or_else(|| anyhow::anyhow!("CreateKey returned no key"))
    }
}

/// A stand-in deployment package: moto stores it but, with Docker disabled, never runs it.
const PLACEHOLDER_ZIP_B64: &str = "UEsDBBQAAAAAAAAAIQCB6POMAQAAAAEAAAAJAAAAYm9vdHN0cmFweFBLAQIUAxQAAAAAAAAAIQCB6POMAQAAAAEAAAAJAAAAAAAAAAAAAACAAQAAAABib290c3RyYXBQSwUGAAAAAAEAAQA3AAAAKAAAAAAA";
pub const ROTATION_FUNCTION: &str = "keyward-rotation";

impl MotoServer {
    /// Readies moto for `RotateSecret` with the real handler driven step by step by the test
    /// (playing Secrets Manager's part): Lambda execution off, so `RotateSecret` only enables
    /// rotation and creates the empty AWSPENDING version; a role and a placeholder function, so
    /// `RotateSecret` finds its `RotationLambdaARN` (moto checks it after its side effects).
    /// Idempotent. IAM and Lambda are called over plain HTTP: their SDK crates would be built
    /// for these three calls alone.
    pub async fn prepare_rotation(&self) -> anyhow::Result<String> {
        static READY: tokio::sync::Mutex<Vec<String>> = tokio::sync::Mutex::const_new(Vec::new());
        let arn = format!("arn:aws:lambda:{REGION}:123456789012:function:{ROTATION_FUNCTION}");
        let mut ready = READY.lock().await;
        if ready.contains(&self.endpoint) {
            return Ok(arn);
        }
        let http = reqwest::Client::new();
        let auth = |service: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
            )
        };
        http.post(format!("{}/moto-api/config", self.endpoint))
            .json(&serde_json::json!({"lambda": {"use_docker": false}}))
            .send()
            .await?
            .error_for_status()?;
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let role = http
            .post(format!("{}/", self.endpoint))
            .header("authorization", auth("iam"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", ROTATION_FUNCTION),
                ("AssumeRolePolicyDocument", trust),
            ]))
            .send()
            .await?;
        let status = role.status();
        let body = role.text().await.unwrap_or_default();
        if !status.is_success() && !body.contains("EntityAlreadyExists") {
            anyhow::bail!("moto CreateRole returned {status}: {body}");
        }
        let function = http
            .post(format!("{}/2015-03-31/functions", self.endpoint))
            .header("authorization", auth("lambda"))
            .json(&serde_json::json!({
                "FunctionName": ROTATION_FUNCTION,
                "Runtime": "provided.al2023",
                "Role": format!("arn:aws:iam::123456789012:role/{ROTATION_FUNCTION}"),
                "Handler": "bootstrap",
                "Code": {"ZipFile": PLACEHOLDER_ZIP_B64},
            }))
            .send()
            .await?;
        let status = function.status();
        let body = function.text().await.unwrap_or_default();
        if !status.is_success() && !body.contains("ResourceConflictException") {
            anyhow::bail!("moto CreateFunction returned {status}: {body}");
        }
        ready.push(self.endpoint.clone());
        Ok(arn)
    }

    /// `RotateSecret` as Secrets Manager's scheduler calls it: enables rotation and creates the
    /// empty AWSPENDING version `token`. The test then invokes the function's four steps.
    pub async fn start_rotation(&self, secret_id: &str, token: &str) -> anyhow::Result<()> {
        let lambda = self.prepare_rotation().await?;
        aws_sdk_secretsmanager::Client::new(&self.sdk_config())
            .rotate_secret()
            .secret_id(secret_id)
            .client_request_token(token)
            .rotation_lambda_arn(lambda)
            .rotation_rules(
                aws_sdk_secretsmanager::types::RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }

    /// moto workaround: its `RotateSecret` refuses to start while AWSPENDING sits on the
    /// AWSCURRENT version, which is the normal state after finishSecret (AWS strips it
    /// itself). Harmless on AWS.
    pub async fn strip_pending(&self, secret_id: &str) -> anyhow::Result<()> {
        let sm = aws_sdk_secretsmanager::Client::new(&self.sdk_config());
        let described = sm.describe_secret().secret_id(secret_id).send().await?;
        for (version, stages) in described.version_ids_to_stages.unwrap_or_default() {
            if stages.iter().any(|s| s == "AWSPENDING") {
                sm.update_secret_version_stage()
                    .secret_id(secret_id)
                    .version_stage("AWSPENDING")
                    .remove_from_version_id(version)
                    .send()
                    .await?;
            }
        }
        Ok(())
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = crate::support::percent_encode;
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
