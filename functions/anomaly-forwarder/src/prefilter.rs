//! What every rule requires of a record before its pattern can match, checked before the record
//! is parsed. Most of a trail is other services' calls: a record that no rule could match skips
//! the parse, the facts and the automaton.
//!
//! Derived from the rules' patterns, so it never changes what matches: when each rule names
//! exact `eventSource` values (and maybe exact `eventName` values) or exact `userIdentity.type`
//! values, a record must carry one of them. A rule without such a constraint turns the
//! prefilter off.

use std::collections::HashSet;

use memchr::memmem::Finder;

use crate::record::Record;
use crate::rules::RuleDecl;

#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    /// Every source a rule names: the exact check on a parsed record.
    event_sources: HashSet<String>,
    /// Every identity type a rule names: the exact check on a parsed record.
    identity_types: HashSet<String>,
    /// The check on raw text; without it every record is parsed.
    raw: Option<RawCheck>,
}

/// The values a record's raw text must hold under their keys for the record to be parsed.
/// A superset check: every `"eventSource"` and `"eventName"` key of the text, and every
/// identity type value after a `"type"` key, is looked at wherever it is nested, so the
/// record's own is always among them; the parse decides.
#[derive(Debug, Clone)]
struct RawCheck {
    /// `"event`: one pass finds both keys (and the record's other `event…` keys, skipped).
    event_key: Finder<'static>,
    /// Sources of the rules that name no event names: any call to them may match.
    sources: HashSet<String>,
    /// The event names of rules that name them exactly (rarer than their source: a tampering
    /// rule on a few S3 calls must not admit every S3 data event for parsing).
    names: HashSet<String>,
    /// Each identity type as a quoted value: searched for itself (a record holds a few
    /// `"type"` keys but rarely, say, `"Root"`), then its key checked.
    identity_types: Vec<Finder<'static>>,
    /// `\u`: a key or value spelled with it would hide from the search, so such a record is
    /// parsed.
    unicode_escape: Finder<'static>,
}

/// Where a key's occurrence leads.
enum Occurrence<'r> {
    /// A plain string value (no escapes).
    Plain(&'r str),
    /// A string value with an escape: it could spell anything once decoded.
    Escaped,
    /// Not a key with a string value (the text was inside a string, or the value is not a
    /// string).
    Other,
}

impl RawCheck {
    /// `None` when an identity type holds a character JSON may also write as a short escape
    /// (`"`, `\`, `/`, a control character): its plain spelling would not be enough to look
    /// for, and every record is parsed instead.
    fn new(
        sources: HashSet<String>,
        names: HashSet<String>,
        identity_types: &HashSet<String>,
    ) -> Option<Self> {
        let escapable = |value: &String| {
            value
                .chars()
                .any(|c| matches!(c, '"' | '\\' | '/') || c.is_control())
        };
        if identity_types.iter().any(escapable) {
            return None;
        }
        Some(Self {
            event_key: Finder::new(b"\"event").into_owned(),
            sources,
            names,
            identity_types: identity_types
                .iter()
                .map(|value| Finder::new(format!("\"{value}\"").as_bytes()).into_owned())
                .collect(),
            unicode_escape: Finder::new(b"\\u").into_owned(),
        })
    }

    // One vectorised substring search (memchr's) per thing looked for, each a pass over the
    // record, has measured faster than one multi-pattern pass: every key starts with `"`, which
    // the multi-pattern searchers stop at all over a JSON text.
    fn admits(&self, raw: &str) -> bool {
        self.unicode_escape.find(raw.as_bytes()).is_some()
            || self.event_key_admits(raw)
            || self.identity_type_admits(raw)
    }

    fn event_key_admits(&self, raw: &str) -> bool {
        let key_start = self.event_key.needle().len();
        self.event_key.find_iter(raw.as_bytes()).any(|at| {
            let rest = &raw[at + key_start..];
            let (values, after_key) = if let Some(after) = rest.strip_prefix("Source\"") {
                (&self.sources, after)
            } else if let Some(after) = rest.strip_prefix("Name\"") {
                (&self.names, after)
            } else {
                return false;
            };
            match value_after(after_key) {
                Occurrence::Plain(value) => values.contains(value),
                Occurrence::Escaped => true,
                Occurrence::Other => false,
            }
        })
    }

    fn identity_type_admits(&self, raw: &str) -> bool {
        self.identity_types.iter().any(|value| {
            value.find_iter(raw.as_bytes()).any(|at| {
                let before = raw[..at].trim_end();
                before
                    .strip_suffix(':')
                    .is_some_and(|key| key.trim_end().ends_with("\"type\""))
            })
        })
    }
}

/// The string value after a key: `<ws> : <ws> "value"`.
fn value_after(rest: &str) -> Occurrence<'_> {
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return Occurrence::Other;
    };
    let Some(value) = rest.trim_start().strip_prefix('"') else {
        return Occurrence::Other;
    };
    match value.find(['"', '\\']) {
        Some(end) if value.as_bytes()[end] == b'"' => Occurrence::Plain(&value[..end]),
        Some(_) => Occurrence::Escaped,
        // The text ends inside the string: the parse will reject it; let it.
        None => Occurrence::Escaped,
    }
}

/// An exact list of strings in a pattern (`eventName: [A, B]`); `None` for anything else
/// (prefix, anything-but, numbers...), which the prefilter cannot reason about.
fn exact_strings(values: Option<&serde_json::Value>) -> Option<Vec<String>> {
    values?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

impl Prefilter {
    pub(crate) fn from_rules(rules: &[RuleDecl]) -> Option<Self> {
        let mut event_sources = HashSet::new();
        let mut identity_types = HashSet::new();
        let mut raw_sources = HashSet::new();
        let mut raw_names = HashSet::new();
        for rule in rules {
            if let Some(sources) = exact_strings(rule.pattern.get("eventSource")) {
                match exact_strings(rule.pattern.get("eventName")) {
                    Some(names) => raw_names.extend(names),
                    None => raw_sources.extend(sources.iter().cloned()),
                }
                event_sources.extend(sources);
            } else if let Some(types) = exact_strings(
                rule.pattern
                    .get("userIdentity")
                    .and_then(|identity| identity.get("type")),
            ) {
                identity_types.extend(types);
            } else {
                return None;
            }
        }
        Some(Self {
            raw: RawCheck::new(raw_sources, raw_names, &identity_types),
            event_sources,
            identity_types,
        })
    }

    /// False when the raw record cannot pass [`Self::admits`]: a cheap look at its bytes.
    pub(crate) fn may_admit(&self, raw: &str) -> bool {
        self.raw.as_ref().is_none_or(|check| check.admits(raw))
    }

    pub(crate) fn admits(&self, record: &Record<'_>) -> bool {
        record
            .event_source
            .as_deref()
            .is_some_and(|s| self.event_sources.contains(s))
            || record
                .user_identity
                .as_ref()
                .and_then(|i| i.kind.as_deref())
                .is_some_and(|t| self.identity_types.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefilter(yaml: &str) -> Option<Prefilter> {
        let file: crate::rules::RuleFile = serde_yaml_ng::from_str(yaml).unwrap();
        Prefilter::from_rules(&file.rules)
    }

    const RULES: &str = r#"
version: 1
rules:
  - id: reads
    severity: low
    summary: s
    match: { eventSource: [secretsmanager.amazonaws.com] }
  - id: bucket-policy
    severity: high
    summary: s
    match: { eventSource: [s3.amazonaws.com], eventName: [PutBucketPolicy] }
  - id: root
    severity: high
    summary: s
    match: { userIdentity: { type: [Root] } }
"#;

    #[test]
    fn admits_records_naming_a_rule_value_under_its_key() {
        let filter = prefilter(RULES).expect("every rule is constrained");
        let admitted = [
            r#"{"eventSource":"secretsmanager.amazonaws.com","eventName":"ListSecrets"}"#,
            r#"{"eventSource" : "s3.amazonaws.com", "eventName" :"PutBucketPolicy"}"#,
            r#"{"userIdentity":{"type":"Root"},"eventSource":"ec2.amazonaws.com"}"#,
            r#"{"userIdentity":{"type" :  "Root"}}"#,
            // Escapes could spell a value: parsed, never guessed.
            r#"{"eventSource":"secretsmanager\u002eamazonaws.com"}"#,
            r#"{"event\u0053ource":"secretsmanager.amazonaws.com"}"#,
            r#"{"eventSource":"secretsmanager.amazonaws.com\/"}"#,
        ];
        for raw in admitted {
            assert!(filter.may_admit(raw), "{raw}");
        }
    }

    #[test]
    fn turns_away_records_no_rule_could_match() {
        let filter = prefilter(RULES).expect("every rule is constrained");
        let refused = [
            // An S3 data event: the source alone does not admit it, its rule names its calls.
            r#"{"eventSource":"s3.amazonaws.com","eventName":"GetObject"}"#,
            // The values appear, but not under their keys.
            r#"{"eventSource":"ec2.amazonaws.com","requestParameters":{"name":"secretsmanager.amazonaws.com","kind":"Root"}}"#,
            r#"{"userIdentity":{"type":"IAMUser"},"eventSource":"sts.amazonaws.com"}"#,
            "{}",
        ];
        for raw in refused {
            assert!(!filter.may_admit(raw), "{raw}");
        }
    }

    #[test]
    fn a_rule_without_an_exact_source_or_identity_turns_it_off() {
        let yaml = format!(
            "{RULES}  - id: any-denied\n    severity: low\n    summary: s\n    match: {{ errorCode: [AccessDenied] }}\n"
        );
        assert!(prefilter(&yaml).is_none());
    }
}
