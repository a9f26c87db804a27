//! Lambda entry point: configuration and clients built once per cold start; the handler lives in
//! the library.

use audit_writer::s3::S3AuditStore;
use audit_writer::{Config, handle};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use keyward_shared::adapters::aws::{load_sdk_config, s3_client};
use keyward_shared::config::ProcessEnv;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = load_sdk_config().await;
    let store = S3AuditStore::new(s3_client(&sdk, config.s3_force_path_style), &config.bucket);
    let store = &store;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            handle(store, &event.payload).await
        },
    ))
    .await
}
