//! Drift: the schedule finds what differs from the manifest (the dev secret has no
//! customer-managed key; the web workload's `ExternalSecret` is not what keyward projects) and
//! tickets each finding once; a governed fix of each passes the pre-merge guard, and after the
//! merge the verification finds it gone, closes the tickets and audits it.

use anyhow::{Context, Result};
use serde_json::json;

use super::Scenario;
use crate::fakes::github::{PullSeed, StoredIssue};
use crate::fakes::oidc::FakeIssuer;
use crate::stack::{ARGOCD_APP, GATEWAY_AUDIENCE, LocalStack};

const OWNER: &str = "acme";
const REPO: &str = "platform";
const WORKLOAD_LABEL: &str = "workload-drift";
/// GatewayDecision events the drift routes record: per fix a passed guard and a verification,
/// the infra fix's one-approval refusal and the workload fix's verification before its sync
/// (the workload fix refused for its fields names no environment to authorise: no decision).
const DECISIONS: usize = 6;
/// DriftRemediated events: each fix verified, and the workload fix still detected before its sync.
const REMEDIATIONS: usize = 3;

pub(super) async fn remediate_drift(s: &mut Scenario) -> Result<()> {
    let before = super::posture::open_drift(s).await?;
    let findings = detect(s).await?;
    // Deliver the findings to the audit writer now: posture reads drift from the trail.
    s.stack.pump().await?;
    super::posture::drift_is_open(s, &before).await?;
    let issues = s.stack.drift.github.fake.issues(OWNER, REPO);
    let infra = issues
        .iter()
        .find(|i| !i.labels.iter().any(|l| l == WORKLOAD_LABEL))
        .cloned()
        .context("the drift run opened no infra issue")?;
    let workload = issues
        .iter()
        .find(|i| i.labels.iter().any(|l| l == WORKLOAD_LABEL))
        .cloned()
        .context("the drift run opened no workload issue")?;
    remediate_infra(s, &infra).await?;
    remediate_workload(s, &workload).await?;
    let (audited, objects) = s.audit_grew(findings + REMEDIATIONS + DECISIONS).await?;
    s.check(
        "drift: detection and remediation audited",
        audited,
        format!(
            "{findings} DriftDetected, {REMEDIATIONS} DriftRemediated, {DECISIONS} GatewayDecision; {objects} audit objects"
        ),
    );
    Ok(())
}

/// The Jira issue opened beside a GitHub issue (same title).
fn jira_key_of(s: &Scenario, issue: &StoredIssue) -> String {
    s.stack
        .drift
        .jira
        .fake
        .issues()
        .into_iter()
        .find(|j| j.summary == issue.title)
        .map(|j| j.key)
        .unwrap_or_default()
}

/// Infra drift: the account is changed (what the pull request's Terraform would apply).
async fn remediate_infra(s: &mut Scenario, issue: &StoredIssue) -> Result<()> {
    let jira_key = jira_key_of(s, issue);
    let kind = issue
        .title
        .trim_start_matches("Drift: ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let fields = format!(
        "Drift Issue: #{}\nDrift Type: infra\nChange Request ID: CR-7001\nEnvironment: dev\nCloud Provider: aws\nJira Key: {jira_key}\n",
        issue.number
    );
    let pull = open_fix(&s.stack, &fields, "c");
    guard(s, pull, "", "infra").await?;
    let secret = secret_named_in(&issue.body).unwrap_or_default();
    apply_fix(&s.stack, &kind, secret).await?;
    let merge_commit = s
        .stack
        .drift
        .github
        .fake
        .merge_pull(OWNER, REPO, pull, "carol");
    let receipt = verify(s, &merge_commit, issue.number, &jira_key, "infra").await?;
    s.stack.pump().await?;
    audit_artifact(s, &receipt, pull, &merge_commit, "infra").await
}

/// Workload drift: the chart renders keyward's projection, and Argo CD syncs it after the merge.
async fn remediate_workload(s: &mut Scenario, issue: &StoredIssue) -> Result<()> {
    let jira_key = jira_key_of(s, issue);
    let both_labels = issue.labels.iter().any(|l| l == "drift")
        && issue.labels.iter().any(|l| l == WORKLOAD_LABEL);
    let fields = format!(
        "Drift Issue: #{}\nDrift Type: workload\nChange Request ID: CR-7002\nEnvironment: dev\nCloud Provider: aws\nJira Key: {jira_key}\n",
        issue.number
    );
    // Without the application it syncs, a workload fix is refused.
    let unnamed = open_fix(&s.stack, &fields, "d");
    let refused = guard(s, unnamed, "", "workload").await?;
    let pull = open_fix(
        &s.stack,
        &format!("{fields}ArgoCD App: {ARGOCD_APP}\n"),
        "e",
    );
    guard(s, pull, "with both approvals", "workload").await?;
    let drift = &s.stack.drift;
    let name = drift.projection["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let namespace = drift.projection["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    drift.argocd.fake.set_target(
        ARGOCD_APP,
        "ExternalSecret",
        &namespace,
        &name,
        drift.projection.clone(),
    );
    let merge_commit = drift.github.fake.merge_pull(OWNER, REPO, pull, "carol");
    // Merged, not yet synced: the application is OutOfSync, so the fix is not verified.
    let token = platform_token_at(
        s,
        "push",
        "refs/heads/main",
        "drift-verify.yml",
        &merge_commit,
    );
    let (unsynced, answer) = s
        .stack
        .call_gateway(
            "/v1/drift/post-merge",
            &token,
            &json!({}),
            "before the sync",
        )
        .await?;
    let waiting = answer["remaining"].to_string();
    s.stack.drift.argocd.fake.sync(ARGOCD_APP);
    s.check(
        "drift: workload drift ticketed with both labels, ArgoCD App guarded, verified only once synced",
        both_labels
            && refused.contains("ArgoCD App")
            && unsynced == 409
            && waiting.contains("OutOfSync"),
        format!(
            "issue #{} labels {:?}; without ArgoCD App: {refused}; merged, before the sync: {unsynced} {waiting}",
            issue.number, issue.labels
        ),
    );
    let receipt = verify(s, &merge_commit, issue.number, &jira_key, "workload").await?;
    s.stack.pump().await?;
    audit_artifact(s, &receipt, pull, &merge_commit, "workload").await
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

/// The fix for the issue: a pull request with the governance fields, at head `<head>…`.
fn open_fix(stack: &LocalStack, fields: &str, head: &str) -> u64 {
    let seed = PullSeed {
        title: "Fix drift".into(),
        body: format!("Brings the estate back to the manifest.\n\n{fields}"),
        author: "alice".into(),
        head_sha: head.repeat(40),
        base_ref: "main".into(),
    };
    stack.drift.github.fake.open_pull(OWNER, REPO, seed)
}

/// The pre-merge guard refuses the fix with one approval and passes it with two; returns the
/// refusal's first reason. With `both` set, both approvals are given before the one call.
async fn guard(s: &mut Scenario, pull: u64, both: &str, drift_type: &str) -> Result<String> {
    let pr_ref = format!("refs/pull/{pull}/merge");
    let body = json!({"pull_number": pull});
    let github = s.stack.drift.github.fake.clone();
    github.review(OWNER, REPO, pull, "bob", "APPROVED");
    if !both.is_empty() {
        github.review(OWNER, REPO, pull, "carol", "APPROVED");
        let token = platform_token(s, "pull_request", &pr_ref, "drift-guard.yml");
        let (passed, answer) = s
            .stack
            .call_gateway("/v1/drift/pre-merge", &token, &body, both)
            .await?;
        s.check(
            &format!("drift: guard passes a governed {drift_type} fix"),
            passed == 200,
            format!("{passed} with 2 approvals {}", answer["reasons"]),
        );
        return Ok(String::new());
    }
    let token = platform_token(s, "pull_request", &pr_ref, "drift-guard.yml");
    let (refused, refusal) = s
        .stack
        .call_gateway("/v1/drift/pre-merge", &token, &body, "one approval")
        .await?;
    let reason = refusal["reasons"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if drift_type == "workload" {
        // The incomplete workload fix: refused for its fields whatever the approvals.
        return Ok(if refused == 422 {
            reason
        } else {
            String::new()
        });
    }
    github.review(OWNER, REPO, pull, "carol", "APPROVED");
    let token = platform_token(s, "pull_request", &pr_ref, "drift-guard.yml");
    let (passed, _) = s
        .stack
        .call_gateway("/v1/drift/pre-merge", &token, &body, "")
        .await?;
    s.check(
        &format!("drift: guard passes a governed {drift_type} fix"),
        passed == 200 && refused == 422,
        format!("{passed} with 2 approvals; {refused} with 1 ({reason})"),
    );
    Ok(reason)
}

/// After the merge, the post-merge verification (run by the push of the merge commit, with no
/// input: the token's commit names the pull request) closes the issue and the Jira ticket.
async fn verify(
    s: &mut Scenario,
    merge_commit: &str,
    issue: u64,
    jira_key: &str,
    drift_type: &str,
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
            .is_some_and(|t| t.contains("fixed and verified") && t.contains(&format!("#{issue}")))
    });
    s.check(
        &format!("drift: {drift_type} fix verified, tickets closed, closure announced"),
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
    drift_type: &str,
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
        &format!("drift: {drift_type} audit artifact names the record"),
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
