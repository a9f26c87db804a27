//! The audit trail's formats and its verifier.
//!
//! Records: `audit/v1/YYYY/MM/DD/HH/<event-id>.json`, one per domain event, written once
//! (conditional PUT, S3 Object Lock COMPLIANCE). Digests: `digests/v1/YYYY/MM/DD/HH/<end>.json`,
//! one per period, each listing the records written in its period with their SHA-256 and naming the
//! previous digest's key, SHA-256 and signature, so the digests form a chain. Each digest is
//! signed (RSASSA-PKCS1-v1_5 with SHA-256, by an asymmetric KMS key) over a signing string that
//! binds its end time, its location and its hash; the signature travels in the object's metadata,
//! as CloudTrail's digest files do.
//!
//! The verifier walks the chain offline with the public key and reports, per object: valid,
//! modified, missing, not covered by any digest, chain breaks and signature failures. It trusts
//! nothing the store says about immutability.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub mod record;

pub const RECORD_PREFIX: &str = "audit/v1/";
pub const DIGEST_PREFIX: &str = "digests/v1/";
pub const DIGEST_VERSION: u32 = 1;
/// KMS's name for RSASSA-PKCS1-v1_5 with SHA-256 (CloudTrail's `SHA256withRSA`).
pub const SIGNATURE_ALGORITHM: &str = "RSASSA_PKCS1_V1_5_SHA_256";
/// Object metadata keys (sent as `x-amz-meta-signature`, `x-amz-meta-signature-algorithm`).
pub const META_SIGNATURE: &str = "signature";
pub const META_SIGNATURE_ALGORITHM: &str = "signature-algorithm";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `bytes` hash to `expected_hex`, without allocating.
pub fn sha256_matches(bytes: &[u8], expected_hex: &str) -> bool {
    let mut buffer = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(bytes), &mut buffer).is_ok()
        && buffer.as_slice() == expected_hex.as_bytes()
}

/// `audit/v1/YYYY/MM/DD/HH/<name>`: the shape of a record key (cheap check, no date parse).
fn is_record_key(key: &str) -> bool {
    key.strip_prefix(RECORD_PREFIX)
        .is_some_and(|rest| rest.splitn(5, '/').count() == 5)
}

/// SHA-256 of a DER public key: names the key a digest was signed with.
pub fn key_fingerprint(public_key_der: &[u8]) -> String {
    sha256_hex(public_key_der)
}

fn hour_path(t: &DateTime<Utc>) -> String {
    format!(
        "{:04}/{:02}/{:02}/{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

/// How a digest key names its period's end.
const DIGEST_END_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// `digests/v1/YYYY/MM/DD/HH/YYYYMMDDTHHMMSSZ.json` for a period ending at `end`: keys sort by
/// time, so the newest digest is the last key.
pub fn digest_key(end: &DateTime<Utc>) -> String {
    format!(
        "{DIGEST_PREFIX}{}/{}.json",
        hour_path(end),
        end.format(DIGEST_END_FORMAT)
    )
}

/// The period end a digest key names (the inverse of [`digest_key`]).
pub fn digest_end(key: &str) -> Option<DateTime<Utc>> {
    let stem = key.rsplit('/').next()?.strip_suffix(".json")?;
    chrono::NaiveDateTime::parse_from_str(stem, DIGEST_END_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// The hour partition prefix of records for the hour containing `t`: the one place the record
/// key layout is written (the audit writer keys records with it, the digest job and the verifier
/// list with it).
pub fn record_partition(t: &DateTime<Utc>) -> String {
    format!("{RECORD_PREFIX}{}/", hour_path(t))
}

/// The hour partition a record key names (`audit/v1/YYYY/MM/DD/HH/...`).
pub fn record_hour(key: &str) -> Option<DateTime<Utc>> {
    let rest = key.strip_prefix(RECORD_PREFIX)?;
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    if parts.len() != 5 {
        return None;
    }
    let text = format!("{}-{}-{}T{}:00:00Z", parts[0], parts[1], parts[2], parts[3]);
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestEntry {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Hex SHA-256 of the record's bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousDigest {
    pub key: String,
    /// Hex SHA-256 of the previous digest's bytes.
    pub sha256: String,
    /// Base64 signature of the previous digest.
    pub signature: String,
}

/// One digest: the records of a period and the link to the previous digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestDocument {
    pub digest_version: u32,
    /// Where the digest was written: a digest read from anywhere else has been moved.
    pub bucket: String,
    pub key: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub records: Vec<DigestEntry>,
    /// `None` only for the first digest of the chain.
    pub previous: Option<PreviousDigest>,
    pub public_key_fingerprint: String,
    pub signature_algorithm: String,
}

impl DigestDocument {
    /// Compact JSON in fixed field order, records sorted by key: the same digest always has the
    /// same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted = self.clone();
        sorted.records.sort_by(|a, b| a.key.cmp(&b.key));
        let mut bytes = serde_json::to_vec(&sorted).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// What is signed: a domain separator, the period end, the location and the digest's hash.
pub fn signing_string(
    period_end: &DateTime<Utc>,
    bucket: &str,
    key: &str,
    digest_bytes: &[u8],
) -> Vec<u8> {
    format!(
        "keyward-audit-digest/v1\n{}\n{bucket}/{key}\n{}",
        period_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sha256_hex(digest_bytes)
    )
    .into_bytes()
}

/// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature with a DER public key (SubjectPublicKeyInfo,
/// as KMS `GetPublicKey` returns it, or PKCS#1 RSAPublicKey).
pub fn verify_signature(public_key_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    crate::rsa_verify::verify(
        crate::rsa_verify::RsaPadding::Pkcs1Sha256,
        public_key_der,
        message,
        signature,
    )
}

// ---------------------------------------------------------------------------------------------
// Signing.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// Signs digests: KMS in production ([`crate::adapters::aws::KmsDigestSigner`]), an in-memory
/// key for benchmarks and tests (`LocalKeySigner`, with the `local-signer` feature).
pub trait DigestSigner: Send + Sync {
    /// The DER SubjectPublicKeyInfo of the signing key.
    fn public_key_der(&self) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;
    /// RSASSA-PKCS1-v1_5 SHA-256 over `message`.
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;
}

/// A digest ready to store: its bytes and their signature.
#[derive(Debug, Clone)]
pub struct SealedDigest {
    pub document: DigestDocument,
    pub bytes: Vec<u8>,
    pub signature_b64: String,
}

impl SealedDigest {
    /// The link the next digest records.
    pub fn as_previous(&self) -> PreviousDigest {
        PreviousDigest {
            key: self.document.key.clone(),
            sha256: sha256_hex(&self.bytes),
            signature: self.signature_b64.clone(),
        }
    }
}

pub async fn seal<S: DigestSigner>(
    signer: &S,
    document: DigestDocument,
) -> Result<SealedDigest, SignError> {
    let bytes = document.to_bytes();
    let message = signing_string(
        &document.period_end,
        &document.bucket,
        &document.key,
        &bytes,
    );
    let signature = signer.sign(&message).await?;
    Ok(SealedDigest {
        document,
        bytes,
        signature_b64: BASE64.encode(signature),
    })
}

/// An RSA key held in memory, made by aws-lc (ring makes no RSA keys): for benchmarks and
/// tests, so no function links it.
#[cfg(any(test, feature = "local-signer"))]
pub struct LocalKeySigner {
    key: aws_lc_rs::rsa::KeyPair,
}

#[cfg(any(test, feature = "local-signer"))]
impl LocalKeySigner {
    pub fn generate() -> Result<Self, SignError> {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| SignError(e.to_string()))?;
        Ok(Self { key })
    }

    pub fn public_key_spki(&self) -> Result<Vec<u8>, SignError> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair as _;
        self.key
            .public_key()
            .as_der()
            .map(|der| der.as_ref().to_vec())
            .map_err(|e| SignError(e.to_string()))
    }
}

#[cfg(any(test, feature = "local-signer"))]
impl LocalKeySigner {
    /// Signs `message` with the given RSA padding (PKCS#1 v1.5 for digests, PSS for evidence).
    pub fn sign_with(
        &self,
        padding: &'static dyn aws_lc_rs::signature::RsaEncoding,
        message: &[u8],
    ) -> Result<Vec<u8>, SignError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(padding, &rng, message, &mut signature)
            .map_err(|e| SignError(e.to_string()))?;
        Ok(signature)
    }
}

#[cfg(any(test, feature = "local-signer"))]
impl DigestSigner for LocalKeySigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        self.public_key_spki()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(&aws_lc_rs::signature::RSA_PKCS1_SHA256, message)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the bucket.
// ---------------------------------------------------------------------------------------------

/// One version of an object, as `ListObjectVersions` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct FetchedObject {
    pub bytes: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the audit bucket failed: {0}")]
pub struct ReadError(pub String);

/// What the verifier needs from the bucket.
pub trait AuditReader: Send + Sync {
    /// Every version (and delete marker) under `prefix`.
    fn list_versions(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectVersion>, ReadError>> + Send;
    /// The current version of `key` (`None` if absent or deleted).
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<FetchedObject>, ReadError>> + Send;
}

/// Stores sealed digests (create-only).
pub trait DigestWriter: Send + Sync {
    /// Writes the digest unless its key exists; `Ok(false)` when it already did.
    fn put_digest(
        &self,
        digest: &SealedDigest,
    ) -> impl Future<Output = Result<bool, ReadError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// The verifier.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Valid,
    /// Written after the newest digest: not yet due for coverage.
    Pending,
    /// Bytes differ from the digest's hash (or more than one version exists).
    Modified,
    /// Listed in a digest, absent (or deleted) in the bucket.
    Missing,
    /// A record no digest lists (and older than the newest digest).
    NotCovered,
    /// The chain ends earlier than the digest schedule allows: the digest job stopped, or the
    /// newest digests were removed (records after them would otherwise pass as pending).
    Stale,
    /// A digest whose chain link to its predecessor is wrong.
    ChainBreak,
    /// A digest whose signature, key fingerprint or location does not verify.
    SignatureFailure,
}

impl Status {
    pub fn is_failure(self) -> bool {
        !matches!(self, Status::Valid | Status::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    pub key: String,
    pub kind: ObjectKind,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Record,
    Digest,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub bucket: String,
    pub digests_checked: usize,
    pub records_checked: usize,
    pub objects: Vec<ObjectReport>,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &ObjectReport> {
        self.objects.iter().filter(|o| o.status.is_failure())
    }

    pub fn ok(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn count(&self, kind: ObjectKind, status: Status) -> usize {
        self.objects
            .iter()
            .filter(|o| o.kind == kind && o.status == status)
            .count()
    }

    pub fn summary(&self) -> String {
        let mut by_status: BTreeMap<(ObjectKind, Status), usize> = BTreeMap::new();
        for o in &self.objects {
            *by_status.entry((o.kind, o.status)).or_default() += 1;
        }
        let parts: Vec<String> = by_status
            .iter()
            .map(|((kind, status), n)| format!("{n} {kind:?} {status:?}").to_lowercase())
            .collect();
        format!(
            "{}: {} digests and {} records checked; {}",
            if self.ok() { "VALID" } else { "INVALID" },
            self.digests_checked,
            self.records_checked,
            parts.join(", ")
        )
    }
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only records whose hour partition is at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Only records whose hour partition is at or before this.
    pub to: Option<DateTime<Utc>>,
    /// How late a record may be written after its event (the digest job's
    /// `DIGEST_LOOKBACK_HOURS`): digests up to this long after `to` are read, since they may cover
    /// late records of the range.
    pub lookback: chrono::Duration,
    /// How recent the newest digest must be; `None`: not checked (a historical copy of a
    /// trail).
    pub freshness: Option<Freshness>,
}

/// The newest digest must end no more than `max_age` before `now` (or before `to`, for a range
/// that ends earlier): the digest schedule's period plus a grace.
#[derive(Debug, Clone)]
pub struct Freshness {
    pub now: DateTime<Utc>,
    pub max_age: chrono::Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            from: None,
            to: None,
            lookback: chrono::Duration::hours(48),
            freshness: None,
        }
    }
}

/// Records fetched at once by the verifier.
const VERIFY_CONCURRENCY: usize = 32;

/// A record as a digest lists it.
#[derive(Clone, Copy)]
struct Covered<'a> {
    key: &'a str,
    sha256: &'a str,
    version_id: Option<&'a str>,
    digest: &'a str,
}

/// One record key, with what the digests and the bucket say about it.
struct RecordCheck<'a> {
    key: &'a str,
    listed: Option<Covered<'a>>,
    versions: &'a [&'a ObjectVersion],
    latest: Option<&'a ObjectVersion>,
}

struct ParsedDigest {
    key: String,
    /// Versions of this key that are not delete markers: a digest is written once.
    versions: usize,
    bytes: Vec<u8>,
    document: Option<DigestDocument>,
    signature_b64: Option<String>,
}

/// The digests in the bucket, oldest first (keys sort by period end), and the ones deleted.
struct DigestSet {
    digests: Vec<ParsedDigest>,
    deleted: BTreeSet<String>,
}

/// What a digest is checked against.
struct DigestContext<'a> {
    bucket: &'a str,
    public_key_der: &'a [u8],
    fingerprint: String,
    set: &'a DigestSet,
    by_key: BTreeMap<&'a str, usize>,
}

fn in_range(t: &DateTime<Utc>, options: &VerifyOptions) -> bool {
    options
        .from
        .is_none_or(|from| *t >= from - chrono::Duration::hours(1))
        && options.to.is_none_or(|to| *t <= to)
}

/// Walks the digest chain and every record, and reports on each object.
pub async fn verify<R: AuditReader>(
    reader: &R,
    bucket: &str,
    public_key_der: &[u8],
    options: &VerifyOptions,
) -> Result<VerifyReport, ReadError> {
    let mut report = VerifyReport {
        bucket: bucket.to_owned(),
        ..Default::default()
    };
    let set = read_digests(reader).await?;
    for key in &set.deleted {
        report.objects.push(ObjectReport {
            key: key.clone(),
            kind: ObjectKind::Digest,
            status: Status::Missing,
            detail: "the digest was deleted (a delete marker is its current version)".into(),
        });
    }
    let context = DigestContext {
        bucket,
        public_key_der,
        fingerprint: key_fingerprint(public_key_der),
        by_key: set
            .digests
            .iter()
            .enumerate()
            .map(|(i, d)| (d.key.as_str(), i))
            .collect(),
        set: &set,
    };
    // Borrowed from the parsed digests, so a large trail costs an allocation per digest, not
    // per record.
    let mut covered: Vec<Covered> = Vec::new();
    let mut newest_end: Option<DateTime<Utc>> = None;
    for i in digests_in_scope(&set.digests, options) {
        report.digests_checked += 1;
        let digest = &set.digests[i];
        let Some(doc) = &digest.document else {
            report.objects.push(ObjectReport {
                key: digest.key.clone(),
                kind: ObjectKind::Digest,
                status: Status::SignatureFailure,
                detail: "the digest is not a valid digest document (modified or corrupt)".into(),
            });
            continue;
        };
        report.objects.extend(check_digest(&context, i, doc));
        covered.extend(doc.records.iter().map(|entry| Covered {
            key: entry.key.as_str(),
            sha256: entry.sha256.as_str(),
            version_id: entry.version_id.as_deref(),
            digest: digest.key.as_str(),
        }));
        newest_end = newest_end.max(Some(doc.period_end));
    }

    let record_versions = reader.list_versions(RECORD_PREFIX).await?;
    if let Some(freshness) = &options.freshness {
        let oldest_record = record_versions.iter().filter_map(|v| v.last_modified).min();
        report.objects.extend(staleness(
            freshness,
            options,
            &set,
            newest_end,
            oldest_record,
        ));
    }
    let mut versions: Vec<&ObjectVersion> = record_versions.iter().collect();
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    let checks = record_checks(covered, &versions, options);
    report.records_checked = checks.len();
    let hashed = hash_records(reader, &checks).await;
    for (check, hashed) in checks.iter().zip(hashed) {
        let (status, detail) = record_status(check, hashed.transpose()?, newest_end);
        report.objects.push(ObjectReport {
            key: check.key.to_owned(),
            kind: ObjectKind::Record,
            status,
            detail,
        });
    }
    Ok(report)
}

/// Every digest whose current version exists, parsed (or not: a digest that does not parse is
/// reported, not skipped), and every digest whose current version is a delete marker.
async fn read_digests<R: AuditReader>(reader: &R) -> Result<DigestSet, ReadError> {
    let digest_versions = reader.list_versions(DIGEST_PREFIX).await?;
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    for v in digest_versions.iter().filter(|v| v.is_latest) {
        if v.is_delete_marker {
            deleted.insert(v.key.clone());
        } else {
            keys.insert(v.key.clone());
        }
    }
    let mut digests = Vec::new();
    for key in keys {
        let Some(object) = reader.get(&key).await? else {
            deleted.insert(key);
            continue;
        };
        let document = serde_json::from_slice::<DigestDocument>(&object.bytes).ok();
        let versions = digest_versions
            .iter()
            .filter(|v| v.key == key && !v.is_delete_marker)
            .count();
        digests.push(ParsedDigest {
            key,
            versions,
            signature_b64: object.metadata.get(META_SIGNATURE).cloned(),
            bytes: object.bytes,
            document,
        });
    }
    Ok(DigestSet { digests, deleted })
}

/// A report on the chain's end when it is older than the schedule allows. No digest at all is
/// stale too when digests were deleted, or when a record is older than the allowance (a digest
/// should exist by now).
fn staleness(
    freshness: &Freshness,
    options: &VerifyOptions,
    set: &DigestSet,
    newest_end: Option<DateTime<Utc>>,
    oldest_record: Option<DateTime<Utc>>,
) -> Option<ObjectReport> {
    let reference = options.to.map_or(freshness.now, |to| to.min(freshness.now));
    let newest = set.digests.iter().rev().find(|d| d.document.is_some());
    let (key, detail) = match (newest, newest_end) {
        (Some(digest), Some(end)) if end + freshness.max_age < reference => (
            digest.key.clone(),
            format!(
                "the newest digest ends at {end}, more than {} h before {reference}: the digest job stopped or later digests were removed",
                freshness.max_age.num_hours()
            ),
        ),
        (None, _) if !set.deleted.is_empty() => (
            DIGEST_PREFIX.to_owned(),
            "every digest was removed".to_owned(),
        ),
        (None, _) if oldest_record.is_some_and(|at| at + freshness.max_age < reference) => (
            DIGEST_PREFIX.to_owned(),
            "records exist but no digest seals them: the digest job never ran or its digests were removed".to_owned(),
        ),
        _ => return None,
    };
    Some(ObjectReport {
        key,
        kind: ObjectKind::Digest,
        status: Status::Stale,
        detail,
    })
}

/// The digests that can cover a record of the range. A record in hour partition H is written
/// at or after H and at most `lookback` after its event.
fn digests_in_scope(digests: &[ParsedDigest], options: &VerifyOptions) -> Vec<usize> {
    (0..digests.len())
        .filter(|&i| {
            digests[i]
                .document
                .as_ref()
                .map(|d| {
                    options
                        .from
                        .is_none_or(|from| d.period_end >= from - chrono::Duration::hours(1))
                        && options.to.is_none_or(|to| {
                            d.period_start <= to + options.lookback + chrono::Duration::hours(1)
                        })
                })
                .unwrap_or(true)
        })
        .collect()
}

/// The digest's own report, and a report for a predecessor it names that is not in the bucket.
fn check_digest(context: &DigestContext<'_>, i: usize, doc: &DigestDocument) -> Vec<ObjectReport> {
    let digest = &context.set.digests[i];
    let mut problems = signature_problems(context, digest, doc);
    if digest.versions > 1 {
        problems.push((
            Status::Modified,
            format!(
                "{} versions of this digest exist; a digest is written once",
                digest.versions
            ),
        ));
    }
    let mut reports = Vec::new();
    problems.extend(chain_problems(context, i, doc, &mut reports));
    let (status, detail) = problems
        .iter()
        .max_by_key(|(s, _)| *s)
        .map(|(s, _)| {
            (
                *s,
                problems
                    .iter()
                    .map(|(_, d)| d.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or((
            Status::Valid,
            format!("{} records, signature and chain valid", doc.records.len()),
        ));
    reports.insert(
        0,
        ObjectReport {
            key: digest.key.clone(),
            kind: ObjectKind::Digest,
            status,
            detail,
        },
    );
    reports
}

/// Where the digest says it belongs, which key signed it, and the signature itself.
fn signature_problems(
    context: &DigestContext<'_>,
    digest: &ParsedDigest,
    doc: &DigestDocument,
) -> Vec<(Status, String)> {
    let mut problems = Vec::new();
    if doc.key != digest.key || doc.bucket != context.bucket {
        problems.push((
            Status::SignatureFailure,
            format!(
                "the digest says it belongs at {}/{} but was read from {}/{} (moved or swapped)",
                doc.bucket, doc.key, context.bucket, digest.key
            ),
        ));
    }
    if doc.public_key_fingerprint != context.fingerprint {
        problems.push((
            Status::SignatureFailure,
            format!(
                "signed with key {} (not the key given)",
                doc.public_key_fingerprint
            ),
        ));
    }
    match &digest.signature_b64 {
        None => problems.push((
            Status::SignatureFailure,
            "the digest carries no signature".into(),
        )),
        Some(sig) => {
            let message = signing_string(&doc.period_end, &doc.bucket, &doc.key, &digest.bytes);
            let valid = BASE64
                .decode(sig)
                .is_ok_and(|s| verify_signature(context.public_key_der, &message, &s));
            if !valid {
                problems.push((
                    Status::SignatureFailure,
                    "signature verification failed".into(),
                ));
            }
        }
    }
    problems
}

/// The chain link: the newest existing digest before this one must be the one it names, with
/// the hash and signature it recorded. A named predecessor absent from the bucket is reported
/// as missing (into `missing`) unless its deletion is already reported.
fn chain_problems(
    context: &DigestContext<'_>,
    i: usize,
    doc: &DigestDocument,
    missing: &mut Vec<ObjectReport>,
) -> Vec<(Status, String)> {
    let digests = &context.set.digests;
    let mut problems = Vec::new();
    let predecessor = digests[..i].iter().rev().find(|d| d.document.is_some());
    match (&doc.previous, predecessor) {
        (None, None) => {}
        (None, Some(p)) => problems.push((
            Status::ChainBreak,
            format!("starts a new chain although {} precedes it", p.key),
        )),
        (Some(prev), _) if !context.by_key.contains_key(prev.key.as_str()) => {
            problems.push((
                Status::ChainBreak,
                format!("the previous digest {} is missing", prev.key),
            ));
            if !context.set.deleted.contains(&prev.key) {
                missing.push(ObjectReport {
                    key: prev.key.clone(),
                    kind: ObjectKind::Digest,
                    status: Status::Missing,
                    detail: format!("named by {} but not in the bucket", digests[i].key),
                });
            }
        }
        (Some(prev), _) => {
            let named = &digests[context.by_key[prev.key.as_str()]];
            if sha256_hex(&named.bytes) != prev.sha256 {
                problems.push((
                    Status::ChainBreak,
                    format!(
                        "the previous digest {} does not hash to the recorded value (modified)",
                        prev.key
                    ),
                ));
            }
            if named.signature_b64.as_deref() != Some(prev.signature.as_str()) {
                problems.push((
                    Status::ChainBreak,
                    format!(
                        "the previous digest {} carries a different signature than recorded",
                        prev.key
                    ),
                ));
            }
            if let Some(p) = predecessor
                && p.key != prev.key
            {
                problems.push((
                    Status::ChainBreak,
                    format!("names {} as previous but {} lies between", prev.key, p.key),
                ));
            }
        }
    }
    problems
}

/// A merge-join of the digests' entries and the bucket's record versions (`versions` sorted by
/// key: S3 lists in key order, and a stable sort keeps each key's versions in order): one check
/// per record key of the range.
fn record_checks<'a>(
    mut covered: Vec<Covered<'a>>,
    versions: &'a [&'a ObjectVersion],
    options: &VerifyOptions,
) -> Vec<RecordCheck<'a>> {
    covered.sort_by(|a, b| a.key.cmp(b.key));
    // A key listed by two digests keeps the first; the second listing adds nothing to check.
    covered.dedup_by(|later, first| later.key == first.key);
    let ranged = options.from.is_some() || options.to.is_some();
    let mut checks = Vec::new();
    let (mut ci, mut vi) = (0, 0);
    while ci < covered.len() || vi < versions.len() {
        let key: &str = match (covered.get(ci), versions.get(vi)) {
            (Some(c), Some(v)) => c.key.min(v.key.as_str()),
            (Some(c), None) => c.key,
            (None, Some(v)) => v.key.as_str(),
            (None, None) => break,
        };
        let listed = covered.get(ci).filter(|c| c.key == key).copied();
        if listed.is_some() {
            ci += 1;
        }
        let group_start = vi;
        while versions.get(vi).is_some_and(|v| v.key == key) {
            vi += 1;
        }
        let group = &versions[group_start..vi];
        let wanted = if ranged {
            record_hour(key).is_some_and(|hour| in_range(&hour, options))
        } else {
            is_record_key(key)
        };
        if wanted {
            checks.push(RecordCheck {
                key,
                listed,
                versions: group,
                latest: group.iter().find(|v| v.is_latest).copied(),
            });
        }
    }
    checks
}

/// Fetches and hashes the listed records whose current version exists, a bounded number at a
/// time: against S3 each is a GET, and a sequential walk would be bound by latency, not by
/// hashing. `None`: nothing to hash; `Some(Ok(None))`: unreadable.
async fn hash_records<R: AuditReader>(
    reader: &R,
    checks: &[RecordCheck<'_>],
) -> Vec<Option<Result<Option<bool>, ReadError>>> {
    futures::stream::iter(checks.iter().map(|check| async move {
        let (Some(listed), Some(latest)) = (check.listed, check.latest) else {
            return None;
        };
        if latest.is_delete_marker {
            return None;
        }
        Some(
            reader
                .get(check.key)
                .await
                .map(|object| object.map(|o| sha256_matches(&o.bytes, listed.sha256))),
        )
    }))
    .buffered(VERIFY_CONCURRENCY)
    .collect()
    .await
}

/// One record's verdict from what its digest lists, its versions and its hash.
fn record_status(
    check: &RecordCheck<'_>,
    hashed: Option<Option<bool>>,
    newest_end: Option<DateTime<Utc>>,
) -> (Status, String) {
    let (versions, latest) = (check.versions, check.latest);
    let Some(listed) = check.listed else {
        let written = latest.and_then(|v| v.last_modified);
        return match (latest, written, newest_end) {
            // A delete marker over a record no digest ever listed: it was removed before it
            // could be sealed. Records are never deleted legitimately.
            (Some(v), _, _) if v.is_delete_marker => (
                Status::Missing,
                "deleted before any digest listed it".into(),
            ),
            (_, Some(written), Some(end)) if written < end - chrono::Duration::minutes(5) => (
                Status::NotCovered,
                format!("written {written} but in no digest up to {end}"),
            ),
            _ => (Status::Pending, "written after the newest digest".into()),
        };
    };
    let digest_key = listed.digest;
    match (latest, hashed) {
        (None, _) => (
            Status::Missing,
            format!("listed in {digest_key} but absent"),
        ),
        (Some(v), _) if v.is_delete_marker => (
            Status::Missing,
            format!("listed in {digest_key} but deleted"),
        ),
        (Some(_), None | Some(None)) => (
            Status::Missing,
            format!("listed in {digest_key} but unreadable"),
        ),
        (Some(_), Some(Some(false))) => (
            Status::Modified,
            format!("does not hash to the value in {digest_key}"),
        ),
        (Some(_), Some(Some(true)))
            if versions.iter().filter(|v| !v.is_delete_marker).count() > 1 =>
        {
            (
                Status::Modified,
                format!(
                    "{} versions exist; a record is written once",
                    versions.len()
                ),
            )
        }
        (Some(l), Some(Some(true)))
            if listed.version_id.is_some() && l.version_id.as_deref() != listed.version_id =>
        {
            (
                Status::Modified,
                format!("the current version is not the one {digest_key} lists"),
            )
        }
        // No per-record text for the common case: it is the bulk of a large report.
        (Some(_), Some(Some(true))) => (Status::Valid, String::new()),
    }
}

/// A versioned bucket in memory that enforces nothing (like an attacker past Object Lock): for
/// unit tests of the digest job and the verifier.
#[derive(Default)]
pub struct InMemoryAuditBucket {
    objects: std::sync::Mutex<BTreeMap<String, Vec<MemoryVersion>>>,
    next_id: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct MemoryVersion {
    id: String,
    bytes: Option<Vec<u8>>,
    metadata: BTreeMap<String, String>,
    at: DateTime<Utc>,
}

impl InMemoryAuditBucket {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<MemoryVersion>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a version (S3 semantics: a PUT to an existing key adds a version).
    pub fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        metadata: BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) -> String {
        let id = format!(
            "v{}",
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1
        );
        self.objects()
            .entry(key.to_owned())
            .or_default()
            .push(MemoryVersion {
                id: id.clone(),
                bytes: Some(bytes),
                metadata,
                at,
            });
        id
    }

    /// Adds a delete marker.
    pub fn delete(&self, key: &str, at: DateTime<Utc>) {
        self.objects()
            .entry(key.to_owned())
            .or_default()
            .push(MemoryVersion {
                id: "delete-marker".into(),
                bytes: None,
                metadata: BTreeMap::new(),
                at,
            });
    }

    /// Removes every version of a key, as if they had been deleted one by one.
    pub fn purge(&self, key: &str) {
        self.objects().remove(key);
    }

    pub fn current_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.objects()
            .get(key)
            .and_then(|v| v.last())
            .and_then(|v| v.bytes.clone())
    }

    pub fn current_version(&self, key: &str) -> Option<String> {
        self.objects()
            .get(key)
            .and_then(|v| v.last())
            .map(|v| v.id.clone())
    }
}

impl AuditReader for InMemoryAuditBucket {
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, ReadError> {
        let objects = self.objects();
        Ok(objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .flat_map(|(k, versions)| {
                versions
                    .iter()
                    .enumerate()
                    .map(move |(i, v)| ObjectVersion {
                        key: k.clone(),
                        version_id: Some(v.id.clone()),
                        is_latest: i + 1 == versions.len(),
                        is_delete_marker: v.bytes.is_none(),
                        last_modified: Some(v.at),
                    })
            })
            .collect())
    }

    async fn get(&self, key: &str) -> Result<Option<FetchedObject>, ReadError> {
        let objects = self.objects();
        Ok(objects.get(key).and_then(|v| v.last()).and_then(|v| {
            v.bytes.clone().map(|bytes| FetchedObject {
                bytes,
                metadata: v.metadata.clone(),
            })
        }))
    }
}

impl DigestWriter for InMemoryAuditBucket {
    async fn put_digest(&self, digest: &SealedDigest) -> Result<bool, ReadError> {
        if self.current_bytes(&digest.document.key).is_some() {
            return Ok(false);
        }
        let metadata = BTreeMap::from([
            (META_SIGNATURE.to_owned(), digest.signature_b64.clone()),
            (
                META_SIGNATURE_ALGORITHM.to_owned(),
                SIGNATURE_ALGORITHM.to_owned(),
            ),
        ]);
        self.put(
            &digest.document.key,
            digest.bytes.clone(),
            metadata,
            Utc::now(),
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
