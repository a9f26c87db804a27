//! How a principal calls, reduced to what stays stable across its own routine calls: the
//! client's family (tool and major version, from the user agent) and the source network (a /24
//! or /48, a VPC endpoint, or the AWS service that called). A principal's first call by a new
//! family or from a new network is what tells a stolen credential from the same credential's
//! usual automation; a full user-agent string or a single address changes far too often to.

use std::net::IpAddr;

/// Longest family kept: enough for any tool name, bounded for state keys and labels.
const MAX_FAMILY_LEN: usize = 48;

/// Product tokens that describe the runtime, not the tool (AWS SDK user agents append them:
/// `md/…`, `os/…`, `lang/…`, `exec-env/…`; partner prefixes `APN/1.0 HashiCorp/1.0`).
const RUNTIME_TOKENS: &[&str] = &[
    "apn",
    "hashicorp",
    "md",
    "os",
    "lang",
    "exec-env",
    "ua",
    "api",
    "cfg",
    "m",
    "app",
];

/// The user agent's family: `aws-cli/2`, `boto3/1`, `terraform/1`, `browser`, or a bare tool
/// name with its run id cut (`stratus-red-team_<uuid>` → `stratus-red-team`). Empty in, empty
/// out.
pub fn user_agent_family(user_agent: &str) -> String {
    let user_agent = user_agent
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tokens: Vec<&str> = user_agent.split_whitespace().collect();
    // Terraform names itself after partner tokens, and again as its provider: one family.
    if let Some(version) = tokens
        .iter()
        .find_map(|t| product(t).filter(|(name, _)| name.eq_ignore_ascii_case("terraform")))
        .map(|(_, version)| version)
    {
        return format!("terraform/{}", major(version));
    }
    let Some(first) = tokens.iter().copied().find(|t| {
        product(t)
            .is_none_or(|(name, _)| !RUNTIME_TOKENS.contains(&name.to_ascii_lowercase().as_str()))
    }) else {
        return String::new();
    };
    let family = match product(first) {
        Some((name, _)) if name.eq_ignore_ascii_case("mozilla") => "browser".to_owned(),
        Some((name, version)) => format!("{}/{}", name.to_ascii_lowercase(), major(version)),
        None => bare_tool(first),
    };
    family
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        .take(MAX_FAMILY_LEN)
        .collect()
}

/// `name/version` → (name, version).
fn product(token: &str) -> Option<(&str, &str)> {
    token.split_once('/').filter(|(name, _)| !name.is_empty())
}

/// The leading number of a version (`2.15.30` → `2`, `v5` → `5`); `0` when there is none.
fn major(version: &str) -> &str {
    let version = version.trim_start_matches(['v', 'V']);
    let end = version
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version.len());
    if end == 0 { "0" } else { &version[..end] }
}

/// A token without a version: lower-cased, a run id after `_` cut (tools that stamp each run).
fn bare_tool(token: &str) -> String {
    token
        .split('_')
        .next()
        .unwrap_or(token)
        .to_ascii_lowercase()
}

/// Where a call came from, coarsely: the VPC endpoint when there is one (private addresses
/// repeat across VPCs), else the /24 (IPv4) or /48 (IPv6) network, else the service name AWS
/// records for calls it makes on a principal's behalf.
pub fn source_network(source_ip: &str, vpc_endpoint: Option<&str>) -> String {
    if let Some(endpoint) = vpc_endpoint.filter(|e| !e.is_empty()) {
        return endpoint.to_owned();
    }
    match source_ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => source_ip.trim().to_ascii_lowercase(),
    }
}

/// The organisation's own automation: principals and client families whose novel calls are
/// expected (`KEYWARD_AUTOMATION_PRINCIPALS`, `KEYWARD_AUTOMATION_USER_AGENTS`).
#[derive(Debug, Clone, Default)]
pub struct KnownAutomation {
    /// Principal ARNs (a role's ARN covers its sessions).
    pub principals: Vec<String>,
    /// Families as [`user_agent_family`] writes them (`terraform/1`), or a name alone
    /// (`terraform`) for every version.
    pub user_agent_families: Vec<String>,
}

impl KnownAutomation {
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty() && self.user_agent_families.is_empty()
    }

    pub fn recognises(&self, principal_arn: Option<&str>, family: &str) -> bool {
        let principal = principal_arn.is_some_and(|p| self.principals.iter().any(|a| a == p));
        let tool = !family.is_empty()
            && self.user_agent_families.iter().any(|known| {
                known == family
                    || (!known.contains('/') && family.split('/').next() == Some(known.as_str()))
            });
        principal || tool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_the_tool_and_its_major_version() {
        for (agent, family) in [
            (
                "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2 prompt/off command/secretsmanager.get-secret-value",
                "aws-cli/2",
            ),
            (
                "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.12.1",
                "boto3/1",
            ),
            (
                "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux api/secretsmanager#1.32.3",
                "aws-sdk-go-v2/1",
            ),
            (
                "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.31.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.24.0",
                "terraform/1",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                "browser",
            ),
            (
                "stratus-red-team_0a05817a-84d2-40d7-afde-8311715b1ee6",
                "stratus-red-team",
            ),
            ("[aws-cli/2.9.0 Python/3.9.11]", "aws-cli/2"),
            ("AWS Internal", "aws"),
            (
                "secretsmanager.amazonaws.com",
                "secretsmanager.amazonaws.com",
            ),
            ("keyward/v3beta", "keyward/3"),
            ("", ""),
        ] {
            assert_eq!(user_agent_family(agent), family, "{agent}");
        }
    }

    #[test]
    fn a_family_cannot_smuggle_text_into_keys_or_labels() {
        let family = user_agent_family(&format!("evil\"}}{}/1.0", "x".repeat(200)));
        assert!(family.len() <= MAX_FAMILY_LEN);
        assert!(!family.contains('"') && !family.contains('}'));
    }

    #[test]
    fn networks_are_coarse() {
        assert_eq!(source_network("203.0.113.9", None), "203.0.113.0/24");
        assert_eq!(source_network("2001:db8:1:2::7", None), "2001:db8:1::/48");
        assert_eq!(
            source_network("10.0.0.5", Some("vpce-0a1b2c3d")),
            "vpce-0a1b2c3d"
        );
        assert_eq!(
            source_network("lambda.amazonaws.com", None),
            "lambda.amazonaws.com"
        );
    }

    #[test]
    fn known_automation_by_principal_or_family() {
        let known = KnownAutomation {
            principals: vec!["arn:aws:iam::123456789012:role/deployer".into()],
            user_agent_families: vec!["terraform".into(), "aws-sdk-rust/1".into()],
        };
        assert!(known.recognises(Some("arn:aws:iam::123456789012:role/deployer"), "aws-cli/2"));
        assert!(known.recognises(None, "terraform/1"));
        assert!(known.recognises(None, "aws-sdk-rust/1"));
        assert!(!known.recognises(None, "aws-sdk-rust/2"));
        assert!(!known.recognises(Some("arn:aws:iam::123456789012:role/other"), "aws-cli/2"));
        assert!(!known.recognises(None, ""));
    }
}
