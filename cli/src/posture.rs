//! `keyward posture`: the same posture the scheduled function writes, read from the same
//! sources (manifest on disk, Secrets Manager, the state and audit buckets), so it works
//! against a real account or the local stack's moto alike.

use std::path::PathBuf;

use crate::load_sdk_config;
use chrono::{Duration, Utc};
use clap::Args;
use keyward_shared::adapters::aws::{
    KmsDigestSigner, S3AuditBucket, S3MarkerStore, SecretsManagerCatalog, s3_client,
};
use keyward_shared::audit::DigestSigner;
use keyward_shared::config::{ProcessEnv, flag};
use keyward_shared::manifest::Manifest;
use keyward_shared::posture::{self, PostureRequest, PostureSources};

use crate::ManifestArgs;

#[derive(Args, Debug)]
pub struct PostureArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The organisation; default: the manifest's.
    #[arg(long)]
    pub org: Option<String>,
    /// The state bucket (Vercel ledgers, the forwarder's reader sightings).
    #[arg(long)]
    pub state_bucket: String,
    /// The audit bucket (records and digests).
    #[arg(long)]
    pub audit_bucket: String,
    /// The digest key's public key (DER or PEM); the chain is then verified without KMS.
    #[arg(long, conflicts_with = "kms_key_id")]
    pub public_key: Option<PathBuf>,
    /// Fetch the digest key's public key from KMS instead.
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// Alerts are counted over this many days.
    #[arg(long, default_value_t = 7)]
    pub window_days: i64,
    /// Rotation, sync and drift records are read back this many days.
    #[arg(long, default_value_t = 30)]
    pub history_days: i64,
    /// How old the newest digest may be for the chain to count as valid.
    #[arg(long, default_value_t = 2)]
    pub max_digest_age_hours: i64,
    /// The digest job's DIGEST_LOOKBACK_HOURS.
    #[arg(long, default_value_t = 48)]
    pub lookback_hours: i64,
    /// Print the posture document (schemas/posture.schema.json) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also write the self-contained HTML page here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Prints the posture; `Ok(1)` when a source could not be read (each is named on stderr).
pub async fn run(args: PostureArgs) -> Result<u8, String> {
    if !(1..=90).contains(&args.window_days) || args.history_days < args.window_days {
        return Err("--window-days must be 1 to 90 and --history-days at least as many".into());
    }
    let manifest = Manifest::load(&args.manifest.manifest).map_err(|e| e.to_string());
    let org = match (&args.org, &manifest) {
        (Some(org), _) => org.clone(),
        (None, Ok(m)) => m.org.to_string(),
        (None, Err(e)) => {
            return Err(format!(
                "the manifest could not be loaded and no --org was given:\n{e}"
            ));
        }
    };
    let sdk = load_sdk_config().await?;
    let path_style =
        flag(&ProcessEnv, "KEYWARD_S3_FORCE_PATH_STYLE", false).map_err(|e| e.to_string())?;
    let s3 = s3_client(&sdk, path_style);
    let public_key = match (&args.public_key, &args.kms_key_id) {
        (Some(path), _) => crate::read_public_key(path).map_err(|e| e.to_string()),
        (None, Some(key_id)) => KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), key_id)
            .public_key_der()
            .await
            .map_err(|e| e.to_string()),
        (None, None) => Err("no --public-key or --kms-key-id given".into()),
    };
    let secrets = SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let state = S3MarkerStore::new(s3.clone(), &args.state_bucket);
    let audit = S3AuditBucket::new(s3, &args.audit_bucket);
    let request = PostureRequest {
        org,
        now: Utc::now(),
        window_days: args.window_days,
        history_days: args.history_days,
        max_digest_age: Duration::hours(args.max_digest_age_hours),
        digest_lookback: Duration::hours(args.lookback_hours),
    };
    let sources = PostureSources {
        manifest,
        secrets: &secrets,
        state: &state,
        audit: &audit,
        audit_bucket: &args.audit_bucket,
        public_key,
    };
    let posture = posture::compute(&posture::gather(&request, sources).await);
    if let Some(path) = &args.html {
        std::fs::write(path, posture::html::render(&posture))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&posture).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", posture::text::render(&posture));
    }
    if let Some(path) = &args.html {
        eprintln!("keyward: wrote {}", path.display());
    }
    let unread: Vec<_> = posture.sources.iter().filter(|s| !s.read).collect();
    for source in &unread {
        eprintln!(
            "keyward: could not read {}: {}",
            source.source.as_str(),
            source.error.as_deref().unwrap_or("unknown reason")
        );
    }
    Ok(if unread.is_empty() { 0 } else { 1 })
}
