//! S3: the audit bucket, the state bucket's markers and reports, and the published manifest.

use chrono::Utc;

use super::{LazyClient, SdkConfig, sdk_error_text, to_chrono};
use crate::audit::{
    AuditReader, DigestWriter, FetchedObject, META_SIGNATURE, META_SIGNATURE_ALGORITHM,
    ObjectVersion, ReadError, SIGNATURE_ALGORITHM, SealedDigest,
};
use crate::manifest::Manifest;
use crate::ports::{
    ManifestReadError, ManifestSource, Marker, MarkerError, MarkerStore, ReportStore,
};

pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// [`s3_client`], built on first use.
pub fn lazy_s3_client(sdk: &SdkConfig, force_path_style: bool) -> LazyClient<aws_sdk_s3::Client> {
    let sdk = sdk.clone();
    LazyClient::with(move || s3_client(&sdk, force_path_style))
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
/// The manifest files and `enums.yaml` CI writes under `s3://bucket/prefix/`.
pub struct S3Manifest {
    /// Built on the first read: not every invocation reads the manifest.
    pub s3: LazyClient<aws_sdk_s3::Client>,
    pub bucket: String,
    pub prefix: String,
}

impl S3Manifest {
    async fn read_object(&self, key: &str) -> Result<String, ManifestReadError> {
        let object = self
            .s3
            .get()
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
            .get()
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
