//! The anomaly forwarder's part: the trail's bucket, the forwarder's state bucket, and the
//! places alerts go (Loki, and a webhook whose URL lives in a secret, as in production); and
//! writing CloudTrail log files the way CloudTrail does.

use anyhow::{Context, Result};
use keyward_shared::redact::SecretString;

use super::{Part, create_secret};
use crate::fakes::loki::{FakeLoki, RunningLoki};
use crate::fakes::webhook::{FakeWebhook, RunningWebhook};
use crate::moto::{BucketKind, MotoServer};

pub struct Anomaly {
    /// The trail bucket (log files) and the forwarder's state bucket.
    pub trail_bucket: String,
    pub state_bucket: String,
    /// Where the forwarder sends alerts.
    pub loki: RunningLoki,
    pub webhook: RunningWebhook,
    webhook_secret_arn: String,
    s3: aws_sdk_s3::Client,
}

impl Anomaly {
    pub async fn create(moto: &MotoServer, suffix: &str) -> Result<Self> {
        let trail_bucket = format!("keyward-trail-{suffix}");
        let state_bucket = format!("keyward-state-{suffix}");
        for bucket in [&trail_bucket, &state_bucket] {
            moto.create_bucket(bucket, BucketKind::Versioned)
                .await
                .with_context(|| format!("create {bucket}"))?;
        }
        let webhook = FakeWebhook::start().await?;
        let name = format!("keyward-alert-webhook-{suffix}");
        let webhook_secret_arn = create_secret(moto, &name, &webhook.url())
            .await
            .context("create the webhook secret")?;
        Ok(Self {
            trail_bucket,
            state_bucket,
            loki: FakeLoki::start(true).await?,
            webhook,
            webhook_secret_arn,
            s3: moto.s3(),
        })
    }

    /// Writes a CloudTrail log file (gzip of `{"Records": [...]}`) to the trail bucket, as
    /// CloudTrail does, and returns the S3 `Object Created` event EventBridge would carry.
    pub async fn put_log_file(
        &self,
        records: &[serde_json::Value],
    ) -> Result<(String, serde_json::Value)> {
        use std::io::Write;
        let now = chrono::Utc::now();
        let key = format!(
            "AWSLogs/123456789012/CloudTrail/{region}/{date}/123456789012_CloudTrail_{region}_{stamp}_{id}.json.gz",
            region = crate::moto::REGION,
            date = now.format("%Y/%m/%d"),
            stamp = now.format("%Y%m%dT%H%MZ"),
            id = &uuid::Uuid::new_v4().simple().to_string()[..16],
        );
        let body = serde_json::json!({ "Records": records }).to_string();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(body.as_bytes())?;
        let bytes = gzip.finish()?;
        let size = bytes.len();
        self.s3
            .put_object()
            .bucket(&self.trail_bucket)
            .key(&key)
            .body(bytes.into())
            .send()
            .await
            .context("write the log file")?;
        Ok((key.clone(), self.object_created(&key, size)))
    }

    /// The EventBridge `Object Created` event for a key of the trail bucket.
    pub fn object_created(&self, key: &str, size: usize) -> serde_json::Value {
        serde_json::json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Object Created",
            "source": "aws.s3", "account": "123456789012",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": crate::moto::REGION,
            "resources": [format!("arn:aws:s3:::{}", self.trail_bucket)],
            "detail": {
                "version": "0", "bucket": {"name": self.trail_bucket},
                "object": {"key": key, "size": size, "sequencer": "0055AED6DCD90281E5"},
                "request-id": "C3D13FE58DE4C810", "requester": "cloudtrail.amazonaws.com",
                "reason": "PutObject"
            }
        })
    }
}

impl Part for Anomaly {
    fn env(&self, var: &str) -> Option<String> {
        Some(match var {
            "KEYWARD_STATE_BUCKET" => self.state_bucket.clone(),
            "KEYWARD_LOKI_PUSH_URL" => self.loki.push_url(),
            "KEYWARD_LOKI_TENANT" => "keyward".into(),
            "KEYWARD_ALERT_WEBHOOK_SECRET_ARN" => self.webhook_secret_arn.clone(),
            // The local stack's own automation: the drift detector's and syncer's SDK.
            "KEYWARD_AUTOMATION_PRINCIPALS" => String::new(),
            "KEYWARD_AUTOMATION_USER_AGENTS" => "aws-sdk-rust".into(),
            _ => return None,
        })
    }

    /// The webhook URL is a credential too.
    fn credentials(&self) -> Vec<SecretString> {
        vec![SecretString::from(self.webhook.url())]
    }
}
