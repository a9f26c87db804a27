//! The gateway as deployed: built once from its configuration, served behind a Lambda
//! Function URL (payload format 2.0).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SdkConfig, SecretsManagerCatalog, s3_client,
};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::EnvSource;
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::redact::Redactor;
use serde::{Deserialize, Serialize};

use crate::drift::{DeployedRemediation, RemediationConfig, remediation};
use crate::jwks::{HttpJwksFetcher, JwksCache};
use crate::{Config, Gateway, Request, Response};

pub type DeployedGateway = Gateway<
    HttpJwksFetcher,
    SecretsManagerCatalog,
    S3MarkerStore,
    EventBridgePublisher,
    DeployedRemediation,
>;

impl DeployedGateway {
    /// Loads the manifest and policy, reads the drift credentials when drift remediation is
    /// configured, and builds every client. No issuer keys are fetched here: a token's first
    /// request fetches its own issuer's keys, so an unused or slow issuer never holds up a cold
    /// start.
    pub async fn from_config(
        config: &Config,
        env: &dyn EnvSource,
        sdk: &SdkConfig,
    ) -> Result<Self, lambda_runtime::Error> {
        let loaded = crate::load(&config.config_dir)?;
        let http = HttpClient::for_function("ci-gateway", Duration::from_secs(3), Redactor::new())?;
        let drift = match RemediationConfig::from_env(env)? {
            Some(drift) => Some(remediation(&drift, sdk, config.common.s3_force_path_style).await?),
            None => None,
        };
        Ok(Gateway {
            keys: JwksCache::new(HttpJwksFetcher(http), config.jwks_urls()),
            audience: config.audience.clone(),
            loaded,
            catalog: SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(sdk)),
            replay: S3MarkerStore::new(
                s3_client(sdk, config.common.s3_force_path_style),
                &config.state_bucket,
            ),
            publisher: EventBridgePublisher::for_sdk(sdk, &config.common.event_bus_name),
            drift,
        })
    }
}

/// A Function URL invocation (payload format 2.0), as much of it as the gateway reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionUrlEvent {
    raw_path: String,
    /// Lower-case names; repeated headers arrive joined with commas.
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    /// Set when the body is not text (by its content type), and then it is base64.
    #[serde(default)]
    is_base64_encoded: bool,
    request_context: FunctionUrlContext,
}

#[derive(Debug, Deserialize)]
struct FunctionUrlContext {
    http: FunctionUrlHttp,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionUrlHttp {
    method: String,
    #[serde(default)]
    source_ip: Option<String>,
}

/// What the Function URL answers the caller with.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlResponse {
    pub status_code: u16,
    pub headers: BTreeMap<&'static str, String>,
    pub body: String,
    pub is_base64_encoded: bool,
}

/// An invocation that is not a Function URL request: Lambda's own input, never a caller's, so
/// it is a failed invocation rather than an answer.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Only where the JSON went wrong: serde's own message can quote a value, and a header
    /// value may be a token.
    #[error("the event is not a Function URL request (line {line}, column {column})")]
    NotAFunctionUrlRequest { line: usize, column: usize },
    #[error("the request body is marked base64 but is not")]
    BodyNotBase64,
}

impl FailureKind for EventError {
    fn kind(&self) -> &'static str {
        "InvalidEvent"
    }
}

/// The request as the gateway sees it: method, path, the `Authorization` header, the caller's
/// address, the body.
pub fn request_of(payload: &str) -> Result<Request, EventError> {
    let event: FunctionUrlEvent =
        serde_json::from_str(payload).map_err(|e| EventError::NotAFunctionUrlRequest {
            line: e.line(),
            column: e.column(),
        })?;
    let body = match (event.body, event.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(text), false) => text.into_bytes(),
        (Some(encoded), true) => BASE64
            .decode(encoded)
            .map_err(|_| EventError::BodyNotBase64)?,
    };
    let authorization = event
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.clone());
    Ok(Request {
        method: event.request_context.http.method,
        path: event.raw_path,
        source_ip: event.request_context.http.source_ip,
        authorization,
        body,
    })
}

/// JSON with the response's own headers; never cached.
pub fn response_of(response: &Response) -> FunctionUrlResponse {
    let mut headers = BTreeMap::from([
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ]);
    for (name, value) in &response.headers {
        headers
            .entry(*name)
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    FunctionUrlResponse {
        status_code: response.status,
        headers,
        body: response.body.to_string(),
        is_base64_encoded: false,
    }
}

/// The gateway behind its Function URL, in the shape every keyward function has
/// ([`keyward_shared::lambda::serve`]).
pub struct FunctionUrlHandler(pub DeployedGateway);

impl Handler for FunctionUrlHandler {
    type Output = FunctionUrlResponse;
    type Error = EventError;

    async fn handle(&self, payload: &str) -> Result<FunctionUrlResponse, EventError> {
        let request = request_of(payload)?;
        Ok(response_of(&self.0.handle(&request).await))
    }
}
