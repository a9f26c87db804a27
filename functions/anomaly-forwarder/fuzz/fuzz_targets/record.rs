//! Any bytes as one CloudTrail record: the parser, the facts and the shipped rules must return
//! a result or an error, never panic.
#![no_main]

use std::sync::OnceLock;

use anomaly_forwarder::record::Record;
use anomaly_forwarder::rules::{DEFAULT_RULES, Detector, Environment, MemoryState};
use libfuzzer_sys::fuzz_target;

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        Detector::from_yaml(DEFAULT_RULES, Environment::default()).expect("shipped rules load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = Record::parse(text) {
        let _ = record.time();
        let _ = record.facts();
        let _ = record.principal_arn();
    }
    let mut state = MemoryState::default();
    let _ = detector().evaluate(text, &mut state);
});
