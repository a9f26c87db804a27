use std::process::ExitCode;

use clap::Parser;
use keyward_cli::{AuditCommand, Cli, Command, read_public_key};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, load_sdk_config, s3_client};
use keyward_shared::audit::{DigestSigner, VerifyOptions, verify};
use keyward_shared::config::{ProcessEnv, flag};

/// Exit codes: 0 valid, 1 the trail failed verification, 2 the check itself could not run.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("keyward: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Audit(AuditCommand::Verify(args)) => {
            let sdk = load_sdk_config().await;
            let path_style = flag(&ProcessEnv, "KEYWARD_S3_FORCE_PATH_STYLE", false)
                .map_err(|e| e.to_string())?;
            let public_key = match (&args.public_key, &args.kms_key_id) {
                (Some(path), _) => read_public_key(path).map_err(|e| e.to_string())?,
                (None, Some(key_id)) => {
                    KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), key_id)
                        .public_key_der()
                        .await
                        .map_err(|e| e.to_string())?
                }
                (None, None) => return Err("give --public-key or --kms-key-id".into()),
            };
            let bucket = S3AuditBucket::new(s3_client(&sdk, path_style), &args.bucket);
            let options = VerifyOptions {
                from: args.from,
                to: args.to,
                lookback: chrono::Duration::hours(args.lookback_hours),
            };
            let report = verify(&bucket, &args.bucket, &public_key, &options)
                .await
                .map_err(|e| e.to_string())?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                for object in report.failures() {
                    println!(
                        "{:?} {:?} {}: {}",
                        object.kind, object.status, object.key, object.detail
                    );
                }
                println!("{}", report.summary());
            }
            Ok(report.ok())
        }
    }
}
