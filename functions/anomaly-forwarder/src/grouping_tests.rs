//! Grouped alerts, batch reads per secret, novelty of how a principal calls, and the gateway's
//! refusals: through the detector, the shared state and the delivery ledger, with the same
//! crash drills as delivery.

use keyward_shared::events::{
    Actor, CorrelationId, DomainEvent, EventData, GroupRole, Outcome, Severity, WorkflowClaims,
};
use keyward_shared::ports::{InMemoryEventPublisher, InMemoryMarkerStore};
use keyward_shared::redact::Redactor;
use serde_json::{Value, json};

use crate::client::KnownAutomation;
use crate::deliver::{DeliveryReport, deliver};
use crate::group::ChatNotice;
use crate::handler::Forwarder;
use crate::rules::{Alert, DEFAULT_RULES, Detector, Environment};
use crate::state::Tally;
use crate::test_support::{BusOnly, http, resolve_records};

fn detector() -> Detector {
    Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap()
}

fn call(id: &str, second: u32, event_name: &str, parameters: Value) -> Value {
    json!({
        "eventVersion": "1.09", "eventID": id,
        "eventTime": format!("2026-11-22T12:{:02}:{:02}Z", second / 60, second % 60),
        "eventSource": "secretsmanager.amazonaws.com", "eventName": event_name,
        "eventType": "AwsApiCall", "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0 Python/3.11",
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "IAMUser", "userName": "mallory",
            "arn": "arn:aws:iam::123456789012:user/mallory", "accountId": "123456789012"},
        "requestParameters": parameters,
    })
}

fn deletion(n: u32) -> String {
    call(
        &format!("del-{n}"),
        n,
        "DeleteSecret",
        json!({"secretId": format!("/acme/prod/svc{n}/api-key"), "recoveryWindowInDays": 7}),
    )
    .to_string()
}

async fn resolve(store: &InMemoryMarkerStore, records: &[String]) -> Vec<Alert> {
    resolve_records(&detector(), store, records).await.unwrap()
}

fn of_rule<'a>(alerts: &'a [Alert], rule: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.rule == rule).collect()
}

/// One invocation: resolve then deliver to the bus.
async fn invocation(
    store: &InMemoryMarkerStore,
    publisher: &InMemoryEventPublisher,
    records: &[String],
) -> Result<DeliveryReport, String> {
    let alerts = resolve_records(&detector(), store, records)
        .await
        .map_err(|e| e.to_string())?;
    let bus_only = BusOnly::new();
    deliver(alerts, store, &bus_only.sinks(publisher))
        .await
        .map_err(|e| e.to_string())
}

/// A group as the published `AnomalyDetected` events describe it.
#[derive(Debug, PartialEq, Eq)]
struct PublishedGroup {
    role: GroupRole,
    count: u64,
    members_named: usize,
}

fn anomaly_groups(publisher: &InMemoryEventPublisher, rule: &str) -> Vec<PublishedGroup> {
    let events: Vec<DomainEvent> = publisher.published.lock().unwrap().clone();
    let mut groups: Vec<PublishedGroup> = events
        .iter()
        .filter_map(|event| match &event.data {
            EventData::AnomalyDetected {
                rule: r,
                group: Some(group),
                ..
            } if r == rule => Some(PublishedGroup {
                role: group.role,
                count: group.count,
                members_named: group.members.len(),
            }),
            _ => None,
        })
        .collect();
    groups.dedup();
    groups
}

#[tokio::test]
async fn a_storm_of_deletions_is_one_alert_with_every_member_delivered_once_across_any_crash() {
    let storm: Vec<String> = (0..20).map(deletion).collect();
    for budget in 0..12 {
        let store = InMemoryMarkerStore::default();
        let publisher = InMemoryEventPublisher::default();
        *store.fail_after_writes.lock().unwrap() = Some(budget);
        let first = invocation(&store, &publisher, &storm).await;
        *store.fail_after_writes.lock().unwrap() = None;
        invocation(&store, &publisher, &storm).await.unwrap();
        let again = invocation(&store, &publisher, &storm).await.unwrap();
        assert_eq!(again.sent, [0, 0, 0], "budget {budget}: nothing new");

        let published = publisher.published.lock().unwrap().clone();
        let deletions: Vec<&DomainEvent> = published
            .iter()
            .filter(|e| {
                matches!(&e.data, EventData::AnomalyDetected { rule, .. } if rule == "deletion-scheduled")
            })
            .collect();
        let mut ids: Vec<_> = deletions.iter().map(|e| e.event_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 1, "budget {budget}: one alert, one id");
        assert_eq!(
            anomaly_groups(&publisher, "deletion-scheduled"),
            [PublishedGroup {
                role: GroupRole::Opened,
                count: 20,
                members_named: 20
            }],
            "budget {budget} (first attempt {first:?})"
        );
    }
}

#[tokio::test]
async fn a_storm_arriving_one_record_per_invocation_opens_once_then_updates_and_chats_by_steps() {
    let store = InMemoryMarkerStore::default();
    let mut roles = Vec::new();
    let mut chats = 0;
    for n in 0..20 {
        let alerts = resolve(&store, &[deletion(n)]).await;
        let [alert] = of_rule(&alerts, "deletion-scheduled")[..] else {
            panic!("one delivery per invocation: {alerts:?}");
        };
        let group = alert.group.as_ref().unwrap();
        assert_eq!(group.count, u64::from(n) + 1);
        assert_eq!(group.first, alerts_time(0));
        roles.push(group.role);
        chats += usize::from(group.chat == ChatNotice::Send);
        // A retry of the same invocation delivers the same thing under the same id.
        let retried = resolve(&store, &[deletion(n)]).await;
        assert_eq!(
            of_rule(&retried, "deletion-scheduled")[0].alert_id,
            alert.alert_id
        );
    }
    assert_eq!(roles[0], GroupRole::Opened);
    assert!(roles[1..].iter().all(|r| *r == GroupRole::Updated));
    assert_eq!(chats, 5, "opened, then at 2, 5, 10 and 20 members");
}

fn alerts_time(second: u32) -> chrono::DateTime<chrono::Utc> {
    format!("2026-11-22T12:00:{second:02}Z").parse().unwrap()
}

#[tokio::test]
async fn racing_invocations_cannot_both_open_a_group() {
    let store = std::sync::Arc::new(InMemoryMarkerStore::default());
    let a: Vec<String> = (0..10).map(deletion).collect();
    let b: Vec<String> = (10..20).map(deletion).collect();
    let (x, y) = tokio::join!(resolve(&store, &a), resolve(&store, &b));
    let opened: Vec<&Alert> = x
        .iter()
        .chain(&y)
        .filter(|a| {
            a.group
                .as_ref()
                .is_some_and(|g| g.role == GroupRole::Opened)
        })
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
}

#[tokio::test]
async fn the_same_record_by_stream_and_by_log_file_still_reports_the_rest_of_the_file() {
    let store = InMemoryMarkerStore::default();
    let streamed = resolve(&store, &[deletion(0)]).await;
    assert_eq!(
        of_rule(&streamed, "deletion-scheduled")[0]
            .group
            .as_ref()
            .unwrap()
            .role,
        GroupRole::Opened
    );
    let file: Vec<String> = (0..5).map(deletion).collect();
    let alerts = resolve(&store, &file).await;
    let group = of_rule(&alerts, "deletion-scheduled")[0]
        .group
        .clone()
        .unwrap();
    assert_eq!((group.role, group.count), (GroupRole::Updated, 5));
    assert_eq!(group.members.len(), 5);
}

#[tokio::test]
async fn a_listed_batch_read_by_a_new_principal_is_a_first_read_of_each_secret_in_one_group() {
    let store = InMemoryMarkerStore::default();
    let secrets = ["/acme/prod/a/one", "/acme/prod/b/two", "/acme/prod/c/three"];
    let batch = call(
        "batch-1",
        1,
        "BatchGetSecretValue",
        json!({"secretIdList": secrets}),
    );
    let alerts = resolve(&store, &[batch.to_string()]).await;
    let readers = of_rule(&alerts, "first-seen-reader");
    assert_eq!(readers.len(), 1, "one group: {alerts:?}");
    let group = readers[0].group.as_ref().unwrap();
    assert_eq!(group.count, 3);
    assert_eq!(group.members, secrets);
    // The principal's new client and network were noticed too, once each.
    assert_eq!(of_rule(&alerts, "first-seen-client").len(), 1);
    assert_eq!(of_rule(&alerts, "first-seen-network").len(), 1);
}

#[tokio::test]
async fn listed_batch_reads_count_towards_the_distinct_bulk_read() {
    let store = InMemoryMarkerStore::default();
    let batches: Vec<String> = (0..2)
        .map(|b| {
            let list: Vec<String> = (0..10)
                .map(|n| format!("/acme/prod/svc{b}{n}/key"))
                .collect();
            call(
                &format!("batch-{b}"),
                b,
                "BatchGetSecretValue",
                json!({"secretIdList": list}),
            )
            .to_string()
        })
        .collect();
    let alerts = resolve(&store, &batches).await;
    assert_eq!(of_rule(&alerts, "bulk-secret-read").len(), 1);
    assert_eq!(
        of_rule(&alerts, "bulk-read-novel-client").len(),
        1,
        "a principal never seen calling at all"
    );
    assert_eq!(of_rule(&alerts, "batch-read-burst").len(), 0, "two calls");
}

#[tokio::test]
async fn a_bulk_read_in_the_usual_way_is_medium_and_a_new_way_or_filtered_batch_is_high() {
    let store = InMemoryMarkerStore::default();
    // Day 1: the principal reads one secret with its usual client and network.
    let routine = call(
        "r-0",
        0,
        "GetSecretValue",
        json!({"secretId": "/acme/prod/x/one"}),
    );
    resolve(&store, &[routine.to_string()]).await;
    // Two hours later: a bulk read, same client, same network.
    let later = |n: u32, agent: &str| {
        let mut record = call(
            &format!("b-{agent}-{n}"),
            n,
            "GetSecretValue",
            json!({"secretId": format!("/acme/prod/svc{n}/key")}),
        );
        record["eventTime"] = format!("2026-11-22T14:{:02}:{:02}Z", n / 60, n % 60).into();
        record["userAgent"] = agent.into();
        record.to_string()
    };
    let usual: Vec<String> = (0..20).map(|n| later(n, "aws-cli/2.16.1")).collect();
    let alerts = resolve(&store, &usual).await;
    assert_eq!(of_rule(&alerts, "bulk-secret-read").len(), 1, "{alerts:#?}");
    assert_eq!(
        of_rule(&alerts, "bulk-secret-read")[0].severity,
        Severity::Medium
    );
    assert!(of_rule(&alerts, "bulk-read-novel-client").is_empty());
    assert!(
        of_rule(&alerts, "first-seen-client").is_empty(),
        "aws-cli/2 again"
    );

    // The next window, a new tool: high.
    let novel: Vec<String> = (600..620)
        .map(|n| later(n, "python-requests/2.31.0"))
        .collect();
    let alerts = resolve(&store, &novel).await;
    assert_eq!(of_rule(&alerts, "bulk-read-novel-client").len(), 1);
    assert_eq!(
        of_rule(&alerts, "bulk-read-novel-client")[0].severity,
        Severity::High
    );
}

#[tokio::test]
async fn the_organisations_automation_is_not_novel() {
    let automation = KnownAutomation {
        principals: Vec::new(),
        user_agent_families: vec!["aws-cli".into()],
    };
    let detector = Detector::from_yaml(
        DEFAULT_RULES,
        Environment {
            automation,
            ..Default::default()
        },
    )
    .unwrap();
    let store = InMemoryMarkerStore::default();
    let mut tally = Tally::default();
    for n in 0..20 {
        let record = call(
            &format!("a-{n}"),
            n,
            "GetSecretValue",
            json!({"secretId": format!("/acme/prod/svc{n}/key")}),
        );
        for finding in detector.observe(&record.to_string()).unwrap() {
            tally.add(finding);
        }
    }
    let alerts = tally.resolve(&store).await.unwrap();
    assert_eq!(of_rule(&alerts, "bulk-secret-read").len(), 1);
    assert!(of_rule(&alerts, "bulk-read-novel-client").is_empty());
    assert!(of_rule(&alerts, "first-seen-client").is_empty());
}

/// A `GatewayDecision` as the gateway publishes it, in its EventBridge envelope.
fn gateway_decision(n: u32, outcome: Outcome) -> String {
    let mut event = DomainEvent::new(
        CorrelationId::new(format!("gh-run:{n}")).unwrap(),
        Actor::service("ci-gateway"),
        None,
        outcome,
        EventData::GatewayDecision {
            route: "vercel-sync".into(),
            claims: WorkflowClaims {
                repository_owner_id: "9001".into(),
                repository_id: "424242".into(),
                repository: "acme/payments".into(),
                r#ref: "refs/heads/feature".into(),
                event_name: "push".into(),
                job_workflow_ref: "acme/payments/.github/workflows/deploy.yml@refs/heads/feature"
                    .into(),
                environment: None,
                runner_environment: "github-hosted".into(),
                run_id: n.to_string(),
                jti: format!("jti-{n}"),
            },
            reasons: vec!["403 the ref may not request this".into()],
        },
    );
    event.time = format!("2026-11-22T12:00:{n:02}Z").parse().unwrap();
    let detail: Value = serde_json::from_str(&event.to_detail_json().unwrap()).unwrap();
    json!({
        "version": "0", "id": format!("eb-{n}"), "detail-type": "GatewayDecision",
        "source": "keyward.ci-gateway", "account": "123456789012",
        "time": "2026-11-22T12:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": detail,
    })
    .to_string()
}

#[tokio::test]
async fn repeated_gateway_refusals_of_one_repository_alert_once() {
    let forwarder = forwarder();
    let allowed = forwarder
        .handle(&gateway_decision(0, Outcome::Allowed))
        .await
        .unwrap();
    assert_eq!(allowed.input, "skipped");
    let mut alerts = 0;
    for n in 1..=6 {
        let outcome = forwarder
            .handle(&gateway_decision(n, Outcome::Denied))
            .await
            .unwrap();
        assert_eq!(outcome.input, "record");
        alerts += outcome.alerts;
    }
    assert_eq!(alerts, 1, "the fifth refusal crosses, the sixth does not");
    let published = forwarder.publisher.published.lock().unwrap().clone();
    let EventData::AnomalyDetected {
        rule, principal, ..
    } = &published[0].data
    else {
        panic!("{published:?}");
    };
    assert_eq!(rule, "gateway-denied-burst");
    assert_eq!(principal, "acme/payments#424242");
}

#[tokio::test]
async fn a_source_flooding_the_gateway_with_refused_requests_alerts_once() {
    let forwarder = forwarder();
    let line = |ip: &str| {
        format!(
            r#"{{"level":"INFO","fields":{{"message":"request","method":"POST","path":"/v1/sync/vercel","status":401,"source_ip":"{ip}"}},"target":"ci_gateway"}}"#
        )
    };
    let probe = line("198.51.100.23");
    let other = line("203.0.113.7");
    let ids: Vec<String> = (0..25).map(|n| format!("log-{n}")).collect();
    let mut lines: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), probe.as_str())).collect();
    lines.push(("log-other", other.as_str()));
    let payload = json!({"awslogs": {"data": crate::gateway::tests::delivery(&lines)}}).to_string();
    let outcome = forwarder.handle(&payload).await.unwrap();
    assert_eq!((outcome.input, outcome.records), ("gateway-log", 26));
    assert_eq!(outcome.alerts, 1);
    // Delivered again (CloudWatch Logs retries a failed invocation): nothing new.
    let again = forwarder.handle(&payload).await.unwrap();
    assert_eq!(again.sent, [0, 0, 0]);
    let published = forwarder.publisher.published.lock().unwrap().clone();
    let EventData::AnomalyDetected { rule, evidence, .. } = &published[0].data else {
        panic!("{published:?}");
    };
    assert_eq!(rule, "gateway-refusal-burst");
    assert_eq!(evidence["source_ip"], "198.51.100.23");
}

/// The forwarder with in-memory state and bus, no Loki, no webhook, no log files.
fn forwarder() -> Forwarder<InMemoryMarkerStore, InMemoryEventPublisher, NoLogFiles> {
    Forwarder {
        detector: std::sync::Arc::new(detector()),
        state: InMemoryMarkerStore::default(),
        log_files: NoLogFiles,
        publisher: InMemoryEventPublisher::default(),
        http: http(),
        loki: None,
        webhook_url: None,
        redactor: Redactor::new(),
    }
}

struct NoLogFiles;

impl crate::handler::LogFiles for NoLogFiles {
    async fn open(
        &self,
        _bucket: &str,
        _key: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, keyward_shared::redact::SafeText> {
        Err(keyward_shared::redact::SafeText::fixed("no log files here"))
    }
}

#[test]
fn grouping_and_novelty_declarations_are_checked() {
    let rule = |extra: &str| {
        format!(
            "version: 1\nrules:\n  - id: seen\n    severity: low\n    summary: s\n    match: {{ eventName: [GetSecretValue] }}\n    first_seen: {{ key: [actor], days: 7 }}\n  - id: r\n    severity: high\n    summary: s\n    match: {{ eventName: [GetSecretValue] }}\n{extra}"
        )
    };
    let error = |extra: &str| {
        Detector::from_yaml(&rule(extra), Environment::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        error("    threshold: { count: 2, window_seconds: 60, group_by: actor }\n    group: { by: [actor], window_seconds: 60 }\n")
            .contains("has both `threshold` and `group`")
    );
    assert!(error("    group: { by: [], window_seconds: 60 }\n").contains("group needs `by`"));
    assert!(
        error("    novel_way: { rules: [nope], within_seconds: 60 }\n")
            .contains("names `nope`, which is not a first_seen rule")
    );
    assert!(
        error("    novel_way: { rules: [r], within_seconds: 60 }\n")
            .contains("not a first_seen rule")
    );
    assert_eq!(
        error(
            "    novel_way: { rules: [seen], within_seconds: 60 }\n    group: { by: [actor, user_agent_family], window_seconds: 60 }\n"
        ),
        ""
    );
}

#[tokio::test]
async fn a_grouped_alert_carries_no_token_to_any_sink() {
    let planted = "ghp_0123456789abcdefABCDEF0123456789abcd";
    let storm: Vec<String> = (0..3)
        .map(|n| {
            let mut record: Value = serde_json::from_str(&deletion(n)).unwrap();
            record["userAgent"] = format!("aws-cli/2.15.0 token={planted}").into();
            record["userIdentity"]["userName"] = format!("mallory {planted}").into();
            record.to_string()
        })
        .collect();
    let store = InMemoryMarkerStore::default();
    let alerts = resolve(&store, &storm).await;
    let outgoing: Vec<crate::forward::Outgoing> = alerts
        .into_iter()
        .map(crate::forward::Outgoing::new)
        .collect();
    let refs: Vec<&crate::forward::Outgoing> = outgoing.iter().collect();
    assert!(refs.iter().any(|o| o.alert.group.is_some()));
    let redactor = Redactor::new();
    let everything = format!(
        "{}{}{}",
        crate::forward::loki_body(&refs),
        crate::forward::webhook_body(&refs),
        refs.iter()
            .map(|o| crate::forward::anomaly_event(o, &redactor)
                .to_detail_json()
                .unwrap())
            .collect::<String>()
    );
    assert!(!everything.contains(planted), "{everything}");
    assert!(
        !everything.contains("0123456789abcdefABCDEF"),
        "{everything}"
    );
}
