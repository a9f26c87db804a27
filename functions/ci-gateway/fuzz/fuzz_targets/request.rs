//! Any bytes as a Function URL event, as a request body of each route, and as a gateway policy
//! file: a value or a clear error, never a panic.
#![no_main]

use ci_gateway::policy::Policy;
use ci_gateway::{PreflightBody, SyncBody, ValidateBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<PreflightBody>(data);
    let _ = serde_json::from_slice::<SyncBody>(data);
    let _ = serde_json::from_slice::<ValidateBody>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ci_gateway::serve::request_of(text);
        let _ = Policy::from_yaml(text);
    }
});
