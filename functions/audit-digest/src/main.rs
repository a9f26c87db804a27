//! Lambda entry point: configuration, S3 and KMS clients built once per cold start.

use audit_digest::{Config, period_end_of, seal_period};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, load_sdk_config, s3_client};
use keyward_shared::config::ProcessEnv;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = load_sdk_config().await;
    let bucket = S3AuditBucket::new(s3_client(&sdk, config.s3_force_path_style), &config.bucket);
    let signer = KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), &config.kms_key_id);
    let (bucket, signer, config) = (&bucket, &signer, &config);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            seal_period(
                bucket,
                &config.bucket,
                signer,
                config,
                period_end_of(&event.payload),
            )
            .await
        },
    ))
    .await
}
