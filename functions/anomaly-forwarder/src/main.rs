//! Lambda entry point: configuration, rules and clients built once per cold start; detection and
//! delivery live in the library.

use std::sync::Arc;
use std::time::Duration;

use anomaly_forwarder::handler::{self, Config, Forwarder, S3LogFiles};
use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, config_secret_string, load_sdk_config, s3_client,
};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::config::ProcessEnv;
use keyward_shared::redact::Redactor;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let detector = Arc::new(handler::detector(&config)?);
    let sdk = load_sdk_config().await;
    let s3 = s3_client(&sdk, config.common.s3_force_path_style);
    let redactor = Redactor::new();
    let webhook_url = match &config.webhook_secret_arn {
        Some(arn) => {
            let value = config_secret_string(
                &aws_sdk_secretsmanager::Client::new(&sdk),
                arn,
                "the webhook secret",
            )
            .await?;
            Some(handler::webhook_url_from_secret(&value, &redactor)?)
        }
        None => None,
    };
    let forwarder = Forwarder {
        detector,
        state: S3MarkerStore::new(s3.clone(), &config.state_bucket),
        log_files: S3LogFiles { client: s3 },
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
        http: HttpClient::new(
            concat!("keyward-anomaly-forwarder/", env!("CARGO_PKG_VERSION")),
            Duration::from_secs(10),
            RetryPolicy::default(),
            redactor.clone(),
        )?,
        loki: config.loki.clone(),
        webhook_url,
        redactor,
    };
    let forwarder = &forwarder;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            forwarder.handle(event.payload.get()).await
        },
    ))
    .await
}
