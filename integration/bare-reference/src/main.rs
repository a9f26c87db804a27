//! The cold-start yardstick the benchmark measures every function against, in the same run and
//! through the same local Runtime API: what any Rust Lambda function pays before its own work
//! (the runtime, the SDK's configuration, one client), plus one `DescribeSecret`, as the
//! rotation function's first step does. Nothing of keyward's: no logging set-up, no
//! configuration, no domain crate.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let client = &client;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let secret_id = event.payload["SecretId"].as_str().unwrap_or_default();
        let described = client.describe_secret().secret_id(secret_id).send().await?;
        Ok::<_, Error>(json!({ "name": described.name() }))
    }))
    .await
}
