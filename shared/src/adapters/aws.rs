//! Port adapters over the AWS SDK.

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};

use crate::audit::{
    AuditReader, DigestSigner, DigestWriter, FetchedObject, META_SIGNATURE,
    META_SIGNATURE_ALGORITHM, ObjectVersion, ReadError, SIGNATURE_ALGORITHM, SealedDigest,
    SignError,
};
use crate::events::DomainEvent;
use crate::manifest::Manifest;
use crate::ports::{
    CatalogEntry, CatalogError, EventPublisher, ManifestReadError, ManifestSource, Marker,
    MarkerError, MarkerStore, PublishError, ReportStore, ResourcePolicies, SecretCatalog,
};
use crate::redact::Redactor;
use crate::tags::{self, Tag};

/// `PutEvents` takes at most 10 entries per call.
const PUT_EVENTS_BATCH: usize = 10;
/// Entries the bus rejects (throttling, internal failure) are retried this many times.
const PUT_EVENTS_ATTEMPTS: u32 = 3;

/// Loads region, credentials and endpoint from the default chain (environment, profile,
/// container or instance role). Call once per cold start and share the result.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The string value of a configuration secret (a token, a webhook URL), read once at cold
/// start. `what` names it in errors (e.g. "the webhook secret"); the value never appears there.
pub async fn config_secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    what: &str,
) -> Result<String, String> {
    client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| format!("reading {what}: {}", sdk_error_text(&e)))?
        .secret_string
        .ok_or_else(|| format!("{what} holds no string value"))
}

pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub(crate) fn to_chrono(dt: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(dt.secs(), dt.subsec_nanos())
}

/// An SDK error with its causes, redacted: what every adapter puts in its own errors.
pub fn sdk_error_text<E: std::error::Error>(err: &E) -> crate::redact::SafeText {
    Redactor::new().safe(&DisplayErrorContext(err).to_string())
}

type PutObjectFailure = aws_sdk_s3::error::SdkError<
    aws_sdk_s3::operation::put_object::PutObjectError,
    aws_sdk_s3::config::http::HttpResponse,
>;
type GetObjectFailure = aws_sdk_s3::error::SdkError<
    aws_sdk_s3::operation::get_object::GetObjectError,
    aws_sdk_s3::config::http::HttpResponse,
>;

/// What a failed create-only PUT (`If-None-Match: *`) means, when it is one of the two answers
/// S3 gives to conditional writes: 412 (the key exists) or 409 (a concurrent conditional write
/// is in flight). The SDK models neither: match the code, or the status.
fn conditional_put_outcome(err: &PutObjectFailure) -> Option<CreateOnly> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match err.code() {
        Some("PreconditionFailed") => Some(CreateOnly::Exists),
        Some("ConditionalRequestConflict") => Some(CreateOnly::Conflict),
        _ => match err.raw_response().map(|r| r.status().as_u16()) {
            Some(412) => Some(CreateOnly::Exists),
            Some(409) => Some(CreateOnly::Conflict),
            _ => None,
        },
    }
}

/// Whether a GetObject failed because there is no such key (`NoSuchKey`, or a bare 404).
fn is_missing_object(err: &GetObjectFailure) -> bool {
    err.as_service_error().is_some_and(|e| e.is_no_such_key())
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404)
}

/// Publishes domain events to the custom EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }

    fn entry(&self, event: &DomainEvent) -> Result<PutEventsRequestEntry, PublishError> {
        let mut entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(event.source())
            .detail_type(event.detail_type())
            .detail(event.to_detail_json()?)
            .time(aws_smithy_types::DateTime::from_millis(
                event.time.timestamp_millis(),
            ));
        if let Some(arn) = event.secret.as_ref().and_then(|s| s.arn.as_ref()) {
            entry = entry.resources(arn);
        }
        Ok(entry.build())
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PublishError> {
        let entries = events
            .iter()
            .map(|e| self.entry(e))
            .collect::<Result<Vec<_>, _>>()?;
        for batch in entries.chunks(PUT_EVENTS_BATCH) {
            let mut pending: Vec<PutEventsRequestEntry> = batch.to_vec();
            let mut last_codes = String::new();
            for attempt in 0..PUT_EVENTS_ATTEMPTS {
                if attempt > 0 {
                    let backoff = 100u64 << attempt;
                    tokio::time::sleep(std::time::Duration::from_millis(
                        backoff + fastrand::u64(0..backoff),
                    ))
                    .await;
                }
                let output = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| PublishError::Bus(sdk_error_text(&e)))?;
                if output.failed_entry_count() == 0 {
                    pending.clear();
                    break;
                }
                // Result entries line up with request entries; keep only the failed ones.
                let mut retry = Vec::new();
                let mut codes = Vec::new();
                for (entry, result) in pending.iter().zip(output.entries()) {
                    if let Some(code) = result.error_code() {
                        codes.push(code.to_owned());
                        retry.push(entry.clone());
                    }
                }
                last_codes = codes.join(", ");
                pending = retry;
            }
            if !pending.is_empty() {
                return Err(PublishError::Rejected {
                    failed: pending.len(),
                    total: events.len(),
                    codes: last_codes,
                });
            }
        }
        Ok(())
    }
}

/// Lists secrets with `ListSecrets` (which carries tags, rotation and access dates and the KMS
/// key, so no per-secret `DescribeSecret` is needed).
#[derive(Debug, Clone)]
pub struct SecretsManagerCatalog {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerCatalog {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

pub fn tags_from_sdk(tags: &[aws_sdk_secretsmanager::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect()
}

pub fn tags_to_sdk(tags: &[Tag]) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

impl SecretCatalog for SecretsManagerCatalog {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut pages = self
            .client
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .include_planned_deletion(true)
            .max_results(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CatalogError(sdk_error_text(&e)))?;
            for s in page.secret_list() {
                let name = s.name().unwrap_or_default();
                // The name filter is a prefix match on AWS; keep the check so a looser
                // implementation cannot leak other secrets into the result.
                if !name.starts_with(prefix) {
                    continue;
                }
                let tags = tags_from_sdk(s.tags());
                out.push(CatalogEntry {
                    arn: s.arn().unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                    governance: tags::decode(&tags),
                    tags,
                    rotation_enabled: s.rotation_enabled().unwrap_or(false),
                    rotation_days: s
                        .rotation_rules()
                        .and_then(|r| r.automatically_after_days()),
                    rotation_lambda_arn: s.rotation_lambda_arn().map(str::to_owned),
                    last_rotated: s.last_rotated_date().and_then(to_chrono),
                    next_rotation: s.next_rotation_date().and_then(to_chrono),
                    last_changed: s.last_changed_date().and_then(to_chrono),
                    last_accessed: s.last_accessed_date().and_then(to_chrono),
                    created: s.created_date().and_then(to_chrono),
                    deleted: s.deleted_date().and_then(to_chrono),
                    kms_key_id: s.kms_key_id().map(str::to_owned),
                    primary_region: s.primary_region().map(str::to_owned),
                    current_version: s.secret_versions_to_stages().and_then(|versions| {
                        versions
                            .iter()
                            .find(|(_, stages)| stages.iter().any(|st| st == "AWSCURRENT"))
                            .map(|(version, _)| version.clone())
                    }),
                });
            }
        }
        Ok(out)
    }
}

impl ResourcePolicies for SecretsManagerCatalog {
    async fn policy(&self, arn: &str) -> Result<Option<String>, CatalogError> {
        let out = self
            .client
            .get_resource_policy()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| CatalogError(sdk_error_text(&e)))?;
        Ok(out.resource_policy().map(str::to_owned))
    }
}

/// Reports live in the state bucket beside the markers, under their own prefix.
impl ReportStore for S3MarkerStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), MarkerError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Self::error(&e))
    }
}

/// The audit bucket as the digest job and the verifier see it.
#[derive(Debug, Clone)]
pub struct S3AuditBucket {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3AuditBucket {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn read_error<E: std::error::Error>(err: &E) -> ReadError {
    ReadError(sdk_error_text(err).to_string())
}

impl AuditReader for S3AuditBucket {
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, ReadError> {
        // ListObjectVersions has two markers, so the SDK offers no paginator for it.
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| read_error(&e))?;
            for v in page.versions() {
                out.push(ObjectVersion {
                    key: v.key().unwrap_or_default().to_owned(),
                    version_id: v.version_id().map(str::to_owned),
                    is_latest: v.is_latest().unwrap_or(false),
                    is_delete_marker: false,
                    last_modified: v.last_modified().and_then(to_chrono),
                });
            }
            for m in page.delete_markers() {
                out.push(ObjectVersion {
                    key: m.key().unwrap_or_default().to_owned(),
                    version_id: m.version_id().map(str::to_owned),
                    is_latest: m.is_latest().unwrap_or(false),
                    is_delete_marker: true,
                    last_modified: m.last_modified().and_then(to_chrono),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<FetchedObject>, ReadError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => {
                let metadata = output
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let bytes = output
                    .body
                    .collect()
                    .await
                    .map_err(|e| read_error(&e))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(FetchedObject { bytes, metadata }))
            }
            Err(err) if is_missing_object(&err) => Ok(None),
            Err(err) => Err(read_error(&err)),
        }
    }
}

/// What a create-only PUT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    Created,
    /// HTTP 412: an object already exists under the key.
    Exists,
    /// HTTP 409 `ConditionalRequestConflict`: a concurrent conditional write is in flight (retry).
    Conflict,
}

impl S3AuditBucket {
    /// A create-only PUT (`If-None-Match: *`) carrying the body's SHA-256, which S3 verifies
    /// (`BadDigest` on mismatch) and Object Lock buckets require. Passing the checksum ourselves
    /// makes the SDK send `x-amz-checksum-sha256` instead of computing a CRC32 of its own.
    /// `sha256_b64` is the base64 SHA-256 of `body`.
    pub async fn put_create_only(
        &self,
        key: &str,
        body: &[u8],
        sha256_b64: &str,
        metadata: &[(&str, &str)],
    ) -> Result<CreateOnly, ReadError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .if_none_match("*")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_b64)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()));
        for (name, value) in metadata {
            request = request.metadata(*name, *value);
        }
        match request.send().await {
            Ok(_) => Ok(CreateOnly::Created),
            Err(err) => conditional_put_outcome(&err).ok_or_else(|| read_error(&err)),
        }
    }
}

impl DigestWriter for S3AuditBucket {
    async fn put_digest(&self, digest: &SealedDigest) -> Result<bool, ReadError> {
        let metadata = [
            (META_SIGNATURE, digest.signature_b64.as_str()),
            (META_SIGNATURE_ALGORITHM, SIGNATURE_ALGORITHM),
        ];
        use base64::Engine as _;
        use sha2::Digest as _;
        let sha256 =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&digest.bytes));
        match self
            .put_create_only(&digest.document.key, &digest.bytes, &sha256, &metadata)
            .await?
        {
            CreateOnly::Created => Ok(true),
            CreateOnly::Exists => Ok(false),
            CreateOnly::Conflict => Err(ReadError(
                "a concurrent digest write to the same key is in flight".into(),
            )),
        }
    }
}

/// Create-once markers in an S3 bucket (see [`MarkerStore`]). The bucket's lifecycle rules
/// expire old markers; keys are chosen by the caller.
#[derive(Debug, Clone)]
pub struct S3MarkerStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// A 409 `ConditionalRequestConflict` (another conditional write to the key in flight) is
/// retried this many times before it is an error.
const MARKER_CONFLICT_ATTEMPTS: u32 = 4;

impl S3MarkerStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn error<E: std::error::Error>(err: &E) -> MarkerError {
        MarkerError(sdk_error_text(err))
    }
}

impl MarkerStore for S3MarkerStore {
    async fn create_or_get(&self, key: &str, body: &str) -> Result<Marker, MarkerError> {
        for attempt in 1..=MARKER_CONFLICT_ATTEMPTS {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                .if_none_match("*")
                .body(aws_sdk_s3::primitives::ByteStream::from(
                    body.as_bytes().to_vec(),
                ))
                .send()
                .await;
            let err = match sent {
                Ok(_) => {
                    return Ok(Marker {
                        body: body.to_owned(),
                        created: true,
                        last_modified: Some(Utc::now()),
                    });
                }
                Err(err) => err,
            };
            match conditional_put_outcome(&err) {
                Some(CreateOnly::Exists) => {
                    // Strongly consistent: after a 412 the winner's object is readable.
                    return self.get(key).await?.ok_or_else(|| {
                        MarkerError(crate::redact::SafeText::fixed(
                            "a marker reported as existing could not be read back",
                        ))
                    });
                }
                Some(CreateOnly::Conflict) if attempt < MARKER_CONFLICT_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                _ => return Err(Self::error(&err)),
            }
        }
        Err(MarkerError(crate::redact::SafeText::fixed(
            "concurrent conditional writes to one marker kept conflicting",
        )))
    }

    async fn get(&self, key: &str) -> Result<Option<Marker>, MarkerError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => {
                let last_modified = output.last_modified().and_then(to_chrono);
                let bytes = output
                    .body
                    .collect()
                    .await
                    .map_err(|e| Self::error(&e))?
                    .into_bytes();
                Ok(Some(Marker {
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                    created: false,
                    last_modified,
                }))
            }
            Err(err) if is_missing_object(&err) => Ok(None),
            Err(err) => Err(Self::error(&err)),
        }
    }

    async fn overwrite(&self, key: &str, body: &str) -> Result<(), MarkerError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                body.as_bytes().to_vec(),
            ))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Self::error(&e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, MarkerError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Self::error(&e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        // ListObjectsV2 returns UTF-8 binary order already; sorting keeps the contract explicit.
        keys.sort();
        Ok(keys)
    }

    async fn count(&self, prefix: &str, at_least: u64) -> Result<u64, MarkerError> {
        let mut count = 0u64;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(at_least.clamp(1, 1000) as i32)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| Self::error(&e))?;
            count += page.contents().len() as u64;
            if count >= at_least || page.is_truncated() != Some(true) {
                return Ok(count.min(at_least));
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(count.min(at_least));
            }
        }
    }
}

/// Signs digests with an asymmetric KMS key (`RSA_2048`+, `SIGN_VERIFY`).
#[derive(Debug)]
pub struct KmsDigestSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    public_key: tokio::sync::OnceCell<Vec<u8>>,
}

impl KmsDigestSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            public_key: tokio::sync::OnceCell::new(),
        }
    }
}

impl DigestSigner for KmsDigestSigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        self.public_key
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_public_key()
                    .key_id(&self.key_id)
                    .send()
                    .await
                    .map_err(|e| SignError(sdk_error_text(&e).to_string()))?;
                out.public_key
                    .map(|b| b.into_inner())
                    .ok_or_else(|| SignError("KMS returned no public key".into()))
            })
            .await
            .cloned()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(
            message,
            aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        )
        .await
    }
}

impl KmsDigestSigner {
    async fn sign_with(
        &self,
        message: &[u8],
        algorithm: aws_sdk_kms::types::SigningAlgorithmSpec,
    ) -> Result<Vec<u8>, SignError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_smithy_types::Blob::new(message))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(algorithm)
            .send()
            .await
            .map_err(|e| SignError(sdk_error_text(&e).to_string()))?;
        out.signature
            .map(|b| b.into_inner())
            .ok_or_else(|| SignError("KMS returned no signature".into()))
    }
}

/// Evidence bundles are signed with the digest key under PSS, which the key policy allows
/// the evidence signers alone and the digest verifier never accepts.
impl crate::evidence::EvidenceSigner for KmsDigestSigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        DigestSigner::public_key_der(self).await
    }

    async fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(
            message,
            aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPssSha256,
        )
        .await
    }
}

/// The manifest files and `enums.yaml` CI writes under `s3://bucket/prefix/`.
pub struct S3Manifest {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
}

impl S3Manifest {
    async fn read_object(&self, key: &str) -> Result<String, ManifestReadError> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                ManifestReadError(format!(
                    "s3://{}/{key}: {}",
                    self.bucket,
                    sdk_error_text(&e)
                ))
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| ManifestReadError(format!("s3://{}/{key}: {e}", self.bucket)))?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ManifestReadError(format!("s3://{}/{key} is not UTF-8", self.bucket)))
    }
}

impl ManifestSource for S3Manifest {
    async fn manifest(&self) -> Result<Manifest, ManifestReadError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                ManifestReadError(format!(
                    "listing s3://{}/{}: {}",
                    self.bucket,
                    self.prefix,
                    sdk_error_text(&e)
                ))
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        let mut files = Vec::new();
        for key in keys
            .into_iter()
            .filter(|k| k.ends_with(".yaml") || k.ends_with(".yml"))
        {
            let text = self.read_object(&key).await?;
            files.push((key, text));
        }
        Manifest::from_files(&files).map_err(ManifestReadError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Actor, CorrelationId, EventData, Outcome, Severity};
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn drift_event(n: usize) -> DomainEvent {
        DomainEvent::new(
            CorrelationId::generate(),
            Actor::service("drift-detector"),
            None,
            Outcome::Detected,
            EventData::DriftDetected {
                fingerprint: format!("f{n}"),
                finding: "rotation-disabled".into(),
                severity: Severity::High,
                evidence: Default::default(),
            },
        )
    }

    #[tokio::test]
    async fn publishes_in_batches_of_ten_and_retries_only_rejected_entries() {
        let ok = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| r.entries().len() == 10)
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let partial = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| r.entries().len() == 2)
            .then_output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(PutEventsResultEntry::builder().event_id("a").build())
                    .entries(
                        PutEventsResultEntry::builder()
                            .error_code("ThrottlingException")
                            .build(),
                    )
                    .build()
            });
        let retry = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| {
                r.entries().len() == 1 && r.entries()[0].event_bus_name() == Some("keyward")
            })
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let client = mock_client!(
            aws_sdk_eventbridge,
            RuleMode::Sequential,
            [&ok, &partial, &retry]
        );
        let publisher = EventBridgePublisher::new(client, "keyward");
        let events: Vec<_> = (0..12).map(drift_event).collect();
        publisher.publish(&events).await.unwrap();
        assert_eq!(
            (ok.num_calls(), partial.num_calls(), retry.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn persistent_rejection_is_an_error_naming_the_code() {
        let rejected = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(1)
                .entries(
                    PutEventsResultEntry::builder()
                        .error_code("InternalFailure")
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&rejected]);
        let err = EventBridgePublisher::new(client, "keyward")
            .publish(&[drift_event(1)])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 of 1 events were not accepted by the bus: InternalFailure"
        );
        assert_eq!(rejected.num_calls(), PUT_EVENTS_ATTEMPTS as usize);
    }
}
