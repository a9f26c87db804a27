//! Vercel's list and upsert response bodies: decoded or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vercel_sync::vercel::decode_list_page(data);
    let _ = vercel_sync::vercel::decode_upsert(data);
});
