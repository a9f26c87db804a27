//! The local stack: moto, the bus, buckets and queues of `infra/template.yaml`, the secrets of the
//! sample manifest, and every function binary under a local Runtime API, with events routed
//! between them by the template's EventBridge rules.
//!
//! Events take the production path: functions call `PutEvents` on the bus in moto (through
//! `AWS_ENDPOINT_URL`); a catch-all rule on that bus copies every event to a tap queue; the stack
//! drains the tap, matches each event against the template's rules with quamina and invokes the
//! target functions. A failed invocation goes to the dead-letter queue, as Lambda's async DLQ
//! would after its retries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keyward_shared::adapters::aws::{EventBridgePublisher, tags_to_sdk};
use keyward_shared::events::DomainEvent;
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::EventPublisher;
use keyward_shared::redact::SecretString;
use keyward_shared::tags;

use crate::fakes::auth0::{FakeAuth0, ROTATE_SCOPE, RunningAuth0};
use crate::fakes::github::{FakeGithub, RunningGithub};
use crate::fakes::jira::{FakeJira, RunningJira};
use crate::fakes::loki::{FakeLoki, RunningLoki};
use crate::fakes::oidc::{FakeIssuer, RunningIssuer};
use crate::fakes::vercel::{FakeVercel, RunningVercel};
use crate::fakes::webhook::{FakeWebhook, RunningWebhook};
use crate::moto::{BucketKind, MotoServer};
use crate::postgres::PostgresCluster;
use crate::router::{Router, ScheduleDef, TemplateModel, TemplateValue};
use crate::runtime_api::LocalFunction;

pub const BUS_LOGICAL_ID: &str = "EventBus";
/// The CI gateway's audience in the local stack (the template parameter `GatewayAudience`).
pub const GATEWAY_AUDIENCE: &str = "https://keyward.acme.test/ci";
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The Vercel token the local stack's credentials secret holds (the fake accepts only it).
pub const VERCEL_TOKEN: &str = "vcp_localstack_7c1d9e2f4a6b8c0d";
/// The drift detector's GitHub token and Jira credentials (the fakes accept only these).
pub const GITHUB_TOKEN: &str = "ghp_localstack0123456789abcdef";
pub const JIRA_EMAIL: &str = "keyward@acme.example";
pub const JIRA_TOKEN: &str = "ATATT3xFfGF0localstack";

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub template: PathBuf,
    pub manifest: PathBuf,
    /// Where the function binaries are (`target/debug` or `target/release`).
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Appended to resource names so two stacks on one moto never collide.
    pub suffix: String,
}

impl StackOptions {
    pub fn defaults() -> Self {
        let root = crate::repo_root();
        Self {
            template: root.join("infra/template.yaml"),
            manifest: root.join("infra/config/manifest"),
            bin_dir: crate::target_dir().join("debug"),
            log_dir: crate::target_dir().join("keyward-logs/local-stack"),
            suffix: format!("{:08x}", fastrand_suffix()),
        }
    }
}

fn fastrand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// One line of the timeline: what happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at_ms: u128,
    pub event: String,
    pub rule: String,
    pub function: String,
    pub outcome: String,
}

pub struct LocalStack {
    pub moto: MotoServer,
    pub bus_name: String,
    pub audit_bucket: String,
    pub dlq_url: String,
    pub tap_url: String,
    pub digest_key_id: String,
    pub schedules: Vec<ScheduleDef>,
    pub manifest: Manifest,
    /// Secret values provisioned, kept only so tests can prove none of them leaks into output.
    pub provisioned_values: Vec<SecretString>,
    pub functions: BTreeMap<String, LocalFunction>,
    /// The database the PostgreSQL secrets log in to (TLS, verified against `ca_bundle`).
    pub postgres: PostgresCluster,
    pub ca_bundle: PathBuf,
    /// The Auth0 tenant the `auth0-client-secret` secrets belong to.
    pub auth0: RunningAuth0,
    /// Secret name -> Auth0 client id, for the secrets that are Auth0 clients.
    pub auth0_clients: BTreeMap<String, String>,
    /// Where the anomaly forwarder sends alerts.
    pub loki: RunningLoki,
    pub webhook: RunningWebhook,
    /// The trail bucket (log files) and the forwarder's state bucket.
    pub trail_bucket: String,
    pub state_bucket: String,
    /// The GitHub OIDC issuer CI workflows' tokens come from.
    pub oidc: RunningIssuer,
    /// The Vercel team and project the manifest's mappings name (`team_acme/acme-web`).
    pub vercel: RunningVercel,
    pub vercel_project: String,
    /// The debounce queue of Vercel redeploys (delay 0 here: the stack drains it itself).
    pub redeploy_url: String,
    /// Drift tickets: the fake GitHub (issues in `acme/platform`, the drift fixes' pull
    /// requests) and Jira (project SEC), and the webhook drift notifications go to.
    pub github: RunningGithub,
    pub jira: RunningJira,
    pub drift_webhook: RunningWebhook,
    /// Where the manifest lives for the drift detector (`manifest/` in this bucket).
    pub config_bucket: String,
    _ca_dir: tempfile::TempDir,
    pub timeline: Vec<TimelineEntry>,
    /// Every envelope drained from the bus, in order (for redelivery drills).
    pub delivered: Vec<serde_json::Value>,
    router: Router,
    /// Rules on the default bus: AWS service events (CloudTrail API calls, S3 objects).
    aws_router: Router,
    started: Instant,
    sqs: aws_sdk_sqs::Client,
    publisher: EventBridgePublisher,
}

impl LocalStack {
    pub async fn start(options: &StackOptions) -> Result<Self> {
        let started = Instant::now();
        let model = TemplateModel::load(&options.template)?;
        let router = Router::new(&model, BUS_LOGICAL_ID)?;
        let aws_router = Router::default_bus(&model)?;
        let manifest = Manifest::load(&options.manifest)?;
        let moto = MotoServer::start().await?;
        let sdk = moto.sdk_config();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let suffix = &options.suffix;

        // The bus, and a tap: a catch-all rule copying every event on it to a queue we drain.
        let bus_name = format!("keyward-{}-{suffix}", manifest.org);
        events
            .create_event_bus()
            .name(&bus_name)
            .send()
            .await
            .context("create the event bus")?;
        let tap_url = create_queue(&sqs, &format!("keyward-tap-{suffix}")).await?;
        let tap_arn = queue_arn(&sqs, &tap_url).await?;
        let tap_rule = format!("keyward-tap-{suffix}");
        events
            .put_rule()
            .name(&tap_rule)
            .event_bus_name(&bus_name)
            .event_pattern(r#"{"source":[{"prefix":""}]}"#)
            .send()
            .await
            .context("create the tap rule")?;
        events
            .put_targets()
            .rule(&tap_rule)
            .event_bus_name(&bus_name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("tap")
                    .arn(&tap_arn)
                    .build()?,
            )
            .send()
            .await
            .context("target the tap queue")?;
        let dlq_url = create_queue(&sqs, &format!("keyward-dlq-{suffix}")).await?;

        // The audit bucket as the template declares it: Object Lock, COMPLIANCE, 365 days; and
        // the asymmetric key that signs audit digests.
        let audit_bucket = format!("keyward-audit-{suffix}");
        moto.create_bucket(
            &audit_bucket,
            BucketKind::ObjectLockCompliance { days: 365 },
        )
        .await
        .context("create the audit bucket")?;
        let digest_key_id = moto
            .create_signing_key()
            .await
            .context("create the digest signing key")?;

        // What rotating secrets point at: PostgreSQL over TLS with its own CA, and an Auth0 tenant.
        let ca = crate::tls::TestCa::new("keyward local stack CA")?;
        let postgres =
            PostgresCluster::start_with_tls(&ca.server_cert(&["127.0.0.1", "localhost"])?)
                .await
                .context("start PostgreSQL")?;
        let ca_dir = tempfile::tempdir()?;
        let ca_bundle = ca_dir.path().join("db-ca-bundle.pem");
        std::fs::write(&ca_bundle, ca.pem())?;
        postgres
            .connect_superuser()
            .await?
            .batch_execute(&format!("CREATE DATABASE {APP_DATABASE}"))
            .await?;
        let auth0 = FakeAuth0::start().await?;

        // Anomaly forwarding: the trail's bucket, the forwarder's state bucket, and the places
        // alerts go (Loki, and a webhook whose URL lives in a secret, as in production).
        let trail_bucket = format!("keyward-trail-{suffix}");
        let state_bucket = format!("keyward-state-{suffix}");
        for bucket in [&trail_bucket, &state_bucket] {
            moto.create_bucket(bucket, BucketKind::Versioned)
                .await
                .with_context(|| format!("create {bucket}"))?;
        }
        let loki = FakeLoki::start(true).await?;
        let webhook = FakeWebhook::start().await?;
        let oidc = FakeIssuer::start().await?;
        // Vercel: the project the manifest maps to, its custom environment, a deploy hook, and
        // the credentials secret holding the token and the hook URL.
        let vercel = FakeVercel::start(VERCEL_TOKEN).await?;
        let vercel_project = vercel
            .fake
            .add_project("acme-web", Some(("team_acme", "acme")));
        vercel
            .fake
            .add_custom_environment(&vercel_project, "staging");
        let deploy_hook = vercel.fake.add_deploy_hook(&vercel_project);
        let vercel_credentials = serde_json::json!({
            "token": VERCEL_TOKEN,
            "deploy_hooks": {"acme-web": deploy_hook},
        })
        .to_string();
        let vercel_credentials_arn = secrets
            .create_secret()
            .name(format!("keyward-vercel-{suffix}"))
            .secret_string(&vercel_credentials)
            .send()
            .await
            .context("create the Vercel credentials secret")?
            .arn
            .context("CreateSecret returned no ARN")?;
        let redeploy_url = create_queue(&sqs, &format!("keyward-vercel-redeploy-{suffix}")).await?;

        // Drift: the manifest where CI would write it, GitHub and Jira for tickets, a webhook
        // for notifications, and the credentials secret naming them.
        let config_bucket = format!("keyward-config-{suffix}");
        moto.create_bucket(&config_bucket, BucketKind::Versioned)
            .await
            .context("create the config bucket")?;
        for entry in std::fs::read_dir(&options.manifest)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            moto.s3()
                .put_object()
                .bucket(&config_bucket)
                .key(format!("manifest/{name}"))
                .body(std::fs::read(&path)?.into())
                .send()
                .await
                .with_context(|| format!("upload manifest/{name}"))?;
        }
        let github = FakeGithub::start(GITHUB_TOKEN).await?;
        github.fake.add_repo("acme", "platform");
        let jira = FakeJira::start(JIRA_EMAIL, JIRA_TOKEN).await?;
        jira.fake.add_project("SEC");
        let drift_webhook = FakeWebhook::start().await?;
        let drift_credentials_arn = secrets
            .create_secret()
            .name(format!("keyward-drift-{suffix}"))
            .secret_string(
                serde_json::json!({
                    "github_token": GITHUB_TOKEN,
                    "jira_email": JIRA_EMAIL,
                    "jira_api_token": JIRA_TOKEN,
                    "webhook_url": drift_webhook.url(),
                })
                .to_string(),
            )
            .send()
            .await
            .context("create the drift credentials secret")?
            .arn
            .context("CreateSecret returned no ARN")?;
        let webhook_secret_arn = secrets
            .create_secret()
            .name(format!("keyward-alert-webhook-{suffix}"))
            .secret_string(webhook.url())
            .send()
            .await
            .context("create the webhook secret")?
            .arn
            .context("CreateSecret returned no ARN")?;
        let config_dir = options
            .manifest
            .parent()
            .map(std::path::Path::to_path_buf)
            .context("the manifest has no parent directory")?;

        // The manifest's secrets, tagged by the tag contract, each with a value of the shape its
        // strategy rotates (masters and the Auth0 rotator first: the others name them).
        let mut ordered: Vec<_> = manifest.secrets.iter().collect();
        ordered.sort_by_key(|s| !is_linked_credential(s));
        // The webhook URL is a credential too.
        let mut provisioned_values = vec![
            SecretString::from(webhook.url()),
            SecretString::from(VERCEL_TOKEN.to_owned()),
            SecretString::from(deploy_hook.clone()),
            SecretString::from(GITHUB_TOKEN.to_owned()),
            SecretString::from(JIRA_TOKEN.to_owned()),
            SecretString::from(drift_webhook.url()),
        ];
        let mut arns: BTreeMap<String, String> = BTreeMap::new();
        let mut auth0_clients = BTreeMap::new();
        for declared in ordered {
            let password = secrets
                .get_random_password()
                .password_length(40)
                .exclude_characters(
                    declared
                        .governance
                        .rotation
                        .strategy
                        .default_excluded_characters(),
                )
                .send()
                .await?
                .random_password
                .context("GetRandomPassword returned no password")?;
            let provision = Provision {
                postgres: &postgres,
                auth0: &auth0,
                arns: &arns,
            };
            let (value, client) = provision.value(declared, &password).await?;
            if let Some(client) = client {
                auth0_clients.insert(declared.name.to_string(), client);
            }
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
            provisioned_values.push(SecretString::from(password));
            provisioned_values.push(SecretString::from(value));
        }

        // Every function of the template, as its real binary.
        let mut functions = BTreeMap::new();
        for function in model.functions.values() {
            let binary = options.bin_dir.join(&function.binary);
            if !binary.exists() {
                bail!(
                    "{} not found: build the functions first (`cargo build --workspace --bins`)",
                    binary.display()
                );
            }
            let mut env = moto.function_env();
            env.push(("KEYWARD_EVENT_BUS".into(), bus_name.clone()));
            for (var, value) in &function.env {
                let value = match (var.as_str(), value) {
                    // The layer at /opt in Lambda is infra/config here.
                    ("KEYWARD_CONFIG_DIR", _) => config_dir.display().to_string(),
                    (_, TemplateValue::Literal(literal)) => literal.clone(),
                    ("KEYWARD_STATE_BUCKET", _) => state_bucket.clone(),
                    ("KEYWARD_LOKI_PUSH_URL", _) => loki.push_url(),
                    ("KEYWARD_LOKI_TENANT", _) => "keyward".into(),
                    ("KEYWARD_ALERT_WEBHOOK_SECRET_ARN", _) => webhook_secret_arn.clone(),
                    ("KEYWARD_ALLOWED_CIDRS", _) => "10.0.0.0/8".into(),
                    ("KEYWARD_ALLOWED_VPC_ENDPOINTS", _) => String::new(),
                    ("KEYWARD_OIDC_AUDIENCE", _) => GATEWAY_AUDIENCE.into(),
                    ("KEYWARD_OIDC_ISSUERS", _) => oidc.issuer(),
                    ("AUDIT_BUCKET", _) => audit_bucket.clone(),
                    ("DIGEST_KMS_KEY_ID", _) => digest_key_id.clone(),
                    ("KEYWARD_DB_CA_BUNDLE", _) => ca_bundle.display().to_string(),
                    // The template's Environment parameter at its default, as the router
                    // resolves the rules' patterns.
                    ("KEYWARD_SECRET_PREFIX", _) => format!("/{}/dev/", manifest.org),
                    ("KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN", _) => vercel_credentials_arn.clone(),
                    ("KEYWARD_VERCEL_API_URL", _) => vercel.api_url(),
                    ("KEYWARD_VERCEL_REDEPLOY_QUEUE_URL", _) => redeploy_url.clone(),
                    ("KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS", _) => "0".into(),
                    ("KEYWARD_MANIFEST_S3_URI", _) => format!("s3://{config_bucket}/manifest/"),
                    ("KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN", _) => drift_credentials_arn.clone(),
                    ("KEYWARD_DRIFT_GITHUB_REPO", _) => "acme/platform".into(),
                    ("KEYWARD_GITHUB_API_URL", _) => github.api_url(),
                    ("ENABLE_JIRA_INTEGRATION", _) => "true".into(),
                    ("KEYWARD_JIRA_URL", _) => jira.base_url(),
                    ("KEYWARD_JIRA_PROJECT", _) => "SEC".into(),
                    ("ENABLE_DRIFT_NOTIFICATIONS", _) => "true".into(),
                    ("KEYWARD_DRIFT_UNUSED_DAYS", _) => "90".into(),
                    ("MIN_DRIFT_PR_APPROVALS", _) => "2".into(),
                    ("KEYWARD_EVENT_BUS", _) => continue,
                    (other, reference) => bail!(
                        "the local stack does not know how to provide {other} ({reference:?}) for {}",
                        function.logical_id
                    ),
                };
                env.push((var.clone(), value));
            }
            let log = options.log_dir.join(format!("{}.log", function.binary));
            let local = LocalFunction::spawn(&function.binary, &binary, &env, &log).await?;
            functions.insert(function.logical_id.clone(), local);
        }

        Ok(Self {
            publisher: EventBridgePublisher::new(events, &bus_name),
            moto,
            bus_name,
            audit_bucket,
            dlq_url,
            tap_url,
            digest_key_id,
            schedules: model.schedules.clone(),
            manifest,
            provisioned_values,
            functions,
            postgres,
            ca_bundle,
            auth0,
            auth0_clients,
            loki,
            webhook,
            trail_bucket,
            state_bucket,
            oidc,
            vercel,
            vercel_project,
            redeploy_url,
            github,
            jira,
            drift_webhook,
            config_bucket,
            _ca_dir: ca_dir,
            timeline: Vec::new(),
            delivered: Vec::new(),
            router,
            aws_router,
            started,
            sqs,
        })
    }

    /// Rotates a secret as Secrets Manager does: `RotateSecret` (moto, Lambda execution off)
    /// creates the AWSPENDING version, then the rotation function gets each step through its
    /// Runtime API with the secret's name as `SecretId` (what moto sends; AWS sends the ARN).
    pub async fn rotate(&mut self, secret: &str, token: &str) -> Result<()> {
        self.moto.start_rotation(secret, token).await?;
        let function = self
            .functions
            .get("RotationFunction")
            .context("the template declares no RotationFunction")?;
        let mut outcome = Ok(());
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            let payload =
                serde_json::json!({"Step": step, "SecretId": secret, "ClientRequestToken": token});
            if let Err(err) = function.invoke(&payload, INVOKE_TIMEOUT).await {
                outcome = Err(anyhow::anyhow!(
                    "{step}: {}: {}",
                    err.error_type,
                    err.error_message
                ));
                break;
            }
        }
        let summary = match &outcome {
            Ok(()) => "rotated".to_owned(),
            Err(err) => format!("failed: {err}"),
        };
        self.record(
            &format!("RotateSecret {secret}"),
            "Secrets Manager rotation",
            "RotationFunction",
            summary,
        );
        // moto workaround: clear AWSPENDING so the next RotateSecret is accepted (AWS does this).
        self.moto.strip_pending(secret).await?;
        outcome
    }

    /// Puts domain events on the bus through the production adapter.
    pub async fn publish(&self, events: &[DomainEvent]) -> Result<()> {
        self.publisher.publish(events).await?;
        Ok(())
    }

    /// Drains the tap queue, delivering each event to the functions whose rules match, until the
    /// queue stays empty (functions may publish more events while handling one).
    pub async fn pump(&mut self) -> Result<usize> {
        let mut delivered = 0;
        let mut idle_rounds = 0;
        while idle_rounds < 2 {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.tap_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let messages = received.messages();
            if messages.is_empty() {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            for message in messages {
                let body = message.body().unwrap_or_default();
                let envelope: serde_json::Value = serde_json::from_str(body)
                    .context("tap message is not an EventBridge envelope")?;
                delivered += self.deliver(&envelope, "").await?;
                self.delivered.push(envelope);
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.tap_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
        Ok(delivered)
    }

    /// Delivers one envelope to every function whose rule matches it (also used to simulate
    /// EventBridge's at-least-once redelivery).
    /// `note` is shown after the event in the timeline (e.g. "redelivered").
    pub async fn deliver(&mut self, envelope: &serde_json::Value, note: &str) -> Result<usize> {
        self.deliver_on(false, envelope, note).await
    }

    /// Delivers an AWS service event (CloudTrail API call, S3 object) through the default
    /// bus's rules of the template, as EventBridge would.
    pub async fn deliver_aws(&mut self, envelope: &serde_json::Value, note: &str) -> Result<usize> {
        self.deliver_on(true, envelope, note).await
    }

    async fn deliver_on(
        &mut self,
        default_bus: bool,
        envelope: &serde_json::Value,
        note: &str,
    ) -> Result<usize> {
        let mut label = format!(
            "{} ({})",
            envelope["detail-type"].as_str().unwrap_or("?"),
            envelope["source"].as_str().unwrap_or("?")
        );
        if !note.is_empty() {
            label = format!("{label} [{note}]");
        }
        let router = if default_bus {
            &self.aws_router
        } else {
            &self.router
        };
        let rules: Vec<(String, String)> = router
            .route(envelope)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|r| (r.id.clone(), r.function.clone()))
            .collect();
        if rules.is_empty() {
            self.record(&label, "-", "-", "no rule matched".into());
        }
        for (rule, function_id) in &rules {
            let function = self
                .functions
                .get(function_id)
                .context("rule targets an unknown function")?;
            let name = function.name.clone();
            let outcome = match function.invoke(envelope, INVOKE_TIMEOUT).await {
                Ok(response) => summarise(&response),
                Err(error) => {
                    self.sqs
                        .send_message()
                        .queue_url(&self.dlq_url)
                        .message_body(envelope.to_string())
                        .send()
                        .await?;
                    format!(
                        "FAILED {}: {} -> dead-letter queue",
                        error.error_type, error.error_message
                    )
                }
            };
            self.record(&label, rule, &name, outcome);
        }
        Ok(rules.len())
    }

    /// Calls the CI gateway as its Function URL would (payload format 2.0); returns the status
    /// and the JSON body.
    pub async fn call_gateway(
        &mut self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
        note: &str,
    ) -> Result<(u16, serde_json::Value)> {
        let now = chrono::Utc::now();
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {
                "authorization": format!("Bearer {token}"),
                "content-type": "application/json",
                "host": "keyward.lambda-url.eu-west-1.on.aws",
                "user-agent": "curl/8.5.0"
            },
            "requestContext": {
                "accountId": "anonymous", "apiId": "keyward", "domainName": "keyward.lambda-url.eu-west-1.on.aws",
                "domainPrefix": "keyward",
                "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.50", "userAgent": "curl/8.5.0"},
                "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
                "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(), "timeEpoch": now.timestamp_millis()
            },
            "body": body.to_string(),
            "isBase64Encoded": false
        });
        let function = self
            .functions
            .get("CiGatewayFunction")
            .context("the template declares no CiGatewayFunction")?;
        let name = function.name.clone();
        let response = function
            .invoke(&event, INVOKE_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("the gateway failed: {e}"))?;
        let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
        let body: serde_json::Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or_default();
        let detail = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| match body.get("ready") {
                Some(ready) => format!("ready: {ready}"),
                None => body.to_string().chars().take(80).collect(),
            });
        let label = if note.is_empty() {
            format!("POST {path}")
        } else {
            format!("POST {path} [{note}]")
        };
        self.record(&label, "Function URL", &name, format!("{status} {detail}"));
        Ok((status, body))
    }

    /// Writes a CloudTrail log file (gzip of `{"Records": [...]}`) to the trail bucket, as
    /// CloudTrail does, and returns the S3 `Object Created` event EventBridge would carry.
    pub async fn put_log_file(
        &self,
        records: &[serde_json::Value],
    ) -> Result<(String, serde_json::Value)> {
        use std::io::Write;
        let now = chrono::Utc::now();
        let key = format!(
            "AWSLogs/123456789012/CloudTrail/{region}/{date}/123456789012_CloudTrail_{region}_{stamp}_{id}.json.gz",
            region = crate::moto::REGION,
            date = now.format("%Y/%m/%d"),
            stamp = now.format("%Y%m%dT%H%MZ"),
            id = &uuid::Uuid::new_v4().simple().to_string()[..16],
        );
        let body = serde_json::json!({ "Records": records }).to_string();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(body.as_bytes())?;
        let bytes = gzip.finish()?;
        let size = bytes.len();
        self.moto
            .s3()
            .put_object()
            .bucket(&self.trail_bucket)
            .key(&key)
            .body(bytes.into())
            .send()
            .await
            .context("write the log file")?;
        Ok((key.clone(), self.object_created(&key, size)))
    }

    /// The EventBridge `Object Created` event for a key of the trail bucket.
    pub fn object_created(&self, key: &str, size: usize) -> serde_json::Value {
        serde_json::json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Object Created",
            "source": "aws.s3", "account": "123456789012",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": crate::moto::REGION,
            "resources": [format!("arn:aws:s3:::{}", self.trail_bucket)],
            "detail": {
                "version": "0", "bucket": {"name": self.trail_bucket},
                "object": {"key": key, "size": size, "sequencer": "0055AED6DCD90281E5"},
                "request-id": "C3D13FE58DE4C810", "requester": "cloudtrail.amazonaws.com",
                "reason": "PutObject"
            }
        })
    }

    /// Fires a schedule of the template (as EventBridge Scheduler would) at `time`.
    pub async fn tick(
        &mut self,
        schedule_id: &str,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<serde_json::Value> {
        let schedule = self
            .schedules
            .iter()
            .find(|s| s.id == schedule_id)
            .cloned()
            .with_context(|| format!("no schedule {schedule_id} in the template"))?;
        let envelope = serde_json::json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": crate::moto::REGION,
            "resources": [format!("arn:aws:events:{}:123456789012:rule/{}", crate::moto::REGION, schedule.id)], "detail": {}
        });
        let function = self
            .functions
            .get(&schedule.function)
            .context("schedule targets an unknown function")?;
        let name = function.name.clone();
        let label = format!("Scheduled Event ({})", schedule.expression);
        match function.invoke(&envelope, INVOKE_TIMEOUT).await {
            Ok(response) => {
                let outcome = match response["key"].as_str() {
                    Some(key) => format!(
                        "digest {key} ({} records)",
                        response["records"].as_u64().unwrap_or(0)
                    ),
                    None => summarise(&response),
                };
                self.record(&label, &schedule.id, &name, outcome);
                Ok(response)
            }
            Err(error) => {
                self.record(&label, &schedule.id, &name, format!("FAILED {error}"));
                Err(anyhow::anyhow!("{schedule_id} failed: {error}"))
            }
        }
    }

    /// Delivers the due Vercel redeploy requests to the sync function as Lambda's SQS event
    /// source would (one batch), deleting the messages it did not report as failed.
    /// Returns how many requests were due and the function's response.
    pub async fn drain_redeploys(&mut self) -> Result<(usize, serde_json::Value)> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.redeploy_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        let messages = received.messages().to_vec();
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                    "body": m.body(), "attributes": {}, "messageAttributes": {},
                    "eventSource": "aws:sqs", "awsRegion": crate::moto::REGION,
                })
            })
            .collect();
        let function = self
            .functions
            .get("VercelSyncFunction")
            .context("no VercelSyncFunction in the template")?;
        let name = function.name.clone();
        let response = function
            .invoke(&serde_json::json!({ "Records": records }), INVOKE_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("redeploy batch failed: {e}"))?;
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for message in &messages {
            if let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle())
                && !failed.contains(&id)
            {
                self.sqs
                    .delete_message()
                    .queue_url(&self.redeploy_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
        self.record(
            &format!("{} redeploy request(s) (aws:sqs)", messages.len()),
            "VercelSyncFunction.Redeploys",
            &name,
            summarise(&response),
        );
        Ok((messages.len(), response))
    }

    fn record(&mut self, event: &str, rule: &str, function: &str, outcome: String) {
        self.timeline.push(TimelineEntry {
            at_ms: self.started.elapsed().as_millis(),
            event: event.to_owned(),
            rule: rule.to_owned(),
            function: function.to_owned(),
            outcome,
        });
    }

    pub async fn dlq_depth(&self) -> Result<usize> {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?;
        Ok(attrs
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Every object version under `audit/` (a rewrite would show as a second version).
    pub async fn audit_versions(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .moto
            .s3()
            .list_object_versions()
            .bucket(&self.audit_bucket)
            .prefix("audit/")
            .send()
            .await?;
        Ok(out
            .versions()
            .iter()
            .map(|v| {
                (
                    v.key().unwrap_or_default().to_owned(),
                    v.version_id().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// Everything the functions logged so far.
    pub fn function_logs(&self) -> String {
        self.functions
            .values()
            .map(|f| std::fs::read_to_string(&f.log_path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn print_timeline(&self) {
        println!(
            "{:>8}  {:<44} {:<38} {:<14} outcome",
            "t+ms", "event", "rule", "function"
        );
        for e in &self.timeline {
            println!(
                "{:>8}  {:<44} {:<38} {:<14} {}",
                e.at_ms, e.event, e.rule, e.function, e.outcome
            );
        }
    }

    pub fn stop(&self) {
        for function in self.functions.values() {
            function.stop();
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn summarise(response: &serde_json::Value) -> String {
    let text = |key: &str| response.get(key).and_then(|v| v.as_str());
    let number = |key: &str| response.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    match (text("outcome"), text("key"), text("input")) {
        (Some(outcome), Some(key), _) => format!("{outcome} {key}"),
        // The drift detector: what it found and what it ticketed.
        (_, _, _) if response.get("findings").is_some() && response.get("tickets").is_some() => {
            format!(
                "{} finding(s) {}; issues opened {}, updated {}, unchanged {}; Jira {}",
                number("findings"),
                response["by_kind"],
                response["tickets"]["opened"],
                response["tickets"]["updated"],
                response["tickets"]["unchanged"],
                response["tickets"]["jira_created"]
            )
        }
        // The Vercel sync: how many secrets, what it wrote, what it found.
        (_, _, Some(input)) if response.get("writes").is_some() => format!(
            "{input}: {} secret(s), {} write call(s), changed {}, drift {}, failed {}, redeploys {}",
            number("secrets"),
            number("writes"),
            response["changed"],
            response["drift"],
            response["failed"],
            if input == "redeploy" {
                response["redeploys_triggered"].to_string()
            } else {
                response["redeploys_scheduled"].to_string()
            }
        ),
        // The anomaly forwarder: what it read and what it sent (Loki, webhook, bus).
        (_, _, Some(input)) => format!(
            "{input}: {} records, {} alerts, sent {} (already {})",
            number("records"),
            number("alerts"),
            response["sent"],
            response["already"]
        ),
        _ => response.to_string(),
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String> {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await?
        .queue_url
        .context("CreateQueue returned no URL")
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("queue has no ARN")
}

/// The database the local stack's PostgreSQL secrets log in to.
pub const APP_DATABASE: &str = "keyward_app";
/// The audience the local Auth0 clients are granted (what testSecret asks a token for).
pub const AUTH0_API_AUDIENCE: &str = "https://api.acme.example/";

/// Credentials other secrets name: PostgreSQL masters (`masterarn`) and the Auth0 rotator
/// (`management_secret_arn`).
fn is_linked_credential(secret: &keyward_shared::manifest::DeclaredSecret) -> bool {
    secret.governance.secret_type.as_str() == "postgres-master"
        || secret.name.name().as_str() == "auth0-rotator"
}

/// Gives a declared secret a real value: a PostgreSQL role that exists, an Auth0 client the
/// tenant knows.
struct Provision<'a> {
    postgres: &'a PostgresCluster,
    auth0: &'a RunningAuth0,
    arns: &'a BTreeMap<String, String>,
}

impl Provision<'_> {
    /// The secret's value, and its Auth0 client id when it is one.
    async fn value(
        &self,
        declared: &keyward_shared::manifest::DeclaredSecret,
        password: &str,
    ) -> Result<(String, Option<String>)> {
        use keyward_shared::governance::RotationStrategy as S;
        let name = &declared.name;
        let env = name.env().as_str().replace('-', "_");
        let sibling = |secret: &str| {
            let sibling = format!(
                "/{}/{}/{}/{secret}",
                name.org().as_str(),
                name.env().as_str(),
                name.service().as_str()
            );
            self.arns.get(&sibling).cloned().with_context(|| {
                format!("{name} needs {sibling}, which the manifest does not declare")
            })
        };
        let literal = rotation::pg::quote_literal(password);
        if declared.governance.secret_type.as_str() == "postgres-master" {
            let user = format!("keyward_admin_{env}");
            self.postgres
                .connect_superuser()
                .await?
                .batch_execute(&format!(
                    "CREATE ROLE {user} LOGIN CREATEROLE PASSWORD {literal}"
                ))
                .await?;
            return Ok((
                serde_json::json!({"username": user, "password": password}).to_string(),
                None,
            ));
        }
        if name.name().as_str() == "auth0-rotator" {
            let id = self.auth0.fake.add_client("keyward-rotator", password);
            self.auth0
                .fake
                .grant(&id, &self.auth0.management_audience(), &[ROTATE_SCOPE]);
            let value = serde_json::json!({"client_id": id, "client_secret": password});
            return Ok((value.to_string(), Some(id)));
        }
        match declared.governance.rotation.strategy {
            S::PostgresSingleUser | S::PostgresAlternatingUsers => {
                let user = format!("{}_{env}", name.service().as_str().replace('-', "_"));
                let admin = self.postgres.connect_superuser().await?;
                admin
                    .batch_execute(&format!("CREATE ROLE {user} LOGIN PASSWORD {literal}"))
                    .await?;
                admin
                    .batch_execute(&format!(
                        "GRANT CONNECT ON DATABASE {APP_DATABASE} TO {user}"
                    ))
                    .await?;
                let mut doc = serde_json::json!({
                    "engine": "postgres",
                    "host": "127.0.0.1",
                    "port": self.postgres.port,
                    "username": user,
                    "password": password,
                    "dbname": APP_DATABASE,
                });
                if declared.governance.rotation.strategy == S::PostgresAlternatingUsers {
                    let master = format!("keyward_admin_{env}");
                    admin
                        .batch_execute(&format!("GRANT {user} TO {master} WITH ADMIN OPTION"))
                        .await?;
                    doc["masterarn"] = sibling("db-admin")?.into();
                }
                Ok((doc.to_string(), None))
            }
            S::Auth0ClientSecret => {
                let id = self.auth0.fake.add_client(name.name().as_str(), password);
                self.auth0
                    .fake
                    .grant(&id, AUTH0_API_AUDIENCE, &["read:orders"]);
                let doc = serde_json::json!({
                    "domain": self.auth0.domain(),
                    "client_id": id,
                    "client_secret": password,
                    "management_secret_arn": sibling("auth0-rotator")?,
                    "audience": AUTH0_API_AUDIENCE,
                });
                Ok((doc.to_string(), Some(id)))
            }
            S::Random | S::Manual => Ok((password.to_owned(), None)),
        }
    }
}
