//! The Vercel sync's part: the project the manifest's mappings name (`team_acme/acme-web`) with
//! a custom environment and a deploy hook, the credentials secret holding the token and the hook
//! URL, and the debounce queue of redeploys (delay 0 here: the stack drains it itself).

use anyhow::{Context, Result};
use keyward_shared::redact::SecretString;

use super::bus::{create_queue, delete, receive};
use super::{INVOKE_TIMEOUT, LocalStack, Part, create_secret, summarise};
use crate::fakes::vercel::{FakeVercel, RunningVercel};
use crate::moto::MotoServer;

/// The Vercel token the local stack's credentials secret holds (the fake accepts only it).
pub const VERCEL_TOKEN: &str = "vcp_localstack_7c1d9e2f4a6b8c0d";

pub struct Vercel {
    pub api: RunningVercel,
    /// The id of `acme-web`.
    pub project: String,
    /// The debounce queue of Vercel redeploys.
    pub redeploy_url: String,
    deploy_hook: String,
    credentials_arn: String,
}

impl Vercel {
    pub async fn create(moto: &MotoServer, suffix: &str) -> Result<Self> {
        let api = FakeVercel::start(VERCEL_TOKEN).await?;
        let project = api
            .fake
            .add_project("acme-web", Some(("team_acme", "acme")));
        api.fake.add_custom_environment(&project, "staging");
        let deploy_hook = api.fake.add_deploy_hook(&project);
        let credentials = serde_json::json!({
            "token": VERCEL_TOKEN,
            "deploy_hooks": {"acme-web": deploy_hook},
        });
        let name = format!("keyward-vercel-{suffix}");
        let credentials_arn = create_secret(moto, &name, &credentials.to_string())
            .await
            .context("create the Vercel credentials secret")?;
        let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config());
        let redeploy_url = create_queue(&sqs, &format!("keyward-vercel-redeploy-{suffix}")).await?;
        Ok(Self {
            api,
            project,
            redeploy_url,
            deploy_hook,
            credentials_arn,
        })
    }
}

impl Part for Vercel {
    fn env(&self, var: &str) -> Option<String> {
        Some(match var {
            "KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN" => self.credentials_arn.clone(),
            "KEYWARD_VERCEL_API_URL" => self.api.api_url(),
            "KEYWARD_VERCEL_REDEPLOY_QUEUE_URL" => self.redeploy_url.clone(),
            "KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS" => "0".into(),
            _ => return None,
        })
    }

    fn credentials(&self) -> Vec<SecretString> {
        vec![
            SecretString::from(VERCEL_TOKEN.to_owned()),
            SecretString::from(self.deploy_hook.clone()),
        ]
    }
}

/// The Vercel sync's answer: how many secrets, what it wrote, what it found.
pub(super) fn summarise_sync(input: &str, response: &serde_json::Value) -> String {
    let number = |key: &str| response.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    format!(
        "{input}: {} secret(s), {} write call(s), changed {}, drift {}, failed {}, redeploys {}",
        number("secrets"),
        number("writes"),
        response["changed"],
        response["drift"],
        response["failed"],
        if input == "redeploy" {
            response["redeploys_triggered"].to_string()
        } else {
            response["redeploys_scheduled"].to_string()
        }
    )
}

/// An SQS event source record for a received message.
fn sqs_record(m: &aws_sdk_sqs::types::Message) -> serde_json::Value {
    serde_json::json!({
        "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
        "body": m.body(), "attributes": {}, "messageAttributes": {},
        "eventSource": "aws:sqs", "awsRegion": crate::moto::REGION,
    })
}

impl LocalStack {
    /// Delivers the due Vercel redeploy requests to the sync function as Lambda's SQS event
    /// source would (one batch), deleting the messages it did not report as failed.
    /// Returns how many requests were due and the function's response.
    pub async fn drain_redeploys(&mut self) -> Result<(usize, serde_json::Value)> {
        let sqs = self.bus.sqs().clone();
        let queue = self.vercel.redeploy_url.clone();
        let messages = receive(&sqs, &queue).await?;
        let records: Vec<serde_json::Value> = messages.iter().map(sqs_record).collect();
        let function = self.function("VercelSyncFunction")?;
        let name = function.name.clone();
        let response = function
            .invoke(&serde_json::json!({ "Records": records }), INVOKE_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("redeploy batch failed: {e}"))?;
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for message in &messages {
            if let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle())
                && !failed.contains(&id)
            {
                delete(&sqs, &queue, handle).await?;
            }
        }
        self.record(
            &format!("{} redeploy request(s) (aws:sqs)", messages.len()),
            "VercelSyncFunction.Redeploys",
            &name,
            summarise(&response),
        );
        Ok((messages.len(), response))
    }
}
