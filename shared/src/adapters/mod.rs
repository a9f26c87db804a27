//! Adapters: the ports implemented over the AWS SDK, and the HTTP client for third-party APIs.
//!
//! Functions build their SDK clients from Lambda's environment
//! ([`aws::lambda_sdk_config`]), which honours `AWS_ENDPOINT_URL`, so the same code runs against
//! AWS and a local endpoint with no test hooks.

pub mod aws;
pub(crate) mod connect;
#[cfg(feature = "http")]
pub mod http;
