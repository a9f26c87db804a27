//! The S3 adapter: the shared audit-bucket adapter's create-only, checksummed PUT, into the
//! Object Lock bucket.

use keyward_shared::adapters::aws::{CreateOnly, S3AuditBucket};
use keyward_shared::audit::AuditReader;
use keyward_shared::redact::Redactor;

use crate::{AuditStore, PutOutcome, StoreError};

#[derive(Debug, Clone)]
pub struct S3AuditStore {
    bucket: S3AuditBucket,
}

impl S3AuditStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            bucket: S3AuditBucket::new(client, bucket),
        }
    }
}

fn other(err: keyward_shared::audit::ReadError) -> StoreError {
    // Already redacted by the shared adapter; redacting again is harmless.
    StoreError::Other(Redactor::new().safe(&err.0))
}

impl AuditStore for S3AuditStore {
    async fn put_if_absent(
        &self,
        key: &str,
        body: &[u8],
        sha256_b64: &str,
    ) -> Result<PutOutcome, StoreError> {
        match self
            .bucket
            .put_create_only(key, body, sha256_b64, &[])
            .await
            .map_err(other)?
        {
            CreateOnly::Created => Ok(PutOutcome::Created),
            CreateOnly::Exists => Ok(PutOutcome::AlreadyExists),
            CreateOnly::Conflict => Err(StoreError::ConcurrentConflict),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .bucket
            .get(key)
            .await
            .map_err(other)?
            .map(|object| object.bytes))
    }
}
