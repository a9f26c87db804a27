//! Anomaly forwarding: a denied read from the CloudTrail stream, then a log file with a burst of
//! reads streamed from the trail bucket, redelivered (EventBridge and S3 deliver at least once),
//! a storm of deletions folded into one grouped alert, and a digest file the template's rule
//! does not route.

use anyhow::Result;

use super::Scenario;
use crate::stack::LocalStack;

pub(super) async fn forward_anomalies(s: &mut Scenario) -> Result<()> {
    let sample: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        crate::repo_root().join("events/anomaly-forwarder/get-secret-value-denied.json"),
    )?)?;
    s.stack.deliver_aws(&sample, "").await?;
    let denied_alerted = alerts_for(&s.stack, "denied-secret-access") == 1
        && !s.stack.anomaly.webhook.fake.messages().is_empty();
    let denied_detail = s.stack.last_outcome();
    s.check(
        "anomaly: denied read alerted (stream)",
        denied_alerted,
        denied_detail,
    );

    let (_, created) = s.stack.anomaly.put_log_file(&bulk_read(20)).await?;
    s.stack.deliver_aws(&created, "").await?;
    s.stack.deliver_aws(&created, "redelivered").await?;
    let redelivery = s.stack.last_outcome();
    let bulk_alerts = alerts_for(&s.stack, "bulk-secret-read");
    s.check(
        "anomaly: log file scanned, alerts once",
        bulk_alerts == 1 && redelivery.contains("sent [0,0,0]"),
        format!("{bulk_alerts} bulk-read alert(s); redelivery: {redelivery}"),
    );

    // A storm: one principal schedules 20 secrets for deletion (a `terraform destroy`), in
    // one log file delivered twice. One grouped alert, in Loki and in the chat.
    let chat_before = s.stack.anomaly.webhook.fake.messages().len();
    let (_, created) = s.stack.anomaly.put_log_file(&deletions(20)).await?;
    s.stack.deliver_aws(&created, "deletion storm").await?;
    s.stack
        .deliver_aws(&created, "deletion storm, redelivered")
        .await?;
    let groups = groups_for(&s.stack, "deletion-scheduled");
    let chat: Vec<String> = s.stack.anomaly.webhook.fake.messages()[chat_before..]
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_owned())
        .collect();
    let chat_grouped = chat.len() == 1 && chat[0].contains("20 matches");
    s.check(
        "anomaly: a storm of deletions is one grouped alert (Loki, webhook)",
        groups == [(String::from("opened"), 20)] && chat_grouped,
        format!("Loki groups {groups:?}; webhook {chat:?}"),
    );

    let digest_key = "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/11/20/123456789012_CloudTrail-Digest_eu-west-1_keyward_eu-west-1_20261120T110012Z.json.gz";
    let digest_event = s.stack.anomaly.object_created(digest_key, 1024);
    let routed = s.stack.deliver_aws(&digest_event, "digest file").await?;
    s.check(
        "anomaly: digest file not routed",
        routed == 0,
        "CloudTrail-Digest key matched no rule",
    );

    // Each alert becomes one AnomalyDetected event.
    let alerts = s.stack.anomaly.loki.fake.entries().len();
    let deliveries = s.stack.pump().await?;
    let (audited, objects) = s.audit_grew(alerts).await?;
    s.check(
        "anomaly: alerts audited",
        deliveries == alerts && audited,
        format!("{deliveries} AnomalyDetected events for {alerts} alerts; {objects} audit objects"),
    );
    Ok(())
}

/// Alerts of one rule in Loki.
fn alerts_for(stack: &LocalStack, rule: &str) -> usize {
    let entries = stack.anomaly.loki.fake.entries();
    entries
        .iter()
        .filter(|e| e.labels.get("rule").map(String::as_str) == Some(rule))
        .count()
}

/// The groups of one rule's alerts in Loki: (role, member count) per entry.
fn groups_for(stack: &LocalStack, rule: &str) -> Vec<(String, u64)> {
    stack
        .anomaly
        .loki
        .fake
        .entries()
        .iter()
        .filter(|e| e.labels.get("rule").map(String::as_str) == Some(rule))
        .filter_map(|e| {
            let line: serde_json::Value = serde_json::from_str(&e.line).ok()?;
            let group = line.get("group")?;
            Some((group["role"].as_str()?.to_owned(), group["count"].as_u64()?))
        })
        .collect()
}

/// The declared secret the bulk reader reads among undeclared ones.
pub(super) const GHOST_READ: &str = "/acme/prod/payments/stripe-api-key";
/// Who reads it: a role the manifest does not name for it.
pub(super) const GHOST_READER: &str = "arn:aws:iam::123456789012:role/batch-export";

/// `n` secrets scheduled for deletion by one principal within a minute.
fn deletions(n: usize) -> Vec<serde_json::Value> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (0..n)
        .map(|n| {
            serde_json::json!({
                "eventVersion": "1.09", "eventID": uuid::Uuid::new_v4().to_string(), "eventTime": now,
                "eventSource": "secretsmanager.amazonaws.com", "eventName": "DeleteSecret",
                "eventType": "AwsApiCall", "readOnly": false, "managementEvent": true,
                "awsRegion": crate::moto::REGION, "sourceIPAddress": "10.1.2.3",
                "userAgent": "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 terraform-provider-aws/5.70.0",
                "recipientAccountId": "123456789012",
                "userIdentity": {"type": "IAMUser", "accountId": "123456789012",
                    "arn": "arn:aws:iam::123456789012:user/ops-laptop", "userName": "ops-laptop"},
                "requestParameters": {"secretId": format!("/acme/prod/legacy{n}/api-key"),
                    "recoveryWindowInDays": 7},
            })
        })
        .collect()
}

/// `n` distinct secrets read by one user within a minute. The first is a declared secret whose
/// manifest names other readers: the posture shows this role as its ghost reader.
fn bulk_read(n: usize) -> Vec<serde_json::Value> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (0..n)
        .map(|n| {
            serde_json::json!({
                "eventVersion": "1.09", "eventID": uuid::Uuid::new_v4().to_string(), "eventTime": now,
                "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue",
                "eventType": "AwsApiCall", "readOnly": true, "managementEvent": true,
                "awsRegion": crate::moto::REGION, "sourceIPAddress": "10.1.2.3",
                "userAgent": "aws-sdk-go-v2/1.30.3", "recipientAccountId": "123456789012",
                "userIdentity": {"type": "AssumedRole", "accountId": "123456789012",
                    "arn": "arn:aws:sts::123456789012:assumed-role/batch-export/i-0abc",
                    "sessionContext": {"sessionIssuer": {"type": "Role",
                        "arn": "arn:aws:iam::123456789012:role/batch-export", "userName": "batch-export"}}},
                "requestParameters": {"secretId": match n {
                    0 => String::from(GHOST_READ),
                    n => format!("/acme/prod/svc{n}/api-key"),
                }},
            })
        })
        .collect()
}
