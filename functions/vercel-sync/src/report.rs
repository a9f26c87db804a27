//! What a sync reports: per secret, and for the whole invocation.

use keyward_shared::events::{VercelTargetResult, VercelTargetStatus};
use keyward_shared::redact::SafeText;
use keyward_shared::vercel_ledger::Slot;
use serde::Serialize;

/// What one secret's sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretOutcome {
    pub secret: String,
    pub version_id: String,
    pub results: Vec<VercelTargetResult>,
    /// Why the secret failed as a whole (bad tags, unreadable value...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SafeText>,
    /// A retry can fix what failed.
    #[serde(skip)]
    pub retryable: bool,
    /// Write calls made (upserts and deletes).
    pub writes: u32,
}

impl SecretOutcome {
    pub(crate) fn new(secret: &str, version_id: String) -> Self {
        Self {
            secret: secret.to_owned(),
            version_id,
            results: Vec::new(),
            error: None,
            retryable: false,
            writes: 0,
        }
    }

    /// The secret failed as a whole.
    pub(crate) fn failed(mut self, error: SafeText, retryable: bool) -> Self {
        self.error = Some(error);
        self.retryable = retryable;
        self
    }

    /// Results in one stable order: project, target, branch, key.
    pub(crate) fn sort_results(&mut self) {
        self.results.sort_by(|a, b| {
            (&a.project, a.target.as_str(), &a.git_branch, &a.key).cmp(&(
                &b.project,
                b.target.as_str(),
                &b.git_branch,
                &b.key,
            ))
        });
    }

    pub(crate) fn in_parity(&self) -> bool {
        self.error.is_none()
            && self.results.iter().all(|r| {
                !matches!(
                    r.status,
                    VercelTargetStatus::Failed | VercelTargetStatus::DriftDetected
                )
            })
    }

    pub(crate) fn changed(&self) -> bool {
        self.results.iter().any(|r| {
            matches!(
                r.status,
                VercelTargetStatus::Created
                    | VercelTargetStatus::Updated
                    | VercelTargetStatus::Deleted
            )
        })
    }

    /// The projects (as mappings name them) where this sync created, updated or deleted.
    pub(crate) fn changed_projects(&self) -> impl Iterator<Item = String> + '_ {
        self.results
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    VercelTargetStatus::Created
                        | VercelTargetStatus::Updated
                        | VercelTargetStatus::Deleted
                )
            })
            .map(|r| r.project.clone())
    }

    pub(crate) fn worth_reporting(&self) -> bool {
        !self.in_parity() || self.changed()
    }
}

/// The function's response (and its log line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `secret`, `scope`, `sweep`, `redeploy` or `skipped`.
    pub input: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub secrets: usize,
    pub writes: u32,
    pub changed: Vec<String>,
    pub drift: Vec<String>,
    pub failed: Vec<String>,
    pub events: usize,
    pub redeploys_scheduled: Vec<String>,
    pub redeploys_triggered: Vec<String>,
    /// SQS partial-batch response (`ReportBatchItemFailures`): the messages to redeliver.
    #[serde(rename = "batchItemFailures", skip_serializing_if = "Vec::is_empty")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

impl Report {
    /// Counts one secret's outcome into the report.
    pub(crate) fn add(&mut self, outcome: &SecretOutcome) {
        self.writes += outcome.writes;
        if outcome.changed() {
            self.changed.push(outcome.secret.clone());
        }
        if outcome
            .results
            .iter()
            .any(|r| r.status == VercelTargetStatus::DriftDetected)
        {
            self.drift.push(outcome.secret.clone());
        }
        if outcome.error.is_some()
            || outcome
                .results
                .iter()
                .any(|r| r.status == VercelTargetStatus::Failed)
        {
            self.failed.push(outcome.secret.clone());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// One target's result, named as the mapping names it.
pub(crate) fn result(
    slot: &Slot,
    status: VercelTargetStatus,
    detail: Option<SafeText>,
) -> VercelTargetResult {
    VercelTargetResult {
        // As the mapping names it: the key deploy hooks are configured under.
        project: slot.project.project.clone(),
        target: slot
            .target
            .parse()
            .unwrap_or(keyward_shared::governance::VercelTarget::Custom(
                slot.target.clone(),
            )),
        git_branch: slot.git_branch.clone(),
        key: slot.key.clone(),
        status,
        detail,
    }
}
