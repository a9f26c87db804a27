//! How the shipped anomaly rules score on the public CloudTrail corpus (`../shared/data/cloudtrail`):
//! per rule, the alerts every record of the corpus raises (one stream, one state, as a day of a
//! trail would), the same alerts once grouped, and, where a rule names a Panther equivalent,
//! agreement with Panther's labelled test events (per record, before thresholds, as Panther's
//! own tests judge a rule).

use std::collections::BTreeMap;
use std::path::Path;

use anomaly_forwarder::rules::{DEFAULT_RULES, Detector, Environment, MemoryState};

/// Agreement with one labelled suite's expectations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub true_positives: usize,
    pub false_positives: usize,
    pub misses: usize,
    /// Labelled "should not alert", and did not.
    pub true_negatives: usize,
}

/// One rule's figures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuleQuality {
    pub alerts: usize,
    /// Distinct groups among the alerts (a rule without `group`: its alert count).
    pub grouped: usize,
    /// `panther:<RuleID>` equivalents, agreement summed over them.
    pub panther: Option<Agreement>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QualityReport {
    /// Records read (parsed or refused).
    pub records: usize,
    /// Records the parser refused with an error.
    pub refused: usize,
    pub rules: BTreeMap<String, RuleQuality>,
}

/// Every record of the corpus: the Stratus detonations (file by file), then Panther's test events.
fn corpus_records(dir: &Path) -> anyhow::Result<(Vec<String>, Vec<serde_json::Value>)> {
    let mut stratus = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir.join("stratus-red-team-detonation-logs"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for path in names {
        if let serde_json::Value::Array(records) =
            serde_json::from_str(&std::fs::read_to_string(&path)?)?
        {
            stratus.extend(records.iter().map(|r| r.to_string()));
        }
    }
    let tests = std::fs::read_to_string(dir.join("panther-analysis/cloudtrail_rule_tests.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()?;
    Ok((stratus, tests))
}

/// Measures the shipped rules on the corpus in `dir`.
pub fn measure(dir: &Path) -> anyhow::Result<QualityReport> {
    let detector = Detector::from_yaml(DEFAULT_RULES, Environment::default())?;
    let (stratus, tests) = corpus_records(dir)?;
    let mut report = QualityReport::default();
    for rule in detector.rules() {
        report.rules.insert(rule.id.clone(), RuleQuality::default());
    }

    let mut state = MemoryState::default();
    let mut groups: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let panther_logs = tests.iter().map(|t| t["log"].to_string());
    for raw in stratus.iter().cloned().chain(panther_logs) {
        report.records += 1;
        match detector.evaluate(&raw, &mut state) {
            Ok(alerts) => {
                for alert in alerts {
                    let group = alert
                        .grouping
                        .map(|g| g.id())
                        .unwrap_or_else(|| alert.alert_id.clone());
                    groups.entry(alert.rule.clone()).or_default().insert(group);
                    if let Some(rule) = report.rules.get_mut(&alert.rule) {
                        rule.alerts += 1;
                    }
                }
            }
            Err(_) => report.refused += 1,
        }
    }
    for (rule, ids) in groups {
        if let Some(quality) = report.rules.get_mut(&rule) {
            quality.grouped = ids.len();
        }
    }

    for rule in detector.rules() {
        let equivalents: Vec<&str> = rule
            .equivalents
            .iter()
            .filter_map(|e| e.strip_prefix("panther:"))
            .collect();
        if equivalents.is_empty() {
            continue;
        }
        let mut agreement = Agreement::default();
        for test in tests
            .iter()
            .filter(|t| equivalents.contains(&t["rule_id"].as_str().unwrap_or("")))
        {
            let expected = test["expected_result"].as_bool().unwrap_or(false);
            let fired = detector
                .matching(&test["log"].to_string())
                .is_ok_and(|matched| matched.contains(&rule.id.as_str()));
            match (expected, fired) {
                (true, true) => agreement.true_positives += 1,
                (false, true) => agreement.false_positives += 1,
                (true, false) => agreement.misses += 1,
                (false, false) => agreement.true_negatives += 1,
            }
        }
        if let Some(quality) = report.rules.get_mut(&rule.id) {
            quality.panther = Some(agreement);
        }
    }
    Ok(report)
}

/// The report as benchmark table rows.
pub fn rows(report: &QualityReport) -> Vec<String> {
    let per_thousand = |n: usize| n as f64 * 1000.0 / report.records.max(1) as f64;
    let mut rows = vec![format!(
        "| detection quality: {} corpus records ({} refused with a clear error) | alerts | grouped | per 1,000 records (grouped) | Panther TP / FP / miss / TN |",
        report.records, report.refused
    )];
    let (mut all, mut all_grouped) = (0, 0);
    for (rule, quality) in &report.rules {
        all += quality.alerts;
        all_grouped += quality.grouped;
        let panther = quality
            .panther
            .map(|a| {
                format!(
                    "{} / {} / {} / {}",
                    a.true_positives, a.false_positives, a.misses, a.true_negatives
                )
            })
            .unwrap_or_default();
        rows.push(format!(
            "| {rule} | {} | {} | {:.1} ({:.1}) | {panther} |",
            quality.alerts,
            quality.grouped,
            per_thousand(quality.alerts),
            per_thousand(quality.grouped)
        ));
    }
    rows.push(format!(
        "| every rule | {all} | {all_grouped} | {:.1} ({:.1}) | |",
        per_thousand(all),
        per_thousand(all_grouped)
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_scored_and_grouping_only_ever_folds() {
        let dir = crate::repo_root().join("../shared/data/cloudtrail");
        if !dir.is_dir() {
            eprintln!(
                "skipped: {} is absent (public CloudTrail corpus)",
                dir.display()
            );
            return;
        }
        let report = measure(&dir).unwrap();
        for line in rows(&report) {
            println!("{line}");
        }
        assert_eq!(report.records, 310 + 537);
        for (rule, quality) in &report.rules {
            assert!(quality.grouped <= quality.alerts, "{rule}: {quality:?}");
        }
        let first_seen = &report.rules["first-seen-reader"];
        assert!(
            first_seen.grouped < first_seen.alerts,
            "20 reads by one principal fold: {first_seen:?}"
        );
        let root = report.rules["root-activity"].panther.unwrap();
        assert!(root.true_positives > 0 && root.misses == 0, "{root:?}");
        let labelled: usize = report
            .rules
            .values()
            .filter_map(|q| q.panther)
            .map(|a| a.true_positives + a.false_positives + a.misses + a.true_negatives)
            .sum();
        assert!(labelled >= 10, "{labelled}");
    }
}
