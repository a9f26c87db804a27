//! The Grafana dashboard and the Loki ruler rules in `infra/grafana/` ask only for what the
//! forwarder pushes: every label they select on is a stream label of the push, with a value the
//! forwarder writes; every JSON path they extract is in the pushed line; every label they group
//! by is a stream label or a field they extracted. A renamed label or field fails here, not on
//! an empty panel in production.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anomaly_forwarder::forward::{Outgoing, SERVICE_LABEL, loki_body};
use anomaly_forwarder::rules::{DEFAULT_RULES, Detector, Environment, MemoryState};
use keyward_shared::events::Severity;
use serde_json::Value;

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/grafana")
}

/// One LogQL expression and where it is written.
struct Query {
    origin: String,
    expr: String,
}

fn queries() -> Vec<Query> {
    let mut queries = Vec::new();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(grafana_dir().join("anomaly-alerts.dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(Query {
                origin: format!("panel {:?}", panel["title"]),
                expr: target["expr"].as_str().unwrap().to_owned(),
            });
        }
    }
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(grafana_dir().join("anomaly-alerts.rules.yaml")).unwrap(),
    )
    .unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            queries.push(Query {
                origin: format!("rule {:?}", rule["alert"]),
                expr: rule["expr"].as_str().unwrap().to_owned(),
            });
        }
    }
    queries
}

/// What one push to Loki holds: its stream labels and the paths of its JSON line.
struct Pushed {
    labels: BTreeSet<String>,
    line_paths: BTreeSet<String>,
}

/// The push of the alerts the shipped rules raise on the sample denied read, and on the same
/// principal's first successful read of a secret.
fn pushed() -> Pushed {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/anomaly-forwarder/get-secret-value-denied.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let denied = event["detail"].clone();
    let mut read = denied.clone();
    let record = read.as_object_mut().unwrap();
    record.remove("errorCode");
    record.remove("errorMessage");
    record.insert("eventID".into(), "grafana-first-read".into());
    record.insert(
        "requestParameters".into(),
        serde_json::json!({"secretId": "/acme/prod/payments/db-credentials"}),
    );
    let detector = Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap();
    let mut state = MemoryState::default();
    let mut alerts = Vec::new();
    for record in [denied, read] {
        alerts.extend(detector.evaluate(&record.to_string(), &mut state).unwrap());
    }
    assert!(
        alerts.iter().any(|a| a.evidence.contains_key("secret")),
        "an alert names a secret"
    );
    let outgoing: Vec<Outgoing> = alerts.into_iter().map(Outgoing::new).collect();
    let body = loki_body(&outgoing.iter().collect::<Vec<_>>());
    let mut pushed = Pushed {
        labels: BTreeSet::new(),
        line_paths: BTreeSet::new(),
    };
    for stream in body["streams"].as_array().unwrap() {
        pushed
            .labels
            .extend(stream["stream"].as_object().unwrap().keys().cloned());
        for entry in stream["values"].as_array().unwrap() {
            let line: Value = serde_json::from_str(entry[1].as_str().unwrap()).unwrap();
            paths(&line, "", &mut pushed.line_paths);
        }
    }
    pushed
}

fn paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            paths(child, &path, out);
            out.insert(path);
        }
    }
}

/// A label matcher of a stream selector: `name op "value"`.
struct Matcher {
    name: String,
    op: String,
    value: String,
}

/// The matchers of every stream selector (`{…}`; `{{…}}` is a template, not a selector).
fn selectors(expr: &str) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            rest = &rest[open + 2..];
            continue;
        }
        let close = rest[open..].find('}').expect("a closed selector") + open;
        for part in rest[open + 1..close].split(',') {
            let part = part.trim();
            let op_at = part.find(['=', '!']).expect("a matcher operator");
            let op_len = if part[op_at + 1..].starts_with(['=', '~']) {
                2
            } else {
                1
            };
            matchers.push(Matcher {
                name: part[..op_at].trim().to_owned(),
                op: part[op_at..op_at + op_len].to_owned(),
                value: part[op_at + op_len..].trim().trim_matches('"').to_owned(),
            });
        }
        rest = &rest[close + 1..];
    }
    matchers
}

/// A `| json name="path", …` extraction.
struct Extraction {
    name: String,
    path: String,
}

fn extractions(expr: &str) -> Vec<Extraction> {
    let mut found = Vec::new();
    for stage in expr.split("| json").skip(1) {
        let stage = stage.split(['|', '[']).next().unwrap_or_default();
        for pair in stage.split(',').filter(|p| p.contains('=')) {
            let (name, path) = pair.split_once('=').unwrap();
            found.push(Extraction {
                name: name.trim().to_owned(),
                path: path.trim().trim_matches('"').to_owned(),
            });
        }
    }
    found
}

/// The labels of every `by (…)`.
fn grouped_by(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|rest| {
            rest.split(')')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|label| label.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn dashboards_and_rules_ask_only_for_what_the_forwarder_pushes() {
    let pushed = pushed();
    let queries = queries();
    assert!(
        queries.len() >= 8,
        "the dashboard's five panels and three rules"
    );
    for query in &queries {
        let origin = &query.origin;
        let matchers = selectors(&query.expr);
        assert!(
            matchers
                .iter()
                .any(|m| m.name == "service" && m.op == "=" && m.value == SERVICE_LABEL),
            "{origin} selects the forwarder's streams"
        );
        for matcher in &matchers {
            assert!(
                pushed.labels.contains(&matcher.name),
                "{origin}: `{}` is not a label the forwarder pushes ({:?})",
                matcher.name,
                pushed.labels
            );
            if matcher.name == "severity" {
                for severity in matcher.value.split('|') {
                    assert!(
                        serde_json::from_value::<Severity>(Value::String(severity.into())).is_ok(),
                        "{origin}: `{severity}` is not a severity the forwarder writes"
                    );
                }
            }
        }
        let extracted = extractions(&query.expr);
        for extraction in &extracted {
            assert!(
                pushed.line_paths.contains(&extraction.path),
                "{origin}: `{}` is not in the pushed line ({:?})",
                extraction.path,
                pushed.line_paths
            );
        }
        for label in grouped_by(&query.expr) {
            assert!(
                pushed.labels.contains(&label) || extracted.iter().any(|e| e.name == label),
                "{origin}: groups by `{label}`, which is neither pushed nor extracted"
            );
        }
    }
}

#[test]
fn the_query_reader_sees_selectors_extractions_and_groupings() {
    let expr = r#"sum by (actor, rule) (count_over_time({service="s", severity=~"high|critical"} | json actor="evidence.actor" | line_format "{{.actor}}" [5m]))"#;
    let matchers = selectors(expr);
    assert_eq!(
        matchers
            .iter()
            .map(|m| (m.name.as_str(), m.op.as_str(), m.value.as_str()))
            .collect::<Vec<_>>(),
        [("service", "=", "s"), ("severity", "=~", "high|critical")]
    );
    let extracted = extractions(expr);
    assert_eq!(
        (extracted[0].name.as_str(), extracted[0].path.as_str()),
        ("actor", "evidence.actor")
    );
    assert_eq!(grouped_by(expr), ["actor", "rule"]);
}
