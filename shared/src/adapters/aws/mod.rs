//! Port adapters over the AWS SDK, one file per service. Each function's crate turns on the
//! services it calls (the domain crate's `secretsmanager`, `eventbridge` and `kms` features; S3
//! every function uses), so a function compiles and links only its own adapters.

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::BehaviorVersion;
use aws_smithy_types::error::display::DisplayErrorContext;
pub use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::{RetryConfig, TimeoutConfig};
use chrono::{DateTime, Utc};

use crate::config::{self, ConfigError, EnvSource};
use crate::redact::Redactor;

#[cfg(feature = "eventbridge")]
mod eventbridge;
#[cfg(feature = "kms")]
mod kms;
mod lazy;
mod s3;
#[cfg(feature = "secretsmanager")]
mod secretsmanager;
mod transport;

#[cfg(feature = "eventbridge")]
pub use eventbridge::EventBridgePublisher;
#[cfg(feature = "kms")]
pub use kms::KmsDigestSigner;
pub use lazy::LazyClient;
pub use s3::{CreateOnly, S3AuditBucket, S3Manifest, S3MarkerStore, lazy_s3_client, s3_client};
#[cfg(feature = "secretsmanager")]
pub use secretsmanager::{SecretsManagerCatalog, config_secret_string, tags_from_sdk, tags_to_sdk};
pub use transport::{sdk_http_client, sdk_http_client_trusting};

/// Where the execution role's credentials are said to come from, in the SDK's errors.
const LAMBDA_CREDENTIALS: &str = "lambda-environment";
/// The SDK's default connect timeout for current behaviour versions.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3_100);

/// The SDK configuration of a function, from what Lambda puts in every execution environment:
/// `AWS_REGION` and the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), as Lambda documents its reserved variables.
/// Also honoured, as the SDK's own loader would: `AWS_ENDPOINT_URL` (a local AWS in the stack and
/// tests), `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`. Calls go over keyward's
/// transport, trusting the process's roots (`crate::tls`: `SSL_CERT_FILE` or the built-in
/// anchors); a named bundle that cannot be read fails here, at init, not at the first call.
///
/// Not `aws-config`'s default chain: in Lambda it always ends at these variables, and the rest
/// of it (profile files, SSO, STS web identity, IMDS) is a client and its code in every binary,
/// read or probed at every cold start for nothing. The CLI, which runs where those sources
/// exist, keeps the default chain.
pub fn lambda_sdk_config(env: &dyn EnvSource) -> Result<SdkConfig, ConfigError> {
    let credentials = Credentials::new(
        config::required(env, "AWS_ACCESS_KEY_ID")?,
        config::required(env, "AWS_SECRET_ACCESS_KEY")?,
        env.get("AWS_SESSION_TOKEN"),
        None,
        LAMBDA_CREDENTIALS,
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config::required(env, "AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .use_fips(config::flag(env, "AWS_USE_FIPS_ENDPOINT", false)?)
        .use_dual_stack(config::flag(env, "AWS_USE_DUALSTACK_ENDPOINT", false)?)
        .http_client(sdk_http_client().map_err(|e| ConfigError::Invalid {
            name: crate::tls::BUNDLE_VARIABLE,
            reason: e.to_string(),
        })?);
    if let Some(endpoint) = env.get("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(builder.build())
}

pub(crate) fn to_chrono(dt: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(dt.secs(), dt.subsec_nanos())
}

/// An SDK error with its causes, redacted: what every adapter puts in its own errors.
pub fn sdk_error_text<E: std::error::Error>(err: &E) -> crate::redact::SafeText {
    Redactor::new().safe(&DisplayErrorContext(err).to_string())
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::ProvideCredentials as _;

    use super::*;
    use crate::config::env_of;

    const LAMBDA_ENV: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE01"),
        ("AWS_SECRET_ACCESS_KEY", "role-secret-from-lambda"),
        ("AWS_SESSION_TOKEN", "role-session-token"),
    ];

    #[tokio::test]
    async fn lambda_environment_gives_region_and_role_credentials() {
        let sdk = lambda_sdk_config(&env_of(&LAMBDA_ENV)).unwrap();
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        assert_eq!(sdk.use_fips(), Some(false));
        assert_eq!(
            sdk.retry_config().map(|r| r.max_attempts()),
            Some(RetryConfig::standard().max_attempts())
        );
        let credentials = sdk
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLEEXAMPLE01");
        assert_eq!(credentials.session_token(), Some("role-session-token"));
    }

    #[test]
    fn endpoint_and_fips_are_honoured() {
        let mut env = LAMBDA_ENV.to_vec();
        env.extend([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ]);
        let sdk = lambda_sdk_config(&env_of(&env)).unwrap();
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(sdk.use_fips(), Some(true));
    }

    #[test]
    fn a_missing_lambda_variable_is_named() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let env: Vec<_> = LAMBDA_ENV
                .iter()
                .copied()
                .filter(|(name, _)| *name != missing)
                .collect();
            let err = lambda_sdk_config(&env_of(&env)).unwrap_err();
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(!err.to_string().contains("role-secret-from-lambda"));
        }
    }
}
