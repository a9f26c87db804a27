//! The detector against public, real CloudTrail data (`../shared/data/cloudtrail`, see its
//! README). Skips, saying why, when the folder is absent (a user's fresh checkout).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anomaly_forwarder::record::Record;
use anomaly_forwarder::rules::{DEFAULT_RULES, Detector, Environment, MemoryState};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cloudtrail");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (public CloudTrail corpus)",
            dir.display()
        );
        None
    }
}

fn detector() -> Detector {
    Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap()
}

/// Stratus files are JSON arrays of records; wrap them as a log file and scan them like one.
fn stratus(dir: &std::path::Path, name: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(dir.join("stratus-red-team-detonation-logs").join(name)).unwrap();
    let file = format!("{{\"Records\":{text}}}");
    let mut records = Vec::new();
    anomaly_forwarder::logfile::scan(file.as_bytes(), |raw| records.push(raw.to_owned())).unwrap();
    records
}

#[test]
fn every_stratus_record_parses() {
    let Some(dir) = corpus() else { return };
    let mut total = 0;
    for entry in std::fs::read_dir(dir.join("stratus-red-team-detonation-logs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        for raw in stratus(&dir, &name) {
            let record = Record::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
            record.time().unwrap_or_else(|e| panic!("{name}: {e}"));
            detector().matching(&raw).unwrap();
            total += 1;
        }
    }
    assert_eq!(total, 310, "the README counts 310 records");
}

#[test]
fn the_prefilter_changes_no_match() {
    let Some(dir) = corpus() else { return };
    let fast = detector();
    let plain = detector().without_prefilter();
    let text =
        std::fs::read_to_string(dir.join("panther-analysis/cloudtrail_rule_tests.jsonl")).unwrap();
    let mut records: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["log"].to_string())
        .collect();
    for entry in std::fs::read_dir(dir.join("stratus-red-team-detonation-logs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            records.extend(stratus(&dir, &name));
        }
    }
    let mut matched = 0;
    for raw in &records {
        let a = fast.matching(raw).ok();
        assert_eq!(a, plain.matching(raw).ok(), "{raw}");
        matched += a.map_or(0, |m| m.len());
    }
    assert!(matched > 0);
}

#[test]
fn stratus_secret_retrieval_detonations_raise_the_read_alerts() {
    let Some(dir) = corpus() else { return };
    let detector = detector();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    for name in [
        "aws.credential-access.secretsmanager-retrieve-secrets.json",
        "aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
    ] {
        let mut state = MemoryState::default();
        for raw in stratus(&dir, name) {
            for alert in detector.evaluate(&raw, &mut state).unwrap() {
                assert!(!alert.evidence.values().any(|v| v.contains("SecretString")));
                *fired.entry(alert.rule).or_default() += 1;
            }
        }
    }
    println!("alerts on the Stratus secret-retrieval detonations: {fired:?}");
    assert_eq!(
        fired.get("bulk-secret-read"),
        Some(&1),
        "20 distinct secrets read within a second"
    );
    assert_eq!(
        fired.get("batch-read-burst"),
        Some(&1),
        "5 filtered batch reads by one user"
    );
    assert_eq!(fired.get("first-seen-reader"), Some(&20));
    // The Stratus batch filters on a tag (`StratusRedTeam`), not "all but": no catch-all alert.
    assert_eq!(fired.get("batch-catch-all"), None);
}

#[test]
fn every_panther_test_event_parses_or_is_refused_clearly_and_agreement_is_reported() {
    let Some(dir) = corpus() else { return };
    let text =
        std::fs::read_to_string(dir.join("panther-analysis/cloudtrail_rule_tests.jsonl")).unwrap();
    let detector = detector();
    // Panther rule -> the keyward rule covering the same logic (per record, before thresholds),
    // as the rules file declares it.
    let mapping: Vec<(String, String)> = detector
        .rules()
        .iter()
        .flat_map(|rule| {
            rule.equivalents
                .iter()
                .filter_map(|e| e.strip_prefix("panther:"))
                .map(|panther| (panther.to_owned(), rule.id.clone()))
        })
        .collect();
    assert_eq!(mapping.len(), 4, "{mapping:?}");
    let (mut parsed, mut refused) = (0, 0);
    let mut agreement: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for line in text.lines() {
        let test: serde_json::Value = serde_json::from_str(line).unwrap();
        let raw = test["log"].to_string();
        match detector.matching(&raw) {
            Ok(matched) => {
                parsed += 1;
                let rule_id = test["rule_id"].as_str().unwrap_or("");
                if let Some((panther, ours)) = mapping.iter().find(|(p, _)| *p == rule_id) {
                    let expected = test["expected_result"].as_bool().unwrap_or(false);
                    let entry = agreement.entry(panther.as_str()).or_default();
                    entry.1 += 1;
                    if matched.contains(&ours.as_str()) == expected {
                        entry.0 += 1;
                    } else {
                        println!(
                            "disagree {panther} / {ours}: {} (expected {expected})",
                            test["test_name"]
                        );
                    }
                }
            }
            Err(err) => {
                refused += 1;
                let message = err.to_string();
                assert!(message.starts_with("the record"), "{message}");
            }
        }
    }
    println!("panther test events: {parsed} parsed, {refused} refused with a clear error");
    for (rule, (agree, total)) in &agreement {
        println!("agreement with {rule}: {agree}/{total}");
    }
    assert_eq!(parsed + refused, 537);
    assert!(parsed >= 500, "{parsed}");
    let (agree, total) = agreement
        .values()
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(
        total > 0 && agree * 10 >= total * 8,
        "agreement {agree}/{total}"
    );
}

/// Each Secrets Manager technique, scanned as one log file through the function's own path
/// (shared state, grouping): exactly one high alert, grouped.
#[tokio::test]
async fn each_stratus_secrets_manager_technique_raises_exactly_one_grouped_high_alert() {
    use anomaly_forwarder::state::Tally;
    use keyward_shared::events::Severity;
    use keyward_shared::ports::InMemoryMarkerStore;

    let Some(dir) = corpus() else { return };
    let detector = detector();
    for (name, high_rule, members) in [
        (
            "aws.credential-access.secretsmanager-retrieve-secrets.json",
            "bulk-read-novel-client",
            None,
        ),
        (
            "aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
            "filtered-batch-novel-client",
            Some(5),
        ),
    ] {
        let store = InMemoryMarkerStore::default();
        let mut tally = Tally::default();
        for raw in stratus(&dir, name) {
            detector
                .observe(&raw)
                .unwrap()
                .into_iter()
                .for_each(|f| tally.add(f));
        }
        let alerts = tally.resolve(&store).await.unwrap();
        let summary: Vec<(String, Severity, Option<u64>)> = alerts
            .iter()
            .map(|a| {
                (
                    a.rule.clone(),
                    a.severity,
                    a.group.as_ref().map(|g| g.count),
                )
            })
            .collect();
        println!("{name}: {summary:?}");
        let high: Vec<_> = alerts
            .iter()
            .filter(|a| a.severity >= Severity::High)
            .collect();
        assert_eq!(high.len(), 1, "{name}: {summary:?}");
        assert_eq!(high[0].rule, high_rule);
        if let Some(members) = members {
            assert_eq!(high[0].group.as_ref().map(|g| g.count), Some(members));
        }
        // Every other alert is grouped or a threshold's one crossing: no flood.
        assert!(alerts.len() <= 5, "{name}: {summary:?}");
    }
}
