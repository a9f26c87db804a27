//! The CI gateway's part: the GitHub OIDC issuer CI workflows' tokens come from, the gateway's
//! network allow-lists, and calling it as its Function URL would.

use anyhow::Result;

use super::{INVOKE_TIMEOUT, LocalStack, Part};
use crate::fakes::oidc::{FakeIssuer, RunningIssuer};

/// The CI gateway's audience in the local stack (the template parameter `GatewayAudience`).
pub const GATEWAY_AUDIENCE: &str = "https://keyward.acme.test/ci";

pub struct Gateway {
    /// The GitHub OIDC issuer CI workflows' tokens come from.
    pub oidc: RunningIssuer,
    /// The functions' configuration layer, its gateway policy bound to the fake issuer.
    config: tempfile::TempDir,
}

impl Gateway {
    pub async fn create() -> Result<Self> {
        let oidc = FakeIssuer::start().await?;
        let config = crate::support::config_for_issuer(&oidc.issuer())?;
        Ok(Self { oidc, config })
    }
}

impl Part for Gateway {
    fn env(&self, var: &str) -> Option<String> {
        Some(match var {
            "KEYWARD_ALLOWED_CIDRS" => "10.0.0.0/8".into(),
            "KEYWARD_ALLOWED_VPC_ENDPOINTS" => String::new(),
            "KEYWARD_OIDC_AUDIENCE" => GATEWAY_AUDIENCE.into(),
            "KEYWARD_OIDC_ISSUERS" => self.oidc.issuer(),
            "KEYWARD_CONFIG_DIR" => self.config.path().display().to_string(),
            _ => return None,
        })
    }
}

/// A Function URL request (payload format 2.0): `POST path` with a bearer token and JSON body.
fn function_url_event(path: &str, token: &str, body: &serde_json::Value) -> serde_json::Value {
    let now = chrono::Utc::now();
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {token}"),
            "content-type": "application/json",
            "host": "keyward.lambda-url.eu-west-1.on.aws",
            "user-agent": "curl/8.5.0"
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "keyward", "domainName": "keyward.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "keyward",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.50", "userAgent": "curl/8.5.0"},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(), "timeEpoch": now.timestamp_millis()
        },
        "body": body.to_string(),
        "isBase64Encoded": false
    })
}

impl LocalStack {
    /// Calls the CI gateway as its Function URL would (payload format 2.0); returns the status
    /// and the JSON body.
    pub async fn call_gateway(
        &mut self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
        note: &str,
    ) -> Result<(u16, serde_json::Value)> {
        let function = self.function("CiGatewayFunction")?;
        let name = function.name.clone();
        let response = function
            .invoke(&function_url_event(path, token, body), INVOKE_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("the gateway failed: {e}"))?;
        let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
        let body: serde_json::Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or_default();
        let detail = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| match body.get("ready") {
                Some(ready) => format!("ready: {ready}"),
                None => body.to_string().chars().take(80).collect(),
            });
        let label = if note.is_empty() {
            format!("POST {path}")
        } else {
            format!("POST {path} [{note}]")
        };
        self.record(&label, "Function URL", &name, format!("{status} {detail}"));
        Ok((status, body))
    }
}
