//! Evidence bundles: what an auditor takes away for a period, and checks offline.
//!
//! A bundle is a directory: the asset register (`asset-register.json`, `.csv`: every declared
//! secret with its governance), the rotation evidence (`rotation-evidence.json`: each
//! `SecretRotated` and `RotationFailed` record of the period by key and SHA-256), the posture
//! snapshots of the period (`posture-snapshots.json`), the audit verification report
//! (`audit-verification.json`), and `bundle.json` listing every file with its SHA-256, signed
//! (`bundle.sig`) with the audit digest key.
//!
//! The signature is RSASSA-PSS SHA-256 over `keyward-evidence/v1\n<sha256 of bundle.json>`.
//! Digests are signed with PKCS#1 v1.5 over their own separator, and the digest verifier accepts
//! nothing else, so a principal the key policy lets sign evidence (PSS only, a
//! `kms:SigningAlgorithm` condition) can never produce a signature that passes as a digest's.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::record::StoredRecord;
use crate::audit::{SignError, VerifyReport, key_fingerprint, sha256_hex};
use crate::events::{EventData, PostureFigures};
use crate::manifest::Manifest;

pub const BUNDLE_VERSION: u32 = 1;
pub const BUNDLE_FILE: &str = "bundle.json";
pub const SIGNATURE_FILE: &str = "bundle.sig";
/// KMS's name for the algorithm evidence is signed with.
pub const EVIDENCE_SIGNING_ALGORITHM: &str = "RSASSA_PSS_SHA_256";

/// Signs evidence with RSASSA-PSS SHA-256: KMS in production, a local key in tests.
pub trait EvidenceSigner: Send + Sync {
    /// The DER SubjectPublicKeyInfo of the signing key.
    fn public_key_der(&self) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;
    fn sign_pss(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;
}

#[cfg(any(test, feature = "local-signer"))]
impl EvidenceSigner for crate::audit::LocalKeySigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        self.public_key_spki()
    }

    async fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(&aws_lc_rs::signature::RSA_PSS_SHA256, message)
    }
}

/// What is signed: a separator and the hash of `bundle.json`.
pub fn signing_string(bundle_json: &[u8]) -> Vec<u8> {
    format!("keyward-evidence/v1\n{}", sha256_hex(bundle_json)).into_bytes()
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    pub bundle_version: u32,
    pub org: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub signing_algorithm: String,
    /// SHA-256 of the signing key's DER public key: names the key without trusting the bundle.
    pub public_key_sha256: String,
    /// Every file of the bundle but this one and the signature, sorted by path.
    pub files: Vec<BundleFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One row of the asset register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asset {
    pub name: String,
    pub environment: String,
    pub service: String,
    pub secret_type: String,
    pub domain: String,
    pub owner: String,
    pub classification: String,
    pub rotation_strategy: String,
    pub rotation_days: u32,
    pub replicas: Vec<String>,
    pub readers: Vec<String>,
    pub ci_read: bool,
    pub vercel_project: Option<String>,
    pub vercel_targets: Vec<String>,
}

/// One rotation record of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationRecord {
    pub secret: String,
    pub time: DateTime<Utc>,
    /// `SecretRotated` or `RotationFailed`.
    pub event: String,
    pub version_id: String,
    pub record_key: String,
    pub record_sha256: String,
}

/// One posture snapshot of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRecord {
    pub time: DateTime<Utc>,
    pub figures: PostureFigures,
    pub report_key: String,
    pub report_sha256: String,
    pub record_key: String,
    pub record_sha256: String,
}

pub fn asset_register(manifest: &Manifest) -> Vec<Asset> {
    manifest
        .secrets
        .iter()
        .map(|d| {
            let g = &d.governance;
            Asset {
                name: d.name.to_string(),
                environment: d.name.env().to_string(),
                service: d.name.service().to_string(),
                secret_type: g.secret_type.to_string(),
                domain: g.domain.to_string(),
                owner: g.owner.to_string(),
                classification: format!("{:?}", g.classification).to_lowercase(),
                rotation_strategy: g.rotation.strategy.as_str().to_owned(),
                rotation_days: g.rotation.interval.days(),
                replicas: g.replicas.iter().map(|r| r.to_string()).collect(),
                readers: g.readers.iter().map(|r| r.to_string()).collect(),
                ci_read: g.ci_read,
                vercel_project: g.vercel.as_ref().map(|v| v.project.clone()),
                vercel_targets: g
                    .vercel
                    .iter()
                    .flat_map(|v| v.targets.iter().map(|t| t.as_str().to_owned()))
                    .collect(),
            }
        })
        .collect()
}

/// RFC 4180 CSV of the register: every field quoted, lists joined with spaces.
pub fn asset_register_csv(assets: &[Asset]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from(
        "name,environment,service,type,domain,owner,classification,rotation_strategy,rotation_days,replicas,readers,ci_read,vercel_project,vercel_targets\r\n",
    );
    for a in assets {
        let row = [
            quote(&a.name),
            quote(&a.environment),
            quote(&a.service),
            quote(&a.secret_type),
            quote(&a.domain),
            quote(&a.owner),
            quote(&a.classification),
            quote(&a.rotation_strategy),
            a.rotation_days.to_string(),
            quote(&a.replicas.join(" ")),
            quote(&a.readers.join(" ")),
            a.ci_read.to_string(),
            quote(a.vercel_project.as_deref().unwrap_or("")),
            quote(&a.vercel_targets.join(" ")),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

pub fn rotation_evidence(records: &[StoredRecord]) -> Vec<RotationRecord> {
    records
        .iter()
        .filter_map(|r| {
            let event = &r.record.event;
            let version_id = match &event.data {
                EventData::SecretRotated { version_id, .. }
                | EventData::RotationFailed { version_id, .. } => version_id.clone(),
                _ => return None,
            };
            Some(RotationRecord {
                secret: event.secret.as_ref()?.name.clone(),
                time: event.time,
                event: event.data.detail_type().to_owned(),
                version_id,
                record_key: r.key.clone(),
                record_sha256: r.sha256.clone(),
            })
        })
        .collect()
}

pub fn posture_snapshots(records: &[StoredRecord]) -> Vec<SnapshotRecord> {
    records
        .iter()
        .filter_map(|r| match &r.record.event.data {
            EventData::PostureSnapshot {
                figures,
                report_key,
                report_sha256,
            } => Some(SnapshotRecord {
                time: r.record.event.time,
                figures: figures.clone(),
                report_key: report_key.clone(),
                report_sha256: report_sha256.clone(),
                record_key: r.key.clone(),
                record_sha256: r.sha256.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// What goes into a bundle.
pub struct BundleInput<'a> {
    pub org: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub manifest: &'a Manifest,
    pub records: &'a [StoredRecord],
    pub verification: &'a VerifyReport,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("{0} already exists and is not empty: evidence is written to a new directory")]
    NotEmpty(String),
}

fn io_error(path: &Path, error: std::io::Error) -> EvidenceError {
    EvidenceError::Io {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The bundle's files, by path (without `bundle.json` and the signature).
pub fn bundle_files(input: &BundleInput<'_>) -> BTreeMap<String, Vec<u8>> {
    let assets = asset_register(input.manifest);
    BTreeMap::from([
        ("asset-register.json".to_owned(), json(&assets)),
        (
            "asset-register.csv".to_owned(),
            asset_register_csv(&assets).into_bytes(),
        ),
        (
            "rotation-evidence.json".to_owned(),
            json(&rotation_evidence(input.records)),
        ),
        (
            "posture-snapshots.json".to_owned(),
            json(&posture_snapshots(input.records)),
        ),
        (
            "audit-verification.json".to_owned(),
            json(&serde_json::json!({
                "ok": input.verification.ok(),
                "summary": input.verification.summary(),
                "report": input.verification,
            })),
        ),
    ])
}

/// Writes the bundle into `dir` (which must be new or empty): the files, then the signed index
/// last, so a bundle cut short has no index and fails verification as incomplete.
pub async fn write_bundle<S: EvidenceSigner>(
    dir: &Path,
    input: &BundleInput<'_>,
    signer: &S,
) -> Result<BundleIndex, EvidenceError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| io_error(dir, e))?
            .next()
            .is_some()
    {
        return Err(EvidenceError::NotEmpty(dir.display().to_string()));
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let public_key = signer.public_key_der().await?;
    let files = bundle_files(input);
    for (path, bytes) in &files {
        let target = dir.join(path);
        std::fs::write(&target, bytes).map_err(|e| io_error(&target, e))?;
    }
    let index = BundleIndex {
        bundle_version: BUNDLE_VERSION,
        org: input.org.to_owned(),
        from: input.from,
        to: input.to,
        generated_at: input.now,
        signing_algorithm: EVIDENCE_SIGNING_ALGORITHM.to_owned(),
        public_key_sha256: key_fingerprint(&public_key),
        files: files
            .iter()
            .map(|(path, bytes)| BundleFile {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
    };
    let index_bytes = json(&index);
    let signature = signer.sign_pss(&signing_string(&index_bytes)).await?;
    let sig_path = dir.join(SIGNATURE_FILE);
    std::fs::write(&sig_path, BASE64.encode(signature) + "\n")
        .map_err(|e| io_error(&sig_path, e))?;
    let index_path = dir.join(BUNDLE_FILE);
    std::fs::write(&index_path, &index_bytes).map_err(|e| io_error(&index_path, e))?;
    Ok(index)
}

/// What verification found; empty lists and `signature_valid` mean the bundle is intact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BundleVerdict {
    pub signature_valid: bool,
    /// Why the index or signature could not be trusted, when it could not.
    pub problems: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub added: Vec<String>,
    pub files_checked: usize,
}

impl BundleVerdict {
    pub fn ok(&self) -> bool {
        self.signature_valid
            && self.problems.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.added.is_empty()
    }
}

/// Verifies a bundle offline with the public key (DER SubjectPublicKeyInfo) the auditor holds,
/// never one the bundle carries: the signature over the index, then every file against it.
pub fn verify_bundle(dir: &Path, public_key_der: &[u8]) -> Result<BundleVerdict, EvidenceError> {
    let mut verdict = BundleVerdict::default();
    let index_path = dir.join(BUNDLE_FILE);
    let index_bytes = std::fs::read(&index_path).map_err(|e| io_error(&index_path, e))?;
    let sig_path = dir.join(SIGNATURE_FILE);
    let signature = std::fs::read_to_string(&sig_path)
        .ok()
        .and_then(|text| BASE64.decode(text.trim()).ok());
    match signature {
        Some(signature) => {
            verdict.signature_valid = crate::rsa_verify::verify(
                crate::rsa_verify::RsaPadding::PssSha256,
                public_key_der,
                &signing_string(&index_bytes),
                &signature,
            );
            if !verdict.signature_valid {
                verdict.problems.push(format!(
                    "{BUNDLE_FILE}: the signature does not verify with this public key"
                ));
            }
        }
        None => verdict
            .problems
            .push(format!("{SIGNATURE_FILE}: missing or not base64")),
    }
    let index: BundleIndex = match serde_json::from_slice(&index_bytes) {
        Ok(index) => index,
        Err(e) => {
            verdict
                .problems
                .push(format!("{BUNDLE_FILE}: not a bundle index ({e})"));
            return Ok(verdict);
        }
    };
    if index.public_key_sha256 != key_fingerprint(public_key_der) {
        verdict.problems.push(format!(
            "{BUNDLE_FILE}: names signing key {}, not this public key",
            index.public_key_sha256
        ));
    }
    let listed: BTreeSet<&str> = index.files.iter().map(|f| f.path.as_str()).collect();
    for file in &index.files {
        let path = dir.join(&file.path);
        match std::fs::read(&path) {
            Ok(bytes) if sha256_hex(&bytes) == file.sha256 => verdict.files_checked += 1,
            Ok(_) => verdict.changed.push(file.path.clone()),
            Err(_) => verdict.removed.push(file.path.clone()),
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != BUNDLE_FILE && name != SIGNATURE_FILE && !listed.contains(name.as_str()) {
            verdict.added.push(name);
        }
    }
    verdict.added.sort();
    Ok(verdict)
}

#[cfg(test)]
mod tests;
