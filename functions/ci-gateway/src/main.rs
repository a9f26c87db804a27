//! Lambda entry point (Function URL, payload 2.0): configuration, manifest, policy, JWKS and
//! clients built once per cold start; the gateway lives in the library.

use std::time::Duration;

use ci_gateway::jwks::{HttpJwksFetcher, JwksCache};
use ci_gateway::{Config, Gateway, Request};
use drift_detector::account::{AwsAccount, CallCounter};
use drift_detector::findings::Thresholds;
use drift_detector::remediation::{Remediation, RemediationConfig};
use drift_detector::tickets::{GithubClient, JiraClient};
use keyward_shared::adapters::aws::config_secret_string;
use keyward_shared::adapters::aws::{
    EventBridgePublisher, S3MarkerStore, SecretsManagerCatalog, load_sdk_config, s3_client,
};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::config::ProcessEnv;
use keyward_shared::redact::Redactor;
use lambda_http::{Body, Error, service_fn};

type DriftBackend = Remediation<AwsAccount, GithubClient, JiraClient, S3MarkerStore>;

/// The drift-remediation backend: its credentials read once, at cold start.
async fn remediation(
    config: &RemediationConfig,
    sdk: &keyward_shared::adapters::aws::SdkConfig,
    force_path_style: bool,
) -> Result<DriftBackend, Error> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let redactor = Redactor::new();
    let text = config_secret_string(
        &secrets,
        &config.credentials_secret_arn,
        "the drift credentials secret",
    )
    .await?;
    let credentials = drift_detector::credentials_from_secret(&text, &redactor)?;
    let http = HttpClient::new(
        concat!("keyward-ci-gateway/", env!("CARGO_PKG_VERSION")),
        Duration::from_secs(10),
        RetryPolicy::default(),
        redactor.clone(),
    )?;
    let token = credentials
        .github_token
        .ok_or("the drift credentials secret has no github_token")?;
    let jira = match (&config.jira, credentials.jira_email, credentials.jira_api_token) {
        (Some(jira), Some(email), Some(api_token)) => Some(JiraClient {
            http: http.clone(),
            base_url: jira.base_url.clone(),
            project: jira.project.clone(),
            email,
            api_token,
        }),
        (Some(_), _, _) => return Err("ENABLE_JIRA_INTEGRATION is on but the drift credentials lack jira_email or jira_api_token".into()),
        (None, _, _) => None,
    };
    let s3 = s3_client(sdk, force_path_style);
    Ok(Remediation {
        account: AwsAccount {
            secrets,
            s3: s3.clone(),
            manifest_bucket: config.manifest_bucket.clone(),
            manifest_prefix: config.manifest_prefix.clone(),
            counter: CallCounter::default(),
        },
        github: GithubClient {
            http,
            api_url: config.github_api_url.clone(),
            repo: config.github_repo.clone(),
            token,
        },
        jira,
        state: S3MarkerStore::new(s3, &config.state_bucket),
        min_approvals: config.min_approvals,
        thresholds: Thresholds {
            unused_days: config.unused_days,
            ..Thresholds::default()
        },
        check_policies: config.check_policies,
        redactor,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyward_shared::telemetry::init();
    let config = Config::from_env(&ProcessEnv)?;
    let loaded = ci_gateway::load(&config.config_dir)?;
    let sdk = load_sdk_config().await;
    let http = HttpClient::new(
        concat!("keyward-ci-gateway/", env!("CARGO_PKG_VERSION")),
        Duration::from_secs(3),
        RetryPolicy::default(),
        Redactor::new(),
    )?;
    let keys = JwksCache::new(HttpJwksFetcher(http), config.jwks_urls());
    let drift = match RemediationConfig::from_env(&ProcessEnv)? {
        Some(drift) => Some(remediation(&drift, &sdk, config.common.s3_force_path_style).await?),
        None => None,
    };
    // No preload: a token's first request fetches its own issuer's keys (one fetch), so an
    // unused or slow issuer never holds up a cold start.
    let gateway = Gateway {
        keys,
        audience: config.audience.clone(),
        loaded,
        catalog: SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(&sdk)),
        replay: S3MarkerStore::new(
            s3_client(&sdk, config.common.s3_force_path_style),
            &config.state_bucket,
        ),
        publisher: EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &config.common.event_bus_name,
        ),
        drift,
    };
    let gateway = &gateway;
    lambda_http::run(service_fn(move |event: lambda_http::Request| async move {
        let request = Request {
            method: event.method().as_str().to_owned(),
            path: event.uri().path().to_owned(),
            authorization: event
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: event.body().to_vec(),
        };
        let response = gateway.handle(&request).await;
        let mut builder = lambda_http::Response::builder()
            .status(response.status)
            .header("content-type", "application/json")
            .header("cache-control", "no-store");
        for (name, value) in &response.headers {
            builder = builder.header(*name, value);
        }
        Ok::<_, Error>(builder.body(Body::Text(response.body.to_string()))?)
    }))
    .await
}
