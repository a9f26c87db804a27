//! The scripted scenario the local stack runs: provision, read governance back, route domain
//! events to the functions, and check every outcome. Each function issue extends it.

use anyhow::{Context, Result};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, SecretsManagerCatalog};
use keyward_shared::audit::{DigestSigner, ObjectKind, Status, VerifyOptions, verify};
use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, SecretRef, Severity,
};
use keyward_shared::ports::SecretCatalog;
use keyward_shared::redact::ExposeSecret;

use crate::stack::{LocalStack, StackOptions};

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct ScenarioReport {
    pub checks: Vec<Check>,
}

impl ScenarioReport {
    fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        });
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// A domain event of the drift detector's shape, put on the bus through the production
/// publisher: the routing, redelivery and forgery checks below replay and tamper with it, which
/// they cannot do to an event a function has already delivered.
fn sample_events() -> Vec<DomainEvent> {
    vec![DomainEvent::new(
        CorrelationId::generate(),
        Actor {
            kind: ActorKind::Schedule,
            id: "keyward-drift-hourly".into(),
        },
        Some(SecretRef {
            name: "/acme/prod/payments/stripe-api-key".into(),
            arn: None,
        }),
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: "rotation-overdue:/acme/prod/payments/stripe-api-key".into(),
            finding: "rotation-overdue".into(),
            severity: Severity::High,
            evidence: [("interval_days".to_owned(), "90".to_owned())].into(),
        },
    )]
}

pub async fn run(options: &StackOptions, verbose: bool) -> Result<(LocalStack, ScenarioReport)> {
    let mut report = ScenarioReport::default();
    let mut stack = LocalStack::start(options).await?;
    if verbose {
        println!(
            "moto at {}; bus {}; audit bucket {}",
            stack.moto.endpoint, stack.bus_name, stack.audit_bucket
        );
        println!(
            "functions: {}",
            stack
                .functions
                .values()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // 1. Governance reads back from ListSecrets alone (the tag contract round trip).
    let catalog = SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(
        &stack.moto.sdk_config(),
    ));
    let listed = catalog.list(&format!("/{}/", stack.manifest.org)).await?;
    let mut round_trips = 0;
    if verbose {
        println!(
            "\n{:<42} {:<13} {:<30} vercel",
            "secret", "class", "rotation"
        );
    }
    for declared in &stack.manifest.secrets {
        let entry = listed.iter().find(|e| e.name == declared.name.to_string());
        let governance = entry
            .and_then(|e| e.governance.as_ref().ok())
            .and_then(|g| g.as_ref());
        if governance == Some(&declared.governance) {
            round_trips += 1;
        }
        if verbose {
            let g = &declared.governance;
            let vercel = g
                .vercel
                .as_ref()
                .map(|v| {
                    format!(
                        "{} → {}",
                        v.project,
                        v.targets
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<42} {:<13} {:<30} {}",
                declared.name.to_string(),
                g.classification.as_str(),
                format!(
                    "{} / {} days",
                    g.rotation.strategy,
                    g.rotation.interval.days()
                ),
                vercel
            );
        }
    }
    report.check(
        "tag contract round trip",
        round_trips == stack.manifest.secrets.len(),
        format!(
            "{round_trips}/{} declared secrets read back identically from ListSecrets",
            stack.manifest.secrets.len()
        ),
    );

    // 2. Domain events on the bus reach the audit writer through the template's rule.
    let events = sample_events();
    stack.publish(&events).await?;
    let delivered = stack.pump().await?;
    let versions = stack.audit_versions().await?;
    report.check(
        "events routed and audited",
        delivered == events.len() && versions.len() == events.len(),
        format!("{delivered} deliveries, {} audit objects", versions.len()),
    );

    // 3. At-least-once: the same envelope again writes nothing new.
    let envelope = stack.delivered.first().cloned().unwrap_or_default();
    stack.deliver(&envelope, "redelivered").await?;
    let after_redelivery = stack.audit_versions().await?;
    report.check(
        "redelivery is idempotent",
        after_redelivery.len() == versions.len()
            && stack
                .timeline
                .last()
                .is_some_and(|t| t.outcome.starts_with("duplicate")),
        format!("{} objects after redelivery", after_redelivery.len()),
    );

    // 4. A different payload under an existing event id is a conflict: nothing overwritten, DLQ.
    let mut forged = envelope.clone();
    forged["detail"]["outcome"] = "failure".into();
    stack
        .deliver(&forged, "forged: same id, other payload")
        .await?;
    let after_forgery = stack.audit_versions().await?;
    report.check(
        "conflicting payload refused",
        after_forgery == after_redelivery
            && stack
                .timeline
                .last()
                .is_some_and(|t| t.outcome.contains("AuditConflict")),
        stack
            .timeline
            .last()
            .map(|t| t.outcome.clone())
            .unwrap_or_default(),
    );

    // 5. Something that is not a domain event fails clearly and is kept in the DLQ.
    let bogus = serde_json::json!({
        "version": "0", "id": "bogus", "detail-type": "SecretRotated", "source": "keyward.rotation",
        "account": "123456789012", "time": "2026-11-22T20:00:00Z", "region": crate::moto::REGION, "resources": [],
        "detail": {"secret": "/acme/prod/payments/db-credentials"}
    });
    stack.deliver(&bogus, "not a domain event").await?;
    report.check(
        "invalid event rejected",
        stack
            .timeline
            .last()
            .is_some_and(|t| t.outcome.contains("InvalidEvent")),
        stack
            .timeline
            .last()
            .map(|t| t.outcome.clone())
            .unwrap_or_default(),
    );
    // 6. Vercel: the parity sweep mirrors this (dev) stack's mapped secrets into the fake
    // Vercel project; a second sweep finds parity and writes nothing.
    let vercel = sweep_vercel(&mut stack).await?;
    report.check(
        "vercel: sweep mirrors mapped secrets",
        vercel.mirrored,
        vercel.detail.clone(),
    );
    report.check(
        "vercel: parity sweep writes nothing",
        vercel.second_sweep_writes == 0,
        format!(
            "{} write call(s) on the second sweep",
            vercel.second_sweep_writes
        ),
    );
    let vercel_deliveries = stack.pump().await?;
    let before_rotation_events = stack.audit_versions().await?.len();
    report.check(
        "vercel: sync events audited",
        vercel_deliveries == 1 && before_rotation_events == after_forgery.len() + 1,
        format!("{vercel_deliveries} VercelSyncCompleted delivered; {before_rotation_events} audit objects"),
    );

    // 7. Rotation: the stack plays Secrets Manager (RotateSecret in moto, then the four steps
    // through the rotation function's Runtime API) for one secret of each strategy.
    let rotation = rotate_each_strategy(&mut stack, verbose).await?;
    report.check(
        "rotation: every strategy end to end",
        rotation.failures.is_empty() && rotation.rotated == 3,
        if rotation.failures.is_empty() {
            format!(
                "{} secrets rotated (random, postgres-alternating-users, auth0-client-secret)",
                rotation.rotated
            )
        } else {
            rotation.failures.join("; ")
        },
    );
    report.check(
        "rotation: manual secret refused",
        rotation.manual_refusal.contains("GovernanceError"),
        rotation.manual_refusal.clone(),
    );
    let rotation_deliveries = stack.pump().await?;
    let audited = stack.audit_versions().await?;
    // 3 SecretRotated and 1 RotationFailed to the audit writer; the dev SecretRotated also to
    // vercel-sync, whose VercelSyncCompleted goes to the audit writer.
    report.check(
        "rotation events audited",
        rotation_deliveries == 6 && audited.len() == before_rotation_events + 5,
        format!(
            "{rotation_deliveries} deliveries (3 SecretRotated, 1 RotationFailed, 1 to vercel-sync, 1 VercelSyncCompleted); {} audit objects",
            audited.len()
        ),
    );
    stack.provisioned_values.extend(rotation.new_values);
    let rotated = vercel_matches_current(&stack, VERCEL_SECRET).await?;
    let (requests, _) = stack.drain_redeploys().await?;
    let deployments = stack.vercel.fake.deployments(&stack.vercel_project);
    report.check(
        "vercel: rotation reaches Vercel, one redeploy",
        rotated.0 && deployments == 1 && requests == 2,
        format!(
            "{}; {deployments} deployment(s) for {requests} queued request(s) (sweep, rotation)",
            rotated.1
        ),
    );

    // 8. Anomaly forwarding: a denied read from the CloudTrail stream, then a log file with a
    // burst of reads streamed from the trail bucket, redelivered (EventBridge and S3 deliver
    // at least once), and a digest file the template's rule does not route.
    let anomalies = detect_anomalies(&mut stack).await?;
    report.check(
        "anomaly: denied read alerted (stream)",
        anomalies.denied_alerted,
        anomalies.denied_detail.clone(),
    );
    report.check(
        "anomaly: log file scanned, alerts once",
        anomalies.bulk_alerts == 1 && anomalies.redelivery_sent_nothing,
        format!(
            "{} bulk-read alert(s); redelivery: {}",
            anomalies.bulk_alerts, anomalies.redelivery
        ),
    );
    report.check(
        "anomaly: digest file not routed",
        anomalies.digest_unrouted,
        "CloudTrail-Digest key matched no rule",
    );
    let anomaly_deliveries = stack.pump().await?;
    let audited = stack.audit_versions().await?;
    report.check(
        "anomaly: alerts audited",
        anomaly_deliveries == anomalies.alerts
            && audited.len() == before_rotation_events + 5 + anomalies.alerts,
        format!(
            "{anomaly_deliveries} AnomalyDetected events for {} alerts; {} audit objects",
            anomalies.alerts,
            audited.len()
        ),
    );

    // 9. The CI gateway, called as GitHub Actions would with tokens from the fake OIDC
    // issuer: a preflight, a denial, a sync request and its replay, all decisions audited.
    let before_gateway = audited.len();
    let gateway = call_the_gateway(&mut stack).await?;
    report.check(
        "gateway: preflight answers (OIDC verified)",
        gateway.preflight_status == 200 || gateway.preflight_status == 412,
        gateway.preflight_detail.clone(),
    );
    report.check(
        "gateway: unbound repository denied",
        gateway.denied_status == 403,
        gateway.denied_detail.clone(),
    );
    report.check(
        "gateway: sync requested once, replay refused",
        gateway.sync_status == 202 && gateway.replay_status == 401,
        format!(
            "first {} then {} ({})",
            gateway.sync_status, gateway.replay_status, gateway.replay_detail
        ),
    );
    let gateway_deliveries = stack.pump().await?;
    let audited = stack.audit_versions().await?;
    // Two allowed and two denied decisions (the unbound repository, the replay), one
    // VercelSyncRequested.
    report.check(
        "gateway: decisions and the sync request audited",
        gateway_deliveries == 5 && audited.len() == before_gateway + 5,
        format!(
            "{gateway_deliveries} events delivered; {} audit objects",
            audited.len()
        ),
    );

    // 10. Drift: the schedule finds what differs from the manifest (the dev secret has no
    // customer-managed key) and tickets it once; a governed fix passes the pre-merge guard,
    // and after the merge the verification finds it gone, closes the tickets and audits it.
    let before_drift = stack.audit_versions().await?.len();
    let drift = remediate_drift(&mut stack).await?;
    report.check(
        "drift: finding ticketed once (GitHub, Jira, webhook)",
        drift.findings >= 1
            && drift.issues == drift.findings
            && drift.jira == drift.findings
            && drift.notified == drift.findings
            && drift.second_run_opened == 0,
        drift.detail.clone(),
    );
    report.check(
        "drift: guard passes a governed fix",
        drift.guard_status == 200 && drift.guard_refused_status == 422,
        format!(
            "{} with 2 approvals; {} with 1 ({})",
            drift.guard_status, drift.guard_refused_status, drift.guard_refusal
        ),
    );
    report.check(
        "drift: fix verified, tickets closed",
        drift.verify_status == 200 && drift.issue_closed && drift.jira_done,
        format!(
            "post-merge {}; issue closed {}; Jira Done {}",
            drift.verify_status, drift.issue_closed, drift.jira_done
        ),
    );
    let drift_deliveries = stack.pump().await?;
    let audited = stack.audit_versions().await?;
    report.check(
        "drift: detection and remediation audited",
        audited.len() == before_drift + drift.findings + 1 + drift.decisions,
        format!(
            "{drift_deliveries} deliveries: {} DriftDetected, 1 DriftRemediated, {} GatewayDecision; {} audit objects",
            drift.findings,
            drift.decisions,
            audited.len()
        ),
    );

    // 11. The digest schedule seals the trail; the verifier walks it offline with the public key.
    // (Wait out the current second: S3 LastModified has one-second resolution, and the digest
    // covers records written before its period end.)
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sealed = stack
        .tick("AuditDigestFunction.Seal", chrono::Utc::now())
        .await?;
    let public_key = KmsDigestSigner::new(
        aws_sdk_kms::Client::new(&stack.moto.sdk_config()),
        &stack.digest_key_id,
    )
    .public_key_der()
    .await?;
    let bucket = S3AuditBucket::new(stack.moto.s3(), &stack.audit_bucket);
    let verification = verify(
        &bucket,
        &stack.audit_bucket,
        &public_key,
        &VerifyOptions::default(),
    )
    .await?;
    let sealed_records = sealed["records"].as_u64().unwrap_or(0) as usize;
    report.check(
        "digest seals every record",
        sealed_records == audited.len(),
        format!(
            "{sealed_records} of {} records in {}",
            audited.len(),
            sealed["key"].as_str().unwrap_or("?")
        ),
    );
    report.check(
        "audit verify: trail valid",
        verification.ok() && verification.count(ObjectKind::Record, Status::Valid) == audited.len(),
        verification.summary(),
    );
    if verbose {
        println!("\naudit verify: {}", verification.summary());
    }

    let dlq = stack.dlq_depth().await?;
    report.check(
        "dead-letter queue holds the failures",
        dlq == 2,
        format!("{dlq} messages"),
    );

    // 12. No provisioned or rotated secret value (nor a token) appears in any function's logs.
    let logs = stack.function_logs();
    let leaked = stack
        .provisioned_values
        .iter()
        .filter(|v| logs.contains(v.expose_secret()))
        .count()
        + gateway
            .tokens
            .iter()
            .chain(&drift.tokens)
            .filter(|t| logs.contains(t.as_str()) || logs.contains(&t[t.len() - 40..]))
            .count();
    report.check(
        "no secret value in logs",
        leaked == 0 && !logs.is_empty(),
        format!("{} log bytes scanned, {leaked} leaks", logs.len()),
    );

    Ok((stack, report))
}

struct DriftRun {
    findings: usize,
    issues: usize,
    jira: usize,
    notified: usize,
    second_run_opened: usize,
    detail: String,
    guard_status: u16,
    guard_refused_status: u16,
    guard_refusal: String,
    verify_status: u16,
    issue_closed: bool,
    jira_done: bool,
    /// GatewayDecision events the drift routes recorded.
    decisions: usize,
    /// The OIDC tokens the drift calls used (for the log scan).
    tokens: Vec<String>,
}

async fn remediate_drift(stack: &mut LocalStack) -> Result<DriftRun> {
    let (owner, repo) = ("acme", "platform");
    let first = stack
        .tick("DriftDetectorFunction.Detect", chrono::Utc::now())
        .await?;
    let findings = first["findings"].as_u64().unwrap_or(0) as usize;
    let second = stack
        .tick("DriftDetectorFunction.Detect", chrono::Utc::now())
        .await?;
    let issues = stack.github.fake.issues(owner, repo);
    let jira = stack.jira.fake.issues();
    let notified = stack
        .drift_webhook
        .fake
        .messages()
        .iter()
        .map(|m| {
            m["text"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with('•'))
                .count()
        })
        .sum();
    let detail = format!(
        "{findings} finding(s) {}; {} issue(s), {} Jira issue(s); second run opened {}",
        first["by_kind"],
        issues.len(),
        jira.len(),
        second["tickets"]["opened"]
    );
    // The fix for the first issue: a pull request with the governance fields.
    let issue = issues.first().context("the drift run opened no issue")?;
    let kind = issue
        .title
        .trim_start_matches("Drift: ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let jira_key = jira.first().map(|j| j.key.clone()).unwrap_or_default();
    let body = format!(
        "Moves the secret to the customer-managed key.\n\nDrift Issue: #{}\nDrift Type: {kind}\nChange Request ID: CR-7001\nEnvironment: dev\nCloud Provider: aws\nJira Key: {jira_key}\n",
        issue.number
    );
    let pull = stack.github.fake.open_pull(
        owner,
        repo,
        crate::fakes::github::PullSeed {
            title: "Fix drift".into(),
            body,
            author: "alice".into(),
            head_sha: "c".repeat(40),
            base_ref: "main".into(),
        },
    );
    let audience = crate::stack::GATEWAY_AUDIENCE;
    let issuer = stack.oidc.fake.clone();
    let platform = |event: &str, r#ref: &str, workflow: &str| {
        let mut claims = issuer.github_claims(audience);
        claims["repository"] = "acme/platform".into();
        claims["repository_id"] = "2000010".into();
        claims["event_name"] = event.into();
        claims["ref"] = r#ref.into();
        claims["job_workflow_ref"] =
            format!("acme/platform/.github/workflows/{workflow}@refs/heads/main").into();
        claims.as_object_mut().map(|c| c.remove("environment"));
        issuer.sign(&claims)
    };
    let pr_ref = format!("refs/pull/{pull}/merge");
    let mut tokens = Vec::new();
    let mut platform = |event: &str, r#ref: &str, workflow: &str| {
        let token = platform(event, r#ref, workflow);
        tokens.push(token.clone());
        token
    };
    let guard_body = serde_json::json!({"pull_number": pull});
    stack
        .github
        .fake
        .review(owner, repo, pull, "bob", "APPROVED");
    let (guard_refused_status, refused) = stack
        .call_gateway(
            "/v1/drift/pre-merge",
            &platform("pull_request", &pr_ref, "drift-guard.yml"),
            &guard_body,
            "one approval",
        )
        .await?;
    stack
        .github
        .fake
        .review(owner, repo, pull, "carol", "APPROVED");
    let (guard_status, _) = stack
        .call_gateway(
            "/v1/drift/pre-merge",
            &platform("pull_request", &pr_ref, "drift-guard.yml"),
            &guard_body,
            "",
        )
        .await?;
    // The change itself (here: what the pull request's Terraform would apply), then the merge.
    let secret = keyward_drift::findings::Finding::secret_of(
        keyward_drift::tickets::fingerprint_in(&issue.body).unwrap_or_default(),
    )
    .unwrap_or_default()
    .to_owned();
    apply_fix(stack, &kind, &secret).await?;
    stack.github.fake.merge_pull(owner, repo, pull, "carol");
    let (verify_status, _) = stack
        .call_gateway(
            "/v1/drift/post-merge",
            &platform("push", "refs/heads/main", "drift-verify.yml"),
            &guard_body,
            "",
        )
        .await?;
    let issue_closed = stack
        .github
        .fake
        .issues(owner, repo)
        .iter()
        .any(|i| i.number == issue.number && i.state == "closed");
    let jira_done = stack
        .jira
        .fake
        .issues()
        .iter()
        .any(|j| j.key == jira_key && j.status == "Done");
    Ok(DriftRun {
        findings,
        issues: issues.len(),
        jira: jira.len(),
        notified,
        second_run_opened: second["tickets"]["opened"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(usize::MAX),
        detail,
        guard_status,
        guard_refused_status,
        guard_refusal: refused["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        verify_status,
        issue_closed,
        jira_done,
        decisions: 3,
        tokens,
    })
}

/// What the drift fix's pull request changes in the account.
async fn apply_fix(stack: &LocalStack, kind: &str, secret: &str) -> Result<()> {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config());
    match kind {
        "aws-managed-key" => {
            let key = aws_sdk_kms::Client::new(&stack.moto.sdk_config())
                .create_key()
                .send()
                .await?
                .key_metadata
                .and_then(|m| m.arn)
                .context("CreateKey returned no ARN")?;
            sm.update_secret()
                .secret_id(secret)
                .kms_key_id(key)
                .send()
                .await?;
            Ok(())
        }
        other => anyhow::bail!("the scenario does not know how to fix {other} on {secret}"),
    }
}

/// The dev secret with a Vercel mapping (preview and development, `SESSION_SECRET`).
const VERCEL_SECRET: &str = "/acme/dev/web/session-key";

struct VercelRun {
    mirrored: bool,
    detail: String,
    second_sweep_writes: u64,
}

/// Whether every record keyward wrote for `secret` holds its AWSCURRENT value (the fake keeps
/// values; the real API would not show sensitive ones).
async fn vercel_matches_current(stack: &LocalStack, secret: &str) -> Result<(bool, String)> {
    let current = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config())
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await?
        .secret_string
        .unwrap_or_default();
    let ours: Vec<_> = stack
        .vercel
        .fake
        .envs(&stack.vercel_project)
        .into_iter()
        .filter(|e| {
            e.comment
                .as_deref()
                .is_some_and(|c| c.contains(&format!("secret={secret};")))
        })
        .collect();
    let targets: Vec<String> = ours.iter().map(|e| e.target.join("+")).collect();
    let matching = ours.iter().filter(|e| e.value == current).count();
    Ok((
        ours.len() == 2 && matching == 2,
        format!(
            "{secret}: {matching}/{} records hold AWSCURRENT ({})",
            ours.len(),
            targets.join(", ")
        ),
    ))
}

async fn sweep_vercel(stack: &mut LocalStack) -> Result<VercelRun> {
    let now = chrono::Utc::now();
    let first = stack.tick("VercelSyncFunction.ParitySweep", now).await?;
    let (mirrored, detail) = vercel_matches_current(stack, VERCEL_SECRET).await?;
    let second = stack.tick("VercelSyncFunction.ParitySweep", now).await?;
    Ok(VercelRun {
        mirrored: mirrored && first["writes"].as_u64() == Some(1),
        detail: format!("{detail}; {} write call(s)", first["writes"]),
        second_sweep_writes: second["writes"].as_u64().unwrap_or(u64::MAX),
    })
}

/// What the rotation part of the scenario found.
struct RotationRun {
    rotated: usize,
    failures: Vec<String>,
    manual_refusal: String,
    /// Values the rotations created, for the log scan.
    new_values: Vec<keyward_shared::redact::SecretString>,
}

const ROTATING: [&str; 3] = [
    "/acme/dev/web/session-key",
    "/acme/prod/payments/db-credentials",
    "/acme/prod/web/auth0-m2m",
];

async fn rotate_each_strategy(stack: &mut LocalStack, verbose: bool) -> Result<RotationRun> {
    use keyward_shared::redact::SecretString;
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config());
    let stage = |name: String, stage: &'static str| {
        let sm = sm.clone();
        async move {
            sm.get_secret_value()
                .secret_id(name)
                .version_stage(stage)
                .send()
                .await
                .ok()
                .and_then(|o| o.secret_string)
        }
    };
    let mut run = RotationRun {
        rotated: 0,
        failures: Vec::new(),
        manual_refusal: String::new(),
        new_values: Vec::new(),
    };
    for name in ROTATING {
        let before = stage(name.to_owned(), "AWSCURRENT")
            .await
            .unwrap_or_default();
        let token = uuid::Uuid::new_v4().to_string();
        let started = std::time::Instant::now();
        if let Err(err) = stack.rotate(name, &token).await {
            run.failures.push(format!("{name}: {err}"));
            continue;
        }
        let after = stage(name.to_owned(), "AWSCURRENT")
            .await
            .unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_str(&after).unwrap_or_default();
        for field in ["password", "client_secret"] {
            if let Some(value) = doc[field].as_str() {
                run.new_values.push(SecretString::from(value.to_owned()));
            }
        }
        run.new_values.push(SecretString::from(after.clone()));
        // The rotated credential works where it is used.
        let works = if name.ends_with("db-credentials") {
            stack
                .postgres
                .connect_as(
                    doc["username"].as_str().unwrap_or_default(),
                    doc["password"].as_str().unwrap_or_default(),
                    crate::stack::APP_DATABASE,
                )
                .await
                .is_ok()
        } else if name.ends_with("auth0-m2m") {
            stack
                .auth0_clients
                .get(name)
                .and_then(|id| stack.auth0.fake.secret_of(id))
                .as_deref()
                == doc["client_secret"].as_str()
        } else {
            !after.is_empty()
        };
        if after == before || !works {
            run.failures.push(format!(
                "{name}: AWSCURRENT changed={}, works={works}",
                after != before
            ));
            continue;
        }
        run.rotated += 1;
        if verbose {
            let user = doc["username"]
                .as_str()
                .map(|u| format!(" (now {u})"))
                .unwrap_or_default();
            println!(
                "rotated {name}{user} in {} ms",
                started.elapsed().as_millis()
            );
        }
    }
    let token = uuid::Uuid::new_v4().to_string();
    run.manual_refusal = match stack
        .rotate("/acme/prod/payments/stripe-api-key", &token)
        .await
    {
        Ok(()) => "a manual secret was rotated".into(),
        Err(err) => err.to_string(),
    };
    Ok(run)
}

/// What the anomaly part of the scenario found.
struct AnomalyRun {
    denied_alerted: bool,
    denied_detail: String,
    bulk_alerts: usize,
    redelivery: String,
    redelivery_sent_nothing: bool,
    digest_unrouted: bool,
    /// Alerts raised in all (each becomes one AnomalyDetected event).
    alerts: usize,
}

async fn detect_anomalies(stack: &mut LocalStack) -> Result<AnomalyRun> {
    let sample: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        crate::repo_root().join("events/anomaly-forwarder/get-secret-value-denied.json"),
    )?)?;
    stack.deliver_aws(&sample, "").await?;
    let rules_in_loki = |stack: &LocalStack, rule: &str| {
        stack
            .loki
            .fake
            .entries()
            .iter()
            .filter(|e| e.labels.get("rule").map(String::as_str) == Some(rule))
            .count()
    };
    let denied_alerted = rules_in_loki(stack, "denied-secret-access") == 1
        && !stack.webhook.fake.messages().is_empty();
    let denied_detail = stack
        .timeline
        .last()
        .map(|t| t.outcome.clone())
        .unwrap_or_default();

    // 20 distinct secrets read by one user within a minute.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let records: Vec<serde_json::Value> = (0..20)
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
                "requestParameters": {"secretId": format!("/acme/prod/svc{n}/api-key")},
            })
        })
        .collect();
    let (_, created) = stack.put_log_file(&records).await?;
    stack.deliver_aws(&created, "").await?;
    stack.deliver_aws(&created, "redelivered").await?;
    let redelivery = stack
        .timeline
        .last()
        .map(|t| t.outcome.clone())
        .unwrap_or_default();
    let redelivery_sent_nothing = redelivery.contains("sent [0,0,0]");
    let bulk_alerts = rules_in_loki(stack, "bulk-secret-read");

    let digest_key = "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/11/20/123456789012_CloudTrail-Digest_eu-west-1_keyward_eu-west-1_20261120T110012Z.json.gz";
    let digest_event = stack.object_created(digest_key, 1024);
    let routed = stack.deliver_aws(&digest_event, "digest file").await?;
    Ok(AnomalyRun {
        denied_alerted,
        denied_detail,
        bulk_alerts,
        redelivery,
        redelivery_sent_nothing,
        digest_unrouted: routed == 0,
        alerts: stack.loki.fake.entries().len(),
    })
}

/// What the gateway part of the scenario found.
struct GatewayRun {
    preflight_status: u16,
    preflight_detail: String,
    denied_status: u16,
    denied_detail: String,
    sync_status: u16,
    replay_status: u16,
    replay_detail: String,
    /// Every token sent, for the log scan.
    tokens: Vec<String>,
}

async fn call_the_gateway(stack: &mut LocalStack) -> Result<GatewayRun> {
    let audience = crate::stack::GATEWAY_AUDIENCE;
    let issuer = stack.oidc.fake.clone();
    // acme/payments deploying to prod from main (binding payments-deploy).
    let deploy = issuer.sign(&issuer.github_claims(audience));
    let (preflight_status, body) = stack
        .call_gateway(
            "/v1/preflight",
            &deploy,
            &serde_json::json!({"environment": "prod", "service": "payments"}),
            "",
        )
        .await?;
    let preflight_detail = format!(
        "{preflight_status}: {} checks, {} missing",
        body["checklist"].as_array().map(Vec::len).unwrap_or(0),
        body["missing"].as_array().map(Vec::len).unwrap_or(0)
    );
    // The same repository name, recreated (new id): no binding.
    let mut claims = issuer.github_claims(audience);
    claims["repository_id"] = "2999999".into();
    let impostor = issuer.sign(&claims);
    let (denied_status, body) = stack
        .call_gateway(
            "/v1/preflight",
            &impostor,
            &serde_json::json!({"environment": "prod", "service": "payments"}),
            "recreated repository",
        )
        .await?;
    let denied_detail = body["error"]["message"].as_str().unwrap_or("").to_owned();
    // acme/web's release workflow asks for a Vercel sync, then replays its token.
    let mut claims = issuer.github_claims(audience);
    claims["repository"] = "acme/web".into();
    claims["repository_id"] = "2000003".into();
    claims["event_name"] = "workflow_dispatch".into();
    claims["job_workflow_ref"] = "acme/web/.github/workflows/release.yml@refs/heads/main".into();
    let release = issuer.sign(&claims);
    let scope = serde_json::json!({"environment": "prod", "service": "web"});
    let (sync_status, _) = stack
        .call_gateway("/v1/sync/vercel", &release, &scope, "")
        .await?;
    let (replay_status, body) = stack
        .call_gateway("/v1/sync/vercel", &release, &scope, "replayed token")
        .await?;
    Ok(GatewayRun {
        preflight_status,
        preflight_detail,
        denied_status,
        denied_detail,
        sync_status,
        replay_status,
        replay_detail: body["error"]["message"].as_str().unwrap_or("").to_owned(),
        tokens: vec![deploy, impostor, release],
    })
}
