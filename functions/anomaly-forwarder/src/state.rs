//! Detection state shared across invocations: threshold counters and first-seen memory, kept
//! as create-once markers in the state bucket ([`MarkerStore`], S3 conditional writes).
//!
//! One invocation (one EventBridge event, or one log file) first gathers its findings in a
//! [`Tally`], which merges repeats locally, then resolves them against the store with a bounded
//! number of concurrent calls. Resolution is replay-safe: the store remembers *which record*
//! crossed a threshold or first saw a key, and an invocation that is retried (the same input
//! again) finds its own record there and raises the same alert again, which the delivery
//! ledger ([`crate::deliver`]) then sends nowhere twice. Two invocations racing on one counter
//! cannot both claim the crossing: the claim is one create-once marker.
//!
//! Keys (lifecycle rules in the template expire each prefix):
//! - `state/count/<rule>/<group hash>-<window>/<member hash>`: one per distinct member;
//! - `state/crossed/<rule>/<group hash>-<window>`: the event id of the record that crossed;
//! - `state/first-seen/<rule>/<key hash>`: `{event_id, event_time}` of the first sighting.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use keyward_shared::ports::{MarkerError, MarkerStore};
use keyward_shared::posture::Sighting;
use sha2::Digest;

use crate::rules::{Alert, Finding};

/// Store calls in flight at once for one invocation.
const CONCURRENCY: usize = 16;

/// A short, fixed-length, path-safe stand-in for a value in a key (ARNs hold `/` and `:`).
pub(crate) fn key_hash(value: &str) -> String {
    let digest = sha2::Sha256::digest(value.as_bytes());
    hex::encode(&digest[..16])
}

/// The rule id of a finding's key (`<rule>|...`), which is kept readable in store keys.
fn rule_of(key: &str) -> &str {
    key.split('|').next().unwrap_or(key)
}

/// Everything one invocation found, merged: repeats of a counter member or a first-seen key
/// cost one store call, not one per record.
#[derive(Debug, Default)]
pub struct Tally {
    alerts: BTreeMap<String, Alert>,
    counters: BTreeMap<String, Counter>,
    first_seen: BTreeMap<String, (u32, Alert)>,
}

#[derive(Debug)]
struct Counter {
    threshold: u64,
    members: std::collections::BTreeSet<String>,
    /// The record that would cross: the latest (by event time, then event id) of this
    /// invocation's records for the counter. Chosen from the input alone, so a retry of the
    /// same input names the same record.
    claimant: Alert,
}

/// `(event time, event id)`: a total order over records that a retry reproduces.
pub(crate) fn order(alert: &Alert) -> (DateTime<Utc>, &str) {
    (
        alert.event_time,
        alert
            .evidence
            .get("event_id")
            .map(String::as_str)
            .unwrap_or(""),
    )
}

fn event_id(alert: &Alert) -> &str {
    order(alert).1
}

impl Tally {
    pub fn add(&mut self, finding: Finding) {
        match finding {
            Finding::Alert(alert) => {
                self.alerts.entry(alert.alert_id.clone()).or_insert(alert);
            }
            Finding::Count {
                counter,
                member,
                threshold,
                alert,
            } => {
                let entry = self.counters.entry(counter).or_insert_with(|| Counter {
                    threshold,
                    members: Default::default(),
                    claimant: alert.clone(),
                });
                entry.members.insert(member);
                if order(&alert) > order(&entry.claimant) {
                    entry.claimant = alert;
                }
            }
            Finding::FirstSeen { key, days, alert } => {
                let entry = self.first_seen.entry(key).or_insert((days, alert.clone()));
                // The earliest sighting in this input is the one that may be first.
                if order(&alert) < order(&entry.1) {
                    entry.1 = alert;
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.counters.is_empty() && self.first_seen.is_empty()
    }

    /// Resolves the stateful findings against `store` and returns every alert to raise, in
    /// event-time order: first sightings first (a `novel_way` rule reads them), then counters,
    /// then the novelty conditions, then grouping ([`crate::group`]). A store failure fails the
    /// whole resolution (the invocation is retried; what was written is reused).
    pub async fn resolve<S: MarkerStore>(self, store: &S) -> Result<Vec<Alert>, MarkerError> {
        let Tally {
            alerts,
            counters,
            first_seen,
        } = self;
        let mut raised: Vec<Alert> = alerts.into_values().collect();

        let first: Vec<Option<Alert>> = futures::stream::iter(first_seen)
            .map(|(key, (days, alert))| resolve_first_seen(store, key, days, alert))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        raised.extend(first.into_iter().flatten());

        let crossed: Vec<Option<Alert>> = futures::stream::iter(counters)
            .map(|(counter, tally)| resolve_counter(store, counter, tally))
            .buffer_unordered(CONCURRENCY.div_ceil(4))
            .try_collect()
            .await?;
        raised.extend(crossed.into_iter().flatten());

        let novel: Vec<Option<Alert>> = futures::stream::iter(raised)
            .map(|alert| keep_if_novel(store, alert))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut raised = crate::group::fold(novel.into_iter().flatten().collect(), store).await?;

        raised.sort_by(|a, b| {
            order(a)
                .cmp(&order(b))
                .then(a.rule.cmp(&b.rule))
                .then(a.alert_id.cmp(&b.alert_id))
        });
        Ok(raised)
    }
}

/// An alert of a `novel_way` rule survives only when one of its first-seen keys was first seen
/// recently (the markers [`resolve_first_seen`] keeps).
async fn keep_if_novel<S: MarkerStore>(
    store: &S,
    alert: Alert,
) -> Result<Option<Alert>, MarkerError> {
    let Some(check) = &alert.requires else {
        return Ok(Some(alert));
    };
    for key in &check.keys {
        let marker = format!("state/first-seen/{}/{}", rule_of(key), key_hash(key));
        if let Some(stored) = store.get(&marker).await?
            && let Ok(first) = serde_json::from_str::<Sighting>(&stored.body)
            && check.is_recent(first.event_time, alert.event_time)
        {
            return Ok(Some(alert));
        }
    }
    Ok(None)
}

async fn resolve_counter<S: MarkerStore>(
    store: &S,
    counter: String,
    tally: Counter,
) -> Result<Option<Alert>, MarkerError> {
    let (rule, rest) = counter.split_once('|').unwrap_or((&counter, ""));
    // `rest` is `<group>|<window>`; the window is a plain number, kept readable.
    let (group, window) = rest.rsplit_once('|').unwrap_or((rest, ""));
    let prefix = format!("state/count/{rule}/{}-{window}/", key_hash(group));
    let claimant_id = event_id(&tally.claimant).to_owned();
    futures::stream::iter(tally.members.iter())
        .map(|member| {
            let key = format!("{prefix}{}", key_hash(member));
            let body = claimant_id.clone();
            async move { store.create_or_get(&key, &body).await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    if store.count(&prefix, tally.threshold).await? < tally.threshold {
        return Ok(None);
    }
    let crossing = format!("state/crossed/{rule}/{}-{window}", key_hash(group));
    let claim = store.create_or_get(&crossing, &claimant_id).await?;
    // Ours now, or ours from an earlier attempt of this same input: alert (the delivery ledger
    // keeps a retry from sending it twice). Another record's: it alerted already.
    Ok((claim.body == claimant_id).then_some(tally.claimant))
}

async fn resolve_first_seen<S: MarkerStore>(
    store: &S,
    key: String,
    days: u32,
    alert: Alert,
) -> Result<Option<Alert>, MarkerError> {
    let marker_key = format!("state/first-seen/{}/{}", rule_of(&key), key_hash(&key));
    let ours = Sighting {
        event_id: event_id(&alert).to_owned(),
        event_time: alert.event_time,
        principal_arn: alert.evidence.get("principal_arn").cloned(),
        secret: alert.evidence.get("secret").cloned(),
    };
    let body = serde_json::to_string(&ours)
        .map_err(|_| MarkerError(keyward_shared::redact::SafeText::fixed("encoding failed")))?;
    let stored = store.create_or_get(&marker_key, &body).await?;
    if stored.created {
        return Ok(Some(alert));
    }
    let Ok(earlier) = serde_json::from_str::<Sighting>(&stored.body) else {
        // Unreadable (written by something else): take it over rather than go blind.
        store.overwrite(&marker_key, &body).await?;
        return Ok(Some(alert));
    };
    if earlier.event_id == ours.event_id {
        return Ok(Some(alert));
    }
    // Seen before, but longer ago than the rule remembers: a new first sighting. (Two
    // invocations racing here may both alert; the window is one overwrite wide.)
    if earlier.event_time + chrono::Duration::days(i64::from(days)) < ours.event_time {
        store.overwrite(&marker_key, &body).await?;
        return Ok(Some(alert));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use keyward_shared::ports::InMemoryMarkerStore;

    use super::*;
    use crate::rules::{Detector, Environment};

    const RULES: &str = r#"
version: 1
rules:
  - id: bulk
    severity: high
    summary: many distinct secrets
    match: { eventName: [GetSecretValue] }
    threshold: { count: 3, window_seconds: 600, group_by: actor, distinct: secret }
  - id: denied-burst
    severity: medium
    summary: repeated denials
    match: { eventName: [GetSecretValue], errorCode: [{ exists: true }] }
    threshold: { count: 2, window_seconds: 600, group_by: actor }
  - id: new-reader
    severity: low
    summary: first read of a secret by a principal
    match: { eventName: [GetSecretValue] }
    first_seen: { key: [actor, secret], days: 7 }
"#;

    fn detector() -> Detector {
        Detector::from_yaml(RULES, Environment::default()).unwrap()
    }

    fn read(id: &str, time: &str, user: &str, secret: &str, denied: bool) -> String {
        let mut record = serde_json::json!({
            "eventVersion": "1.09", "eventID": id, "eventTime": time,
            "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
            "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.9",
            "userIdentity": {"type": "IAMUser", "userName": user,
                             "arn": format!("arn:aws:iam::123456789012:user/{user}")},
            "requestParameters": {"secretId": secret},
        });
        if denied {
            record["errorCode"] = "AccessDenied".into();
        }
        record.to_string()
    }

    async fn run(store: &InMemoryMarkerStore, records: &[String]) -> Vec<Alert> {
        crate::test_support::resolve_records(&detector(), store, records)
            .await
            .unwrap()
    }

    fn rules(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.rule.as_str()).collect()
    }

    #[tokio::test]
    async fn a_threshold_spanning_invocations_alerts_once_and_a_retry_repeats_the_same_alert() {
        let store = InMemoryMarkerStore::default();
        let t = "2026-11-20T10:00:0";
        let first = [
            read("e1", &format!("{t}1Z"), "mallory", "/acme/prod/a/s1", false),
            read("e2", &format!("{t}2Z"), "mallory", "/acme/prod/a/s2", false),
            // The same secret again counts once.
            read("e3", &format!("{t}3Z"), "mallory", "/acme/prod/a/s2", false),
        ];
        let alerts = run(&store, &first).await;
        assert_eq!(
            rules(&alerts),
            ["new-reader", "new-reader"],
            "two distinct so far"
        );

        let second = [read(
            "e4",
            &format!("{t}4Z"),
            "mallory",
            "/acme/prod/a/s3",
            false,
        )];
        let alerts = run(&store, &second).await;
        assert_eq!(rules(&alerts), ["bulk", "new-reader"]);
        let bulk = alerts[0].clone();
        assert_eq!(
            bulk.evidence["event_id"], "e4",
            "the crossing record is the evidence"
        );

        // The second invocation is retried (its delivery failed): the same alert again, so the
        // ledger can deliver what is missing; the first-seen alert repeats for the same reason.
        let retried = run(&store, &second).await;
        assert_eq!(retried, alerts);

        // A later read in the same window: the threshold was crossed already.
        let third = [read(
            "e5",
            &format!("{t}5Z"),
            "mallory",
            "/acme/prod/a/s4",
            false,
        )];
        assert_eq!(rules(&run(&store, &third).await), ["new-reader"]);
        // Re-reading the first file (a duplicate delivery) raises nothing new.
        assert!(
            run(&store, &first)
                .await
                .iter()
                .all(|a| a.rule == "new-reader" && a.evidence["event_id"] != "e3")
        );
    }

    #[tokio::test]
    async fn racing_invocations_cannot_both_claim_a_crossing() {
        let store = std::sync::Arc::new(InMemoryMarkerStore::default());
        let a = [
            read(
                "a1",
                "2026-11-20T10:00:01Z",
                "eve",
                "/acme/prod/a/s1",
                false,
            ),
            read(
                "a2",
                "2026-11-20T10:00:02Z",
                "eve",
                "/acme/prod/a/s2",
                false,
            ),
            read(
                "a3",
                "2026-11-20T10:00:03Z",
                "eve",
                "/acme/prod/a/s3",
                false,
            ),
        ];
        let b = [
            read(
                "b1",
                "2026-11-20T10:00:04Z",
                "eve",
                "/acme/prod/a/s4",
                false,
            ),
            read(
                "b2",
                "2026-11-20T10:00:05Z",
                "eve",
                "/acme/prod/a/s5",
                false,
            ),
            read(
                "b3",
                "2026-11-20T10:00:06Z",
                "eve",
                "/acme/prod/a/s6",
                false,
            ),
        ];
        let (x, y) = tokio::join!(run(&store, &a), run(&store, &b));
        let bulk: Vec<_> = x.iter().chain(&y).filter(|a| a.rule == "bulk").collect();
        assert_eq!(bulk.len(), 1, "{bulk:?}");
    }

    #[tokio::test]
    async fn counting_without_distinct_counts_each_record_once() {
        let store = InMemoryMarkerStore::default();
        let denied = read("d1", "2026-11-20T10:00:01Z", "eve", "/acme/prod/a/s1", true);
        // The same denied record delivered twice (a duplicate log file) is one occurrence.
        let alerts = run(&store, std::slice::from_ref(&denied)).await;
        assert!(!rules(&alerts).contains(&"denied-burst"));
        let alerts = run(&store, &[denied]).await;
        assert!(!rules(&alerts).contains(&"denied-burst"));
        let another = read("d2", "2026-11-20T10:00:09Z", "eve", "/acme/prod/a/s1", true);
        assert!(rules(&run(&store, &[another]).await).contains(&"denied-burst"));
    }

    #[tokio::test]
    async fn first_seen_forgets_after_its_days() {
        let store = InMemoryMarkerStore::default();
        let day0 = read(
            "f1",
            "2026-11-01T10:00:00Z",
            "bob",
            "/acme/prod/a/s1",
            false,
        );
        assert!(rules(&run(&store, &[day0]).await).contains(&"new-reader"));
        let day3 = read(
            "f2",
            "2026-11-04T10:00:00Z",
            "bob",
            "/acme/prod/a/s1",
            false,
        );
        assert!(!rules(&run(&store, &[day3]).await).contains(&"new-reader"));
        let day9 = read(
            "f3",
            "2026-11-10T10:00:00Z",
            "bob",
            "/acme/prod/a/s1",
            false,
        );
        let alerts = run(&store, std::slice::from_ref(&day9)).await;
        assert!(
            rules(&alerts).contains(&"new-reader"),
            "remembered for 7 days only"
        );
        // A retry of that invocation still sees itself as the first sighting.
        assert!(rules(&run(&store, &[day9]).await).contains(&"new-reader"));
    }

    /// Posture lists readers from these sightings: each names its principal and secret.
    #[tokio::test]
    async fn a_sighting_names_the_reader_and_the_secret_for_posture() {
        let store = InMemoryMarkerStore::default();
        let record = read(
            "s1",
            "2026-11-01T10:00:00Z",
            "carol",
            "/acme/prod/a/s1",
            false,
        );
        assert!(rules(&run(&store, &[record]).await).contains(&"new-reader"));
        let keys = store.list("state/first-seen/new-reader/").await.unwrap();
        assert_eq!(keys.len(), 1);
        let marker = store.get(&keys[0]).await.unwrap().unwrap();
        let sighting: Sighting = serde_json::from_str(&marker.body).unwrap();
        assert_eq!(
            sighting.principal_arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/carol")
        );
        assert_eq!(sighting.secret.as_deref(), Some("/acme/prod/a/s1"));
    }

    /// Posture reads the shipped reader rule's sightings by its id: the rule must exist with
    /// the key posture expects.
    #[test]
    fn the_shipped_reader_rule_is_the_one_posture_reads() {
        let detector =
            Detector::from_yaml(crate::rules::DEFAULT_RULES, Environment::default()).unwrap();
        let rule = detector
            .rules()
            .iter()
            .find(|r| r.id == keyward_shared::posture::READER_RULE)
            .expect("the reader rule is shipped");
        let key = &rule.first_seen.as_ref().expect("a first-seen rule").key;
        assert_eq!(
            key,
            &[
                crate::rules::Dimension::Actor,
                crate::rules::Dimension::Secret
            ]
        );
        assert_eq!(
            keyward_shared::posture::READER_SIGHTINGS_PREFIX,
            format!("state/first-seen/{}/", rule.id)
        );
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_resolution_and_a_rerun_completes() {
        let records: Vec<String> = (1..=4)
            .map(|n| {
                read(
                    &format!("r{n}"),
                    &format!("2026-11-20T10:00:0{n}Z"),
                    "zed",
                    &format!("/acme/prod/a/s{n}"),
                    false,
                )
            })
            .collect();
        let expected = run(&InMemoryMarkerStore::default(), &records).await;
        for budget in 0..12 {
            let store_after_crash = InMemoryMarkerStore::default();
            *store_after_crash.fail_after_writes.lock().unwrap() = Some(budget);
            let detector = detector();
            let mut tally = Tally::default();
            for raw in &records {
                detector
                    .observe(raw)
                    .unwrap()
                    .into_iter()
                    .for_each(|f| tally.add(f));
            }
            if tally.resolve(&store_after_crash).await.is_ok() {
                continue;
            }
            *store_after_crash.fail_after_writes.lock().unwrap() = None;
            let rerun = run(&store_after_crash, &records).await;
            assert_eq!(rerun, expected, "after a crash with {budget} writes done");
        }
    }
}
