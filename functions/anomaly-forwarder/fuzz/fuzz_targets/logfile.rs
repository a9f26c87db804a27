//! Any bytes as a CloudTrail log file (plain or gzip): the splitter and the record parser must
//! deliver records or report damage, never panic.
#![no_main]

use anomaly_forwarder::logfile::scan;
use anomaly_forwarder::record::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scan(data, |raw| {
        let _ = Record::parse(raw);
    });
});
