//! Small pieces the integration tests, the fakes and the harness share: unique names, an HTTP
//! client for code under test, a secret tag, a reply read from a fake, and percent-encoding.

use std::time::Duration;

use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::redact::Redactor;

/// 12 random hex characters, for names that must not collide between tests sharing a moto.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// The production HTTP client, as a test configures it (a fresh redactor).
pub fn http_client(user_agent: &str, timeout: Duration, retry: RetryPolicy) -> HttpClient {
    HttpClient::new(user_agent, timeout, retry, Redactor::new()).expect("an HTTP client")
}

/// A Secrets Manager tag.
pub fn secret_tag(key: &str, value: &str) -> aws_sdk_secretsmanager::types::Tag {
    aws_sdk_secretsmanager::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// An answer of a fake, read whole: status, headers and the body as JSON (`Null` if it is not).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    /// Sends the request and reads the answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the fake");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The header's value, "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.header_value(name).unwrap_or("")
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The gateway policy with every binding bound to `issuer` (a fake issuer's URL), as an
/// operator writes `issuer:` for a GitHub Enterprise server.
pub fn policy_for_issuer(policy: &str, issuer: &str) -> String {
    let mut out = String::with_capacity(policy.len() + 256);
    for line in policy.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("  - name: ") {
            out.push_str(&format!("    issuer: {issuer}\n"));
        }
    }
    out
}

/// A copy of `infra/config` (the functions' configuration layer) whose gateway policy trusts
/// `issuer`; removed when dropped.
pub fn config_for_issuer(issuer: &str) -> anyhow::Result<tempfile::TempDir> {
    let source = crate::repo_root().join("infra/config");
    let dir = tempfile::tempdir()?;
    copy_dir(&source, dir.path())?;
    let policy = dir.path().join("gateway-policy.yaml");
    let text = std::fs::read_to_string(&policy)?;
    std::fs::write(&policy, policy_for_issuer(&text, issuer))?;
    Ok(dir)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
