//! Every IAM statement the SAM template grants, asserted: each function's role, the event bus
//! policy, the audit bucket policy and the digest key policy. A statement added, widened or
//! dropped fails here until this file says so too. A `*` resource must carry a comment saying
//! why AWS requires it.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

fn template_text() -> String {
    std::fs::read_to_string(keyward_integration::repo_root().join("infra/template.yaml")).unwrap()
}

fn template() -> Value {
    serde_yaml_ng::from_str(&template_text()).unwrap()
}

/// A value as one line: intrinsic functions by name (`Sub`, `GetAtt`, `Ref`, `If`), lists
/// joined, mappings as `key=value`.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let parts: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Mapping(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}={}", render(k), render(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Tagged(tagged) => format!("{}({})", tagged.tag, render(&tagged.value)),
    }
}

fn is_no_value(value: &Value) -> bool {
    matches!(value, Value::Tagged(t) if t.tag == "!Ref" && t.value.as_str() == Some("AWS::NoValue"))
}

/// A statement as one line: `Effect Action on Resource [if Condition] [for Principal]`, with
/// `!If` branches of a whole statement rendered as `if COND: ...`.
fn statement_lines(statement: &Value) -> Vec<String> {
    if let Value::Tagged(t) = statement
        && t.tag == "!If"
    {
        let parts = t.value.as_sequence().unwrap();
        let condition = render(&parts[0]);
        let mut lines = Vec::new();
        for branch in &parts[1..] {
            if !is_no_value(branch) {
                for line in statement_lines(branch) {
                    lines.push(format!("if {condition}: {line}"));
                }
            }
        }
        return lines;
    }
    let field = |name: &str| statement.get(name).map(render);
    let mut line = format!(
        "{} {} on {}",
        field("Effect").unwrap_or_default(),
        field("Action")
            .or_else(|| field("NotAction").map(|a| format!("not {a}")))
            .unwrap_or_default(),
        field("Resource").unwrap_or_default()
    );
    if let Some(principal) = field("Principal") {
        line.push_str(&format!(" for {principal}"));
    }
    if let Some(condition) = field("Condition") {
        line.push_str(&format!(" if {condition}"));
    }
    vec![line]
}

fn statements_of(document: &Value) -> Vec<String> {
    document["Statement"]
        .as_sequence()
        .map(|s| s.iter().flat_map(statement_lines).collect())
        .unwrap_or_else(|| statement_lines(&document["Statement"]))
}

/// Each function's statements, from its `Policies` (inline documents and SAM policy templates).
fn function_statements(template: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut lines = Vec::new();
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            if policy.get("Statement").is_some() {
                lines.extend(statements_of(policy));
            } else {
                lines.push(format!("template {}", render(policy)));
            }
        }
        out.insert(name.as_str().unwrap().to_owned(), lines);
    }
    out
}

fn resource_policy(template: &Value, resource: &str, property: &str) -> Vec<String> {
    statements_of(&template["Resources"][resource]["Properties"][property])
}

const PREFIX_ARN: &str = "!Sub(arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:/${Org}/${Environment}/*)";

fn expected_functions() -> BTreeMap<&'static str, Vec<String>> {
    let via_sm =
        "{StringEquals={kms:ViaService=!Sub(secretsmanager.${AWS::Region}.amazonaws.com)}}";
    BTreeMap::from([
        (
            "AuditWriterFunction",
            vec![
                "Allow [s3:PutObject, s3:GetObject] on !Sub(${AuditBucket.Arn}/audit/*)".into(),
            ],
        ),
        (
            "AuditDigestFunction",
            vec![
                "Allow [s3:ListBucket, s3:ListBucketVersions] on !GetAtt(AuditBucket.Arn)".into(),
                "Allow s3:GetObject on [!Sub(${AuditBucket.Arn}/audit/*), !Sub(${AuditBucket.Arn}/digests/*)]".into(),
                "Allow s3:PutObject on !Sub(${AuditBucket.Arn}/digests/*)".into(),
            ],
        ),
        (
            "RotationFunction",
            vec![
                format!("Allow [secretsmanager:DescribeSecret, secretsmanager:GetSecretValue, secretsmanager:PutSecretValue, secretsmanager:UpdateSecretVersionStage] on {PREFIX_ARN}"),
                "Allow secretsmanager:GetRandomPassword on *".into(),
                format!("Allow [kms:Decrypt, kms:GenerateDataKey] on * if {via_sm}"),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.rotation}}".into(),
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)".into(),
            ],
        ),
        (
            "AnomalyForwarderFunction",
            vec![
                "Allow s3:GetObject on !If([CreatesTrail, !Sub(${TrailBucket.Arn}/AWSLogs/*), !Sub(arn:${AWS::Partition}:s3:::${ExistingTrailBucket}/AWSLogs/*)])".into(),
                "Allow [s3:GetObject, s3:PutObject] on !Sub(${StateBucket.Arn}/*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.anomaly-forwarder}}".into(),
                "if HasWebhook: Allow secretsmanager:GetSecretValue on !Ref(AlertWebhookSecretArn)".into(),
            ],
        ),
        (
            "VercelSyncFunction",
            vec![
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)".into(),
                format!("Allow [secretsmanager:DescribeSecret, secretsmanager:GetSecretValue] on {PREFIX_ARN}"),
                "Allow secretsmanager:ListSecrets on *".into(),
                "Allow secretsmanager:GetSecretValue on !Ref(VercelCredentialsSecretArn)".into(),
                format!("Allow kms:Decrypt on * if {via_sm}"),
                "Allow [s3:GetObject, s3:PutObject] on !Sub(${StateBucket.Arn}/vercel/*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.vercel-sync}}".into(),
                "Allow sqs:SendMessage on !GetAtt(VercelRedeployQueue.Arn)".into(),
            ],
        ),
        (
            "DriftDetectorFunction",
            vec![
                "Allow secretsmanager:ListSecrets on *".into(),
                format!("Allow [secretsmanager:DescribeSecret, secretsmanager:GetResourcePolicy] on {PREFIX_ARN}"),
                "if HasDriftCredentials: Allow secretsmanager:GetSecretValue on !Ref(DriftCredentialsSecretArn)".into(),
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
                "Allow s3:GetObject on !Sub(${StateBucket.Arn}/vercel/ledger/*)".into(),
                "Allow [s3:GetObject, s3:PutObject] on !Sub(${StateBucket.Arn}/drift/*)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.drift-detector}}".into(),
            ],
        ),
        (
            "CiGatewayFunction",
            vec![
                "Allow secretsmanager:ListSecrets on *".into(),
                "Allow [s3:PutObject, s3:GetObject] on !Sub(${StateBucket.Arn}/replay/*)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.ci-gateway}}".into(),
                "Allow [secretsmanager:DescribeSecret, secretsmanager:GetResourcePolicy] on !Sub(arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:/${Org}/*)".into(),
                "if HasDriftCredentials: Allow secretsmanager:GetSecretValue on !Ref(DriftCredentialsSecretArn)".into(),
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on [!Sub(${ConfigBucket.Arn}/${ManifestPrefix}*), !Sub(${StateBucket.Arn}/vercel/ledger/*)]".into(),
                "Allow s3:PutObject on !Sub(${StateBucket.Arn}/drift/*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
            ],
        ),
    ])
}

#[test]
fn every_function_statement_is_the_one_intended() {
    let actual = function_statements(&template());
    let expected = expected_functions();
    let names: Vec<&String> = actual.keys().collect();
    let expected_names: Vec<&&str> = expected.keys().collect();
    assert_eq!(names, expected_names, "functions in the template");
    for (function, statements) in &actual {
        assert_eq!(
            statements,
            &expected[function.as_str()],
            "{function}'s statements (left: template, right: this test)"
        );
    }
}

/// A `*` resource is allowed only where AWS has no resource-level permission for the action,
/// and the template says so in a comment just above the statement.
#[test]
fn every_wildcard_resource_says_why() {
    let text = template_text();
    let lines: Vec<&str> = text.lines().collect();
    let mut unexplained = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != r#"Resource: "*""# {
            continue;
        }
        // Up to the statement's first line, then the comment lines right above it.
        let start = (0..=i)
            .rev()
            .find(|&j| {
                let line = lines[j].trim_start();
                line.starts_with("- Sid:") || line.starts_with("- Effect:")
            })
            .unwrap_or(i);
        let commented = start > 0 && lines[start - 1].trim_start().starts_with('#');
        if !commented {
            unexplained.push(format!("line {}: {}", i + 1, lines[start].trim()));
        }
    }
    assert!(
        unexplained.is_empty(),
        "`*` resources without a comment saying why AWS requires them:\n{}",
        unexplained.join("\n")
    );
}

#[test]
fn only_keywards_functions_may_put_events_on_its_bus() {
    let template = template();
    let lines =
        statement_lines(&template["Resources"]["EventBusPolicy"]["Properties"]["Statement"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let deny = &lines[0];
    assert!(
        deny.starts_with("Deny events:PutEvents on !GetAtt(EventBus.Arn) for *"),
        "{deny}"
    );
    for role in [
        "RotationFunctionRole",
        "AnomalyForwarderFunctionRole",
        "VercelSyncFunctionRole",
        "DriftDetectorFunctionRole",
        "CiGatewayFunctionRole",
    ] {
        assert!(deny.contains(role), "{role} missing from {deny}");
    }
    assert!(deny.contains("ArnNotEquals={aws:PrincipalArn="), "{deny}");
}

#[test]
fn the_digest_key_signs_only_for_the_digest_function_and_resists_disabling() {
    let template = template();
    let lines = resource_policy(&template, "AuditDigestKey", "KeyPolicy");
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    // The account administers the key but cannot sign with it.
    assert!(
        lines.iter().any(|l| l.starts_with("Allow not [kms:Sign, kms:Verify] on * for {AWS=!Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:root)}")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "Allow [kms:Sign, kms:GetPublicKey] on * for {AWS=!GetAtt(AuditDigestFunctionRole.Arn)}"
        )),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Deny kms:Sign on * for *")
                && l.contains(
                    "ArnNotEquals={aws:PrincipalArn=!GetAtt(AuditDigestFunctionRole.Arn)}"
                )),
        "{lines:#?}"
    );
    assert!(
        has("Deny [kms:DisableKey, kms:ScheduleKeyDeletion] on * for *"),
        "{lines:#?}"
    );
    assert!(has("BreakGlass"), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("kms:*")), "{lines:#?}");
}

#[test]
fn the_audit_bucket_refuses_rewrites_and_policy_changes() {
    let template = template();
    let lines = resource_policy(&template, "AuditBucketPolicy", "PolicyDocument");
    let deny = |needle: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Deny") && l.contains(needle)),
            "no Deny of {needle}: {lines:#?}"
        )
    };
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectRetention",
        "s3:PutBucketVersioning",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutLifecycleConfiguration",
    ] {
        deny(action);
    }
    deny("s3:if-none-match");
    deny("aws:SecureTransport");
    assert!(
        !lines.iter().any(|l| l.starts_with("Allow")),
        "the audit bucket policy grants nothing: {lines:#?}"
    );
}

/// Who may invoke which function, besides the event rules SAM wires: each grant names one
/// service (or the function URL alone) and is bound to this account or one source.
#[test]
fn every_invoke_permission_is_scoped_to_its_source() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let mut grants: Vec<String> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Lambda::Permission"))
        .map(|(id, r)| {
            let p = &r["Properties"];
            format!(
                "{} {} -> {} for {} [account {}, source {}, url only {}]",
                render(id),
                render(&p["Action"]),
                render(&p["FunctionName"]),
                render(&p["Principal"]),
                render(&p["SourceAccount"]),
                render(&p["SourceArn"]),
                render(&p["InvokedViaFunctionUrl"]),
            )
        })
        .collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            "CiGatewayInvokeViaUrl lambda:InvokeFunction -> !Ref(CiGatewayFunction) for * [account null, source null, url only true]",
            "CiGatewayLogsInvokeForwarder lambda:InvokeFunction -> !GetAtt(AnomalyForwarderFunction.Arn) for logs.amazonaws.com [account !Ref(AWS::AccountId), source !GetAtt(CiGatewayLogGroup.Arn), url only null]",
            "RotationFunctionInvokePermission lambda:InvokeFunction -> !GetAtt(RotationFunction.Arn) for secretsmanager.amazonaws.com [account !Ref(AWS::AccountId), source null, url only null]",
        ]
    );
    // The gateway's refusals, and only they, reach the forwarder from its log group.
    let subscription = &template["Resources"]["CiGatewayRefusalsSubscription"]["Properties"];
    assert_eq!(
        render(&subscription["LogGroupName"]),
        "!Ref(CiGatewayLogGroup)"
    );
    assert_eq!(
        render(&subscription["DestinationArn"]),
        "!GetAtt(AnomalyForwarderFunction.Arn)"
    );
    assert_eq!(
        subscription["FilterPattern"].as_str(),
        Some("{ ($.fields.status = 401) || ($.fields.status = 403) }")
    );
}
