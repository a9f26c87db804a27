//! Every IAM statement the SAM template grants, asserted: each function's role, and every other
//! policy document (the CI roles' trust and policies, key, bucket, queue and bus policies). A
//! statement added, widened or dropped fails here until this file says so too. A `*` resource must carry a comment saying
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
                "if CreatesTrail: Allow kms:Decrypt on !GetAtt(TrailKey.Arn) if {StringEquals={kms:ViaService=!Sub(s3.${AWS::Region}.amazonaws.com)}}".into(),
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
                "if NativeChecksOn: Allow config:GetComplianceDetailsByConfigRule on !Sub(arn:${AWS::Partition}:config:${AWS::Region}:${AWS::AccountId}:config-rule/*)".into(),
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
                "Allow s3:GetObject on !Sub(${StateBucket.Arn}/vercel/ledger/*)".into(),
                "Allow [s3:GetObject, s3:PutObject] on !Sub(${StateBucket.Arn}/drift/*)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.drift-detector}}".into(),
            ],
        ),
        (
            "PostureReportFunction",
            vec![
                "Allow secretsmanager:ListSecrets on *".into(),
                "Allow secretsmanager:GetResourcePolicy on !Sub(arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:/${Org}/*)".into(),
                "if HasWebhook: Allow secretsmanager:GetSecretValue on !Ref(AlertWebhookSecretArn)".into(),
                "Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}".into(),
                "Allow s3:GetObject on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)".into(),
                "Allow s3:ListBucket on !GetAtt(StateBucket.Arn)".into(),
                "Allow s3:GetObject on [!Sub(${StateBucket.Arn}/vercel/ledger/*), !Sub(${StateBucket.Arn}/state/first-seen/first-seen-reader/*)]".into(),
                "Allow [s3:GetObject, s3:PutObject] on [!Sub(${StateBucket.Arn}/state/reminders/*), !Sub(${StateBucket.Arn}/reports/posture/*)]".into(),
                "Allow [s3:ListBucket, s3:ListBucketVersions] on !GetAtt(AuditBucket.Arn)".into(),
                "Allow s3:GetObject on [!Sub(${AuditBucket.Arn}/audit/*), !Sub(${AuditBucket.Arn}/digests/*)]".into(),
                "Allow kms:GetPublicKey on !GetAtt(AuditDigestKey.Arn)".into(),
                "Allow events:PutEvents on !GetAtt(EventBus.Arn) if {StringEquals={events:source=keyward.posture}}".into(),
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
                "if NativeChecksOn: Allow config:GetComplianceDetailsByConfigRule on !Sub(arn:${AWS::Partition}:config:${AWS::Region}:${AWS::AccountId}:config-rule/*)".into(),
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
        "PostureReportFunctionRole",
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

/// Every policy document of a resource other than a function, in template order: trust and
/// inline policies of roles, key policies, bucket, queue and bus policies.
fn resource_documents(template: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        let properties = &resource["Properties"];
        let documents: Vec<(String, &Value)> = match resource["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => {
                let mut documents =
                    vec![("trust".to_owned(), &properties["AssumeRolePolicyDocument"])];
                for policy in properties["Policies"].as_sequence().into_iter().flatten() {
                    documents.push((render(&policy["PolicyName"]), &policy["PolicyDocument"]));
                }
                documents
            }
            "AWS::KMS::Key" => vec![("key policy".to_owned(), &properties["KeyPolicy"])],
            "AWS::S3::BucketPolicy" | "AWS::SQS::QueuePolicy" => {
                vec![("policy".to_owned(), &properties["PolicyDocument"])]
            }
            "AWS::Events::EventBusPolicy" => vec![("policy".to_owned(), properties)],
            _ => continue,
        };
        let lines = documents
            .into_iter()
            .flat_map(|(label, document)| {
                statements_of(document)
                    .into_iter()
                    .map(move |line| format!("{label}: {line}"))
            })
            .collect();
        out.insert(name.as_str().unwrap().to_owned(), lines);
    }
    out
}

/// Every statement of every policy document that is not a function's, exactly: role trust and
/// inline policies, key policies, bucket, queue and bus policies. A resource with a policy that
/// is not listed here fails too.
fn expected_documents() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        (
            "AuditBucketPolicy",
            vec![
                "policy: Deny s3:* on [!GetAtt(AuditBucket.Arn), !Sub(${AuditBucket.Arn}/*)] for * if {Bool={aws:SecureTransport=false}}",
                "policy: Deny s3:PutObject on [!Sub(${AuditBucket.Arn}/audit/*), !Sub(${AuditBucket.Arn}/digests/*)] for * if {Null={s3:if-none-match=true}}",
                "policy: Deny [s3:PutBucketVersioning, s3:PutBucketObjectLockConfiguration] on !GetAtt(AuditBucket.Arn) for *",
                "policy: Deny s3:DeleteObject on [!Sub(${AuditBucket.Arn}/audit/*), !Sub(${AuditBucket.Arn}/digests/*)] for *",
                "policy: Deny [s3:PutBucketPolicy, s3:DeleteBucketPolicy, s3:PutLifecycleConfiguration] on !GetAtt(AuditBucket.Arn) for * if {ArnNotEquals={aws:PrincipalArn=!If([HasBreakGlass, !Ref(BreakGlassRoleArn), !Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:role/keyward-no-break-glass)])}}",
                "policy: Deny [s3:PutObjectRetention, s3:PutObjectLegalHold, s3:BypassGovernanceRetention, s3:DeleteObjectVersion] on !Sub(${AuditBucket.Arn}/*) for *",
            ],
        ),
        (
            "AuditDigestKey",
            vec![
                "key policy: Allow not [kms:Sign, kms:Verify] on * for {AWS=!Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:root)}",
                "key policy: Allow [kms:Sign, kms:GetPublicKey] on * for {AWS=!GetAtt(AuditDigestFunctionRole.Arn)}",
                "key policy: if HasEvidenceSigner: Allow kms:Sign on * for {AWS=!Ref(EvidenceSignerArn)} if {StringEquals={kms:SigningAlgorithm=RSASSA_PSS_SHA_256}}",
                "key policy: Deny kms:Sign on * for * if {ArnNotEquals={aws:PrincipalArn=!GetAtt(AuditDigestFunctionRole.Arn)}, StringNotEquals={kms:SigningAlgorithm=RSASSA_PSS_SHA_256}}",
                "key policy: Deny kms:Sign on * for * if {StringNotEquals={kms:SigningAlgorithm=RSASSA_PKCS1_V1_5_SHA_256}, ArnEquals={aws:PrincipalArn=!GetAtt(AuditDigestFunctionRole.Arn)}}",
                "key policy: Deny [kms:DisableKey, kms:ScheduleKeyDeletion] on * for * if {ArnNotEquals={aws:PrincipalArn=!If([HasBreakGlass, !Ref(BreakGlassRoleArn), !Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:role/keyward-no-break-glass)])}}",
                "key policy: Allow [kms:GetPublicKey, kms:DescribeKey] on * for {AWS=!Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:root)}",
            ],
        ),
        (
            "CiApplyRole",
            vec![
                "trust: Allow sts:AssumeRoleWithWebIdentity on  for {Federated=!If([CreatesGithubOidcProvider, !Ref(GithubOidcProvider), !Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/token.actions.githubusercontent.com)])} if {StringEquals={token.actions.githubusercontent.com:aud=sts.amazonaws.com, token.actions.githubusercontent.com:repository_id=!Ref(CiRepositoryId), token.actions.githubusercontent.com:ref=!Ref(CiApplyRef)}, StringLike={token.actions.githubusercontent.com:sub=!Sub(repo:*:ref:${CiApplyRef})}}",
                "secret-request-apply: Allow secretsmanager:CreateSecret on !Sub(arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:/${Org}/*) if {StringEquals={aws:RequestTag/keyward:contract=1}}",
                "secret-request-apply: Allow [secretsmanager:DescribeSecret, secretsmanager:GetResourcePolicy, secretsmanager:PutResourcePolicy, secretsmanager:DeleteResourcePolicy, secretsmanager:UpdateSecret, secretsmanager:TagResource, secretsmanager:UntagResource, secretsmanager:RotateSecret, secretsmanager:CancelRotateSecret, secretsmanager:ReplicateSecretToRegions, secretsmanager:RemoveRegionsFromReplication] on !Sub(arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:/${Org}/*) if {StringEquals={aws:ResourceTag/keyward:contract=1}}",
                "secret-request-apply: Allow lambda:InvokeFunction on !GetAtt(RotationFunction.Arn)",
                "secret-request-apply: Allow [kms:CreateKey, kms:TagResource] on * if {StringLike={aws:RequestTag/keyward:environment=!Sub(/${Org}/*)}}",
                "secret-request-apply: Allow [kms:DescribeKey, kms:GetKeyPolicy, kms:GetKeyRotationStatus, kms:ListResourceTags, kms:EnableKeyRotation, kms:PutKeyPolicy, kms:UpdateKeyDescription, kms:CreateAlias, kms:UpdateAlias] on !Sub(arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*) if {StringLike={aws:ResourceTag/keyward:environment=!Sub(/${Org}/*)}}",
                "secret-request-apply: Allow [kms:CreateAlias, kms:UpdateAlias] on !Sub(arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/keyward/${Org}/*)",
                "secret-request-apply: Allow kms:ListAliases on *",
                "secret-request-apply: Allow s3:ListBucket on !Sub(arn:${AWS::Partition}:s3:::${TerraformStateBucket}) if {StringLike={s3:prefix=!Sub(keyward/${Org}/*)}}",
                "secret-request-apply: Allow [s3:GetObject, s3:PutObject, s3:DeleteObject] on !Sub(arn:${AWS::Partition}:s3:::${TerraformStateBucket}/keyward/${Org}/*)",
                "secret-request-apply: Allow s3:ListBucket on !GetAtt(ConfigBucket.Arn) if {StringLike={s3:prefix=!Sub(${ManifestPrefix}*)}}",
                "secret-request-apply: Allow [s3:PutObject, s3:DeleteObject] on !Sub(${ConfigBucket.Arn}/${ManifestPrefix}*)",
            ],
        ),
        (
            "CiPlanRole",
            vec![
                "trust: Allow sts:AssumeRoleWithWebIdentity on  for {Federated=!If([CreatesGithubOidcProvider, !Ref(GithubOidcProvider), !Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/token.actions.githubusercontent.com)])} if {StringEquals={token.actions.githubusercontent.com:aud=sts.amazonaws.com, token.actions.githubusercontent.com:repository_id=!Ref(CiRepositoryId)}, StringLike={token.actions.githubusercontent.com:ref=refs/pull/*/merge, token.actions.githubusercontent.com:sub=repo:*:pull_request}}",
                "secret-request-plan: Allow secretsmanager:ListSecrets on *",
                "secret-request-plan: Allow [secretsmanager:DescribeSecret, secretsmanager:GetResourcePolicy] on !Sub(arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:/${Org}/*)",
                "secret-request-plan: Allow [kms:DescribeKey, kms:GetKeyPolicy, kms:GetKeyRotationStatus, kms:ListResourceTags] on !Sub(arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*)",
                "secret-request-plan: Allow kms:ListAliases on *",
                "secret-request-plan: Allow s3:ListBucket on !Sub(arn:${AWS::Partition}:s3:::${TerraformStateBucket}) if {StringLike={s3:prefix=!Sub(keyward/${Org}/*)}}",
                "secret-request-plan: Allow s3:GetObject on !Sub(arn:${AWS::Partition}:s3:::${TerraformStateBucket}/keyward/${Org}/*)",
            ],
        ),
        (
            "CiReaderRole",
            vec![
                "trust: Allow sts:AssumeRoleWithWebIdentity on  for {Federated=!If([CreatesGithubOidcProvider, !Ref(GithubOidcProvider), !Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/token.actions.githubusercontent.com)])} if {StringEquals={token.actions.githubusercontent.com:aud=sts.amazonaws.com, token.actions.githubusercontent.com:repository_id=!Ref(CiReaderRepositoryIds), token.actions.githubusercontent.com:ref=!Ref(CiReaderRef), token.actions.githubusercontent.com:environment=!Ref(Environment)}, StringLike={token.actions.githubusercontent.com:sub=!Sub(repo:*:environment:${Environment})}}",
                "ci-read: Allow [secretsmanager:DescribeSecret, secretsmanager:GetSecretValue] on !Sub(arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:/${Org}/${Environment}/*) if {StringEquals={aws:ResourceTag/keyward:ci-read=true}}",
                "ci-read: Allow kms:Decrypt on * if {StringEquals={kms:ViaService=!Sub(secretsmanager.${AWS::Region}.amazonaws.com)}}",
            ],
        ),
        (
            "DeadLetterQueuePolicy",
            vec![
                "policy: Allow sqs:SendMessage on !GetAtt(DeadLetterQueue.Arn) for {Service=events.amazonaws.com} if {ArnEquals={aws:SourceArn=!GetAtt(AuditWriterFunctionAllDomainEvents.Arn)}}",
                "policy: Allow sqs:SendMessage on !GetAtt(DeadLetterQueue.Arn) for {Service=events.amazonaws.com} if {ArnEquals={aws:SourceArn=[!GetAtt(AnomalyForwarderFunctionSecretsManagerApiCalls.Arn), !GetAtt(AnomalyForwarderFunctionKeywardTampering.Arn), !GetAtt(AnomalyForwarderFunctionGatewayRefusals.Arn), !GetAtt(AnomalyForwarderFunctionTrailLogFiles.Arn)]}}",
                "policy: if DeploysVercelSync: Allow sqs:SendMessage on !GetAtt(DeadLetterQueue.Arn) for {Service=events.amazonaws.com} if {ArnEquals={aws:SourceArn=[!GetAtt(VercelSyncFunctionSecretChanges.Arn), !GetAtt(VercelSyncFunctionRotationSucceeded.Arn), !GetAtt(VercelSyncFunctionSecretRotated.Arn), !GetAtt(VercelSyncFunctionSyncRequested.Arn)]}}",
                "policy: Deny sqs:* on !GetAtt(DeadLetterQueue.Arn) for * if {Bool={aws:SecureTransport=false}}",
            ],
        ),
        (
            "EventBusPolicy",
            vec![
                "policy: Deny events:PutEvents on !GetAtt(EventBus.Arn) for * if {ArnNotEquals={aws:PrincipalArn=[!GetAtt(RotationFunctionRole.Arn), !GetAtt(AnomalyForwarderFunctionRole.Arn), !GetAtt(DriftDetectorFunctionRole.Arn), !GetAtt(PostureReportFunctionRole.Arn), !If([DeploysVercelSync, !GetAtt(VercelSyncFunctionRole.Arn), !Ref(AWS::NoValue)]), !If([DeploysGateway, !GetAtt(CiGatewayFunctionRole.Arn), !Ref(AWS::NoValue)])]}}",
            ],
        ),
        (
            "TrailBucketPolicy",
            vec![
                "policy: Allow s3:GetBucketAcl on !GetAtt(TrailBucket.Arn) for {Service=cloudtrail.amazonaws.com} if {StringEquals={aws:SourceArn=!Sub(arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/keyward-${Org})}}",
                "policy: Allow s3:PutObject on !Sub(${TrailBucket.Arn}/AWSLogs/${AWS::AccountId}/*) for {Service=cloudtrail.amazonaws.com} if {StringEquals={aws:SourceArn=!Sub(arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/keyward-${Org})}}",
                "policy: Deny s3:* on [!GetAtt(TrailBucket.Arn), !Sub(${TrailBucket.Arn}/*)] for * if {Bool={aws:SecureTransport=false}}",
                "policy: Deny [s3:DeleteObject, s3:DeleteObjectVersion] on !Sub(${TrailBucket.Arn}/*) for *",
                "policy: Deny s3:PutBucketVersioning on !GetAtt(TrailBucket.Arn) for *",
            ],
        ),
        (
            "TrailKey",
            vec![
                "key policy: Allow kms:* on * for {AWS=!Sub(arn:${AWS::Partition}:iam::${AWS::AccountId}:root)}",
                "key policy: Allow kms:GenerateDataKey* on * for {Service=cloudtrail.amazonaws.com} if {StringEquals={aws:SourceArn=!Sub(arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/keyward-${Org})}, StringLike={kms:EncryptionContext:aws:cloudtrail:arn=!Sub(arn:${AWS::Partition}:cloudtrail:*:${AWS::AccountId}:trail/*)}}",
                "key policy: Allow kms:DescribeKey on * for {Service=cloudtrail.amazonaws.com} if {StringEquals={aws:SourceArn=!Sub(arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/keyward-${Org})}}",
            ],
        ),
    ])
}

#[test]
fn every_other_policy_statement_is_the_one_intended() {
    let actual = resource_documents(&template());
    let expected = expected_documents();
    let names: Vec<&String> = actual.keys().collect();
    let expected_names: Vec<&&str> = expected.keys().collect();
    assert_eq!(names, expected_names, "resources with a policy document");
    for (resource, statements) in &actual {
        assert_eq!(
            statements,
            &expected[resource.as_str()],
            "{resource}'s statements (left: template, right: this test)"
        );
    }
}

/// CloudTrail may encrypt with the trail key only for keyward's own trail, and the trail uses it.
#[test]
fn the_trail_key_lets_cloudtrail_encrypt_this_trail_only() {
    let template = template();
    let lines = resource_policy(&template, "TrailKey", "KeyPolicy");
    let trail = "aws:SourceArn=!Sub(arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/keyward-${Org})";
    for action in ["kms:GenerateDataKey*", "kms:DescribeKey"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!(
                "Allow {action} on * for {{Service=cloudtrail.amazonaws.com}}"
            )) && l.contains(trail)),
            "{action}: {lines:#?}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("cloudtrail.amazonaws.com") && l.contains("kms:Decrypt")),
        "CloudTrail never decrypts: {lines:#?}"
    );
    let trail_props = &template["Resources"]["Trail"]["Properties"];
    assert_eq!(render(&trail_props["KMSKeyId"]), "!GetAtt(TrailKey.Arn)");
    let data = render(&trail_props["EventSelectors"]);
    for bucket in ["AuditBucket", "ConfigBucket"] {
        assert!(
            data.contains(&format!("!Sub(${{{bucket}.Arn}}/)")),
            "{bucket}: {data}"
        );
    }
}

/// Each CI role admits only GitHub tokens for STS, from a repository named by its id, on one
/// ref (the plan role: pull request merge refs), and the reader only in its environment.
#[test]
fn ci_roles_trust_bind_audience_repository_ref_and_context() {
    let template = template();
    let claim = |key: &str| format!("token.actions.githubusercontent.com:{key}=");
    for (role, repository, reference, context) in [
        (
            "CiPlanRole",
            "!Ref(CiRepositoryId)",
            "refs/pull/*/merge",
            "repo:*:pull_request",
        ),
        (
            "CiApplyRole",
            "!Ref(CiRepositoryId)",
            "!Ref(CiApplyRef)",
            "!Sub(repo:*:ref:${CiApplyRef})",
        ),
        (
            "CiReaderRole",
            "!Ref(CiReaderRepositoryIds)",
            "!Ref(CiReaderRef)",
            "!Sub(repo:*:environment:${Environment})",
        ),
    ] {
        let lines = resource_policy(&template, role, "AssumeRolePolicyDocument");
        assert_eq!(lines.len(), 1, "{role}: {lines:#?}");
        let line = &lines[0];
        assert!(
            line.starts_with("Allow sts:AssumeRoleWithWebIdentity on  for {Federated="),
            "{role}: {line}"
        );
        for needle in [
            format!("{}sts.amazonaws.com", claim("aud")),
            format!("{}{repository}", claim("repository_id")),
            format!("{}{reference}", claim("ref")),
            format!("{}{context}", claim("sub")),
        ] {
            assert!(line.contains(&needle), "{role}: no {needle} in {line}");
        }
    }
    let reader = resource_policy(&template, "CiReaderRole", "AssumeRolePolicyDocument");
    assert!(
        reader[0].contains(&format!("{}!Ref(Environment)", claim("environment"))),
        "{reader:#?}"
    );
}
