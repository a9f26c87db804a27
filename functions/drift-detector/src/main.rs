//! Lambda entry point: configuration, credentials and clients built once per cold start; the
//! detection and ticketing live in the library.

use std::time::Duration;

use drift_detector::account::{AwsAccount, CallCounter};
use drift_detector::findings::Thresholds;
use drift_detector::tickets::{GithubClient, JiraClient};
use drift_detector::{Config, Credentials, Detector, credentials_from_secret};
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
    let sdk = load_sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let s3 = s3_client(&sdk, config.common.s3_force_path_style);
    let redactor = Redactor::new();
    let credentials = match &config.credentials_secret_arn {
        Some(arn) => {
            let text = config_secret_string(&secrets, arn, "the drift credentials secret").await?;
            credentials_from_secret(&text, &redactor)?
        }
        None => Credentials::default(),
    };
    let http = HttpClient::new(
        concat!("keyward-drift-detector/", env!("CARGO_PKG_VERSION")),
        Duration::from_secs(15),
        RetryPolicy::default(),
        redactor.clone(),
    )?;
    let github =
        match (&config.github_repo, credentials.github_token.clone()) {
            (Some(repo), Some(token)) => Some(GithubClient {
                http: http.clone(),
                api_url: config.github_api_url.clone(),
                repo: repo.clone(),
                token,
            }),
            (Some(_), None) => return Err(
                "KEYWARD_DRIFT_GITHUB_REPO is set but the credentials secret has no github_token"
                    .into(),
            ),
            _ => None,
        };
    let jira = match (&config.jira, &credentials.jira_email, credentials.jira_api_token.clone()) {
        (Some(jira), Some(email), Some(api_token)) => Some(JiraClient {
            http: http.clone(),
            base_url: jira.base_url.clone(),
            project: jira.project.clone(),
            email: email.clone(),
            api_token,
        }),
        (Some(_), _, _) => return Err("ENABLE_JIRA_INTEGRATION is on but the credentials secret lacks jira_email or jira_api_token".into()),
        _ => None,
    };
    let webhook_url =
        match (config.notifications, credentials.webhook_url) {
            (true, Some(url)) => Some(url),
            (true, None) => return Err(
                "ENABLE_DRIFT_NOTIFICATIONS is on but the credentials secret has no webhook_url"
                    .into(),
            ),
            (false, _) => None,
        };
    let detector = Detector {
        account: AwsAccount {
            secrets,
            s3: s3.clone(),
            manifest_bucket: config.manifest_bucket.clone(),
            manifest_prefix: config.manifest_prefix.clone(),
            counter: CallCounter::default(),
        },
        github,
        jira,
        state: S3MarkerStore::new(s3, &config.state_bucket),
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
        http,
        webhook_url,
        secret_prefix: config.secret_prefix.clone(),
        thresholds: Thresholds {
            unused_days: config.unused_days,
            ..Thresholds::default()
        },
        check_policies: config.check_policies,
        redactor,
    };
    let detector = &detector;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            detector.handle(event.payload.get()).await
        },
    ))
    .await
}
