//! The Lambda handler: two inputs, one parser, one delivery path.
//!
//! - **Stream**: an EventBridge event `AWS API Call via CloudTrail` from `aws.secretsmanager`
//!   (its `detail` is the CloudTrail record);
//! - **keyward itself**: a denied `GatewayDecision` from keyward's bus, and the gateway's refused
//!   requests from its log group's subscription filter ([`crate::gateway`]);
//! - **Batch**: an EventBridge `Object Created` event from `aws.s3` for the trail bucket: the log
//!   file is streamed from S3 (the body feeds the decompressor on a blocking thread, so memory
//!   stays flat whatever the file size); digest files and other keys are skipped.
//!
//! Findings are resolved against the shared state ([`crate::state`]) and delivered once per
//! sink ([`crate::deliver`]). Any failure to resolve or deliver fails the invocation, so the
//! async-invoke retries (and then the dead-letter queue) keep the input; a retry repeats only
//! what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SdkConfig, config_secret_string, s3_client,
};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::{CommonConfig, ConfigError, EnvSource, https_or_loopback, required};
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::ports::{EventPublisher, MarkerError, MarkerStore};
use keyward_shared::redact::{Redactor, SafeText};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::client::KnownAutomation;
use crate::deliver::{DeliveryError, DeliveryReport, Sinks, deliver};
use crate::forward::LokiTarget;
use crate::gateway::{DecisionRecord, decision_record};
use crate::logfile::{self, LogFileError, ScanStats};
use crate::rules::{Cidr, DEFAULT_RULES, DEFAULT_RULES_JSON, Detector, Environment, RuleError};
use crate::state::Tally;

/// The rules file an operator adds beside the manifest (`KEYWARD_CONFIG_DIR`).
pub const OPERATOR_RULES_FILE: &str = "anomaly-rules.yaml";

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `KEYWARD_STATE_BUCKET`: detection state and the delivery ledger.
    pub state_bucket: String,
    /// `KEYWARD_CONFIG_DIR`: holds `manifest/` (allowed readers) and optionally
    /// `anomaly-rules.yaml` (the operator's rules). Deployed as a Lambda layer (`/opt`), so
    /// changing either needs no rebuild.
    pub config_dir: Option<PathBuf>,
    /// `KEYWARD_LOKI_PUSH_URL` and `KEYWARD_LOKI_TENANT`.
    pub loki: Option<LokiTarget>,
    /// `KEYWARD_ALERT_WEBHOOK_SECRET_ARN`: a secret whose value is the webhook URL (a Slack
    /// incoming-webhook URL is a credential).
    pub webhook_secret_arn: Option<String>,
    /// `KEYWARD_ALLOWED_CIDRS`, comma-separated.
    pub allowed_cidrs: Vec<Cidr>,
    /// `KEYWARD_ALLOWED_VPC_ENDPOINTS`, comma-separated `vpce-` ids.
    pub allowed_vpc_endpoints: Vec<String>,
    /// `KEYWARD_PROTECTED_RESOURCES`: keyward's own audit bucket, digest key and event bus
    /// (names, ids or ARNs, comma-separated); calls against them are alerted.
    pub protected_resources: Vec<String>,
    /// `KEYWARD_AUTOMATION_PRINCIPALS` and `KEYWARD_AUTOMATION_USER_AGENTS` (comma-separated):
    /// the organisation's own automation, whose new ways of calling are expected.
    pub automation: KnownAutomation,
}

fn list(env: &dyn EnvSource, name: &str) -> Vec<String> {
    env.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let allowed_cidrs = list(env, "KEYWARD_ALLOWED_CIDRS")
            .iter()
            .map(|c| {
                c.parse::<Cidr>().map_err(|reason| ConfigError::Invalid {
                    name: "KEYWARD_ALLOWED_CIDRS",
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let allowed_vpc_endpoints = list(env, "KEYWARD_ALLOWED_VPC_ENDPOINTS");
        if let Some(bad) = allowed_vpc_endpoints
            .iter()
            .find(|e| !e.starts_with("vpce-"))
        {
            return Err(ConfigError::Invalid {
                name: "KEYWARD_ALLOWED_VPC_ENDPOINTS",
                reason: format!("`{bad}` is not a VPC endpoint id (vpce-...)"),
            });
        }
        let loki = match env.get("KEYWARD_LOKI_PUSH_URL") {
            Some(url) if https_or_loopback(&url) => Some(LokiTarget {
                push_url: url,
                tenant: env.get("KEYWARD_LOKI_TENANT"),
            }),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "KEYWARD_LOKI_PUSH_URL",
                    reason: "must be an https:// URL (plain http only on 127.0.0.1)".into(),
                });
            }
            None => None,
        };
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            state_bucket: required(env, "KEYWARD_STATE_BUCKET")?,
            config_dir: env.get("KEYWARD_CONFIG_DIR").map(PathBuf::from),
            loki,
            webhook_secret_arn: env.get("KEYWARD_ALERT_WEBHOOK_SECRET_ARN"),
            allowed_cidrs,
            allowed_vpc_endpoints,
            protected_resources: list(env, "KEYWARD_PROTECTED_RESOURCES"),
            automation: KnownAutomation {
                principals: list(env, "KEYWARD_AUTOMATION_PRINCIPALS"),
                user_agent_families: list(env, "KEYWARD_AUTOMATION_USER_AGENTS"),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Webhook(&'static str),
    #[error("{0}")]
    WebhookSecret(String),
    #[error(transparent)]
    Http(#[from] keyward_shared::adapters::http::HttpError),
}

/// The built-in rules plus the operator's file, if any: a rule whose id the operator reuses is
/// replaced by theirs.
/// The built-in rules merged with the operator's (YAML), or `None` when the operator deployed
/// none and the built-in rules apply as they are.
pub fn load_operator_rules(config_dir: Option<&Path>) -> Result<Option<String>, StartError> {
    let Some(path) = config_dir
        .map(|d| d.join(OPERATOR_RULES_FILE))
        .filter(|p| p.exists())
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| StartError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    merge_rules(DEFAULT_RULES, &text)
        .map(Some)
        .map_err(|message| StartError::File {
            path: path.display().to_string(),
            message,
        })
}

/// Merges two rules files (YAML), the second's rules replacing the first's of the same id.
pub fn merge_rules(base: &str, extra: &str) -> Result<String, String> {
    let parse = |text: &str| -> Result<serde_yaml_ng::Value, String> {
        serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(at) => format!(
                "not a rules file (line {}, column {})",
                at.line(),
                at.column()
            ),
            None => "not a rules file".into(),
        })
    };
    let mut merged = parse(base)?;
    let extra = parse(extra)?;
    let version = |v: &serde_yaml_ng::Value| v.get("version").and_then(|v| v.as_u64());
    if version(&extra) != version(&merged) {
        return Err(format!(
            "`version` must be {}",
            version(&merged).unwrap_or(1)
        ));
    }
    let extra_rules = extra
        .get("rules")
        .and_then(|r| r.as_sequence())
        .cloned()
        .ok_or("`rules` must be a list")?;
    let rules = merged
        .get_mut("rules")
        .and_then(|r| r.as_sequence_mut())
        .ok_or("the built-in rules have no list")?;
    for rule in extra_rules {
        let id = rule.get("id").cloned();
        match rules
            .iter_mut()
            .find(|r| id.is_some() && r.get("id") == id.as_ref())
        {
            Some(existing) => *existing = rule,
            None => rules.push(rule),
        }
    }
    serde_yaml_ng::to_string(&merged).map_err(|_| "re-encoding the rules failed".into())
}

/// Allowed readers per secret name, from the manifest in `config_dir` (all environments).
pub fn load_readers(
    config_dir: Option<&Path>,
) -> Result<BTreeMap<String, Vec<String>>, StartError> {
    let Some(dir) = config_dir
        .map(|d| d.join("manifest"))
        .filter(|d| d.exists())
    else {
        return Ok(BTreeMap::new());
    };
    let manifest = keyward_shared::manifest::Manifest::load(&dir)
        .map_err(|e| StartError::Manifest(e.to_string()))?;
    Ok(manifest
        .secrets
        .iter()
        .filter(|s| !s.governance.readers.is_empty())
        .map(|s| {
            (
                s.name.to_string(),
                s.governance.readers.iter().map(|r| r.to_string()).collect(),
            )
        })
        .collect())
}

/// Reads the webhook URL from its secret's value and registers it with the redactor: the URL
/// (and its path alone: Slack's token lives there) is a credential and must never be printed.
pub fn webhook_url_from_secret(value: &str, redactor: &Redactor) -> Result<String, StartError> {
    keyward_shared::adapters::http::webhook_url_from_secret(value, redactor)
        .map(|url| secrecy::ExposeSecret::expose_secret(&url).to_owned())
        .map_err(StartError::Webhook)
}

/// Builds the detector the function runs: rules (built-in + operator's), networks, readers.
pub fn detector(config: &Config) -> Result<Detector, StartError> {
    let dir = config.config_dir.as_deref();
    let environment = Environment {
        allowed_cidrs: config.allowed_cidrs.clone(),
        allowed_vpc_endpoints: config.allowed_vpc_endpoints.clone(),
        readers: load_readers(dir)?,
        protected: config.protected_resources.clone(),
        automation: config.automation.clone(),
    };
    Ok(match load_operator_rules(dir)? {
        Some(merged) => Detector::from_yaml(&merged, environment)?,
        None => Detector::from_json(DEFAULT_RULES_JSON, environment)?,
    })
}

/// Where log files are read from.
pub trait LogFiles: Send + Sync {
    /// The object's body as a blocking reader (run it on a blocking thread).
    fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Box<dyn std::io::Read + Send>, SafeText>> + Send;
}

/// Log files from S3, streamed.
pub struct S3LogFiles {
    pub client: aws_sdk_s3::Client,
}

impl LogFiles for S3LogFiles {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, SafeText> {
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| keyward_shared::adapters::aws::sdk_error_text(&e))?;
        Ok(Box::new(tokio_util::io::SyncIoBridge::new(
            object.body.into_async_read(),
        )))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("reading s3://{bucket}/{key} failed: {reason}")]
    Read {
        bucket: String,
        key: String,
        reason: SafeText,
    },
    /// The alerts found before the damage were delivered.
    #[error("s3://{bucket}/{key}: {source}")]
    LogFile {
        bucket: String,
        key: String,
        #[source]
        source: LogFileError,
    },
    #[error("detection state: {0}")]
    State(#[from] MarkerError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

impl FailureKind for HandlerError {
    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::Read { .. } => "LogFileUnreadable",
            Self::LogFile { .. } => "LogFileDamaged",
            Self::State(_) => "StateUnavailable",
            Self::Delivery(_) => "DeliveryIncomplete",
        }
    }
}

/// What one invocation did (the function's response, and its log line).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// `record`, `log-file`, `gateway-log` or `skipped`.
    pub input: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub records: u64,
    pub duplicates: u64,
    /// Records the parser rejected (each logged with its reason).
    pub rejected: u64,
    pub alerts: usize,
    /// Sent now to Loki, the webhook, the bus.
    pub sent: [usize; 3],
    /// Already delivered by an earlier attempt.
    pub already: [usize; 3],
    pub refused: [usize; 3],
}

impl Outcome {
    fn delivered(mut self, report: DeliveryReport) -> Self {
        self.alerts = report.alerts;
        self.sent = report.sent;
        self.already = report.already;
        self.refused = report.refused;
        self
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    /// A CloudWatch Logs subscription delivery (the gateway's refused requests).
    awslogs: Option<AwsLogs>,
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AwsLogs {
    data: String,
}

#[derive(Deserialize)]
struct ObjectCreated {
    bucket: Named,
    object: ObjectKey,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct ObjectKey {
    key: String,
}

pub struct Forwarder<S, P, L> {
    pub detector: Arc<Detector>,
    pub state: S,
    pub log_files: L,
    pub publisher: P,
    pub http: HttpClient,
    pub loki: Option<LokiTarget>,
    pub webhook_url: Option<String>,
    pub redactor: Redactor,
}

/// The forwarder as deployed.
pub type DeployedForwarder = Forwarder<S3MarkerStore, EventBridgePublisher, S3LogFiles>;

impl DeployedForwarder {
    /// Rules compiled and the webhook secret read once, at cold start.
    pub async fn from_config(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let detector = Arc::new(detector(config)?);
        let s3 = s3_client(sdk, config.common.s3_force_path_style);
        let redactor = Redactor::new();
        let webhook_url = match &config.webhook_secret_arn {
            Some(arn) => {
                let value = config_secret_string(
                    &aws_sdk_secretsmanager::Client::new(sdk),
                    arn,
                    "the webhook secret",
                )
                .await
                .map_err(StartError::WebhookSecret)?;
                Some(webhook_url_from_secret(&value, &redactor)?)
            }
            None => None,
        };
        Ok(Forwarder {
            detector,
            state: S3MarkerStore::new(s3.clone(), &config.state_bucket),
            log_files: S3LogFiles { client: s3 },
            publisher: EventBridgePublisher::for_sdk(sdk, &config.common.event_bus_name),
            http: HttpClient::for_function(
                "anomaly-forwarder",
                std::time::Duration::from_secs(10),
                redactor.clone(),
            )?,
            loki: config.loki.clone(),
            webhook_url,
            redactor,
        })
    }
}

impl<S: MarkerStore, P: EventPublisher, L: LogFiles> Handler for Forwarder<S, P, L> {
    type Output = Outcome;
    type Error = HandlerError;

    async fn handle(&self, payload: &str) -> Result<Outcome, HandlerError> {
        Forwarder::handle(self, payload).await
    }
}

impl<S: MarkerStore, P: EventPublisher, L: LogFiles> Forwarder<S, P, L> {
    /// Handles one invocation payload (an EventBridge event, as raw JSON).
    pub async fn handle(&self, payload: &str) -> Result<Outcome, HandlerError> {
        let result = self.dispatch(payload).await;
        match &result {
            Ok(outcome) => tracing::info!(
                input = outcome.input,
                object = outcome.object.as_deref().unwrap_or(""),
                records = outcome.records,
                rejected = outcome.rejected,
                alerts = outcome.alerts,
                "processed"
            ),
            Err(err) => tracing::error!(kind = err.kind(), error = %err, "invocation failed"),
        }
        result
    }

    async fn dispatch(&self, payload: &str) -> Result<Outcome, HandlerError> {
        // serde's messages can quote input; report where, not what.
        let envelope: Envelope<'_> = serde_json::from_str(payload).map_err(|e| {
            HandlerError::InvalidEvent(format!(
                "not an EventBridge event (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if let Some(logs) = envelope.awslogs {
            let records =
                crate::gateway::log_records(&logs.data).map_err(HandlerError::InvalidEvent)?;
            return self.records(&records, "gateway-log").await;
        }
        let detail = envelope
            .detail
            .ok_or_else(|| HandlerError::InvalidEvent("the event has no `detail`".into()))?;
        match (envelope.source.as_deref(), envelope.detail_type.as_deref()) {
            // Secrets Manager calls, and the calls on keyward's own bucket, key and bus.
            (
                Some("aws.secretsmanager" | "aws.s3" | "aws.kms" | "aws.events"),
                Some("AWS API Call via CloudTrail"),
            ) => self.record(detail.get()).await,
            // keyward's own gateway refusing workflows (from keyward's bus).
            (Some(crate::gateway::EVENT_SOURCE), Some("GatewayDecision")) => {
                match decision_record(detail.get()).map_err(HandlerError::InvalidEvent)? {
                    DecisionRecord::Refusal(record) => self.record(&record).await,
                    DecisionRecord::Allowed => Ok(Outcome {
                        input: "skipped",
                        ..Default::default()
                    }),
                }
            }
            (Some("aws.s3"), Some("Object Created")) => {
                let created: ObjectCreated = serde_json::from_str(detail.get()).map_err(|e| {
                    HandlerError::InvalidEvent(format!(
                        "an S3 Object Created event without bucket.name and object.key (line {}, column {})",
                        e.line(),
                        e.column()
                    ))
                })?;
                self.log_file(created.bucket.name, created.object.key).await
            }
            (source, detail_type) => Err(HandlerError::InvalidEvent(format!(
                "unexpected event: source `{}`, detail-type `{}`",
                source.unwrap_or("-"),
                detail_type.unwrap_or("-")
            ))),
        }
    }

    async fn record(&self, raw: &str) -> Result<Outcome, HandlerError> {
        self.records(std::slice::from_ref(&raw.to_owned()), "record")
            .await
    }

    /// Records that arrived together (one event, or one log subscription delivery): one
    /// tally, one resolution, one delivery.
    async fn records(&self, raws: &[String], input: &'static str) -> Result<Outcome, HandlerError> {
        let mut tally = Tally::default();
        for raw in raws {
            let findings = self.detector.observe(raw).map_err(|e| {
                HandlerError::InvalidEvent(format!("the CloudTrail record was rejected: {e}"))
            })?;
            findings.into_iter().for_each(|f| tally.add(f));
        }
        let outcome = Outcome {
            input,
            records: raws.len() as u64,
            ..Default::default()
        };
        self.finish(tally, outcome).await
    }

    async fn log_file(&self, bucket: String, key: String) -> Result<Outcome, HandlerError> {
        let object = Some(format!("s3://{bucket}/{key}"));
        if !logfile::is_log_file_key(&key) {
            // Digest files, Insights files and anything else written to the trail bucket.
            return Ok(Outcome {
                input: "skipped",
                object,
                ..Default::default()
            });
        }
        let reader =
            self.log_files
                .open(&bucket, &key)
                .await
                .map_err(|reason| HandlerError::Read {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    reason,
                })?;
        let detector = Arc::clone(&self.detector);
        let scanned = tokio::task::spawn_blocking(move || scan(&detector, reader))
            .await
            .map_err(|_| HandlerError::InvalidEvent("the log file scan panicked".into()))?;
        let (tally, rejected, stats, damage) = scanned;
        let outcome = Outcome {
            input: "log-file",
            object,
            records: stats.records,
            duplicates: stats.duplicates,
            rejected,
            ..Default::default()
        };
        // Alerts found before any damage are delivered first: nothing found is dropped.
        let outcome = self.finish(tally, outcome).await?;
        match damage {
            None => Ok(outcome),
            Some(source) => Err(HandlerError::LogFile {
                bucket,
                key,
                source,
            }),
        }
    }

    async fn finish(&self, tally: Tally, outcome: Outcome) -> Result<Outcome, HandlerError> {
        let alerts = tally.resolve(&self.state).await?;
        let sinks = Sinks {
            http: &self.http,
            loki: self.loki.as_ref(),
            webhook_url: self.webhook_url.as_deref(),
            publisher: &self.publisher,
            redactor: &self.redactor,
        };
        let report = deliver(alerts, &self.state, &sinks).await?;
        Ok(outcome.delivered(report))
    }
}

/// Scans a log file on the current (blocking) thread: the tally, how many records were
/// rejected, the scan statistics, and the damage that stopped the scan, if any.
fn scan(
    detector: &Detector,
    reader: Box<dyn std::io::Read + Send>,
) -> (Tally, u64, ScanStats, Option<LogFileError>) {
    let mut tally = Tally::default();
    let mut rejected = 0u64;
    let result = logfile::scan(reader, |raw| match detector.observe(raw) {
        Ok(findings) => findings.into_iter().for_each(|f| tally.add(f)),
        Err(e) => {
            rejected += 1;
            // The reason names a field path, never a value.
            tracing::warn!(error = %e, "a log file record was rejected");
        }
    });
    let (stats, damage) = match result {
        Ok(stats) => (stats, None),
        Err(e) => (ScanStats::default(), Some(e)),
    };
    (tally, rejected, stats, damage)
}
