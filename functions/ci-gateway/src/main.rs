//! Lambda entry point (Function URL, payload 2.0): configuration, manifest, policy, JWKS and
//! clients built once per cold start; the gateway lives in the library.

use std::time::Duration;

use ci_gateway::jwks::{HttpJwksFetcher, JwksCache};
use ci_gateway::{Config, Gateway, Request};
use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SecretsManagerCatalog, load_sdk_config, s3_client,
};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::config::ProcessEnv;
use keyward_shared::redact::Redactor;
use lambda_http::{Body, Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let loaded = ci_gateway::load(&config.config_dir)?;
    let sdk = load_sdk_config().await;
    let http = HttpClient::new(
        concat!("keyward-ci-gateway/", env!("CARGO_PKG_VERSION")),
        Duration::from_secs(3),
        RetryPolicy::default(),
        Redactor::new(),
    )?;
    let keys = JwksCache::new(HttpJwksFetcher(http), config.jwks_urls());
    // No preload: a token's first request fetches its own issuer's keys (one fetch), so an
    // unused or slow issuer never holds up a cold start.
    let gateway = Gateway {
        keys,
        audience: config.audience.clone(),
        loaded,
        catalog: SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(&sdk)),
        replay: S3MarkerStore::new(
            s3_client(&sdk, config.common.s3_force_path_style),
            &config.state_bucket,
        ),
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
    };
    let gateway = &gateway;
    lambda_http::run(service_fn(move |event: lambda_http::Request| async move {
        let request = Request {
            method: event.method().as_str().to_owned(),
            path: event.uri().path().to_owned(),
            authorization: event
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: event.body().to_vec(),
        };
        let response = gateway.handle(&request).await;
        let mut builder = lambda_http::Response::builder()
            .status(response.status)
            .header("content-type", "application/json")
            .header("cache-control", "no-store");
        for (name, value) in &response.headers {
            builder = builder.header(*name, value);
        }
        Ok::<_, Error>(builder.body(Body::Text(response.body.to_string()))?)
    }))
    .await
}
