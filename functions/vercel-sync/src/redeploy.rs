//! Debounced redeploys. Vercel applies new variable values only to new deployments, so after a
//! change the project's deploy hook is called, once per burst of changes:
//!
//! 1. each sync that changed a project sends `{project, request_id, requested_at}` to an SQS
//!    queue with `DelaySeconds` = the debounce window, *then* records the request as the
//!    project's latest (`vercel/redeploy/<sha256(project)>/latest`), so the marker only ever
//!    names requests that are in the queue;
//! 2. when a message comes due, a request older than the latest is superseded and dropped; the
//!    latest calls the hook, then marks itself fired (`.../fired/<request_id>`), so a redelivery
//!    of the same message deploys at most once more (only if the marker write failed).
//!
//! A burst of N changes inside the window thus deploys once, after the last change settles.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use keyward_shared::adapters::aws::sdk_error_text;
use keyward_shared::ports::MarkerStore;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vercel::{ProjectRef, VercelApi};

pub const REDEPLOY_PREFIX: &str = "vercel/redeploy/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeployRequest {
    pub project: String,
    pub request_id: String,
    pub requested_at: DateTime<Utc>,
}

impl RedeployRequest {
    pub fn new(project: &str) -> Self {
        Self {
            project: project.to_owned(),
            request_id: uuid_like(),
            requested_at: Utc::now(),
        }
    }
}

/// A time-ordered unique id (UUIDv7 from the event catalogue's generator).
fn uuid_like() -> String {
    keyward_shared::events::EventId::new().to_string()
}

/// One SQS record as Lambda delivers it (only what is used).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    pub message_id: String,
    #[serde(default)]
    pub body: String,
}

fn project_prefix(project: &str) -> String {
    format!(
        "{REDEPLOY_PREFIX}{}/",
        hex::encode(Sha256::digest(project.as_bytes()))
    )
}

pub trait RedeployQueue: Send + Sync {
    fn enqueue(
        &self,
        request: &RedeployRequest,
        delay_secs: u32,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

pub struct SqsRedeployQueue {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl RedeployQueue for SqsRedeployQueue {
    async fn enqueue(&self, request: &RedeployRequest, delay_secs: u32) -> Result<(), String> {
        let body = serde_json::to_string(request).map_err(|e| e.to_string())?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SQS SendMessage failed: {}", sdk_error_text(&e)))
    }
}

/// Requests kept in memory; for unit tests.
#[derive(Debug, Default)]
pub struct InMemoryRedeployQueue {
    pub sent: std::sync::Mutex<Vec<(RedeployRequest, u32)>>,
}

impl RedeployQueue for InMemoryRedeployQueue {
    async fn enqueue(&self, request: &RedeployRequest, delay_secs: u32) -> Result<(), String> {
        self.sent
            .lock()
            .map_err(|_| "queue poisoned".to_owned())?
            .push((request.clone(), delay_secs));
        Ok(())
    }
}

/// Step 1: queue the request, then name it the project's latest.
pub async fn schedule<Q: RedeployQueue, M: MarkerStore>(
    queue: &Q,
    state: &M,
    request: &RedeployRequest,
    delay_secs: u32,
) -> Result<(), String> {
    queue.enqueue(request, delay_secs).await?;
    let body = serde_json::to_string(request).map_err(|e| e.to_string())?;
    state
        .overwrite(
            &format!("{}latest", project_prefix(&request.project)),
            &body,
        )
        .await
        .map_err(|e| e.to_string())
}

/// Step 2: `Ok(Some(project))` when the hook was called, `Ok(None)` when superseded or already
/// fired.
pub async fn fire<V: VercelApi, M: MarkerStore>(
    vercel: &V,
    state: &M,
    hooks: &BTreeMap<String, SecretString>,
    record: &SqsRecord,
) -> Result<Option<String>, String> {
    let request: RedeployRequest = serde_json::from_str(&record.body).map_err(|e| {
        format!(
            "message {} is not a redeploy request: {e}",
            record.message_id
        )
    })?;
    let prefix = project_prefix(&request.project);
    let latest = state
        .get(&format!("{prefix}latest"))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|m| serde_json::from_str::<RedeployRequest>(&m.body).ok());
    if let Some(latest) = &latest
        && (latest.requested_at, &latest.request_id) > (request.requested_at, &request.request_id)
    {
        tracing::info!(project = %request.project, "redeploy superseded by a later change");
        return Ok(None);
    }
    let fired_key = format!("{prefix}fired/{}", request.request_id);
    if state
        .get(&fired_key)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(None);
    }
    let Some(hook) = hooks.get(&request.project) else {
        // The hook was removed from the credentials after the change: nothing to call.
        tracing::warn!(project = %request.project, "no deploy hook configured any more; redeploy dropped");
        return Ok(None);
    };
    let project = ProjectRef {
        project: request.project.clone(),
        team: None,
    };
    vercel
        .trigger_deploy_hook(&project, hook)
        .await
        .map_err(|e| e.to_string())?;
    state
        .create_or_get(&fired_key, &record.body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(request.project))
}
