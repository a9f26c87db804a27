//! Lambda entry point: configuration and clients built once per cold start; the protocol lives in
//! the library.

use std::time::Duration;

use keyward_shared::adapters::aws::{EventBridgePublisher, load_sdk_config};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::config::ProcessEnv;
use keyward_shared::redact::Redactor;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use rotation::auth0::Auth0Client;
use rotation::pg::Postgres;
use rotation::store::SecretsManagerStore;
use rotation::{Config, Rotator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = load_sdk_config().await;
    // One registry of values to scrub, shared by every adapter.
    let redactor = Redactor::new();
    let http_redactor = redactor.clone();
    let rotator = Rotator {
        store: SecretsManagerStore::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            redactor.clone(),
        ),
        db: Postgres::new(config.postgres.clone(), redactor.clone()),
        auth0: Auth0Client::lazy(move || {
            HttpClient::new(
                concat!("keyward-rotation/", env!("CARGO_PKG_VERSION")),
                Duration::from_secs(10),
                RetryPolicy::default(),
                http_redactor.clone(),
            )
        }),
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
        settings: config.settings.clone(),
        redactor,
    };
    let rotator = &rotator;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            rotator.handle_event(&event.payload).await
        },
    ))
    .await
}
