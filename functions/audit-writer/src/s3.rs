//! The S3 adapter: conditional, checksummed PUTs into the Object Lock bucket.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use aws_smithy_types::error::display::DisplayErrorContext;
use keyward_shared::redact::Redactor;

use crate::{AuditStore, PutOutcome, StoreError};

#[derive(Debug, Clone)]
pub struct S3AuditStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3AuditStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

fn other<E: std::error::Error>(err: &E) -> StoreError {
    StoreError::Other(Redactor::new().safe(&DisplayErrorContext(err).to_string()))
}

impl AuditStore for S3AuditStore {
    async fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        sha256_b64: &str,
    ) -> Result<PutOutcome, StoreError> {
        // Passing the SHA-256 ourselves makes the SDK send it as `x-amz-checksum-sha256` with
        // `x-amz-sdk-checksum-algorithm: SHA256` instead of computing a CRC32: S3 verifies it
        // (BadDigest on mismatch), Object Lock buckets require a checksum on every PUT, and the
        // stored checksum is the record's own hash, which the verifier compares.
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_b64)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            // 412 is not modelled by the SDK: it arrives as an unhandled error with this code.
            Err(err) if err.code() == Some("PreconditionFailed") => Ok(PutOutcome::AlreadyExists),
            Err(err) if err.code() == Some("ConditionalRequestConflict") => {
                Err(StoreError::ConcurrentConflict)
            }
            Err(err) => match err.raw_response().map(|r| r.status().as_u16()) {
                Some(412) => Ok(PutOutcome::AlreadyExists),
                Some(409) => Err(StoreError::ConcurrentConflict),
                _ => Err(other(&err)),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => {
                let bytes = output.body.collect().await.map_err(|e| other(&e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(other(&err)),
        }
    }
}
