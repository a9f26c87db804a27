//! Every trigger's payload (EventBridge events, SQS batches) goes through one parser: it must
//! never panic, whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vercel_sync::input_kind(text);
    }
});
