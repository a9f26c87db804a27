//! Lambda entry point (Function URL, payload 2.0): configuration read once, the gateway built
//! once; routing and decisions live in the library.

use ci_gateway::Config;
use ci_gateway::serve::{DeployedGateway, FunctionUrlHandler};
use keyward_shared::adapters::aws::lambda_sdk_config;
use keyward_shared::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let gateway =
        DeployedGateway::from_config(&config, &ProcessEnv, &lambda_sdk_config(&ProcessEnv)?)
            .await?;
    keyward_shared::lambda::serve(FunctionUrlHandler(gateway)).await
}
