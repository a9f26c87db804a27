//! Keeping secret values out of logs, errors, events and alerts.
//!
//! Two layers: values keyward holds are wrapped in [`secrecy::SecretString`] (no `Display`, no
//! `Serialize`, a `Debug` that prints `[REDACTED]`), and any text that came from outside
//! (an HTTP error body, a database error, a URL) passes through [`Redactor`] before it may become
//! a [`SafeText`], the only free-text type the event catalogue accepts.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use secrecy::{ExposeSecret, SecretString};

pub const REDACTED: &str = "[REDACTED]";
/// Free text in events and errors is capped: CloudTrail caps `errorMessage` at 1 KB too.
pub const MAX_SAFE_TEXT: usize = 1024;
/// Values shorter than this are not registered: redacting "a" everywhere would wreck messages
/// while protecting nothing.
const MIN_REGISTERED_LEN: usize = 6;
/// A text that ends with the start of a registered form (or starts with its end) was cut
/// through it, by keyward or by whoever sent it: that many characters or more are scrubbed.
const MIN_PARTIAL_LEN: usize = 4;

/// One secret-shaped pattern and what replaces a match, compiled the first time a text holds
/// one of its needles (most functions never meet one, so they never compile it).
///
/// The engine is `regex-lite`, which the AWS SDK's endpoint resolver links into every function
/// already: no second regex engine, no Unicode tables. Its classes (`\s`, `\b`) and `(?i)` are
/// ASCII-only; for these patterns that only ever widens a match (a non-ASCII character ends no
/// token), so it scrubs more, never less. `regex-lite` is slow on long inputs, and the forwarder
/// redacts every field of every matching CloudTrail record, so each pattern carries a necessary
/// condition checked first: a literal every match contains, and what must follow it.
struct Pattern {
    source: &'static str,
    replacement: &'static str,
    /// Every match contains one of these, followed as `follow` says. Lower-case when
    /// `ascii_case_insensitive`.
    needles: &'static [&'static str],
    /// The bytes a needle starts with, so most positions are passed over with one lookup.
    needle_starts: [bool; 256],
    follow: Follow,
    ascii_case_insensitive: bool,
    compiled: std::sync::OnceLock<regex_lite::Regex>,
}

/// What the pattern needs right after its needle.
#[derive(Clone, Copy)]
enum Follow {
    Anything,
    /// `[^/\s:@]*:[^@\s/]+@`: the needle (`://`) starts a URL's user information with a
    /// password.
    UrlPassword,
    /// `["']?\s*[=:]`: the needle ends a key that is being assigned, and is not right after a
    /// colon (the pattern's `(^|[^:])`; a longer key ending in the needle has `_` or `-` there).
    Assignment,
    /// `\s`: the needle is a word followed by a space.
    Space,
}

/// `regex-lite`'s `\s`: ASCII whitespace, vertical tab included.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Follow {
    fn admits(self, before: Option<u8>, rest: &[u8]) -> bool {
        match self {
            Self::Anything => true,
            Self::UrlPassword => {
                let ends_user = |&byte: &u8| matches!(byte, b'/' | b':' | b'@') || is_space(byte);
                let Some(colon) = rest.iter().position(ends_user) else {
                    return false;
                };
                if rest[colon] != b':' {
                    return false;
                }
                let password = &rest[colon + 1..];
                let ends_password = |&byte: &u8| matches!(byte, b'/' | b'@') || is_space(byte);
                password
                    .iter()
                    .position(ends_password)
                    .is_some_and(|end| end > 0 && password[end] == b'@')
            }
            Self::Space => rest.first().copied().is_some_and(is_space),
            Self::Assignment => {
                if before == Some(b':') {
                    return false;
                }
                let rest = match rest.first() {
                    Some(b'"' | b'\'') => &rest[1..],
                    _ => rest,
                };
                rest.iter()
                    .find(|&&byte| !is_space(byte))
                    .is_some_and(|byte| matches!(byte, b'=' | b':'))
            }
        }
    }
}

impl Pattern {
    const fn new(
        source: &'static str,
        replacement: &'static str,
        needles: &'static [&'static str],
        follow: Follow,
        ascii_case_insensitive: bool,
    ) -> Self {
        let mut needle_starts = [false; 256];
        let mut index = 0;
        while index < needles.len() {
            needle_starts[needles[index].as_bytes()[0] as usize] = true;
            index += 1;
        }
        Self {
            source,
            replacement,
            needles,
            needle_starts,
            follow,
            ascii_case_insensitive,
            compiled: std::sync::OnceLock::new(),
        }
    }

    fn regex(&self) -> &regex_lite::Regex {
        self.compiled.get_or_init(|| {
            regex_lite::Regex::new(self.source).expect("static redaction pattern compiles")
        })
    }

    /// Whether a match is possible at all (never false for a text the pattern matches).
    /// One pass over the bytes, ASCII case folded on the fly for a case-insensitive pattern:
    /// texts are short (fields, error messages), and building a substring searcher per needle,
    /// or a lower-case copy, per text costs more than the search.
    fn may_match(&self, haystack: &str) -> bool {
        let bytes = haystack.as_bytes();
        let fold = |byte: u8| {
            if self.ascii_case_insensitive {
                byte.to_ascii_lowercase()
            } else {
                byte
            }
        };
        bytes.iter().enumerate().any(|(at, &byte)| {
            self.needle_starts[usize::from(fold(byte))]
                && self.needles.iter().any(|needle| {
                    let candidate = &bytes[at..];
                    candidate.len() >= needle.len()
                        && candidate[..needle.len()]
                            .iter()
                            .zip(needle.as_bytes())
                            .all(|(&got, &want)| fold(got) == want)
                        && self.follow.admits(
                            at.checked_sub(1).map(|before| bytes[before]),
                            &candidate[needle.len()..],
                        )
                })
        })
    }
}

static PATTERNS: [Pattern; 6] = [
    // scheme://user:password@host -> scheme://user:[REDACTED]@host
    Pattern::new(
        r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@",
        "${1}[REDACTED]@",
        &["://"],
        Follow::UrlPassword,
        false,
    ),
    // key=value and "key": "value" for secret-ish keys. Not after a colon: that is an ARN's
    // resource type (`arn:aws:secretsmanager:…:secret:prod/db`), whose name is what an alert
    // must show. The needles are the words every key ends with.
    Pattern::new(
        r#"(?i)(^|[^:])((?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey|private_key|authorization|signature|sig|x-amz-signature|x-amz-security-token)["']?\s*[=:]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^"'&\s,;}]+"#,
        "${1}${2}[REDACTED]",
        &[
            "password",
            "passwd",
            "pwd",
            "secret",
            "token",
            "api_key",
            "apikey",
            "private_key",
            "authorization",
            "signature",
            "sig",
        ],
        Follow::Assignment,
        true,
    ),
    // Bearer/basic credentials anywhere else.
    Pattern::new(
        r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9\-._~+/]+=*",
        "${1} [REDACTED]",
        &["bearer", "basic", "token"],
        Follow::Space,
        true,
    ),
    // JWTs (three base64url segments starting with a JSON header).
    Pattern::new(
        r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        "[REDACTED-JWT]",
        &["eyJ"],
        Follow::Anything,
        false,
    ),
    // AWS access key ids.
    Pattern::new(
        r"\b(AKIA|ASIA)[A-Z0-9]{16}\b",
        "[REDACTED-AKID]",
        &["AKIA", "ASIA"],
        Follow::Anything,
        false,
    ),
    // Tokens whose format announces them, wherever they appear (a user name, a user agent):
    // GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Slack (`xoxb-`…), Stripe
    // (`sk_live_`…).
    Pattern::new(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|xox[abeprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,})",
        "[REDACTED-TOKEN]",
        &[
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "xox",
            "k_live_",
            "k_test_",
        ],
        Follow::Anything,
        false,
    ),
];

/// Applies every pattern that may match the text.
fn scrub_patterns<'a>(mut out: Cow<'a, str>) -> Cow<'a, str> {
    for pattern in &PATTERNS {
        if !pattern.may_match(&out) {
            continue;
        }
        if let Cow::Owned(replaced) = pattern.regex().replace_all(&out, pattern.replacement) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// The text of an error and its causes, `a: b: c`, each cause once: a cause whose text the
/// message already holds (a `#[error("...: {source}")]` or `transparent` wrapper) is not
/// repeated. Not yet safe: pass it through a [`Redactor`] before it is output.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Scrubs known secret values and secret-shaped substrings from text.
///
/// Cloning shares the registry, so a value registered by one component is scrubbed everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every registered value in each form it may be written in.
    known: Arc<RwLock<Vec<SecretString>>>,
}

/// The forms a value takes in text: as it is, JSON-escaped, URL- and form-encoded, hex, and
/// base64 (standard and URL-safe) at each of the three alignments it can have inside a longer
/// base64 string (only the characters that depend on the value alone).
fn encoded_forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![value.to_owned()];
    if let Ok(json) = serde_json::to_string(value) {
        let body = &json[1..json.len() - 1];
        forms.push(body.to_owned());
        forms.push(body.replace('/', "\\/"));
    }
    forms.push(percent_encode(value, false));
    forms.push(percent_encode(value, true));
    forms.push(hex::encode(value));
    forms.push(hex::encode_upper(value));
    let bytes = value.as_bytes();
    for lead in 0..3usize {
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(bytes);
        // Character i of the encoding carries bits [6i, 6i + 6): those wholly inside the
        // value's bits [8 * lead, 8 * (lead + len)) depend on the value alone.
        let first = (8 * lead).div_ceil(6);
        let end = (8 * (lead + bytes.len())) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if let Some(core) = encoded.get(first..end.min(encoded.len())) {
                forms.push(core.to_owned());
            }
        }
    }
    forms.retain(|f| f.len() >= MIN_REGISTERED_LEN);
    forms.sort();
    forms.dedup();
    forms
}

/// RFC 3986 percent-encoding of everything but unreserved characters; `form`: spaces as `+`
/// (application/x-www-form-urlencoded).
fn percent_encode(value: &str, form: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The longest `n >= MIN_PARTIAL_LEN` such that the text's last `n` bytes are the form's first
/// `n` (the text was cut through the form).
fn cut_tail(text: &str, form: &str) -> Option<usize> {
    let longest = text.len().min(form.len().saturating_sub(1));
    (MIN_PARTIAL_LEN..=longest)
        .rev()
        .find(|&n| form.is_char_boundary(n) && text.ends_with(&form[..n]))
}

/// The longest `n >= MIN_PARTIAL_LEN` such that the text's first `n` bytes are the form's last
/// `n` (the text starts inside the form).
fn cut_head(text: &str, form: &str) -> Option<usize> {
    let longest = text.len().min(form.len().saturating_sub(1));
    (MIN_PARTIAL_LEN..=longest).rev().find(|&n| {
        form.is_char_boundary(form.len() - n) && text.starts_with(&form[form.len() - n..])
    })
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.known.read().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("Redactor")
            .field("registered", &count)
            .finish()
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value that must never appear in output (a password, a token, a client
    /// secret), in every form it may be written in.
    pub fn register(&self, value: &SecretString) {
        let exposed = value.expose_secret();
        if exposed.len() < MIN_REGISTERED_LEN {
            return;
        }
        if let Ok(mut known) = self.known.write() {
            for form in encoded_forms(exposed) {
                if !known.iter().any(|k| k.expose_secret() == form) {
                    known.push(SecretString::from(form));
                }
            }
            // Longest first: a form that contains another is replaced whole.
            known.sort_by_key(|k| std::cmp::Reverse(k.expose_secret().len()));
        }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        if let Ok(known) = self.known.read() {
            for secret in known.iter() {
                let value = secret.expose_secret();
                if out.contains(value) {
                    out = Cow::Owned(out.replace(value, REDACTED));
                }
            }
            for secret in known.iter() {
                let value = secret.expose_secret();
                if let Some(n) = cut_tail(&out, value) {
                    let keep = out.len() - n;
                    out = Cow::Owned(format!("{}{REDACTED}", &out[..keep]));
                }
                if let Some(n) = cut_head(&out, value) {
                    out = Cow::Owned(format!("{REDACTED}{}", &out[n..]));
                }
            }
        }
        scrub_patterns(out)
    }

    pub fn safe(&self, text: &str) -> SafeText {
        SafeText::truncated(self.redact(text).into_owned())
    }

    /// At most `max` bytes of outside text (an HTTP error body): redacted whole first, so a
    /// value the cut would go through is still recognised, then cut.
    pub fn excerpt(&self, text: &str, max: usize) -> SafeText {
        let mut redacted = self.redact(text).into_owned();
        if redacted.len() > max {
            let mut cut = max;
            while !redacted.is_char_boundary(cut) {
                cut -= 1;
            }
            redacted.truncate(cut);
        }
        SafeText::truncated(redacted)
    }
}

/// Free text that has been through a [`Redactor`] and is capped in length. The only way to put a
/// message into a domain event or an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SafeText(String);

impl SafeText {
    /// Text written by keyward itself (never derived from a secret value).
    pub fn fixed(text: &'static str) -> Self {
        Self(text.to_owned())
    }

    fn truncated(mut text: String) -> Self {
        if text.len() > MAX_SAFE_TEXT {
            let mut cut = MAX_SAFE_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SafeText {
    /// Text read back from the bus is redacted again: a consumer must not trust a producer to
    /// have done it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(Redactor::new().safe(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_scrubbed() {
        let redactor = Redactor::new();
        let password = SecretString::from("hunter2-Very-Secret");
        redactor.register(&password);
        let clone = redactor.clone();
        let out = clone
            .redact("login failed for app with hunter2-Very-Secret (twice: hunter2-Very-Secret)");
        assert_eq!(
            out,
            "login failed for app with [REDACTED] (twice: [REDACTED])"
        );
    }

    /// The checks before each pattern are necessary conditions: whenever one says no, the
    /// pattern indeed finds nothing.
    #[test]
    fn the_checks_before_a_pattern_never_skip_a_match() {
        let pieces = [
            "password",
            "PassWd",
            "pwd",
            "client_secret",
            "TOKEN",
            "api_key",
            "apikey",
            "private_key",
            "Authorization",
            "x-amz-signature",
            "sig",
            "bearer",
            "Basic",
            "\"",
            "'",
            " ",
            "\t",
            "\u{b}",
            "=",
            ":",
            "://",
            "@",
            "/",
            "u",
            "abc123XYZ",
            "eyJhbGciOi",
            ".",
            "-",
            "_",
            "AKIA",
            "ASIA",
            "ABCDEFGHIJKLMNOP",
            "ghp_",
            "github_pat_",
            "xoxb-",
            "sk_live_",
            "rk_test_",
            "0123456789abcdef0123456789abcdef",
            "é",
            "\u{a0}",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut skipped = 0;
        for _ in 0..20_000 {
            let text: String = (0..rng.usize(1..12))
                .map(|_| pieces[rng.usize(0..pieces.len())])
                .collect();
            for pattern in &PATTERNS {
                if !pattern.may_match(&text) {
                    skipped += 1;
                    assert!(
                        !pattern.regex().is_match(&text),
                        "{} skipped on {text:?}, which it matches",
                        pattern.source
                    );
                }
            }
        }
        assert!(
            skipped > 10_000,
            "the checks must skip most random texts: {skipped}"
        );
    }

    /// The pattern engine's classes are ASCII: a non-ASCII character next to a secret never
    /// shields it, it only widens what is scrubbed.
    #[test]
    fn non_ascii_neighbours_never_shield_a_secret() {
        let r = Redactor::new();
        assert_eq!(
            r.redact("key AKIAABCDEFGHIJKLMNOPé"),
            "key [REDACTED-AKID]é"
        );
        assert_eq!(
            r.redact("password=hunter2\u{a0}then more"),
            "password=[REDACTED] more"
        );
        assert_eq!(r.redact("PASSWORD: Bearer zzz"), "PASSWORD: [REDACTED]");
    }

    #[test]
    fn secret_shapes_are_scrubbed() {
        let r = Redactor::new();
        let cases = [
            (
                "postgres://app:p%40ss@db.internal:5432/x",
                "postgres://app:[REDACTED]@db.internal:5432/x",
            ),
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: [REDACTED]",
            ),
            ("got bearer tok_12345", "got bearer [REDACTED]"),
            (
                r#"{"client_secret":"s3cr3t","id":"x"}"#,
                r#"{"client_secret":"[REDACTED]","id":"x"}"#,
            ),
            ("password=abc&user=bob", "password=[REDACTED]&user=bob"),
            ("db_password: hunter22", "db_password: [REDACTED]"),
            // An ARN's resource type is not a key: the secret's name stays.
            (
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
            ),
            (
                "https://h/x?token=abc&x=1",
                "https://h/x?token=[REDACTED]&x=1",
            ),
            (
                "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
                "jwt [REDACTED-JWT]",
            ),
            ("key AKIAABCDEFGHIJKLMNOP used", "key [REDACTED-AKID] used"),
            (
                "user mallory ghp_0123456789abcdefABCDEF0123456789abcd here",
                "user mallory [REDACTED-TOKEN] here",
            ),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123",
                "[REDACTED-TOKEN]",
            ),
            (
                "hook xoxb-123456789012-abcdefABCDEF",
                "hook [REDACTED-TOKEN]",
            ),
            ("key sk_live_0123456789abcdefXYZ", "key [REDACTED-TOKEN]"),
            // Not tokens: the prefix alone, or too short to be one.
            ("ghp_ is GitHub's prefix", "ghp_ is GitHub's prefix"),
            ("sk_live_short", "sk_live_short"),
        ];
        for (input, expected) in cases {
            assert_eq!(r.redact(input), expected, "{input}");
        }
    }

    #[test]
    fn short_values_are_not_registered() {
        let r = Redactor::new();
        r.register(&SecretString::from("ab"));
        assert_eq!(r.redact("about"), "about");
    }

    #[test]
    fn safe_text_is_capped_on_a_char_boundary() {
        let text = "é".repeat(2000);
        let safe = Redactor::new().safe(&text);
        assert!(safe.as_str().len() <= MAX_SAFE_TEXT + '…'.len_utf8());
        assert!(safe.as_str().ends_with('…'));
    }

    #[test]
    fn deserialized_safe_text_is_redacted_again() {
        let safe: SafeText = serde_json::from_str(r#""password=letmein""#).unwrap();
        assert_eq!(safe.as_str(), "password=[REDACTED]");
    }

    #[test]
    fn secret_strings_do_not_print() {
        let s = SecretString::from("do-not-print-me");
        assert!(!format!("{s:?}").contains("do-not-print-me"));
    }

    #[test]
    fn registered_values_are_scrubbed_in_every_encoding() {
        use base64::Engine as _;
        let r = Redactor::new();
        let value = "p@ss/wörd \"quoted\" &more";
        r.register(&SecretString::from(value));
        let b64 = base64::engine::general_purpose::STANDARD;
        let json = serde_json::to_string(&serde_json::json!({ "v": value })).unwrap();
        let basic = b64.encode(format!("user:{value}"));
        for text in [
            json,
            format!("https://h/cb?x={}", percent_encode(value, false)),
            format!("body=a&p={}", percent_encode(value, true)),
            format!("Authorization: Basic {basic}"),
            format!("raw {}", b64.encode(value)),
            format!("hex {}", hex::encode(value)),
        ] {
            let out = r.redact(&text);
            assert!(out.contains(REDACTED), "{text} -> {out}");
            for window in ["ss/w", "quoted", "more", "wörd"] {
                assert!(!out.contains(window), "{text} -> {out}");
            }
        }
    }

    #[test]
    fn an_error_body_cut_through_a_value_hides_its_start() {
        let r = Redactor::new();
        r.register(&SecretString::from("Zx9-client-secret-value-42"));
        let body = format!(
            "{}{}",
            "x".repeat(500),
            "error: Zx9-client-secret-value-42 rejected"
        );
        let excerpt = r.excerpt(&body, 512);
        assert!(!excerpt.as_str().contains("Zx9-"), "{excerpt}");
        // Text already cut elsewhere (a service's own limit) ends in the value's start.
        let cut = r.redact("upstream said: Zx9-client-sec");
        assert_eq!(cut, format!("upstream said: {REDACTED}"));
        let head = r.redact("ret-value-42 was refused");
        assert_eq!(head, format!("{REDACTED} was refused"));
    }

    /// Random values, each in a random encoding, embedded in filler that shares no character
    /// with any encoding, cut at a random point (the text before the cut, the text after it, an
    /// excerpt capped there): no run of four characters of the encoded value survives.
    #[test]
    fn property_no_encoded_window_survives_any_cut() {
        use base64::Engine as _;
        let mut rng = fastrand::Rng::with_seed(0x5EC12E7);
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()*+,-./:;<=>?@[]^_`{|}~\" \\";
        for _ in 0..400 {
            let len = rng.usize(MIN_REGISTERED_LEN..40);
            let value: String = (0..len)
                .map(|_| ALPHABET[rng.usize(0..ALPHABET.len())] as char)
                .collect();
            let r = Redactor::new();
            r.register(&SecretString::from(value.clone()));
            let lead = "\u{2028}".repeat(rng.usize(0..3));
            let encoded = match rng.u8(0..5) {
                0 => value.clone(),
                1 => serde_json::to_string(&value).unwrap(),
                2 => percent_encode(&value, rng.bool()),
                3 => hex::encode(&value),
                _ => {
                    let mut bytes = vec![0xA5u8; rng.usize(0..3)];
                    bytes.extend_from_slice(value.as_bytes());
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                }
            };
            let filler = "\u{2591}".repeat(rng.usize(0..40));
            let text = format!("{lead}{filler}{encoded}{filler}");
            let at = rng.usize(0..=text.len());
            let at = (0..=at).rev().find(|&c| text.is_char_boundary(c)).unwrap();
            for out in [
                r.redact(&text[..at]).into_owned(),
                r.redact(&text[at..]).into_owned(),
                r.excerpt(&text, at).as_str().to_owned(),
                r.safe(&text).as_str().to_owned(),
            ] {
                let core = encoded.trim_matches('"');
                let chars: Vec<char> = core.chars().collect();
                // base64 and hex edges mix in the filler's bits: check the value's own core.
                let inner = if chars.len() > 8 {
                    &chars[2..chars.len() - 2]
                } else {
                    &chars[..]
                };
                for window in inner.windows(MIN_PARTIAL_LEN) {
                    let window: String = window.iter().collect();
                    assert!(
                        !out.contains(&window),
                        "value {value:?} as {encoded:?}: {window:?} survives in {out:?}"
                    );
                }
            }
        }
    }
}
