//! Scans one CloudTrail log file with the anomaly forwarder's detector and shipped rules, and
//! prints what it found and its own peak memory: the keyward side of the log-file benchmark
//! (`scripts/bench.sh`), run as its own process so its memory is its own.
//!
//! Usage: `scan-logfile <file.json.gz>`; prints one JSON line.

use anomaly_forwarder::rules::{DEFAULT_RULES, Detector, Environment, MemoryState};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: scan-logfile <file.json.gz>"))?;
    let started = std::time::Instant::now();
    let detector = Detector::from_yaml(DEFAULT_RULES, Environment::default())?;
    let mut state = MemoryState::default();
    let (mut alerts, mut rejected) = (0usize, 0usize);
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    let file = std::fs::File::open(&path)?;
    // KEYWARD_SCAN_STAGE=read (decompress and split records only) or parse (plus the record
    // model and facts) shows where the time goes.
    let stage = std::env::var("KEYWARD_SCAN_STAGE").unwrap_or_default();
    if stage == "read" || stage == "parse" {
        let stats = anomaly_forwarder::logfile::scan(file, |raw| {
            if stage == "parse"
                && let Ok(record) = anomaly_forwarder::record::Record::parse(raw)
            {
                alerts += detector.facts(&record).secrets.len();
            }
        })?;
        println!(
            "{}",
            serde_json::json!({"stage": stage, "records": stats.records, "seconds": started.elapsed().as_secs_f64(), "checksum": alerts})
        );
        return Ok(());
    }
    let stats =
        anomaly_forwarder::logfile::scan(file, |raw| match detector.evaluate(raw, &mut state) {
            Ok(found) => {
                alerts += found.len();
                for alert in found {
                    *by_rule.entry(alert.rule).or_default() += 1;
                }
            }
            Err(_) => rejected += 1,
        })?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = keyward_integration::process::peak_rss_kib("self").unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "records": stats.records, "duplicates": stats.duplicates, "rejected": rejected,
            "alerts": alerts, "by_rule": by_rule, "seconds": seconds, "peak_rss_kib": peak_rss_kib,
        })
    );
    Ok(())
}
