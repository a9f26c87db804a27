//! Native checks: the switches (Azure and GCP refused), AWS Config's results as findings, and
//! the adapter against mocked `GetComplianceDetailsByConfigRule` answers. moto 5.2 implements no
//! Config compliance API (only `PutEvaluations` in test mode), so the adapter is tested with
//! aws-smithy-mocks: real SDK requests and responses, no server.

use std::sync::Arc;

use aws_sdk_config::operation::get_compliance_details_by_config_rule::GetComplianceDetailsByConfigRuleOutput;
use aws_sdk_config::types::{
    ComplianceType, EvaluationResult, EvaluationResultIdentifier, EvaluationResultQualifier,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use futures::future::BoxFuture;
use keyward_shared::config::env_of as env;
use keyward_shared::ports::CatalogEntry;

use crate::findings::{DriftType, FindingKind};
use crate::native::{
    AwsConfigCompliance, ConfigCompliance, NativeChecks, NativeError, NonCompliance,
    SECRETS_MANAGER_RULES, findings, native_rules,
};

const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/web/key-AbCdEf";

fn result(resource: &str, compliance: ComplianceType) -> EvaluationResult {
    EvaluationResult::builder()
        .evaluation_result_identifier(
            EvaluationResultIdentifier::builder()
                .evaluation_result_qualifier(
                    EvaluationResultQualifier::builder()
                        .config_rule_name("secretsmanager-using-cmk")
                        .resource_type("AWS::SecretsManager::Secret")
                        .resource_id(resource)
                        .build(),
                )
                .build(),
        )
        .compliance_type(compliance)
        .annotation("The secret is encrypted with the AWS managed key.")
        .build()
}

#[test]
fn switches_as_the_platform_teams_name_them() {
    assert_eq!(native_rules(&env(&[])).unwrap(), None);
    let on = [("ENABLE_NATIVE_CHECKS", "true")];
    assert_eq!(
        native_rules(&env(&on)).unwrap().unwrap(),
        SECRETS_MANAGER_RULES
    );
    let rules = native_rules(&env(&[
        ("ENABLE_NATIVE_CHECKS", "true"),
        ("CLOUD_PROVIDER", "AWS"),
        (
            "NATIVE_CHECKS_AWS_COMMAND",
            "secretsmanager-using-cmk, acme-secret-rule",
        ),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(rules, ["secretsmanager-using-cmk", "acme-secret-rule"]);
    for (extra, named, says) in [
        (
            ("CLOUD_PROVIDER", "azure"),
            "CLOUD_PROVIDER",
            "not supported",
        ),
        (("CLOUD_PROVIDER", "gcp"), "CLOUD_PROVIDER", "not supported"),
        (
            ("CLOUD_PROVIDER", "oci"),
            "CLOUD_PROVIDER",
            "aws, azure, gcp",
        ),
        (
            ("NATIVE_CHECKS_AZURE_COMMAND", "az policy state list"),
            "NATIVE_CHECKS_AZURE_COMMAND",
            "Azure and GCP",
        ),
        (
            ("NATIVE_CHECKS_GCP_COMMAND", "gcloud scc findings list"),
            "NATIVE_CHECKS_GCP_COMMAND",
            "Azure and GCP",
        ),
        (
            (
                "NATIVE_CHECKS_AWS_COMMAND",
                "aws configservice get-compliance",
            ),
            "NATIVE_CHECKS_AWS_COMMAND",
            "not an AWS Config rule name",
        ),
    ] {
        let err = native_rules(&env(&[("ENABLE_NATIVE_CHECKS", "true"), extra]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(named) && err.contains(says),
            "{extra:?}: {err}"
        );
    }
}

/// A port answering from a fixed table, for the mapping to findings.
struct Table(Vec<(&'static str, NonCompliance)>);

impl ConfigCompliance for Table {
    fn non_compliant<'a>(
        &'a self,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NonCompliance>, NativeError>> {
        let rows = self
            .0
            .iter()
            .filter(|(r, _)| *r == rule)
            .map(|(_, n)| n.clone())
            .collect();
        Box::pin(async move { Ok(rows) })
    }
}

#[tokio::test]
async fn verdicts_on_the_estates_secrets_become_infra_findings() {
    let entry = CatalogEntry {
        arn: ARN.into(),
        name: "/acme/prod/web/key".into(),
        tags: Vec::new(),
        governance: Ok(None),
        rotation_enabled: false,
        rotation_days: None,
        rotation_lambda_arn: None,
        last_rotated: None,
        next_rotation: None,
        last_changed: None,
        last_accessed: None,
        created: None,
        deleted: None,
        kms_key_id: None,
        primary_region: None,
        current_version: None,
    };
    let native = NativeChecks {
        config: Arc::new(Table(vec![
            (
                "secretsmanager-using-cmk",
                NonCompliance {
                    resource_id: ARN.into(),
                    annotation: Some("AWS managed key".into()),
                },
            ),
            // Another estate's secret: not this run's.
            (
                "secretsmanager-secret-unused",
                NonCompliance {
                    resource_id: "arn:aws:secretsmanager:eu-west-1:1:secret:/other/x".into(),
                    annotation: None,
                },
            ),
        ])),
        rules: SECRETS_MANAGER_RULES.iter().map(|r| (*r).into()).collect(),
    };
    let found = findings(&native, &[&entry]).await.unwrap();
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(
        f.fingerprint,
        "native-non-compliant:/acme/prod/web/key:secretsmanager-using-cmk"
    );
    assert_eq!(f.kind, FindingKind::NativeNonCompliant);
    assert_eq!(f.kind.drift_type(), DriftType::Infra);
    assert_eq!(f.evidence["rule"], "secretsmanager-using-cmk");
    assert_eq!(f.evidence["annotation"], "AWS managed key");
}

#[tokio::test]
async fn the_adapter_asks_for_non_compliant_results_and_follows_pages() {
    let first = mock!(aws_sdk_config::Client::get_compliance_details_by_config_rule)
        .match_requests(|r| {
            r.config_rule_name() == Some("secretsmanager-using-cmk")
                && r.compliance_types() == [ComplianceType::NonCompliant]
                && r.next_token().is_none()
        })
        .then_output(|| {
            GetComplianceDetailsByConfigRuleOutput::builder()
                .evaluation_results(result(ARN, ComplianceType::NonCompliant))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_config::Client::get_compliance_details_by_config_rule)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            GetComplianceDetailsByConfigRuleOutput::builder()
                .evaluation_results(result("arn:other", ComplianceType::NonCompliant))
                // A result of another kind is never a finding, whatever the filter returned.
                .evaluation_results(result("arn:fine", ComplianceType::Compliant))
                .build()
        });
    let client = mock_client!(aws_sdk_config, RuleMode::Sequential, [&first, &second]);
    let port = AwsConfigCompliance { client };
    let got = port
        .non_compliant("secretsmanager-using-cmk")
        .await
        .unwrap();
    let ids: Vec<&str> = got.iter().map(|n| n.resource_id.as_str()).collect();
    assert_eq!(ids, [ARN, "arn:other"]);
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_missing_rule_is_an_error_naming_it() {
    let missing = mock!(aws_sdk_config::Client::get_compliance_details_by_config_rule)
        .then_error(|| {
            aws_sdk_config::operation::get_compliance_details_by_config_rule::GetComplianceDetailsByConfigRuleError::NoSuchConfigRuleException(
                aws_sdk_config::types::error::NoSuchConfigRuleException::builder()
                    .message("The ConfigRule 'secretsmanager-secret-unused' provided in the request is invalid.")
                    .build(),
            )
        });
    let client = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&missing]);
    let err = AwsConfigCompliance { client }
        .non_compliant("secretsmanager-secret-unused")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("secretsmanager-secret-unused") && err.contains("NoSuchConfigRule"),
        "{err}"
    );
}
