//! The SDK's calls over keyward's transport, on real TLS: a server whose CA the client's roots
//! hold is reached, one whose CA they do not hold is refused before any request is sent.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use keyward_integration::tls::{HttpsStub, TestCa};
use keyward_shared::adapters::aws::sdk_http_client_trusting;
use keyward_shared::tls::TrustRoots;

const DESCRIBED: &str = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:/acme/prod/billing/db-AbCdEf","Name":"/acme/prod/billing/db"}"#;

fn secrets_manager(endpoint: &str, roots: &TrustRoots) -> aws_sdk_secretsmanager::Client {
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                aws_sdk_secretsmanager::config::Credentials::for_tests(),
            ),
        )
        .retry_config(RetryConfig::disabled())
        .http_client(sdk_http_client_trusting(roots).unwrap())
        .build();
    aws_sdk_secretsmanager::Client::new(&config)
}

#[tokio::test]
async fn the_sdk_reaches_a_server_its_roots_trust_and_refuses_one_they_do_not() {
    let ca = TestCa::new("keyward transport test CA").unwrap();
    let stub = HttpsStub::start(&ca.server_cert(&["127.0.0.1"]).unwrap(), DESCRIBED)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();

    let trusted = secrets_manager(&stub.url, &TrustRoots::Bundle(bundle));
    let described = trusted
        .describe_secret()
        .secret_id("/acme/prod/billing/db")
        .send()
        .await
        .unwrap();
    assert_eq!(described.name(), Some("/acme/prod/billing/db"));
    assert_eq!(stub.completed_handshakes(), 1);

    // The Mozilla roots do not hold a throwaway CA: the handshake fails, nothing is sent.
    let untrusting = secrets_manager(&stub.url, &TrustRoots::BuiltIn);
    let err = untrusting
        .describe_secret()
        .secret_id("/acme/prod/billing/db")
        .send()
        .await
        .unwrap_err();
    let text = format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    assert_eq!(
        stub.completed_handshakes(),
        1,
        "no second handshake completed"
    );
}
