//! Lambda entry point: configuration read once, the handler built once; the protocol lives in
//! the library.

use keyward_shared::adapters::aws::lambda_sdk_config;
use keyward_shared::config::ProcessEnv;
use rotation::{Config, DeployedRotator};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let handler = DeployedRotator::from_config(&config, &lambda_sdk_config(&ProcessEnv)?);
    keyward_shared::lambda::serve(handler).await
}
