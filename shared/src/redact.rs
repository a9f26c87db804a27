//! Keeping secret values out of logs, errors, events and alerts.
//!
//! Two layers: values keyward holds are wrapped in [`secrecy::SecretString`] (no `Display`, no
//! `Serialize`, a `Debug` that prints `[REDACTED]`), and any text that came from outside
//! (an HTTP error body, a database error, a URL) passes through [`Redactor`] before it may become
//! a [`SafeText`], the only free-text type the event catalogue accepts.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use secrecy::{ExposeSecret, SecretString};

pub const REDACTED: &str = "[REDACTED]";
/// Free text in events and errors is capped: CloudTrail caps `errorMessage` at 1 KB too.
pub const MAX_SAFE_TEXT: usize = 1024;
/// Values shorter than this are not registered: redacting "a" everywhere would wreck messages
/// while protecting nothing.
const MIN_REGISTERED_LEN: usize = 6;

fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: std::sync::OnceLock<Vec<(Regex, &'static str)>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            // scheme://user:password@host -> scheme://user:[REDACTED]@host
            (r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", "${1}[REDACTED]@"),
            // key=value and "key": "value" for secret-ish keys.
            (
                r#"(?i)((?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey|private_key|authorization|signature|sig|x-amz-signature|x-amz-security-token)["']?\s*[=:]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^"'&\s,;}]+"#,
                "${1}[REDACTED]",
            ),
            // Bearer/basic credentials anywhere else.
            (r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9\-._~+/]+=*", "${1} [REDACTED]"),
            // JWTs (three base64url segments starting with a JSON header).
            (r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "[REDACTED-JWT]"),
            // AWS access key ids.
            (r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", "[REDACTED-AKID]"),
        ]
        .into_iter()
        .map(|(re, replacement)| (Regex::new(re).expect("static redaction pattern compiles"), replacement))
        .collect()
    })
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
    known: Arc<RwLock<Vec<SecretString>>>,
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

    /// Registers a value that must never appear in output (a password, a token, a client secret).
    pub fn register(&self, value: &SecretString) {
        let exposed = value.expose_secret();
        if exposed.len() < MIN_REGISTERED_LEN {
            return;
        }
        if let Ok(mut known) = self.known.write()
            && !known.iter().any(|k| k.expose_secret() == exposed)
        {
            known.push(value.clone());
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
        }
        for (pattern, replacement) in patterns() {
            if pattern.is_match(&out) {
                out = Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
            }
        }
        out
    }

    pub fn safe(&self, text: &str) -> SafeText {
        SafeText::truncated(self.redact(text).into_owned())
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
            (
                "https://h/x?token=abc&x=1",
                "https://h/x?token=[REDACTED]&x=1",
            ),
            (
                "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
                "jwt [REDACTED-JWT]",
            ),
            ("key AKIAABCDEFGHIJKLMNOP used", "key [REDACTED-AKID] used"),
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
}
