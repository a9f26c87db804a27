//! Any bytes as what reaches the forwarder about keyward's own gateway: a `GatewayDecision`
//! detail, a CloudWatch Logs subscription delivery (raw, and wrapped as its base64 of gzip),
//! and the client family and network derived from any user agent and address. A result or an
//! error, never a panic.
#![no_main]

use std::io::Write;

use anomaly_forwarder::client::{source_network, user_agent_family};
use anomaly_forwarder::gateway::{decision_record, log_records};
use base64::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decision_record(&text);
    let _ = log_records(&text);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gzip.write_all(data).is_ok()
        && let Ok(compressed) = gzip.finish()
    {
        let _ = log_records(&base64::engine::general_purpose::STANDARD.encode(compressed));
    }
    let family = user_agent_family(&text);
    assert!(family.len() <= 48);
    let _ = source_network(&text, None);
});
