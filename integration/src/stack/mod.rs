//! The local stack: moto, the bus, buckets and queues of `infra/template.yaml`, the secrets of the
//! sample manifest, and every function binary under a local Runtime API, with events routed
//! between them by the template's EventBridge rules.
//!
//! Events take the production path: functions call `PutEvents` on the bus in moto (through
//! `AWS_ENDPOINT_URL`); a catch-all rule on that bus copies every event to a tap queue; the stack
//! drains the tap, matches each event against the template's rules with quamina and invokes the
//! target functions. A failed invocation goes to the dead-letter queue, as Lambda's async DLQ
//! would after its retries.
//!
//! Each function's part of the world (its buckets, fakes, credentials and the template
//! parameters only it reads) is a module of its own implementing [`Part`]: adding a function
//! adds a module and a field of [`LocalStack`].

mod anomaly;
mod audit;
mod bus;
mod drift;
mod functions;
mod gateway;
mod rotation;
mod secrets;
mod vercel;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use keyward_shared::manifest::Manifest;
use keyward_shared::redact::SecretString;

use crate::moto::MotoServer;
use crate::router::TemplateModel;
use crate::runtime_api::LocalFunction;

pub use anomaly::Anomaly;
pub use audit::Audit;
pub use bus::{BUS_LOGICAL_ID, Bus};
pub use drift::{
    ARGOCD_APP, ARGOCD_TOKEN, Drift, GITHUB_TOKEN, JIRA_EMAIL, JIRA_TOKEN, WORKLOAD_SECRET,
};
pub use gateway::{GATEWAY_AUDIENCE, Gateway};
pub use rotation::{APP_DATABASE, AUTH0_API_AUDIENCE, Rotation};
pub use vercel::{VERCEL_TOKEN, Vercel};

const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A function's part of the local stack.
pub trait Part {
    /// The value of a template parameter only this part knows (`None`: not this part's).
    fn env(&self, var: &str) -> Option<String>;

    /// Credentials this part handed out, which must never show in a function's logs.
    fn credentials(&self) -> Vec<SecretString> {
        Vec::new()
    }
}

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
    pub manifest: Manifest,
    pub bus: Bus,
    pub audit: Audit,
    pub rotation: Rotation,
    pub anomaly: Anomaly,
    pub gateway: Gateway,
    pub vercel: Vercel,
    pub drift: Drift,
    pub functions: BTreeMap<String, LocalFunction>,
    /// Secret values provisioned, kept only so tests can prove none of them leaks into output.
    pub provisioned_values: Vec<SecretString>,
    pub timeline: Vec<TimelineEntry>,
    /// Every envelope drained from the bus, in order (for redelivery drills).
    pub delivered: Vec<serde_json::Value>,
    started: Instant,
}

impl LocalStack {
    pub async fn start(options: &StackOptions) -> Result<Self> {
        let started = Instant::now();
        let model = TemplateModel::load(&options.template)?;
        let manifest = Manifest::load(&options.manifest)?;
        let moto = MotoServer::start().await?;
        let suffix = &options.suffix;
        let bus = Bus::create(&moto, &model, &manifest, suffix).await?;
        let audit = Audit::create(&moto, suffix).await?;
        let mut rotation = Rotation::create().await?;
        let anomaly = Anomaly::create(&moto, suffix).await?;
        let gateway = Gateway::create().await?;
        let vercel = Vercel::create(&moto, suffix).await?;
        let drift = Drift::create(
            &moto,
            &options.manifest,
            &manifest,
            &|text| rotation.localise_manifest(text),
            suffix,
        )
        .await?;
        let provisioned = secrets::provision(&moto, &manifest, &mut rotation).await?;
        let parts: [&dyn Part; 6] = [&audit, &rotation, &anomaly, &gateway, &vercel, &drift];
        let mut provisioned_values: Vec<SecretString> =
            parts.iter().flat_map(|p| p.credentials()).collect();
        provisioned_values.extend(provisioned);
        let environment = functions::Environment {
            moto: &moto,
            bus: &bus,
            org: manifest.org.to_string(),
            parts: &parts,
        };
        let functions = functions::spawn(&model, options, &environment).await?;
        Ok(Self {
            moto,
            manifest,
            bus,
            audit,
            rotation,
            anomaly,
            gateway,
            vercel,
            drift,
            functions,
            provisioned_values,
            timeline: Vec::new(),
            delivered: Vec::new(),
            started,
        })
    }

    fn function(&self, logical_id: &str) -> Result<&LocalFunction> {
        use anyhow::Context as _;
        self.functions
            .get(logical_id)
            .with_context(|| format!("the template declares no {logical_id}"))
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

    /// The outcome of the latest timeline entry ("" before any).
    pub fn last_outcome(&self) -> String {
        self.timeline
            .last()
            .map(|t| t.outcome.clone())
            .unwrap_or_default()
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

/// A plain secret (configuration, not governed by the manifest); returns its ARN.
async fn create_secret(moto: &MotoServer, name: &str, value: &str) -> Result<String> {
    use anyhow::Context as _;
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await?
        .arn
        .context("CreateSecret returned no ARN")
}

/// One line of what a function answered, for the timeline.
fn summarise(response: &serde_json::Value) -> String {
    let text = |key: &str| response.get(key).and_then(|v| v.as_str());
    let number = |key: &str| response.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    match (text("outcome"), text("key"), text("input")) {
        (Some(outcome), Some(key), _) => format!("{outcome} {key}"),
        (_, _, _) if response.get("findings").is_some() && response.get("tickets").is_some() => {
            drift::summarise_run(response)
        }
        (_, _, Some(input)) if response.get("writes").is_some() => {
            vercel::summarise_sync(input, response)
        }
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
