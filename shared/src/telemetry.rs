//! Logging: JSON lines on stdout, the shape Lambda's advanced logging controls expect.
//! `AWS_LAMBDA_LOG_FORMAT=JSON` selects JSON and `AWS_LAMBDA_LOG_LEVEL` the level (the SAM
//! template sets both); the runtime wraps each invocation in a span carrying the request id.
//!
//! Never log a secret value, a token or a raw third-party body: log names, ids and
//! [`crate::redact::SafeText`]. `TRACE` is never enabled: it dumps raw payloads.

use tracing_subscriber::filter::LevelFilter;

/// Installs the subscriber. Call once, first thing in `main`.
///
/// A level, not a filter expression: per-target directives would need `EnvFilter`, whose regex
/// machinery every function would then carry and compile at start-up for a setting Lambda
/// never passes.
pub fn init() {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let subscriber = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(log_level(requested.as_deref()))
        .with_writer(std::io::stdout);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
}

/// The level for a requested name: Lambda's names (`FATAL` is `ERROR` here), INFO for anything
/// else, and never TRACE.
fn log_level(requested: Option<&str>) -> LevelFilter {
    let level = match requested.map(str::trim) {
        None | Some("") => LevelFilter::INFO,
        Some(name) if name.eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
        Some(name) => name.parse().unwrap_or(LevelFilter::INFO),
    };
    level.min(LevelFilter::DEBUG)
}

/// A span that ties every log line of one trigger together.
pub fn correlation_span(correlation_id: &str) -> tracing::Span {
    tracing::info_span!("keyward", correlation_id = %correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_level_names_map_to_filters() {
        let cases = [
            (Some("DEBUG"), LevelFilter::DEBUG),
            (Some("INFO"), LevelFilter::INFO),
            (Some("WARN"), LevelFilter::WARN),
            (Some("ERROR"), LevelFilter::ERROR),
            (Some("FATAL"), LevelFilter::ERROR),
            (Some(" warn "), LevelFilter::WARN),
            (Some("keyward=debug"), LevelFilter::INFO),
            (Some(""), LevelFilter::INFO),
            (None, LevelFilter::INFO),
        ];
        for (requested, expected) in cases {
            assert_eq!(log_level(requested), expected, "{requested:?}");
        }
    }

    #[test]
    fn trace_is_never_enabled() {
        assert_eq!(log_level(Some("TRACE")), LevelFilter::DEBUG);
        assert_eq!(log_level(Some("trace")), LevelFilter::DEBUG);
    }
}
