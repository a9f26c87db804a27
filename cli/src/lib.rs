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
    about = "Operate keyward: verify the audit trail",
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
}

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
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
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
