//! Lambda entry point: configuration read once, the handler built once; detection and delivery
//! live in the library.

use anomaly_forwarder::handler::{Config, DeployedForwarder};
use keyward_shared::adapters::aws::lambda_sdk_config;
use keyward_shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let handler = DeployedForwarder::from_config(&config, &lambda_sdk_config(&ProcessEnv)?).await?;
    keyward_shared::lambda::serve(handler).await
}
