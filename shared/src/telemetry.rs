//! Logging: JSON lines through the Lambda runtime's tracing subscriber, which honours
//! `AWS_LAMBDA_LOG_FORMAT=JSON` and `AWS_LAMBDA_LOG_LEVEL` (the SAM template sets both) and
//! wraps each invocation in a span carrying the request id.
//!
//! Never log a secret value, a token or a raw third-party body: log names, ids and
//! [`crate::redact::SafeText`]. `TRACE` is never enabled on secret-handling functions.

/// Installs the subscriber. Call once, first thing in `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// A span that ties every log line of one trigger together.
pub fn correlation_span(correlation_id: &str) -> tracing::Span {
    tracing::info_span!("keyward", correlation_id = %correlation_id)
}
