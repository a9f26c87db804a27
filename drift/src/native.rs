//! The cloud's own checks (`ENABLE_NATIVE_CHECKS`): AWS Config's verdicts on the Secrets
//! Manager managed rules, read with `GetComplianceDetailsByConfigRule` (`NON_COMPLIANT` only,
//! paginated), become findings beside keyward's own. Each finding is
//! `native-non-compliant:<secret>:<rule>`; evidence is the rule and Config's annotation. Only
//! AWS is governed here: Azure and GCP are refused at configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_config::types::ComplianceType;
use futures::future::BoxFuture;
use keyward_shared::adapters::aws::sdk_error_text;
use keyward_shared::config::{ConfigError, EnvSource, flag};
use keyward_shared::ports::CatalogEntry;
use keyward_shared::redact::SafeText;

use crate::findings::{Finding, FindingKind};

/// The AWS Config managed rules for Secrets Manager, read when no override names others.
pub const SECRETS_MANAGER_RULES: [&str; 5] = [
    "secretsmanager-rotation-enabled-check",
    "secretsmanager-scheduled-rotation-success-check",
    "secretsmanager-secret-periodic-rotation",
    "secretsmanager-secret-unused",
    "secretsmanager-using-cmk",
];

/// `GetComplianceDetailsByConfigRule` pages followed at most (100 results each).
const PAGE_CAP: usize = 100;

/// One resource a rule judged `NON_COMPLIANT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonCompliance {
    /// The resource id Config reports (for a secret, its ARN).
    pub resource_id: String,
    pub annotation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("AWS Config GetComplianceDetailsByConfigRule for {rule}: {reason}")]
pub struct NativeError {
    pub rule: String,
    pub reason: SafeText,
}

/// AWS Config's compliance results, one rule at a time.
pub trait ConfigCompliance: Send + Sync {
    fn non_compliant<'a>(
        &'a self,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NonCompliance>, NativeError>>;
}

/// Native checks as configured: the port and the rules it reads.
#[derive(Clone)]
pub struct NativeChecks {
    pub config: Arc<dyn ConfigCompliance>,
    pub rules: Vec<String>,
}

/// `ENABLE_NATIVE_CHECKS` (default false), `CLOUD_PROVIDER` (default `aws`) and
/// `NATIVE_CHECKS_AWS_COMMAND`: a Lambda runs no shell command, so the override is the AWS
/// Config rules to read, comma-separated (default [`SECRETS_MANAGER_RULES`]). Azure and GCP
/// (`CLOUD_PROVIDER`, or their `NATIVE_CHECKS_*_COMMAND`) are refused.
pub fn native_rules(env: &dyn EnvSource) -> Result<Option<Vec<String>>, ConfigError> {
    if !flag(env, "ENABLE_NATIVE_CHECKS", false)? {
        return Ok(None);
    }
    let not_supported = |name: &'static str, what: &str| ConfigError::Invalid {
        name,
        reason: format!(
            "{what}: keyward governs AWS Secrets Manager only; native checks for Azure and GCP are not supported"
        ),
    };
    let provider = env
        .get("CLOUD_PROVIDER")
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "aws".into());
    match provider.as_str() {
        "aws" => {}
        "azure" | "gcp" => return Err(not_supported("CLOUD_PROVIDER", &provider)),
        other => {
            return Err(ConfigError::Invalid {
                name: "CLOUD_PROVIDER",
                reason: format!("`{other}` is not one of aws, azure, gcp"),
            });
        }
    }
    for name in ["NATIVE_CHECKS_AZURE_COMMAND", "NATIVE_CHECKS_GCP_COMMAND"] {
        if env.get(name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(not_supported(name, "set"));
        }
    }
    let rules: Vec<String> = match env.get("NATIVE_CHECKS_AWS_COMMAND") {
        Some(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect(),
        _ => SECRETS_MANAGER_RULES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    };
    // Config rule names: letters, digits, `-` and `_`, at most 128 characters.
    if let Some(bad) = rules.iter().find(|r| {
        r.len() > 128
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(ConfigError::Invalid {
            name: "NATIVE_CHECKS_AWS_COMMAND",
            reason: format!("`{bad}` is not an AWS Config rule name (a comma-separated list)"),
        });
    }
    Ok(Some(rules))
}

/// Every rule's `NON_COMPLIANT` secrets among `actual` (by ARN), as findings.
pub async fn findings(
    native: &NativeChecks,
    actual: &[&CatalogEntry],
) -> Result<Vec<Finding>, NativeError> {
    let by_arn: BTreeMap<&str, &str> = actual
        .iter()
        .map(|e| (e.arn.as_str(), e.name.as_str()))
        .collect();
    let mut out = Vec::new();
    for rule in &native.rules {
        for result in native.config.non_compliant(rule).await? {
            let Some(secret) = by_arn.get(result.resource_id.as_str()) else {
                // Another prefix's or another scope's secret.
                continue;
            };
            let mut finding = Finding::new(FindingKind::NativeNonCompliant, secret, Some(rule))
                .with("rule", rule)
                .with("compliance", "NON_COMPLIANT");
            if let Some(annotation) = result.annotation {
                finding = finding.with("annotation", annotation);
            }
            out.push(finding);
        }
    }
    Ok(out)
}

/// Native checks through AWS Config in the function's own account and region.
pub fn aws_native_checks(
    sdk: &keyward_shared::adapters::aws::SdkConfig,
    rules: Vec<String>,
) -> NativeChecks {
    NativeChecks {
        config: Arc::new(AwsConfigCompliance {
            client: aws_sdk_config::Client::new(sdk),
        }),
        rules,
    }
}

/// The AWS Config adapter.
pub struct AwsConfigCompliance {
    pub client: aws_sdk_config::Client,
}

impl AwsConfigCompliance {
    async fn read(&self, rule: &str) -> Result<Vec<NonCompliance>, NativeError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..PAGE_CAP {
            let page = self
                .client
                .get_compliance_details_by_config_rule()
                .config_rule_name(rule)
                .compliance_types(ComplianceType::NonCompliant)
                .limit(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| NativeError {
                    rule: rule.to_owned(),
                    reason: sdk_error_text(&e),
                })?;
            for result in page.evaluation_results() {
                let qualifier = result
                    .evaluation_result_identifier()
                    .and_then(|i| i.evaluation_result_qualifier());
                let Some(resource_id) = qualifier.and_then(|q| q.resource_id()) else {
                    continue;
                };
                if result.compliance_type() != Some(&ComplianceType::NonCompliant) {
                    continue;
                }
                out.push(NonCompliance {
                    resource_id: resource_id.to_owned(),
                    annotation: result.annotation().map(str::to_owned),
                });
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
        Err(NativeError {
            rule: rule.to_owned(),
            reason: SafeText::fixed("more pages than the detector follows"),
        })
    }
}

impl ConfigCompliance for AwsConfigCompliance {
    fn non_compliant<'a>(
        &'a self,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NonCompliance>, NativeError>> {
        Box::pin(self.read(rule))
    }
}
