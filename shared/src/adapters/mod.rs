//! Adapters: the ports implemented over the AWS SDK, and the HTTP client for third-party APIs.
//!
//! SDK clients are built from `aws-config`'s default chain, which honours `AWS_ENDPOINT_URL`
//! (and `AWS_ENDPOINT_URL_<SERVICE>`), so the same code runs against AWS and a local endpoint
//! with no test hooks.

pub mod aws;
pub mod http;
