//! The `keyward` operator CLI. Commands are thin: they parse arguments, build adapters, call the
//! domain crate and render the result.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "keyward",
    about = "Operate keyward: request secrets, validate and render the manifest, plan against the account, check drift, verify the audit trail",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Requests for new governed secrets.
    #[command(subcommand)]
    Request(Box<RequestCommand>),
    /// Validate the manifest and every request in it (exit 0 valid, 1 problems).
    Validate(ManifestArgs),
    /// Write the manifest's projections: Terraform variables and Kubernetes ExternalSecrets.
    Render(RenderArgs),
    /// The changes the live account needs to match the manifest (exit 0 none, 2 changes, 1
    /// error, as `terraform plan -detailed-exitcode`).
    Plan(PlanArgs),
    /// The generated "Request app secret" workflow: write it, or check it is current.
    Workflows(WorkflowsArgs),
    /// A local drift check: every finding the drift detector would report for an environment,
    /// against the manifest on disk (exit 0 none, 2 findings, 1 error). Opens no ticket.
    Drift(PlanArgs),
    /// The estate's posture: rotation against policy, Vercel parity, drift, alerts, readers,
    /// the audit chain (exit 0, or 1 when a source could not be read; it says which).
    Posture(posture::PostureArgs),
    /// An auditor's evidence bundle for a period, signed with the digest key (exit 0 written,
    /// 1 written but the trail failed verification); `evidence verify DIR` checks one.
    Evidence(Box<evidence::EvidenceArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct ManifestArgs {
    /// The manifest directory (its YAML files and enums.yaml).
    #[arg(long, default_value = "infra/config/manifest")]
    pub manifest: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Where the projections go (`terraform/<env>.tfvars.json`, `kubernetes/<env>/...`).
    #[arg(long, default_value = "infra/generated")]
    pub out: std::path::PathBuf,
    /// Do not write: exit 1 when a file is missing, different or extra.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The environment to compare (`/<org>/<env>/`).
    #[arg(long)]
    pub env: String,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Markdown for a pull-request comment instead of text.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Args, Debug)]
pub struct WorkflowsArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The workflow file to write or check.
    #[arg(long, default_value = "infra/github/request-app-secret.yml")]
    pub out: std::path::PathBuf,
    /// Do not write: exit 1 when the file differs from what enums.yaml gives.
    #[arg(long)]
    pub check: bool,
}

#[derive(Subcommand, Debug)]
pub enum RequestCommand {
    /// Write a request file for a new secret where the manifest lives, validated first.
    New(requests::NewRequest),
}

pub mod evidence;

/// The SDK configuration from the default chain (environment, profile and SSO, container or
/// instance role): the CLI runs on laptops and CI runners, where those sources are real. The
/// functions build theirs from Lambda's environment instead.
/// Calls go over keyward's transport, trusting `SSL_CERT_FILE` or the built-in roots, as the
/// functions' do.
pub async fn load_sdk_config() -> Result<keyward_shared::adapters::aws::SdkConfig, String> {
    let http_client =
        keyward_shared::adapters::aws::sdk_http_client().map_err(|e| e.to_string())?;
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await)
}

pub mod plan;
pub mod posture;
pub mod requests;
pub mod workflows;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the digest chain with the public key and check every record and digest.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The audit bucket.
    #[arg(long)]
    pub bucket: String,
    /// Only records from this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Only records up to this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// The digest signing key's public key (DER or PEM SubjectPublicKeyInfo): verification then
    /// needs no KMS access.
    #[arg(
        long,
        conflicts_with = "kms_key_id",
        required_unless_present = "kms_key_id"
    )]
    pub public_key: Option<std::path::PathBuf>,
    /// Fetch the public key from KMS instead.
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// How late records may be written after their event (the digest job's DIGEST_LOOKBACK_HOURS).
    #[arg(long, default_value_t = 48)]
    pub lookback_hours: i64,
    /// How old the newest digest may be before the chain counts as stale (the digest schedule's
    /// period plus a grace); 0 skips the check, for a historical copy of a trail.
    #[arg(long, default_value_t = 2)]
    pub max_digest_age_hours: i64,
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{value}` is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z): {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read the public key {path}: {reason}")]
    PublicKey { path: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Reads a DER or PEM (`-----BEGIN PUBLIC KEY-----`) public key.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, CliError> {
    let fail = |reason: String| CliError::PublicKey {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(bytes);
    };
    if !text.contains("-----BEGIN") {
        return Ok(bytes);
    }
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    BASE64
        .decode(body)
        .map_err(|e| fail(format!("PEM body is not base64: {e}")))
}

/// Writes the rendered files under `out` (or, with `check`, compares them): returns the
/// problems `--check` found (missing, different, extra files under the rendered directories).
pub fn render_to(
    out: &Path,
    files: &[(String, String)],
    check: bool,
) -> Result<Vec<String>, CliError> {
    let mut problems = Vec::new();
    let wanted: std::collections::BTreeSet<std::path::PathBuf> =
        files.iter().map(|(p, _)| out.join(p)).collect();
    for (relative, text) in files {
        let path = out.join(relative);
        if check {
            match std::fs::read_to_string(&path) {
                Ok(current) if &current == text => {}
                Ok(_) => problems.push(format!("{} differs", path.display())),
                Err(_) => problems.push(format!("{} is missing", path.display())),
            }
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
            }
            std::fs::write(&path, text)
                .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        }
    }
    // Files a previous render wrote for secrets that are gone.
    for dir in ["terraform", "kubernetes"] {
        for path in walk(&out.join(dir)) {
            if !wanted.contains(&path) {
                if check {
                    problems.push(format!("{} is no longer generated", path.display()));
                } else {
                    std::fs::remove_file(&path)
                        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
                }
            }
        }
    }
    Ok(problems)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
