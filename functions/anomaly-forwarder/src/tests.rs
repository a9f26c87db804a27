//! Every shipped rule with events that must and must not raise it.

use serde_json::{Value, json};

use crate::rules::{Cidr, DEFAULT_RULES, DEFAULT_RULES_JSON, Detector, Environment, MemoryState};

fn base(event_name: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventID": format!("id-{event_name}"),
        "eventTime": "2026-11-22T12:00:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": event_name,
        "eventType": "AwsApiCall",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "recipientAccountId": "123456789012",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:session",
            "arn": "arn:aws:sts::123456789012:assumed-role/payments-api/session",
            "accountId": "123456789012",
            "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "payments-api",
                "arn": "arn:aws:iam::123456789012:role/payments-api"}}
        },
        "requestParameters": {"secretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/payments/db-credentials-AbCdEf"},
        "responseElements": null,
        "readOnly": true
    })
}

fn with(mut record: Value, patch: Value) -> Value {
    if let (Value::Object(record), Value::Object(patch)) = (&mut record, patch) {
        for (k, v) in patch {
            record.insert(k, v);
        }
    }
    record
}

fn detector(environment: Environment) -> Detector {
    Detector::from_yaml(DEFAULT_RULES, environment).unwrap()
}

fn matching(detector: &Detector, record: &Value) -> Vec<String> {
    detector
        .matching(&record.to_string())
        .unwrap()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Rules that fire on every record (no threshold, no first-seen), for a record.
fn fires(detector: &Detector, record: &Value, rule: &str) -> bool {
    matching(detector, record).iter().any(|r| r == rule)
}

#[test]
fn stateless_rules_fire_on_their_events_and_not_on_others() {
    let d = detector(Environment::default());
    let denied = with(
        base("GetSecretValue"),
        json!({"errorCode": "AccessDenied", "errorMessage": "User is not authorized"}),
    );
    assert!(fires(&d, &denied, "denied-secret-access"));
    let denied_other = with(
        base("DescribeSecret"),
        json!({"errorCode": "AccessDeniedException"}),
    );
    assert!(fires(&d, &denied_other, "denied-secret-access"));
    assert!(!fires(&d, &base("GetSecretValue"), "denied-secret-access"));
    let not_found = with(
        base("GetSecretValue"),
        json!({"errorCode": "ResourceNotFoundException"}),
    );
    assert!(!fires(&d, &not_found, "denied-secret-access"));
    let ec2_denied = with(
        base("DescribeInstances"),
        json!({"eventSource": "ec2.amazonaws.com", "errorCode": "Client.UnauthorizedOperation"}),
    );
    assert!(
        !fires(&d, &ec2_denied, "denied-secret-access"),
        "other services are out of scope"
    );

    let root = with(
        base("ListSecrets"),
        json!({"userIdentity": {"type": "Root", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"}}),
    );
    assert!(fires(&d, &root, "root-activity"));
    let root_service = with(
        base("ListSecrets"),
        json!({"eventType": "AwsServiceEvent", "userIdentity": {"type": "Root", "invokedBy": "secretsmanager.amazonaws.com"}}),
    );
    assert!(!fires(&d, &root_service, "root-activity"));
    assert!(!fires(&d, &base("ListSecrets"), "root-activity"));

    let public = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}).to_string();
    let made_public = with(
        base("PutResourcePolicy"),
        json!({"requestParameters": {"secretId": "s", "resourcePolicy": public}}),
    );
    assert!(fires(&d, &made_public, "resource-policy-public"));
    let org_only = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}]}).to_string();
    let scoped = with(
        base("PutResourcePolicy"),
        json!({"requestParameters": {"secretId": "s", "resourcePolicy": org_only}}),
    );
    assert!(!fires(&d, &scoped, "resource-policy-public"));
    let refused = with(
        made_public.clone(),
        json!({"errorCode": "AccessDeniedException"}),
    );
    assert!(!fires(&d, &refused, "resource-policy-public"));

    for (event, rule) in [
        ("CancelRotateSecret", "rotation-cancelled"),
        ("DeleteSecret", "deletion-scheduled"),
        ("RemoveRegionsFromReplication", "replica-removed"),
        ("StopReplicationToReplica", "replica-removed"),
    ] {
        assert!(fires(&d, &base(event), rule), "{event}");
        let failed = with(base(event), json!({"errorCode": "InvalidRequestException"}));
        assert!(!fires(&d, &failed, rule), "{event} failed");
        assert!(!fires(&d, &base("GetSecretValue"), rule));
    }
    let service = with(
        base("RotationFailed"),
        json!({"eventType": "AwsServiceEvent", "userIdentity": {"accountId": "123456789012", "invokedBy": "secretsmanager.amazonaws.com"}, "sourceIPAddress": "secretsmanager.amazonaws.com"}),
    );
    assert!(fires(&d, &service, "rotation-failed"));
    assert!(!fires(&d, &base("RotateSecret"), "rotation-failed"));

    let batch = |values: Value| {
        with(
            base("BatchGetSecretValue"),
            json!({"requestParameters": {"filters": [{"key": "tag-key", "values": values}]}}),
        )
    };
    assert!(fires(
        &d,
        &batch(json!(["!keep-out", "!other"])),
        "batch-catch-all"
    ));
    assert!(!fires(
        &d,
        &batch(json!(["StratusRedTeam"])),
        "batch-catch-all"
    ));
    assert!(!fires(&d, &batch(json!(["!a", "b"])), "batch-catch-all"));
}

#[test]
fn network_and_reader_rules_need_their_configuration() {
    let unconfigured = detector(Environment::default());
    assert!(!fires(
        &unconfigured,
        &base("GetSecretValue"),
        "outside-allowed-network"
    ));
    assert!(!fires(
        &unconfigured,
        &base("GetSecretValue"),
        "unlisted-reader"
    ));

    let environment = Environment {
        allowed_cidrs: vec!["10.0.0.0/8".parse::<Cidr>().unwrap()],
        allowed_vpc_endpoints: vec!["vpce-0abc".into()],
        readers: [(
            "/acme/prod/payments/db-credentials".to_owned(),
            vec!["arn:aws:iam::123456789012:role/payments-worker".to_owned()],
        )]
        .into(),
        protected: Vec::new(),
        automation: Default::default(),
    };
    let d = detector(environment);
    assert!(fires(
        &d,
        &base("GetSecretValue"),
        "outside-allowed-network"
    ));
    let inside = with(
        base("GetSecretValue"),
        json!({"sourceIPAddress": "10.1.2.3"}),
    );
    assert!(!fires(&d, &inside, "outside-allowed-network"));
    let via_endpoint = with(
        base("GetSecretValue"),
        json!({"vpcEndpointId": "vpce-0abc"}),
    );
    assert!(!fires(&d, &via_endpoint, "outside-allowed-network"));
    let by_service = with(
        base("GetSecretValue"),
        json!({"sourceIPAddress": "lambda.amazonaws.com"}),
    );
    assert!(!fires(&d, &by_service, "outside-allowed-network"));

    assert!(
        fires(&d, &base("GetSecretValue"), "unlisted-reader"),
        "payments-api is not a declared reader"
    );
    let worker = with(
        base("GetSecretValue"),
        json!({"userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/payments-worker/s",
        "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "payments-worker", "arn": "arn:aws:iam::123456789012:role/payments-worker"}}}}),
    );
    assert!(!fires(&d, &worker, "unlisted-reader"));
    let undeclared_secret = with(
        base("GetSecretValue"),
        json!({"requestParameters": {"secretId": "/acme/prod/web/session-key"}}),
    );
    assert!(!fires(&d, &undeclared_secret, "unlisted-reader"));
}

#[test]
fn thresholds_alert_once_per_window_and_group() {
    let d = detector(Environment::default());
    let mut state = MemoryState::default();
    let read = |n: usize, minute: u32, actor: &str| {
        with(
            base("GetSecretValue"),
            json!({
                "eventID": format!("{actor}-{n}-{minute}"),
                "eventTime": format!("2026-11-22T12:{minute:02}:00Z"),
                "requestParameters": {"secretId": format!("/acme/prod/svc/secret-{n}")},
                "userIdentity": {"type": "IAMUser", "userName": actor, "arn": format!("arn:aws:iam::1:user/{actor}")}
            }),
        )
    };
    let mut bulk = 0;
    // 19 distinct secrets, one of them read twice: no alert.
    for n in 0..19 {
        bulk += count(&d, &read(n, 1, "mallory"), &mut state, "bulk-secret-read");
    }
    bulk += count(&d, &read(3, 2, "mallory"), &mut state, "bulk-secret-read");
    assert_eq!(bulk, 0);
    // The 20th distinct secret raises it once; more reads in the window do not repeat it.
    bulk += count(&d, &read(19, 3, "mallory"), &mut state, "bulk-secret-read");
    bulk += count(&d, &read(20, 4, "mallory"), &mut state, "bulk-secret-read");
    // Reading an already-counted secret again does not cross the threshold a second time.
    bulk += count(&d, &read(3, 5, "mallory"), &mut state, "bulk-secret-read");
    assert_eq!(bulk, 1);
    // Another principal keeps its own count.
    for n in 0..5 {
        assert_eq!(
            count(&d, &read(n, 5, "alice"), &mut state, "bulk-secret-read"),
            0
        );
    }

    let batch = |n: u32| {
        with(
            base("BatchGetSecretValue"),
            json!({"eventID": format!("b{n}"), "requestParameters": {"secretIdList": ["a", "b"]}}),
        )
    };
    let bursts: usize = (0..7)
        .map(|n| count(&d, &batch(n), &mut state, "batch-read-burst"))
        .sum();
    assert_eq!(bursts, 1);

    // First-seen: once per (actor, secret).
    let mut fresh = MemoryState::default();
    assert_eq!(
        count(&d, &read(1, 1, "bob"), &mut fresh, "first-seen-reader"),
        1
    );
    assert_eq!(
        count(&d, &read(1, 2, "bob"), &mut fresh, "first-seen-reader"),
        0
    );
    assert_eq!(
        count(&d, &read(2, 2, "bob"), &mut fresh, "first-seen-reader"),
        1
    );
}

fn count(d: &Detector, record: &Value, state: &mut MemoryState, rule: &str) -> usize {
    d.evaluate(&record.to_string(), state)
        .unwrap()
        .iter()
        .filter(|a| a.rule == rule)
        .count()
}

#[test]
fn alerts_carry_evidence_and_no_parameter_blobs() {
    let d = detector(Environment::default());
    let mut state = MemoryState::default();
    let record = with(
        base("PutResourcePolicy"),
        json!({
            "errorCode": null,
            "requestParameters": {"secretId": "/acme/prod/payments/db-credentials", "resourcePolicy": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*"}]},
                "clientRequestToken": "planted-token-value"}
        }),
    );
    let alerts = d.evaluate(&record.to_string(), &mut state).unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.rule == "resource-policy-public")
        .unwrap();
    assert_eq!(alert.evidence["actor"], "payments-api");
    assert_eq!(
        alert.evidence["secret"],
        "/acme/prod/payments/db-credentials"
    );
    assert_eq!(alert.evidence["source_ip"], "198.51.100.7");
    assert_eq!(
        alert.alert_id,
        "resource-policy-public|id-PutResourcePolicy"
    );
    assert!(!format!("{alert:?}").contains("planted-token-value"));
}

#[test]
fn evidence_is_redacted_before_any_forwarder_sees_it() {
    let d = detector(Environment::default());
    let mut state = MemoryState::default();
    let record = with(
        base("GetSecretValue"),
        json!({"errorCode": "AccessDenied", "userAgent": "curl/8 Authorization: Bearer abcdef0123456789xyz"}),
    );
    let alerts = d.evaluate(&record.to_string(), &mut state).unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.rule == "denied-secret-access")
        .unwrap();
    assert!(
        !alert.evidence["user_agent"].contains("abcdef0123456789xyz"),
        "{:?}",
        alert.evidence
    );
    let outgoing: Vec<_> = alerts
        .iter()
        .cloned()
        .map(crate::forward::Outgoing::new)
        .collect();
    let outgoing: Vec<_> = outgoing.iter().collect();
    let loki = crate::forward::loki_body(&outgoing).to_string();
    let webhook = crate::forward::webhook_body(&outgoing).to_string();
    for output in [loki, webhook] {
        assert!(!output.contains("abcdef0123456789xyz"), "{output}");
    }
}

#[test]
fn rule_files_are_validated() {
    let bad = [
        ("version: 2\nrules: []", "version 2"),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: [1]}",
            "must be an EventBridge event pattern",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: {x: [1]}}\n  - {id: a, severity: high, summary: s, match: {x: [1]}}",
            "declared twice",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: {x: 1}}",
            "not a valid event pattern",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: severe, summary: s, match: {x: [1]}}",
            "severity",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: {x: [1]}, threshold: {count: 0, window_seconds: 60, group_by: actor}}",
            "must be positive",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: {x: [1]}, threshold: {count: 2, window_seconds: 172800, group_by: actor}}",
            "at most 86400",
        ),
        (
            "version: 1\nrules:\n  - {id: a, severity: high, summary: s, match: {x: [1]}, first_seen: {key: [actor], days: 400}}",
            "between 1 and 90",
        ),
        (
            "version: 1\nrules:\n  - {id: \"a|b\", severity: high, summary: s, match: {x: [1]}}",
            "lowercase letters",
        ),
    ];
    for (text, expected) in bad {
        let err = Detector::from_yaml(text, Environment::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn configuration_is_checked_at_cold_start() {
    use crate::handler::Config;
    let env = |extra: &[(&str, &str)]| {
        let mut map: std::collections::HashMap<String, String> = [
            ("KEYWARD_EVENT_BUS", "bus"),
            ("KEYWARD_STATE_BUCKET", "state"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        map.retain(|_, v| !v.is_empty());
        map
    };
    let config = Config::from_env(&env(&[
        (
            "KEYWARD_LOKI_PUSH_URL",
            "https://logs.example/loki/api/v1/push",
        ),
        ("KEYWARD_ALLOWED_CIDRS", "10.0.0.0/8, 192.168.0.0/16"),
        ("KEYWARD_ALLOWED_VPC_ENDPOINTS", "vpce-0abc"),
    ]))
    .unwrap();
    assert_eq!(config.allowed_cidrs.len(), 2);
    assert!(config.loki.is_some());
    for (name, value) in [
        ("KEYWARD_LOKI_PUSH_URL", "http://logs.example/push"),
        (
            "KEYWARD_LOKI_PUSH_URL",
            "http://127.0.0.1.evil.example/push",
        ),
        ("KEYWARD_ALLOWED_CIDRS", "10.0.0.0/33"),
        ("KEYWARD_ALLOWED_VPC_ENDPOINTS", "endpoint-1"),
    ] {
        let err = Config::from_env(&env(&[(name, value)])).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    assert!(Config::from_env(&env(&[("KEYWARD_STATE_BUCKET", "")])).is_err());
    let redactor = keyward_shared::redact::Redactor::new();
    assert!(crate::handler::webhook_url_from_secret("http://127.0.0.1.evil/x", &redactor).is_err());
}

/// Attempts against keyward itself (its audit bucket's policy or lifecycle, its digest key's
/// state or policy, its event bus's policy) alert, allowed or denied; the same calls on other
/// resources, or with keyward's resources unknown, do not.
#[test]
fn attempts_against_keyward_itself_alert() {
    let protected = Environment {
        protected: vec![
            "keyward-audit-123".into(),
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            "arn:aws:events:eu-west-1:123456789012:event-bus/keyward-acme".into(),
        ],
        ..Environment::default()
    };
    let d = detector(protected);
    let call = |source: &str, name: &str, parameters: serde_json::Value, error: Option<&str>| {
        let mut record = serde_json::json!({
            "eventVersion": "1.09", "eventSource": source, "eventName": name,
            "eventTime": "2026-11-23T10:00:00Z", "awsRegion": "eu-west-1",
            "sourceIPAddress": "203.0.113.9", "eventID": "e-1", "eventType": "AwsApiCall",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/admin/x"},
            "requestParameters": parameters,
        });
        if let Some(code) = error {
            record["errorCode"] = code.into();
        }
        record
    };
    for (source, name, parameters) in [
        (
            "s3.amazonaws.com",
            "PutBucketPolicy",
            serde_json::json!({"bucketName": "keyward-audit-123"}),
        ),
        (
            "s3.amazonaws.com",
            "DeleteBucketPolicy",
            serde_json::json!({"bucketName": "keyward-audit-123"}),
        ),
        (
            "s3.amazonaws.com",
            "PutBucketLifecycle",
            serde_json::json!({"bucketName": "keyward-audit-123"}),
        ),
        (
            "kms.amazonaws.com",
            "DisableKey",
            serde_json::json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}),
        ),
        (
            "kms.amazonaws.com",
            "ScheduleKeyDeletion",
            serde_json::json!({"keyId": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}),
        ),
        (
            "kms.amazonaws.com",
            "PutKeyPolicy",
            serde_json::json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}),
        ),
        (
            "events.amazonaws.com",
            "PutPermission",
            serde_json::json!({"eventBusName": "keyward-acme"}),
        ),
        (
            "s3.amazonaws.com",
            "DeleteBucket",
            serde_json::json!({"bucketName": "keyward-audit-123"}),
        ),
        (
            "kms.amazonaws.com",
            "CreateGrant",
            serde_json::json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "operations": ["Sign"]}),
        ),
        (
            "events.amazonaws.com",
            "DisableRule",
            serde_json::json!({"name": "keyward-AuditWriterFunctionAllDomainEvents", "eventBusName": "keyward-acme"}),
        ),
        (
            "events.amazonaws.com",
            "RemoveTargets",
            serde_json::json!({"rule": "x", "eventBusName": "keyward-acme", "ids": ["1"]}),
        ),
    ] {
        for error in [None, Some("AccessDenied")] {
            let raw = call(source, name, parameters.clone(), error);
            assert!(fires(&d, &raw, "keyward-tampering"), "{name} {error:?}");
        }
        let elsewhere = call(
            source,
            name,
            serde_json::json!({"bucketName": "other", "keyId": "other", "eventBusName": "default"}),
            None,
        );
        assert!(
            !fires(&d, &elsewhere, "keyward-tampering"),
            "{name} elsewhere"
        );
    }
    let unknown = detector(Environment::default());
    let raw = call(
        "s3.amazonaws.com",
        "PutBucketPolicy",
        serde_json::json!({"bucketName": "keyward-audit-123"}),
        None,
    );
    assert!(!fires(&unknown, &raw, "keyward-tampering"));
}

/// A cold start reads the built-in rules from the JSON `build.rs` writes: they must be the YAML
/// rules, field for field.
#[test]
fn the_built_in_rules_as_json_are_the_yaml_rules() {
    let yaml = Detector::from_yaml(DEFAULT_RULES, Environment::default()).unwrap();
    let json = Detector::from_json(DEFAULT_RULES_JSON, Environment::default()).unwrap();
    assert!(yaml.rules().len() > 10);
    assert_eq!(format!("{:?}", json.rules()), format!("{:?}", yaml.rules()));
}
