//! The audit writer's and the digest's part: the audit bucket as the template declares it
//! (Object Lock, COMPLIANCE, 365 days) and the asymmetric key that signs audit digests.

use anyhow::{Context, Result};

use super::{LocalStack, Part};
use crate::moto::{BucketKind, MotoServer};

pub struct Audit {
    pub bucket: String,
    pub digest_key_id: String,
}

impl Audit {
    pub async fn create(moto: &MotoServer, suffix: &str) -> Result<Self> {
        let bucket = format!("keyward-audit-{suffix}");
        moto.create_bucket(&bucket, BucketKind::ObjectLockCompliance { days: 365 })
            .await
            .context("create the audit bucket")?;
        let digest_key_id = moto
            .create_signing_key()
            .await
            .context("create the digest signing key")?;
        Ok(Self {
            bucket,
            digest_key_id,
        })
    }
}

impl Part for Audit {
    fn env(&self, var: &str) -> Option<String> {
        Some(match var {
            "AUDIT_BUCKET" => self.bucket.clone(),
            "DIGEST_KMS_KEY_ID" => self.digest_key_id.clone(),
            // What the forwarder guards of keyward itself: the trail's bucket and signing key.
            "KEYWARD_PROTECTED_RESOURCES" => format!("{},{}", self.bucket, self.digest_key_id),
            _ => return None,
        })
    }
}

impl LocalStack {
    /// One audit record's bytes, if the key holds one.
    pub async fn audit_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.object(&self.audit.bucket, key).await
    }

    /// An object of the state bucket (the posture reports live there); absent is an error.
    pub async fn state_object(&self, key: &str) -> Result<Vec<u8>> {
        self.object(&self.anomaly.state_bucket, key)
            .await?
            .with_context(|| format!("s3://{}/{key} is missing", self.anomaly.state_bucket))
    }

    async fn object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self
            .moto
            .s3()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => Ok(Some(object.body.collect().await?.into_bytes().to_vec())),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object version under `audit/` (a rewrite would show as a second version).
    pub async fn audit_versions(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .moto
            .s3()
            .list_object_versions()
            .bucket(&self.audit.bucket)
            .prefix("audit/")
            .send()
            .await?;
        Ok(out
            .versions()
            .iter()
            .map(|v| {
                (
                    v.key().unwrap_or_default().to_owned(),
                    v.version_id().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }
}
