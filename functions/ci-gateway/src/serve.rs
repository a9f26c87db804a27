//! The gateway as deployed: built once from its configuration, served behind a Lambda
//! Function URL (payload format 2.0).

use std::time::Duration;

use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SdkConfig, SecretsManagerCatalog, s3_client,
};
use keyward_shared::adapters::http::HttpClient;
use keyward_shared::config::EnvSource;
use keyward_shared::redact::Redactor;
use lambda_http::{Body, RequestExt, service_fn};

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
    ) -> Result<Self, lambda_http::Error> {
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

/// The request as the gateway sees it: method, path, the `Authorization` header, the caller's
/// address, the body.
pub fn request_of(event: &lambda_http::Request) -> Request {
    Request {
        method: event.method().as_str().to_owned(),
        path: event.uri().path().to_owned(),
        authorization: event
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        source_ip: match event.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => {
                context.http.source_ip.clone()
            }
            _ => None,
        },
        body: event.body().to_vec(),
    }
}

/// JSON with the response's own headers; never cached.
pub fn http_response_of(
    response: &Response,
) -> Result<lambda_http::Response<Body>, lambda_http::http::Error> {
    let mut builder = lambda_http::Response::builder()
        .status(response.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    for (name, value) in &response.headers {
        builder = builder.header(*name, value);
    }
    builder.body(Body::Text(response.body.to_string()))
}

/// Answers every request this sandbox receives.
pub async fn serve(gateway: DeployedGateway) -> Result<(), lambda_http::Error> {
    let gateway = &gateway;
    lambda_http::run(service_fn(move |event: lambda_http::Request| async move {
        let response = gateway.handle(&request_of(&event)).await;
        Ok::<_, lambda_http::Error>(http_response_of(&response)?)
    }))
    .await
}
