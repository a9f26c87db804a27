//! Any bytes as a bearer token: shape checks, header and claim parsing, and verification
//! against a fixed RSA key must return a result or an error, never panic, whatever the input.
#![no_main]

use std::sync::OnceLock;

use ci_gateway::token::{self, Expectations};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static jsonwebtoken::DecodingKey {
    static KEY: OnceLock<jsonwebtoken::DecodingKey> = OnceLock::new();
    // A 2048-bit modulus of 0xC5 bytes and e = 65537: signatures never verify, every other
    // path runs.
    KEY.get_or_init(|| {
        let n = "xcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxQ";
        jsonwebtoken::DecodingKey::from_rsa_components(n, "AQAB").expect("static key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(unverified) = token::parse(text) {
        let _ = token::verify(
            &unverified,
            key(),
            &Expectations {
                audience: "https://keyward.acme.example/ci".into(),
                now: 1_800_000_000,
            },
        );
    }
    let _ = serde_json::from_slice::<token::StrictObject>(data);
});
