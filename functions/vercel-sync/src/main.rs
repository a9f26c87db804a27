//! Lambda entry point: configuration, credentials and clients built once per cold start; the
//! sync lives in the library.

use std::time::Duration;

use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, config_secret_string, load_sdk_config, s3_client,
};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::config::ProcessEnv;
use keyward_shared::redact::Redactor;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use vercel_sync::source::SecretsManagerSource;
use vercel_sync::vercel::HttpVercel;
use vercel_sync::{Config, SqsRedeployQueue, Syncer, credentials_from_secret};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = load_sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let redactor = Redactor::new();
    let credentials = config_secret_string(
        &secrets,
        &config.credentials_secret_arn,
        "the Vercel credentials secret",
    )
    .await?;
    let credentials = credentials_from_secret(&credentials, &redactor)?;
    let http = HttpClient::new(
        concat!("keyward-vercel-sync/", env!("CARGO_PKG_VERSION")),
        Duration::from_secs(15),
        RetryPolicy::default(),
        redactor.clone(),
    )?;
    let syncer = Syncer {
        source: SecretsManagerSource::new(secrets, redactor.clone()),
        vercel: HttpVercel::new(http, &config.api_url, credentials.token),
        state: S3MarkerStore::new(
            s3_client(&sdk, config.common.s3_force_path_style),
            &config.state_bucket,
        ),
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
        redeploy: config
            .redeploy_queue_url
            .clone()
            .map(|queue_url| SqsRedeployQueue {
                client: aws_sdk_sqs::Client::new(&sdk),
                queue_url,
            }),
        deploy_hooks: credentials.deploy_hooks,
        secret_prefix: config.secret_prefix.clone(),
        debounce_secs: config.redeploy_debounce_secs,
        redactor,
    };
    let syncer = &syncer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            syncer.handle(event.payload.get()).await
        },
    ))
    .await
}
