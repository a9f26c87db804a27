//! Detection rules: a YAML file the operator extends without rebuilding.
//!
//! ```yaml
//! version: 1
//! rules:
//!   - id: bulk-secret-read
//!     severity: high
//!     summary: One principal read many distinct secrets in a short window
//!     match:                       # an EventBridge event pattern over the CloudTrail record,
//!       eventName: [GetSecretValue] # plus keyward's derived facts under `keyward`
//!       keyward: { success: [true] }
//!     threshold: { count: 20, window_seconds: 600, group_by: actor, distinct: secret }
//!   - id: first-seen-reader
//!     match: { eventName: [GetSecretValue], keyward: { success: [true] } }
//!     first_seen: { key: [actor, secret], days: 7 }
//! ```
//!
//! Patterns are matched by quamina (EventBridge pattern semantics: exact, prefix, anything-but,
//! exists, numeric, wildcard...). A rule without `threshold` or `first_seen` alerts on every
//! matching record. With `threshold`, it alerts once per window and group when the count (or
//! the number of distinct values) reaches `count`. Windows are tumbling, aligned to the epoch.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyward_shared::events::Severity;
use serde::Deserialize;

use crate::prefilter::Prefilter;
use crate::record::{Facts, Record, RecordError};

pub const DEFAULT_RULES: &str = include_str!("../rules/default.yaml");
/// The same rules as JSON, converted by `build.rs` when the crate is built: what a cold start
/// parses when no operator rules are deployed (JSON parses several times faster than YAML).
pub const DEFAULT_RULES_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/default-rules.json"));
/// Longest threshold window a rule may declare.
pub const MAX_WINDOW_SECONDS: i64 = 86_400;
/// Longest first-seen memory a rule may declare; the template's lifecycle rule for
/// `state/first-seen/` keeps markers this long.
pub const MAX_FIRST_SEEN_DAYS: u32 = 90;
/// How long counters, crossings and delivery records live (template lifecycle rules): longer
/// than any retry (EventBridge 24 h, async invoke 6 h) or late CloudTrail file.
pub const STATE_RETENTION_DAYS: u32 = 7;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub version: u32,
    pub rules: Vec<RuleDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDecl {
    pub id: String,
    pub severity: Severity,
    pub summary: String,
    #[serde(rename = "match")]
    pub pattern: serde_json::Value,
    #[serde(default)]
    pub threshold: Option<Threshold>,
    #[serde(default)]
    pub first_seen: Option<FirstSeen>,
    #[serde(default)]
    pub group: Option<GroupDecl>,
    #[serde(default)]
    pub novel_way: Option<NovelWay>,
    /// Rules of other detection suites that cover the same behaviour (`panther:<RuleID>`), for
    /// measuring agreement on their labelled test events.
    #[serde(default)]
    pub equivalents: Vec<String>,
}

/// Alerts of one rule that share these dimensions within a window become one group: the
/// first alerts at once, later ones are folded into it ([`crate::group`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDecl {
    pub by: Vec<Dimension>,
    pub window_seconds: i64,
}

/// The rule alerts only when the record's way of calling is new: one of the named first-seen
/// rules first saw the record's key at most `within_seconds` before it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NovelWay {
    pub rules: Vec<String>,
    pub within_seconds: i64,
}

/// What a count is grouped by, and what may be counted distinctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Actor,
    Secret,
    SourceIp,
    Region,
    Account,
    EventName,
    UserAgentFamily,
    SourceNetwork,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub count: u64,
    pub window_seconds: i64,
    pub group_by: Dimension,
    #[serde(default)]
    pub distinct: Option<Dimension>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstSeen {
    pub key: Vec<Dimension>,
    pub days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rules file: {0}")]
    Parse(String),
    #[error("rules file version {0} is not supported (this build reads 1)")]
    Version(u32),
    #[error("rule `{rule}`: {message}")]
    Invalid { rule: String, message: String },
}

/// One alert: which rule, how bad, and the evidence (names, ids, addresses; never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub rule: String,
    pub severity: Severity,
    pub summary: String,
    pub event_time: DateTime<Utc>,
    /// Stable across retries of the same input: rule, group and window (or event id).
    pub alert_id: String,
    /// Shared by every finding of one record: built (and redacted) once per record.
    pub evidence: Evidence,
    /// For a rule with `group`: which group and window the alert belongs to.
    pub grouping: Option<Grouping>,
    /// For a rule with `novel_way`: the first sightings that decide whether it is raised.
    pub requires: Option<NoveltyCheck>,
    /// Set on delivery for a grouped alert: the group as far as it is known.
    pub group: Option<crate::group::GroupDelivery>,
}

/// An alert's evidence: names, ids, addresses; never values.
pub type Evidence = std::sync::Arc<BTreeMap<String, String>>;

/// A grouped alert's group: its rule and dimension values, and the window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grouping {
    /// `<rule>|<by values>`.
    pub key: String,
    pub window: i64,
}

impl Grouping {
    /// `<rule>|<hash of the by values>|<window index>`: the values are hashed, as the id
    /// travels to Loki, the chat and the audit trail, where only the redacted evidence may name
    /// who and what. Computed when an alert is grouped, not for every finding.
    pub fn id(&self) -> String {
        let (rule, _) = self.key.split_once('|').unwrap_or((&self.key, ""));
        format!(
            "{rule}|{}|{}",
            crate::state::key_hash(&self.key),
            self.window
        )
    }
}

/// First-seen keys (`<rule>|<values>`) of which one must have been first seen recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoveltyCheck {
    pub keys: Vec<String>,
    pub within_seconds: i64,
}

impl NoveltyCheck {
    /// Whether a first sighting at `first` makes an alert at `at` novel.
    pub fn is_recent(&self, first: DateTime<Utc>, at: DateTime<Utc>) -> bool {
        first + chrono::Duration::seconds(self.within_seconds) >= at
    }
}

/// Threshold and first-seen state held in memory, for [`Detector::evaluate`]. The function
/// keeps its state in a shared store instead ([`crate::state`]).
pub trait DetectionState {
    /// Adds `member` to `counter`; returns the number of distinct members after the addition,
    /// or `None` when `member` was already counted (so a threshold is crossed exactly once).
    fn add(&mut self, counter: &str, member: &str) -> Option<u64>;
    /// True the first time `key` is seen (at `at`).
    fn first_seen(&mut self, key: &str, days: u32, at: DateTime<Utc>) -> bool;
    /// When `key` was first seen, if it was.
    fn first_sighting(&self, key: &str) -> Option<DateTime<Utc>>;
}

/// Counts in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    counts: std::collections::HashMap<String, std::collections::HashSet<String>>,
    seen: std::collections::HashMap<String, DateTime<Utc>>,
}

impl DetectionState for MemoryState {
    fn add(&mut self, counter: &str, member: &str) -> Option<u64> {
        let members = self.counts.entry(counter.to_owned()).or_default();
        members
            .insert(member.to_owned())
            .then_some(members.len() as u64)
    }

    fn first_seen(&mut self, key: &str, _days: u32, at: DateTime<Utc>) -> bool {
        match self.seen.entry(key.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(at);
                true
            }
        }
    }

    fn first_sighting(&self, key: &str) -> Option<DateTime<Utc>> {
        self.seen.get(key).copied()
    }
}

/// Deployment-specific knowledge the facts use.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Allowed source networks; empty = not checked.
    pub allowed_cidrs: Vec<Cidr>,
    pub allowed_vpc_endpoints: Vec<String>,
    /// Secret name -> principal ARNs allowed to read it (the `keyward:reader:N` tags).
    pub readers: BTreeMap<String, Vec<String>>,
    /// keyward's own resources (the audit bucket's name, the digest key's ARN, the event bus's
    /// name and ARN): a call naming one is an attempt against keyward itself.
    pub protected: Vec<String>,
    /// The organisation's own automation, whose novel ways of calling are expected.
    pub automation: crate::client::KnownAutomation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s.split_once('/').unwrap_or((s, ""));
        let network: std::net::IpAddr = ip.parse().map_err(|_| format!("`{s}` is not a CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length"))?
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Secret names from an ARN or name (`arn:...:secret:/acme/prod/x/y-AbCdEf` -> `/acme/prod/x/y`).
fn secret_name(id: &str) -> &str {
    match id.split_once(":secret:") {
        Some((_, name)) => keyward_shared::naming::SecretName::name_from_arn(id).unwrap_or(name),
        None => id,
    }
}

pub struct Detector {
    engine: quamina::Quamina<usize>,
    rules: Vec<RuleDecl>,
    /// Per rule (same index): the indices of the first-seen rules its `novel_way` names,
    /// resolved once at load.
    novel_way_rules: Vec<Vec<usize>>,
    environment: Environment,
    prefilter: Option<Prefilter>,
    /// Every evidence value passes through it: CloudTrail records no secret values, but a user
    /// agent can carry anything, and evidence goes to Loki, the webhook and the audit trail.
    redactor: keyward_shared::redact::Redactor,
}

/// Whether any string of the call's request parameters is one of `protected`, or the last
/// path segment of one (a key id for a key ARN, a bus name for a bus ARN).
fn names_protected(record: &Record<'_>, protected: &[String]) -> bool {
    fn strings<'v>(value: &'v serde_json::Value, out: &mut Vec<&'v str>) {
        match value {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let Some(raw) = record.request_parameters else {
        return false;
    };
    let Ok(parameters) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
        return false;
    };
    let mut named = Vec::new();
    strings(&parameters, &mut named);
    named.iter().any(|value| {
        !value.is_empty()
            && protected.iter().any(|p| {
                p == value
                    || p.rsplit(['/', ':']).next() == Some(*value)
                    || value.rsplit(['/', ':']).next() == Some(p.as_str())
            })
    })
}

/// One rule's declaration, checked against the limits the state bucket keeps and the rules it
/// refers to.
fn validate(rule: &RuleDecl, all: &[RuleDecl]) -> Result<(), String> {
    // Ids name state keys and Loki labels: a plain slug.
    let slug = !rule.id.is_empty()
        && rule.id.len() <= 64
        && rule
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug {
        return Err("ids are 1 to 64 lowercase letters, digits and hyphens".into());
    }
    if !rule.pattern.is_object() {
        return Err("`match` must be an EventBridge event pattern (a mapping)".into());
    }
    if rule.threshold.is_some() && rule.first_seen.is_some() {
        return Err("has both `threshold` and `first_seen`".into());
    }
    if let Some(threshold) = &rule.threshold {
        if threshold.count == 0 || threshold.window_seconds <= 0 {
            return Err("threshold count and window_seconds must be positive".into());
        }
        if threshold.window_seconds > MAX_WINDOW_SECONDS {
            return Err(format!(
                "threshold window_seconds is at most {MAX_WINDOW_SECONDS} (one day): the state \
                 bucket expires counters after {STATE_RETENTION_DAYS} days"
            ));
        }
    }
    if let Some(first_seen) = &rule.first_seen
        && !(1..=MAX_FIRST_SEEN_DAYS).contains(&first_seen.days)
    {
        return Err(format!(
            "first_seen days must be between 1 and {MAX_FIRST_SEEN_DAYS} (the state bucket's \
             retention of first-seen markers)"
        ));
    }
    if let Some(group) = &rule.group {
        if rule.threshold.is_some() {
            return Err(
                "has both `threshold` and `group` (a threshold alerts once per window already)"
                    .into(),
            );
        }
        if group.by.is_empty() || !(1..=MAX_WINDOW_SECONDS).contains(&group.window_seconds) {
            return Err(format!(
                "group needs `by` dimensions and window_seconds between 1 and {MAX_WINDOW_SECONDS}"
            ));
        }
    }
    if let Some(novel) = &rule.novel_way {
        if rule.first_seen.is_some() {
            return Err("a first_seen rule cannot also require `novel_way`".into());
        }
        let longest = i64::from(MAX_FIRST_SEEN_DAYS) * 86_400;
        if novel.rules.is_empty() || !(1..=longest).contains(&novel.within_seconds) {
            return Err(format!(
                "novel_way needs `rules` and within_seconds between 1 and {longest}"
            ));
        }
        for name in &novel.rules {
            if !all
                .iter()
                .any(|other| &other.id == name && other.first_seen.is_some())
            {
                return Err(format!(
                    "novel_way names `{name}`, which is not a first_seen rule of this file"
                ));
            }
        }
    }
    Ok(())
}

impl Detector {
    pub fn from_yaml(text: &str, environment: Environment) -> Result<Self, RuleError> {
        let file: RuleFile =
            serde_yaml_ng::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        Self::from_file(file, environment)
    }

    /// The rules of [`DEFAULT_RULES_JSON`] (or any rules file as JSON).
    pub fn from_json(text: &str, environment: Environment) -> Result<Self, RuleError> {
        let file: RuleFile =
            serde_json::from_str(text).map_err(|e| RuleError::Parse(e.to_string()))?;
        Self::from_file(file, environment)
    }

    fn from_file(file: RuleFile, environment: Environment) -> Result<Self, RuleError> {
        if file.version != 1 {
            return Err(RuleError::Version(file.version));
        }
        let mut engine = quamina::Quamina::new();
        let mut ids = std::collections::BTreeSet::new();
        for (index, rule) in file.rules.iter().enumerate() {
            let invalid = |message: String| RuleError::Invalid {
                rule: rule.id.clone(),
                message,
            };
            if !ids.insert(rule.id.clone()) {
                return Err(invalid("is declared twice".into()));
            }
            validate(rule, &file.rules).map_err(invalid)?;
            engine
                .add_pattern(index, &rule.pattern.to_string())
                .map_err(|e| invalid(format!("`match` is not a valid event pattern: {e:?}")))?;
        }
        let novel_way_rules = file
            .rules
            .iter()
            .map(|rule| {
                let names = rule.novel_way.as_ref().map(|n| n.rules.as_slice());
                names
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|name| file.rules.iter().position(|r| &r.id == name))
                    .collect()
            })
            .collect();
        Ok(Self {
            engine,
            novel_way_rules,
            prefilter: Prefilter::from_rules(&file.rules),
            rules: file.rules,
            environment,
            redactor: keyward_shared::redact::Redactor::new(),
        })
    }

    /// The same detector without the prefilter (for tests proving it changes nothing).
    pub fn without_prefilter(mut self) -> Self {
        self.prefilter = None;
        self
    }

    fn admits(&self, record: &Record<'_>) -> bool {
        self.prefilter.as_ref().is_none_or(|p| p.admits(record))
    }

    pub fn rules(&self) -> &[RuleDecl] {
        &self.rules
    }

    /// The facts for a record, with the deployment's networks, automation and readers applied.
    pub fn facts(&self, record: &Record<'_>) -> Facts {
        let mut facts = record.facts();
        let env = &self.environment;
        if !env.allowed_cidrs.is_empty() || !env.allowed_vpc_endpoints.is_empty() {
            let from_cidr = record
                .source_ip_address
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .is_some_and(|ip| env.allowed_cidrs.iter().any(|c| c.contains(ip)));
            let from_vpce = record
                .vpc_endpoint_id
                .as_deref()
                .is_some_and(|v| env.allowed_vpc_endpoints.iter().any(|a| a == v));
            // Calls AWS services make on a principal's behalf carry a service name, not an IP.
            facts.outside_allowed_network = Some(facts.from_ip && !from_cidr && !from_vpce);
        }
        if !env.protected.is_empty() {
            // Only the services holding keyward's own resources are looked into: the request
            // parameters of every other record stay unparsed.
            let guarded = matches!(
                record.event_source.as_deref(),
                Some("s3.amazonaws.com" | "kms.amazonaws.com" | "events.amazonaws.com")
            );
            facts.keyward_resource = Some(guarded && names_protected(record, &env.protected));
        }
        if !env.automation.is_empty() {
            facts.known_automation = env.automation.recognises(
                record.principal_arn().as_deref(),
                &record.user_agent_family(),
            );
        }
        if facts.value_read
            && let Some(secret) = facts.secrets.first()
        {
            facts.unlisted_reader = self.unlisted(record, secret);
        }
        facts
    }

    /// Whether the record's principal is outside `secret`'s declared readers; `None` when the
    /// readers are not known.
    fn unlisted(&self, record: &Record<'_>, secret: &str) -> Option<bool> {
        let readers = self.environment.readers.get(secret_name(secret))?;
        let principal = record.principal_arn().unwrap_or_default();
        Some(!readers.contains(&principal))
    }

    /// The facts each rule sees: one set per record, except for a batch read naming its
    /// secrets, which is a read of each listed secret (one set per secret) for every per-secret
    /// rule. (AWS documents a `GetSecretValue` record per secret of a batch as well; the
    /// distinct and first-seen rules count a principal and secret once either way.)
    fn views(&self, record: &Record<'_>, facts: Facts) -> Vec<View> {
        let listed_batch = record.event_name.as_deref() == Some("BatchGetSecretValue")
            && !facts.filter_batch
            && facts.secrets.len() > 1;
        if !listed_batch {
            return vec![View {
                facts,
                per_secret: PerSecret::Whole,
            }];
        }
        facts
            .secrets
            .iter()
            .map(|secret| {
                let mut one = facts.clone();
                one.secrets = vec![secret.clone()];
                one.unlisted_reader = if one.value_read {
                    self.unlisted(record, secret)
                } else {
                    None
                };
                View {
                    facts: one,
                    per_secret: PerSecret::Listed,
                }
            })
            .collect()
    }

    /// The ids of the rules whose pattern matches a record, before thresholds and first-seen.
    pub fn matching(&self, raw: &str) -> Result<Vec<&str>, RecordError> {
        let Some(analysis) = self.analyse(raw)? else {
            return Ok(Vec::new());
        };
        let mut matched: Vec<usize> = analysis
            .views
            .iter()
            .flat_map(|(_, indices)| indices.iter().copied())
            .collect();
        matched.sort_unstable();
        matched.dedup();
        Ok(matched
            .into_iter()
            .map(|i| self.rules[i].id.as_str())
            .collect())
    }

    /// Parses a record and matches it: `None` when the prefilter turns it away or no pattern
    /// matches; else the record and, per view of it, the matching rules' indices (sorted,
    /// distinct).
    fn analyse<'r>(&self, raw: &'r str) -> Result<Option<Analysis<'r>>, RecordError> {
        // Most of a trail is other services' calls: skip them before parsing. (So a malformed
        // record no rule could match is passed over, not reported as rejected.)
        if self.prefilter.as_ref().is_some_and(|p| !p.may_admit(raw)) {
            return Ok(None);
        }
        let record = Record::parse(raw)?;
        if !self.admits(&record) {
            return Ok(None);
        }
        let facts = self.facts(&record);
        let mut views = Vec::new();
        for view in self.views(&record, facts) {
            let mut matched = self.match_indices(raw, &view.facts)?;
            if !matched.is_empty() {
                matched.sort_unstable();
                matched.dedup();
                views.push((view, matched));
            }
        }
        Ok((!views.is_empty()).then_some(Analysis { record, views }))
    }

    fn match_indices(&self, raw: &str, facts: &Facts) -> Result<Vec<usize>, RecordError> {
        // The pattern sees the record with keyward's facts spliced in under `keyward`.
        let facts_json = serde_json::to_string(facts).unwrap_or_else(|_| "{}".into());
        let body = raw.trim_start();
        let body = body.strip_prefix('{').ok_or(RecordError::NotAnObject)?;
        let mut event = String::with_capacity(raw.len() + facts_json.len() + 16);
        event.push_str("{\"keyward\":");
        event.push_str(&facts_json);
        if !body.trim_start().starts_with('}') {
            event.push(',');
        }
        event.push_str(body);
        self.engine
            .matches_for_event(event.as_bytes())
            .map_err(|_| RecordError::Shape {
                path: "(pattern matching)".into(),
            })
    }

    /// What one record (its raw JSON) means for each rule it matches: an alert now, or an
    /// occurrence for a threshold or first-seen rule, whose outcome depends on state shared
    /// across records and invocations (see [`crate::state`]). Records that match nothing cost
    /// one parse and one automaton walk.
    pub fn observe(&self, raw: &str) -> Result<Vec<Finding>, RecordError> {
        let Some(analysis) = self.analyse(raw)? else {
            return Ok(Vec::new());
        };
        let time = analysis.record.time()?;
        let mut findings = Vec::new();
        for (view, matched) in &analysis.views {
            let seen = Seen {
                record: &analysis.record,
                view,
                time,
                evidence: std::sync::Arc::new(evidence(
                    &analysis.record,
                    &view.facts,
                    &self.redactor,
                )),
                user_agent_family: std::cell::OnceCell::new(),
                source_network: std::cell::OnceCell::new(),
            };
            findings.extend(matched.iter().map(|&index| self.finding(index, &seen)));
        }
        Ok(findings)
    }

    /// What one view of a record means for one rule it matched.
    fn finding(&self, index: usize, seen: &Seen<'_, '_>) -> Finding {
        let rule = &self.rules[index];
        let event_id = seen.record.event_id.as_deref().unwrap_or("");
        // A listed batch read raises one alert per secret: the secret joins the id.
        let occurrence = match seen.view.per_secret {
            PerSecret::Whole => event_id.to_owned(),
            PerSecret::Listed => format!("{event_id}|{}", seen.value(Dimension::Secret)),
        };
        let alert = |alert_id: String| Alert {
            rule: rule.id.clone(),
            severity: rule.severity,
            summary: rule.summary.clone(),
            event_time: seen.time,
            alert_id,
            evidence: seen.evidence.clone(),
            grouping: rule.group.as_ref().map(|group| Grouping {
                key: seen.key(&rule.id, &group.by),
                window: seen.time.timestamp().div_euclid(group.window_seconds),
            }),
            requires: rule.novel_way.as_ref().map(|novel| NoveltyCheck {
                keys: self.novel_way_rules[index]
                    .iter()
                    .map(|&named| &self.rules[named])
                    .filter_map(|r| Some(seen.key(&r.id, &r.first_seen.as_ref()?.key)))
                    .collect(),
                within_seconds: novel.within_seconds,
            }),
            group: None,
        };
        if let Some(threshold) = &rule.threshold {
            let window = seen.time.timestamp().div_euclid(threshold.window_seconds);
            let counter = format!("{}|{window}", seen.key(&rule.id, &[threshold.group_by]));
            Finding::Count {
                threshold: threshold.count,
                // Without `distinct`, every record counts once: its event id is the member,
                // so the same record read twice (a retry, a duplicate file) counts once.
                member: threshold
                    .distinct
                    .map(|d| seen.value(d))
                    .unwrap_or_else(|| event_id.to_owned()),
                alert: alert(counter.clone()),
                counter,
            }
        } else if let Some(first_seen) = &rule.first_seen {
            let key = seen.key(&rule.id, &first_seen.key);
            Finding::FirstSeen {
                days: first_seen.days,
                alert: alert(format!("{key}|{event_id}")),
                key,
            }
        } else {
            Finding::Alert(alert(format!("{}|{occurrence}", rule.id)))
        }
    }

    /// Evaluates one record against state held in memory (one log file, a test, a benchmark).
    /// The function uses [`Self::observe`] and [`crate::state`], whose state outlives it.
    pub fn evaluate(
        &self,
        raw: &str,
        state: &mut dyn DetectionState,
    ) -> Result<Vec<Alert>, RecordError> {
        let mut alerts = Vec::new();
        for finding in self.observe(raw)? {
            match finding {
                Finding::Alert(alert) => alerts.push(alert),
                Finding::Count {
                    counter,
                    member,
                    threshold,
                    alert,
                } => {
                    if state.add(&counter, &member) == Some(threshold) {
                        alerts.push(alert);
                    }
                }
                Finding::FirstSeen { key, days, alert } => {
                    if state.first_seen(&key, days, alert.event_time) {
                        alerts.push(alert);
                    }
                }
            }
        }
        // After this record's own first sightings are known.
        alerts.retain(|alert| {
            alert.requires.as_ref().is_none_or(|check| {
                check.keys.iter().any(|key| {
                    state
                        .first_sighting(key)
                        .is_some_and(|first| check.is_recent(first, alert.event_time))
                })
            })
        });
        Ok(alerts)
    }
}

/// Whether a view stands for the whole record or one secret a batch read listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PerSecret {
    Whole,
    Listed,
}

/// The facts one set of rules sees for a record.
struct View {
    facts: Facts,
    per_secret: PerSecret,
}

/// A record that matched, with the rules each view of it matched.
struct Analysis<'r> {
    record: Record<'r>,
    views: Vec<(View, Vec<usize>)>,
}

/// One view of a record, as findings are made from it.
struct Seen<'a, 'r> {
    record: &'a Record<'r>,
    view: &'a View,
    time: DateTime<Utc>,
    evidence: Evidence,
    /// Derived on first use by a rule's key, then shared by the view's other rules.
    user_agent_family: std::cell::OnceCell<String>,
    source_network: std::cell::OnceCell<String>,
}

impl Seen<'_, '_> {
    fn value(&self, dimension: Dimension) -> String {
        let record = self.record;
        let facts = &self.view.facts;
        let text = |value: Option<&str>| value.unwrap_or("").to_owned();
        match dimension {
            Dimension::Actor => facts.actor.clone(),
            Dimension::Secret => facts
                .secrets
                .first()
                .map(|s| secret_name(s).to_owned())
                .unwrap_or_default(),
            Dimension::SourceIp => text(record.source_ip_address.as_deref()),
            Dimension::Region => text(record.aws_region.as_deref()),
            Dimension::Account => text(
                record.recipient_account_id.as_deref().or(record
                    .user_identity
                    .as_ref()
                    .and_then(|i| i.account_id.as_deref())),
            ),
            Dimension::EventName => text(record.event_name.as_deref()),
            Dimension::UserAgentFamily => self
                .user_agent_family
                .get_or_init(|| record.user_agent_family())
                .clone(),
            Dimension::SourceNetwork => self
                .source_network
                .get_or_init(|| record.source_network())
                .clone(),
        }
    }

    /// `<rule>|<value>|<value>…`: a counter's group, a first-seen key, a group's identity.
    fn key(&self, rule: &str, dimensions: &[Dimension]) -> String {
        let mut key = rule.to_owned();
        for dimension in dimensions {
            key.push('|');
            key.push_str(&self.value(*dimension));
        }
        key
    }
}

/// What a record means for one rule it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A rule without state matched: alert.
    Alert(Alert),
    /// A threshold rule matched: `member` counts towards `counter` (rule, group, window); the
    /// alert is raised once, by whichever record makes the count reach `threshold`.
    Count {
        counter: String,
        member: String,
        threshold: u64,
        alert: Alert,
    },
    /// A first-seen rule matched: alert if `key` (rule and dimension values) was not seen in
    /// the last `days`.
    FirstSeen {
        key: String,
        days: u32,
        alert: Alert,
    },
}

/// The fields an alert carries: who, what, where, on which secret. CloudTrail never records a
/// secret value; keyward copies none of the parameter blobs besides secret ids.
fn evidence(
    record: &Record<'_>,
    facts: &Facts,
    redactor: &keyward_shared::redact::Redactor,
) -> BTreeMap<String, String> {
    let mut evidence = BTreeMap::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            // Redacted whole, then capped: a cut must not hide a value from the redactor.
            let value: String = redactor.redact(value).chars().take(256).collect();
            evidence.insert(key.to_owned(), value);
        }
    };
    put("event_id", record.event_id.as_deref());
    put("event_name", record.event_name.as_deref());
    put("event_source", record.event_source.as_deref());
    put("event_time", record.event_time.as_deref());
    put("region", record.aws_region.as_deref());
    put("source_ip", record.source_ip_address.as_deref());
    put("user_agent", record.user_agent.as_deref());
    put("error_code", record.error_code.as_deref());
    put("actor", Some(&facts.actor));
    put("identity_type", Some(&facts.identity_type));
    put("principal_arn", record.principal_arn().as_deref());
    put("secret", facts.secrets.first().map(String::as_str));
    put("vpc_endpoint", record.vpc_endpoint_id.as_deref());
    evidence
}
