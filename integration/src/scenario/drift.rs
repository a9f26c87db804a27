//! Drift: the schedule finds what differs from the manifest (the dev secret has no
//! customer-managed key) and tickets it once; a governed fix passes the pre-merge guard, and
//! after the merge the verification finds it gone, closes the tickets and audits it.

use anyhow::{Context, Result};
use serde_json::json;

use super::Scenario;
use crate::fakes::github::{PullSeed, StoredIssue};
use crate::fakes::oidc::FakeIssuer;
use crate::stack::{GATEWAY_AUDIENCE, LocalStack};

const OWNER: &str = "acme";
const REPO: &str = "platform";
/// GatewayDecision events the drift routes record (one refused and one passed guard, one
/// verification).
const DECISIONS: usize = 3;

pub(super) async fn remediate_drift(s: &mut Scenario) -> Result<()> {
    let findings = detect(s).await?;
    let issue = s
        .stack
        .drift
        .github
        .fake
        .issues(OWNER, REPO)
        .into_iter()
        .next()
        .context("the drift run opened no issue")?;
    let jira_key = s
        .stack
        .drift
        .jira
        .fake
        .issues()
        .first()
        .map(|j| j.key.clone())
        .unwrap_or_default();
    let kind = issue
        .title
        .trim_start_matches("Drift: ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pull = open_fix(&s.stack, &issue, &jira_key);
    guard(s, pull).await?;
    // The change itself (here: what the pull request's Terraform would apply), then the merge.
    let secret = secret_named_in(&issue.body).unwrap_or_default();
    apply_fix(&s.stack, &kind, secret).await?;
    let merge_commit = s
        .stack
        .drift
        .github
        .fake
        .merge_pull(OWNER, REPO, pull, "carol");
    let receipt = verify(s, &merge_commit, issue.number, &jira_key).await?;
    let deliveries = s.stack.pump().await?;
    audit_artifact(s, &receipt, pull, &merge_commit).await?;
    let (audited, objects) = s.audit_grew(findings + 1 + DECISIONS).await?;
    s.check(
        "drift: detection and remediation audited",
        audited,
        format!(
            "{deliveries} deliveries: {findings} DriftDetected, 1 DriftRemediated, {DECISIONS} GatewayDecision; {objects} audit objects"
        ),
    );
    Ok(())
}

/// Two detection runs: the first tickets every finding (GitHub, Jira, webhook), the second
/// opens nothing. Returns how many findings there were.
async fn detect(s: &mut Scenario) -> Result<usize> {
    let first = s
        .stack
        .tick("DriftDetectorFunction.Detect", chrono::Utc::now())
        .await?;
    let findings = first["findings"].as_u64().unwrap_or(0) as usize;
    let second = s
        .stack
        .tick("DriftDetectorFunction.Detect", chrono::Utc::now())
        .await?;
    let drift = &s.stack.drift;
    let issues = drift.github.fake.issues(OWNER, REPO).len();
    let jira = drift.jira.fake.issues().len();
    let notified: usize = drift
        .webhook
        .fake
        .messages()
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap_or_default();
            text.lines().filter(|l| l.starts_with('•')).count()
        })
        .sum();
    let second_run_opened = second["tickets"]["opened"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX);
    s.check(
        "drift: finding ticketed once (GitHub, Jira, webhook)",
        findings >= 1
            && issues == findings
            && jira == findings
            && notified == findings
            && second_run_opened == 0,
        format!(
            "{findings} finding(s) {}; {issues} issue(s), {jira} Jira issue(s); second run opened {}",
            first["by_kind"], second["tickets"]["opened"]
        ),
    );
    Ok(findings)
}

/// The fix for the issue: a pull request with the governance fields.
fn open_fix(stack: &LocalStack, issue: &StoredIssue, jira_key: &str) -> u64 {
    let body = format!(
        "Moves the secret to the customer-managed key.\n\nDrift Issue: #{}\nDrift Type: infra\nChange Request ID: CR-7001\nEnvironment: dev\nCloud Provider: aws\nJira Key: {jira_key}\n",
        issue.number
    );
    let seed = PullSeed {
        title: "Fix drift".into(),
        body,
        author: "alice".into(),
        head_sha: "c".repeat(40),
        base_ref: "main".into(),
    };
    stack.drift.github.fake.open_pull(OWNER, REPO, seed)
}

/// The pre-merge guard refuses the fix with one approval and passes it with two.
async fn guard(s: &mut Scenario, pull: u64) -> Result<()> {
    let pr_ref = format!("refs/pull/{pull}/merge");
    let body = json!({"pull_number": pull});
    let github = s.stack.drift.github.fake.clone();
    github.review(OWNER, REPO, pull, "bob", "APPROVED");
    let token = platform_token(s, "pull_request", &pr_ref, "drift-guard.yml");
    let (refused, refusal) = s
        .stack
        .call_gateway("/v1/drift/pre-merge", &token, &body, "one approval")
        .await?;
    github.review(OWNER, REPO, pull, "carol", "APPROVED");
    let token = platform_token(s, "pull_request", &pr_ref, "drift-guard.yml");
    let (passed, _) = s
        .stack
        .call_gateway("/v1/drift/pre-merge", &token, &body, "")
        .await?;
    s.check(
        "drift: guard passes a governed fix",
        passed == 200 && refused == 422,
        format!(
            "{passed} with 2 approvals; {refused} with 1 ({})",
            refusal["reasons"][0].as_str().unwrap_or_default()
        ),
    );
    Ok(())
}

/// After the merge, the post-merge verification (run by the push of the merge commit, with no
/// input: the token's commit names the pull request) closes the issue and the Jira ticket.
async fn verify(
    s: &mut Scenario,
    merge_commit: &str,
    issue: u64,
    jira_key: &str,
) -> Result<serde_json::Value> {
    let token = platform_token_at(
        s,
        "push",
        "refs/heads/main",
        "drift-verify.yml",
        merge_commit,
    );
    let (status, body) = s
        .stack
        .call_gateway(
            "/v1/drift/post-merge",
            &token,
            &json!({}),
            "push of the merge",
        )
        .await?;
    let drift = &s.stack.drift;
    let issue_closed = drift
        .github
        .fake
        .issues(OWNER, REPO)
        .iter()
        .any(|i| i.number == issue && i.state == "closed");
    let jira_done = drift
        .jira
        .fake
        .issues()
        .iter()
        .any(|j| j.key == jira_key && j.status == "Done");
    let announced = drift.webhook.fake.messages().iter().any(|m| {
        m["text"]
            .as_str()
            .is_some_and(|t| t.contains("fixed and verified"))
    });
    s.check(
        "drift: fix verified, tickets closed, closure announced",
        status == 200 && issue_closed && jira_done && announced,
        format!(
            "post-merge {status}; issue closed {issue_closed}; Jira Done {jira_done}; webhook {announced}"
        ),
    );
    Ok(body["audit"].clone())
}

/// The receipt the workflow keeps as `.artifacts/drift-audit-pr-<N>.json`: every field the
/// platform teams' workflow names, and the audit record it points at holds the same event.
async fn audit_artifact(
    s: &mut Scenario,
    receipt: &serde_json::Value,
    pull: u64,
    merge_commit: &str,
) -> Result<()> {
    let fields = [
        "pull_request",
        "drift_issue",
        "change_request_id",
        "jira_key",
        "environment",
        "cloud_provider",
        "actor",
        "merge_commit",
        "verification",
        "audit_record_key",
        "detail_sha256",
    ];
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| receipt.get(*f).is_none_or(|v| v.is_null() || v == ""))
        .collect();
    let key = receipt["audit_record_key"].as_str().unwrap_or_default();
    let stored = s.stack.audit_object(key).await?;
    let matches = stored.as_deref().is_some_and(|bytes| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|record| {
                serde_json::from_value::<keyward_shared::events::DomainEvent>(
                    record["event"].clone(),
                )
                .ok()
            })
            .and_then(|event| event.to_detail_json().ok())
            .is_some_and(|detail| {
                keyward_shared::audit::sha256_hex(detail.as_bytes())
                    == receipt["detail_sha256"].as_str().unwrap_or_default()
            })
    });
    s.check(
        "drift: audit artifact names the record",
        missing.is_empty()
            && receipt["pull_request"] == pull
            && receipt["merge_commit"] == merge_commit
            && receipt["verification"] == "verified"
            && matches,
        format!("missing {missing:?}; {key} holds the event: {matches}"),
    );
    Ok(())
}

/// A token of acme/platform's workflow `workflow` (no environment), remembered for the log scan.
fn platform_token(s: &mut Scenario, event: &str, r#ref: &str, workflow: &str) -> String {
    platform_token_at(s, event, r#ref, workflow, &"0".repeat(40))
}

/// The same, running on commit `sha`.
fn platform_token_at(
    s: &mut Scenario,
    event: &str,
    r#ref: &str,
    workflow: &str,
    sha: &str,
) -> String {
    let issuer: &FakeIssuer = &s.stack.gateway.oidc.fake;
    let mut claims = issuer.github_claims(GATEWAY_AUDIENCE);
    claims["repository"] = "acme/platform".into();
    claims["repository_id"] = "2000010".into();
    claims["event_name"] = event.into();
    claims["ref"] = r#ref.into();
    claims["sha"] = sha.into();
    claims["job_workflow_ref"] =
        format!("acme/platform/.github/workflows/{workflow}@refs/heads/main").into();
    if let Some(claims) = claims.as_object_mut() {
        claims.remove("environment");
    }
    let token = issuer.sign(&claims);
    s.tokens.push(token.clone());
    token
}

/// The secret a drift issue is about: its body carries the finding's fingerprint in a marker,
/// `<!-- keyward-drift fingerprint="kind:/secret/name[:detail]" -->`.
fn secret_named_in(body: &str) -> Option<&str> {
    const MARKER: &str = "<!-- keyward-drift fingerprint=\"";
    let start = body.find(MARKER)? + MARKER.len();
    let fingerprint = &body[start..start + body[start..].find('"')?];
    let (_, rest) = fingerprint.split_once(':')?;
    // Names start with `/` and hold no `:`; a detail follows after the next `:`.
    Some(rest.split_once(':').map_or(rest, |(name, _)| name))
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
