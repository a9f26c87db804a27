//! One detector run: detection, then ticketing. GitHub issues per fingerprint (opened,
//! updated when the evidence changes, reopened if the drift returns, never duplicated), Jira,
//! a webhook for new findings, and `DriftDetected` for each finding that is new or changed
//! (state markers `drift/seen/<sha256(fingerprint)>` remember what was reported).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyward_shared::ports::{EventPublisher, MarkerStore};
use keyward_shared::redact::Redactor;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::account::{Account, Calls, ManifestSource};
use crate::detect::{
    Detection, DetectionRequest, DetectionSettings, DriftScope, Estate, VercelLedgers, detect,
};
use crate::findings::{self, Finding};
use crate::native::NativeChecks;
use crate::tickets::{ChatWebhook, IssueTracker, Jira, TrackedIssue, issue_labels, issue_text};
use crate::workload::WorkloadCheck;
use crate::{DriftError, drift_event, jira_key_in, seen_key};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TicketReport {
    pub opened: Vec<u64>,
    pub updated: Vec<u64>,
    pub reopened: Vec<u64>,
    pub unchanged: usize,
    pub jira_created: Vec<String>,
    pub events: usize,
    pub notified: usize,
    /// Open drift issues whose finding this run did not see (left for the post-merge check).
    pub no_longer_detected: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub findings: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub secrets_listed: usize,
    pub declared: usize,
    pub calls: Calls,
    pub tickets: TicketReport,
}

pub struct Detector<S, A, G, J, M, P> {
    pub manifests: S,
    pub account: A,
    pub github: Option<G>,
    pub jira: Option<J>,
    pub state: M,
    pub publisher: P,
    /// New findings are posted here (`ENABLE_DRIFT_NOTIFICATIONS`).
    pub webhook: Option<ChatWebhook>,
    /// Workload drift through Argo CD (`ENABLE_ARGOCD_CHECK`).
    pub workload: Option<WorkloadCheck>,
    /// AWS Config's verdicts as findings (`ENABLE_NATIVE_CHECKS`).
    pub native: Option<NativeChecks>,
    pub secret_prefix: String,
    pub settings: DetectionSettings,
    pub redactor: Redactor,
}

impl<S, A, G, J, M, P> Detector<S, A, G, J, M, P>
where
    S: ManifestSource,
    A: Account,
    G: IssueTracker,
    J: Jira,
    M: MarkerStore,
    P: EventPublisher,
{
    pub async fn run(
        &self,
        scope: &DriftScope,
        now: DateTime<Utc>,
    ) -> Result<RunReport, DriftError> {
        // The counter lives as long as the sandbox: report this run's calls only.
        let before = self.account.calls();
        let detection = self.detect(scope, now).await?;
        let tickets = self.ticket(&detection.findings, scope).await?;
        let mut by_kind = BTreeMap::new();
        for f in &detection.findings {
            *by_kind.entry(f.kind.slug().to_owned()).or_insert(0) += 1;
        }
        Ok(RunReport {
            findings: detection.findings.len(),
            by_kind,
            secrets_listed: detection.secrets_listed,
            declared: detection.declared,
            calls: self.account.calls().since(&before),
            tickets,
        })
    }

    /// Reads the manifest and the account, then evaluates.
    pub async fn detect(
        &self,
        scope: &DriftScope,
        now: DateTime<Utc>,
    ) -> Result<Detection, DriftError> {
        let manifest = self.manifests.manifest().await?;
        detect(
            &self.account,
            DetectionRequest {
                manifest: &manifest,
                estate: Estate::of_prefix(&self.secret_prefix),
                scope,
                settings: &self.settings,
                ledgers: VercelLedgers::Read(&self.state),
                workload: self.workload.as_ref(),
                native: self.native.as_ref(),
                now,
            },
            &self.redactor,
        )
        .await
    }

    /// Issues, Jira, notifications and events for the findings of one detection.
    pub async fn ticket(
        &self,
        findings: &[Finding],
        scope: &DriftScope,
    ) -> Result<TicketReport, DriftError> {
        let mut report = TicketReport::default();
        let existing: BTreeMap<String, TrackedIssue> = match &self.github {
            Some(github) => github
                .drift_issues()
                .await?
                .into_iter()
                .map(|i| (i.fingerprint.clone(), i))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut events = Vec::new();
        let mut new_findings = Vec::new();
        let mut reported: Vec<(String, String)> = Vec::new();
        for finding in findings {
            let evidence_hash = hex::encode(Sha256::digest(
                serde_json::to_string(&finding.evidence)
                    .unwrap_or_default()
                    .as_bytes(),
            ));
            let seen_key = seen_key(&finding.fingerprint);
            let seen = self
                .state
                .get(&seen_key)
                .await
                .map_err(|e| DriftError::State(self.redactor.safe(&e.to_string())))?;
            let changed = seen.as_ref().is_none_or(|m| m.body != evidence_hash);
            let tracked = existing.get(&finding.fingerprint);
            let jira_key = self
                .jira_key(finding, tracked, changed, &mut report)
                .await?;
            if let Some(github) = &self.github {
                Self::github_issue(github, finding, tracked, jira_key.as_deref(), &mut report)
                    .await?;
            }
            // New = never reported, or reported and then verified fixed. Taken from the
            // markers (written only after a successful run), not from GitHub: a retry after
            // a failure still notifies what the failed run could not.
            if seen.as_ref().is_none_or(|m| m.body == "resolved") {
                new_findings.push(finding);
            }
            if changed {
                events.push(drift_event(finding));
                // Written only after the events are published (below): a run that fails before
                // publishing leaves the markers as they were, so its retry reports again.
                reported.push((seen_key, evidence_hash));
            }
        }
        for (fp, issue) in &existing {
            let in_scope = findings::Finding::secret_of(fp)
                .is_some_and(|s| scope.covers(&self.secret_prefix, s));
            if issue.open && in_scope && !findings.iter().any(|f| &f.fingerprint == fp) {
                report.no_longer_detected.push(issue.number);
            }
        }
        report.events = events.len();
        self.publisher
            .publish(&events)
            .await
            .map_err(|e| DriftError::Publish(self.redactor.safe(&e.to_string())))?;
        if let Some(webhook) = &self.webhook
            && !new_findings.is_empty()
        {
            let lines: Vec<String> = new_findings
                .iter()
                .map(|f| format!("• {:?} {} on {}", f.severity, f.kind.slug(), f.secret))
                .collect();
            webhook
                .post(&format!(
                    "keyward drift: {} new finding(s)\n{}",
                    new_findings.len(),
                    lines.join("\n")
                ))
                .await
                .map_err(|e| crate::tickets::webhook_error(e, &self.redactor))?;
            report.notified = new_findings.len();
        }
        for (key, hash) in reported {
            self.state
                .overwrite(&key, &hash)
                .await
                .map_err(|e| DriftError::State(self.redactor.safe(&e.to_string())))?;
        }
        Ok(report)
    }

    /// The finding's Jira issue. Jira works with or without GitHub: an issue's body records its
    /// key; otherwise it is looked up (by its fingerprint label), and created if there is none,
    /// when the finding is new or changed.
    async fn jira_key(
        &self,
        finding: &Finding,
        tracked: Option<&TrackedIssue>,
        changed: bool,
        report: &mut TicketReport,
    ) -> Result<Option<String>, DriftError> {
        Ok(
            match (&self.jira, tracked.and_then(|t| jira_key_in(&t.body))) {
                (_, Some(key)) => Some(key),
                (Some(jira), None) if changed || self.github.is_some() => {
                    Some(match jira.find(&finding.fingerprint).await? {
                        Some(key) => key,
                        None => {
                            let key = jira.create(finding).await?;
                            report.jira_created.push(key.clone());
                            key
                        }
                    })
                }
                _ => None,
            },
        )
    }

    /// The finding's GitHub issue: opened, reopened if closed, updated when its text changed.
    async fn github_issue(
        github: &G,
        finding: &Finding,
        tracked: Option<&TrackedIssue>,
        jira_key: Option<&str>,
        report: &mut TicketReport,
    ) -> Result<(), DriftError> {
        let (title, body) = issue_text(finding, jira_key);
        match tracked {
            None => report.opened.push(
                github
                    .open_issue(&title, &body, &issue_labels(finding))
                    .await?,
            ),
            Some(t) if !t.open => {
                github.update_issue(t.number, &body, true).await?;
                github
                    .comment(
                        t.number,
                        "keyward found this drift again; the issue is reopened.",
                    )
                    .await?;
                report.reopened.push(t.number);
            }
            Some(t) if t.body != body => {
                github.update_issue(t.number, &body, false).await?;
                report.updated.push(t.number);
            }
            Some(_) => report.unchanged += 1,
        }
        Ok(())
    }
}
