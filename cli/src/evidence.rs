//! `keyward evidence`: the bundle an auditor takes away for a period (asset register, rotation
//! evidence, posture snapshots, the audit verification), signed with the digest key; and
//! `keyward evidence verify`, which checks one offline with the public key.

use std::path::PathBuf;

use crate::load_sdk_config;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, s3_client};
use keyward_shared::audit::record::records_between;
use keyward_shared::audit::{DigestSigner, VerifyOptions, verify};
use keyward_shared::config::{ProcessEnv, flag};
use keyward_shared::evidence::{BundleInput, verify_bundle, write_bundle};
use keyward_shared::manifest::Manifest;

use crate::ManifestArgs;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvidenceArgs {
    #[command(subcommand)]
    pub command: Option<EvidenceCommand>,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Check a bundle offline: its signature with the public key, then every file (exit 0
    /// intact, 1 changed, added, removed or not signed by that key, 2 could not run).
    Verify(VerifyBundleArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The period's start (RFC 3339).
    #[arg(long, value_parser = crate::parse_time, required = true)]
    pub from: Option<DateTime<Utc>>,
    /// The period's end (RFC 3339).
    #[arg(long, value_parser = crate::parse_time, required = true)]
    pub to: Option<DateTime<Utc>>,
    /// A new (or empty) directory for the bundle.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// The audit bucket.
    #[arg(long, required = true)]
    pub audit_bucket: Option<String>,
    /// The digest key: its public key verifies the trail, and it signs the bundle (RSASSA-PSS,
    /// which the key policy allows the template's `EvidenceSignerArns`).
    #[arg(long, required = true)]
    pub kms_key_id: Option<String>,
    /// The digest job's DIGEST_LOOKBACK_HOURS.
    #[arg(long, default_value_t = 48)]
    pub lookback_hours: i64,
}

#[derive(Args, Debug)]
pub struct VerifyBundleArgs {
    /// The bundle's directory.
    pub dir: PathBuf,
    /// The digest key's public key (DER or PEM), obtained apart from the bundle.
    #[arg(long)]
    pub public_key: PathBuf,
}

/// Exit code: 0 written with a valid trail, 1 written but the trail failed verification (the
/// bundle says how); `Err` when nothing could be written.
pub async fn build(args: BuildArgs) -> Result<u8, String> {
    let (Some(from), Some(to), Some(out), Some(bucket), Some(key_id)) = (
        args.from,
        args.to,
        args.out,
        args.audit_bucket,
        args.kms_key_id,
    ) else {
        return Err("--from, --to, --out, --audit-bucket and --kms-key-id are required".into());
    };
    if from >= to {
        return Err("--from must be before --to".into());
    }
    let manifest = Manifest::load(&args.manifest.manifest).map_err(|e| e.to_string())?;
    let sdk = load_sdk_config().await?;
    let path_style =
        flag(&ProcessEnv, "KEYWARD_S3_FORCE_PATH_STYLE", false).map_err(|e| e.to_string())?;
    let audit = S3AuditBucket::new(s3_client(&sdk, path_style), &bucket);
    let signer = KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), &key_id);
    let public_key = DigestSigner::public_key_der(&signer)
        .await
        .map_err(|e| e.to_string())?;
    let records = records_between(&audit, from, to)
        .await
        .map_err(|e| e.to_string())?;
    // A period may lie in the past: the chain is checked over it, not for freshness now.
    let options = VerifyOptions {
        from: Some(from),
        to: Some(to),
        lookback: chrono::Duration::hours(args.lookback_hours),
        freshness: None,
    };
    let verification = verify(&audit, &bucket, &public_key, &options)
        .await
        .map_err(|e| e.to_string())?;
    let input = BundleInput {
        org: manifest.org.as_str(),
        from,
        to,
        now: Utc::now(),
        manifest: &manifest,
        records: &records.records,
        verification: &verification,
    };
    let index = write_bundle(&out, &input, &signer)
        .await
        .map_err(|e| e.to_string())?;
    let rotations = keyward_shared::evidence::rotation_evidence(&records.records).len();
    println!(
        "wrote {} ({} files; {rotations} rotation and {} other records in the period; trail: {})",
        out.display(),
        index.files.len() + 2,
        records.records.len() - rotations,
        verification.summary()
    );
    if !records.unreadable.is_empty() {
        eprintln!(
            "keyward: {} object(s) in the period are not audit records: {}",
            records.unreadable.len(),
            records.unreadable.join(", ")
        );
    }
    Ok(if verification.ok() { 0 } else { 1 })
}

pub fn verify_dir(args: VerifyBundleArgs) -> Result<u8, String> {
    let public_key = crate::read_public_key(&args.public_key).map_err(|e| e.to_string())?;
    let verdict = verify_bundle(&args.dir, &public_key).map_err(|e| e.to_string())?;
    for problem in &verdict.problems {
        println!("problem {problem}");
    }
    for (what, files) in [
        ("changed", &verdict.changed),
        ("removed", &verdict.removed),
        ("added", &verdict.added),
    ] {
        for file in files {
            println!("{what} {file}");
        }
    }
    println!(
        "{}: {} file(s) match their signed hashes; signature {}",
        if verdict.ok() { "VALID" } else { "INVALID" },
        verdict.files_checked,
        if verdict.signature_valid {
            "valid"
        } else {
            "INVALID"
        }
    );
    Ok(if verdict.ok() { 0 } else { 1 })
}
