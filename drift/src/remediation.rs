//! The drift-remediation governance a pull request must satisfy: the fields its description
//! carries and the approvals it has. Pure, so the gateway's pre-merge guard and post-merge
//! verification share one reading.
//!
//! Fields are lines `Name: value` anywhere in the description (Markdown emphasis around the
//! name is tolerated, e.g. `**Drift Issue:** #12`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::findings::{DriftType, FindingKind};
use crate::tickets::Review;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemediationFields {
    pub drift_issue: u64,
    pub drift_type: DriftType,
    pub change_request_id: String,
    pub environment: String,
    pub cloud_provider: String,
    pub jira_key: Option<String>,
    /// `ArgoCD App`: required for workload drift, the application the fix syncs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argocd_app: Option<String>,
}

const FIELDS: [&str; 7] = [
    "Drift Issue",
    "Drift Type",
    "Change Request ID",
    "Environment",
    "Cloud Provider",
    "Jira Key",
    "ArgoCD App",
];

/// The one value of a required field, or the problem with it.
fn single(
    values: &BTreeMap<&'static str, Vec<String>>,
    field: &'static str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match values.get(field).map(Vec::as_slice) {
        None | Some([]) => {
            problems.push(format!(
                "`{field}` is missing from the pull request description"
            ));
            None
        }
        Some([v]) if v.is_empty() => {
            problems.push(format!("`{field}` is empty"));
            None
        }
        Some([v]) => Some(v.clone()),
        Some(_) => {
            problems.push(format!("`{field}` is given more than once"));
            None
        }
    }
}

fn field_values(body: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for line in body.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '>', ' ']);
        let cleaned = line.replace("**", "").replace('`', "");
        let Some((name, value)) = cleaned.split_once(':') else {
            continue;
        };
        if let Some(field) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(name.trim())) {
            out.entry(field).or_default().push(value.trim().to_owned());
        }
    }
    out
}

fn is_change_request(id: &str) -> bool {
    // A ticket-like id: letters, a dash, digits (CR-1234, CHG0012345 also allowed).
    let upper = id.to_ascii_uppercase();
    (upper.len() >= 4 && upper.len() <= 32)
        && upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && upper.chars().any(|c| c.is_ascii_digit())
        && upper
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
}

fn is_jira_key(key: &str) -> bool {
    let Some((project, number)) = key.split_once('-') else {
        return false;
    };
    !project.is_empty()
        && project.len() <= 10
        && project
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
        && project
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

/// Reads and checks the fields; every problem is reported, each naming its field.
pub fn parse_fields(
    body: &str,
    jira_enabled: bool,
    environments: &[String],
) -> Result<RemediationFields, Vec<String>> {
    let values = field_values(body);
    let mut problems = Vec::new();
    let issue = single(&values, "Drift Issue", &mut problems);
    let drift_type = single(&values, "Drift Type", &mut problems);
    let change_request = single(&values, "Change Request ID", &mut problems);
    let environment = single(&values, "Environment", &mut problems);
    let provider = single(&values, "Cloud Provider", &mut problems);
    let jira = if jira_enabled {
        single(&values, "Jira Key", &mut problems)
    } else {
        values.get("Jira Key").and_then(|v| v.first().cloned())
    };

    let issue = issue.and_then(|v| {
        let digits = v.trim_start_matches('#');
        match digits.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.push(format!(
                    "`Drift Issue` must be an issue number like #123, not `{v}`"
                ));
                None
            }
        }
    });
    let drift_type = drift_type.and_then(|t| {
        let parsed = DriftType::parse(&t);
        if parsed.is_none() {
            problems.push(format!(
                "`Drift Type` `{t}` is neither `infra` nor `workload`"
            ));
        }
        parsed
    });
    // Workload fixes name the Argo CD application they sync; infra fixes have none to name.
    let argocd_app = match drift_type {
        Some(DriftType::Workload) => single(&values, "ArgoCD App", &mut problems),
        _ => None,
    };
    if let Some(cr) = &change_request
        && !is_change_request(cr)
    {
        problems.push(format!(
            "`Change Request ID` `{cr}` is not a change request id (e.g. CR-1234)"
        ));
    }
    if let Some(env) = &environment
        && !environments.iter().any(|e| e == env)
    {
        problems.push(format!(
            "`Environment` `{env}` is not one of the manifest's environments ({})",
            environments.join(", ")
        ));
    }
    if let Some(p) = &provider
        && !p.eq_ignore_ascii_case("aws")
    {
        problems.push(format!("`Cloud Provider` `{p}` is not governed here (aws)"));
    }
    if let Some(key) = &jira
        && !is_jira_key(key)
    {
        problems.push(format!(
            "`Jira Key` `{key}` is not a Jira issue key (e.g. SEC-123)"
        ));
    }
    match (issue, drift_type, change_request, environment, provider) {
        (
            Some(drift_issue),
            Some(drift_type),
            Some(change_request_id),
            Some(environment),
            Some(cloud_provider),
        ) if problems.is_empty() => Ok(RemediationFields {
            drift_issue,
            drift_type,
            change_request_id,
            environment,
            cloud_provider: cloud_provider.to_ascii_lowercase(),
            jira_key: jira,
            argocd_app,
        }),
        _ => Err(problems),
    }
}

/// Distinct approvers: each reviewer's latest decisive review (APPROVED, CHANGES_REQUESTED or
/// DISMISSED; COMMENTED does not change a decision) must be APPROVED, of the pull request's
/// head commit (a review naming no commit, or a pull request whose head is unknown, counts
/// for nothing), and the author's own reviews never count. Whether each approver may write to
/// the repository is checked by the caller.
pub fn approvers(reviews: &[Review], author: &str, head_sha: &str) -> BTreeSet<String> {
    if head_sha.is_empty() {
        return BTreeSet::new();
    }
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for r in reviews {
        if r.login.eq_ignore_ascii_case(author) {
            continue;
        }
        if matches!(
            r.state.as_str(),
            "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
        ) {
            latest.insert(&r.login, r);
        }
    }
    // An approval of an older commit does not cover what was pushed after it.
    latest
        .into_iter()
        .filter(|(_, r)| r.state == "APPROVED" && r.commit_id.as_deref() == Some(head_sha))
        .map(|(l, _)| l.to_owned())
        .collect()
}

// ------------------------------------------------------------------------------------------
// The two checks the CI gateway runs for a drift-fix pull request.

use std::future::Future;

use chrono::Utc;
use keyward_shared::ports::MarkerStore;
use keyward_shared::redact::Redactor;

use crate::account::{Account, ManifestSource};
use crate::detect::{
    DetectionRequest, DetectionSettings, DriftScope, Estate, VercelLedgers, detect,
};
use crate::findings::Finding;
use crate::native::NativeChecks;
use crate::tickets::{IssueTracker, Jira, PullRequests, can_write};
use crate::workload::WorkloadCheck;
use crate::{DriftError, jira_key_in, seen_key};

/// Why a guard did not pass. Reads as its text; the kind tells a closed drift issue (which a
/// re-run of the verification accepts) from every other reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct GuardReason {
    #[serde(skip)]
    pub kind: GuardReasonKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GuardReasonKind {
    /// The drift issue is already closed.
    IssueClosed,
    /// A field, the issue, the pull request or the approvals.
    #[default]
    Unmet,
}

impl GuardReason {
    fn unmet(text: String) -> Self {
        Self {
            kind: GuardReasonKind::Unmet,
            text,
        }
    }
}

impl PartialEq<&str> for GuardReason {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::ops::Deref for GuardReason {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// The pre-merge guard's answer: passed, or every reason it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardOutcome {
    pub passed: bool,
    pub reasons: Vec<GuardReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<RemediationFields>,
    pub approvals: Vec<String>,
    pub required_approvals: usize,
    /// The drift issue's fingerprint, when it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl GuardOutcome {
    /// The reasons a verification cannot accept (a closed issue is fine there: verification
    /// may be re-run).
    pub fn unmet(&self) -> Vec<&GuardReason> {
        self.reasons
            .iter()
            .filter(|r| r.kind != GuardReasonKind::IssueClosed)
            .collect()
    }
}

/// What a verification concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Detection no longer finds the drift.
    Verified,
    /// Merged and governed, but detection still finds the drift.
    StillDetected,
    /// Not a governed remediation (not merged, fields or issue wrong, description changed).
    Refused,
}

fn verdict_is_verified<S: serde::Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*verdict == Verdict::Verified)
}

/// The post-merge verification's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyOutcome {
    #[serde(rename = "verified", serialize_with = "verdict_is_verified")]
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<RemediationFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    /// What detection still finds for the fingerprint (empty when verified).
    pub remaining: Vec<String>,
    pub issue_closed: bool,
    /// The issue was already closed by an earlier verification: nothing was repeated.
    pub already_verified: bool,
}

impl VerifyOutcome {
    /// Not a governed remediation, for `reasons`.
    fn refused(reasons: Vec<String>) -> Self {
        Self {
            verdict: Verdict::Refused,
            reasons,
            fields: None,
            fingerprint: None,
            merge_commit: None,
            remaining: Vec::new(),
            issue_closed: false,
            already_verified: false,
        }
    }

    pub fn verified(&self) -> bool {
        self.verdict == Verdict::Verified
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    #[error("drift remediation is not configured on this gateway")]
    NotConfigured,
    #[error(transparent)]
    Drift(#[from] DriftError),
}

pub trait DriftRemediation: Send + Sync {
    fn pre_merge(
        &self,
        repo: &str,
        number: u64,
    ) -> impl Future<Output = Result<GuardOutcome, RemediationError>> + Send;
    /// `authorized` is the guard's reading the caller was authorised on: verification acts
    /// only if the pull request still says the same.
    fn post_merge(
        &self,
        repo: &str,
        number: u64,
        authorized: &GuardOutcome,
    ) -> impl Future<Output = Result<VerifyOutcome, RemediationError>> + Send;
    /// The pull request a merge commit merged, so post-merge verification needs no input.
    fn merged_pull(
        &self,
        repo: &str,
        merge_commit: &str,
    ) -> impl Future<Output = Result<Option<u64>, RemediationError>> + Send;
}

/// The gateway without drift remediation: both routes answer that it is not configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disabled;

impl DriftRemediation for Disabled {
    async fn pre_merge(&self, _: &str, _: u64) -> Result<GuardOutcome, RemediationError> {
        Err(RemediationError::NotConfigured)
    }
    async fn post_merge(
        &self,
        _: &str,
        _: u64,
        _: &GuardOutcome,
    ) -> Result<VerifyOutcome, RemediationError> {
        Err(RemediationError::NotConfigured)
    }
    async fn merged_pull(&self, _: &str, _: &str) -> Result<Option<u64>, RemediationError> {
        Err(RemediationError::NotConfigured)
    }
}

pub struct Remediation<S, A, G, J, M> {
    pub manifests: S,
    pub account: A,
    /// Drift issues (in the configured repository) and pull requests (in the caller's).
    pub github: G,
    pub jira: Option<J>,
    pub state: M,
    /// A verified fix is announced here (`ENABLE_DRIFT_NOTIFICATIONS`).
    pub notify: Option<crate::tickets::ChatWebhook>,
    pub min_approvals: usize,
    /// The detector's own settings, so verification judges as the scheduled run does.
    pub settings: DetectionSettings,
    /// Argo CD, for workload fixes (`ENABLE_ARGOCD_CHECK`).
    pub workload: Option<WorkloadCheck>,
    /// AWS Config's verdicts, as the detector reads them (`ENABLE_NATIVE_CHECKS`).
    pub native: Option<NativeChecks>,
    pub redactor: Redactor,
}

/// What the guard and the verification both establish first.
struct Checked {
    fields: Option<RemediationFields>,
    fingerprint: Option<String>,
    issue_open: bool,
    /// The Jira key the drift issue records (the detector wrote it).
    issue_jira: Option<String>,
    reasons: Vec<GuardReason>,
}

impl<S, A, G, J, M> Remediation<S, A, G, J, M>
where
    S: ManifestSource,
    A: Account,
    G: IssueTracker + PullRequests,
    J: Jira,
    M: MarkerStore,
{
    async fn check(&self, body: &str) -> Result<Checked, RemediationError> {
        let manifest = self.manifests.manifest().await.map_err(DriftError::from)?;
        let environments: Vec<String> = manifest
            .environments
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
        let mut checked = Checked {
            fields: None,
            fingerprint: None,
            issue_open: false,
            issue_jira: None,
            reasons: Vec::new(),
        };
        let fields = match parse_fields(body, self.jira.is_some(), &environments) {
            Ok(fields) => fields,
            Err(problems) => {
                checked.reasons = problems.into_iter().map(GuardReason::unmet).collect();
                return Ok(checked);
            }
        };
        match self
            .github
            .issue(fields.drift_issue)
            .await
            .map_err(DriftError::from)?
        {
            None => checked.reasons.push(GuardReason::unmet(format!(
                "drift issue #{} does not exist or is not a keyward drift issue",
                fields.drift_issue
            ))),
            Some(issue) => {
                let kind = issue.fingerprint.split(':').next().unwrap_or_default();
                let issue_type = FindingKind::from_slug(kind).map(FindingKind::drift_type);
                if issue_type != Some(fields.drift_type) {
                    checked.reasons.push(GuardReason::unmet(format!(
                        "`Drift Type` is {}, but drift issue #{} is {} drift ({kind})",
                        fields.drift_type.as_str(),
                        fields.drift_issue,
                        issue_type.map_or("unknown", DriftType::as_str),
                    )));
                }
                let secret = Finding::secret_of(&issue.fingerprint).unwrap_or_default();
                if secret.split('/').nth(2) != Some(fields.environment.as_str()) {
                    checked.reasons.push(GuardReason::unmet(format!(
                        "`Environment` is {}, but drift issue #{} is about {secret}",
                        fields.environment, fields.drift_issue
                    )));
                }
                let issue_app = crate::workload::app_of(&issue.fingerprint);
                if fields.drift_type == DriftType::Workload
                    && issue_type == Some(DriftType::Workload)
                    && fields.argocd_app.as_deref() != issue_app
                {
                    checked.reasons.push(GuardReason::unmet(format!(
                        "`ArgoCD App` is {}, but drift issue #{} is about application {}",
                        fields.argocd_app.as_deref().unwrap_or_default(),
                        fields.drift_issue,
                        issue_app.unwrap_or("unknown"),
                    )));
                }
                if let (Some(given), Some(recorded)) = (&fields.jira_key, jira_key_in(&issue.body))
                    && *given != recorded
                {
                    checked.reasons.push(GuardReason::unmet(format!(
                        "`Jira Key` is {given}, but drift issue #{} is tracked as {recorded}",
                        fields.drift_issue
                    )));
                }
                checked.issue_open = issue.open;
                checked.issue_jira = jira_key_in(&issue.body);
                checked.fingerprint = Some(issue.fingerprint);
            }
        }
        checked.fields = Some(fields);
        Ok(checked)
    }

    /// Re-runs detection for the fingerprint's secret; returns what still matches it.
    async fn remaining(
        &self,
        fingerprint: &str,
        estate: Estate<'_>,
        manifest: &keyward_shared::manifest::Manifest,
    ) -> Result<Vec<Finding>, RemediationError> {
        let secret = Finding::secret_of(fingerprint)
            .unwrap_or_default()
            .to_owned();
        let detection = detect(
            &self.account,
            DetectionRequest {
                manifest,
                estate,
                scope: &DriftScope {
                    service: None,
                    secret: Some(secret),
                },
                settings: &self.settings,
                ledgers: VercelLedgers::Read(&self.state),
                workload: self.workload.as_ref(),
                native: self.native.as_ref(),
                now: Utc::now(),
            },
            &self.redactor,
        )
        .await?;
        Ok(detection
            .findings
            .into_iter()
            .filter(|f| f.fingerprint == fingerprint)
            .collect())
    }

    /// The fix is verified: the issue says so and closes, the reported marker is reset (so the
    /// same drift coming back is reported again) and Jira is resolved.
    async fn close_verified(&self, fix: &Fix<'_>) -> Result<(), RemediationError> {
        let issue = fix.fields.drift_issue;
        self.github
            .comment(
                issue,
                &format!(
                    "Verified after {} (merge {}, change request {}): keyward no longer detects this drift. Closing.",
                    fix.pull, fix.merge_commit, fix.fields.change_request_id
                ),
            )
            .await
            .map_err(DriftError::from)?;
        // Before the issue closes: if the chat is down, the workflow's retry finds the issue
        // still open and announces it then.
        if let Some(webhook) = &self.notify {
            webhook
                .post(&format!(
                    "keyward drift fixed and verified: {} (issue #{issue}) by {} (merge {}, change request {})",
                    fix.fingerprint, fix.pull, fix.merge_commit, fix.fields.change_request_id
                ))
                .await
                .map_err(|e| DriftError::from(crate::tickets::webhook_error(e, &self.redactor)))?;
        }
        self.github
            .close_issue(issue)
            .await
            .map_err(DriftError::from)?;
        self.state
            .overwrite(&seen_key(fix.fingerprint), "resolved")
            .await
            .map_err(|e| DriftError::State(self.redactor.safe(&e.to_string())))?;
        // The key the detector recorded on the issue, not the one the description claims.
        if let (Some(jira), Some(key)) =
            (&self.jira, fix.issue_jira.or(fix.fields.jira_key.as_ref()))
        {
            jira.comment(
                key,
                &format!(
                    "Remediated by {} (merge {}); verified by keyward.",
                    fix.pull, fix.merge_commit
                ),
            )
            .await
            .map_err(DriftError::from)?;
            jira.resolve(key).await.map_err(DriftError::from)?;
        }
        Ok(())
    }

    /// Merged, but the drift is still there: the issue says what remains.
    async fn report_still_detected(
        &self,
        fix: &Fix<'_>,
        remaining: &[String],
    ) -> Result<(), RemediationError> {
        let listed: Vec<String> = remaining.iter().map(|r| format!("- {r}")).collect();
        self.github
            .comment(
                fix.fields.drift_issue,
                &format!(
                    "{} (merge {}) was merged, but keyward still detects this drift:\n\n{}",
                    fix.pull,
                    fix.merge_commit,
                    listed.join("\n")
                ),
            )
            .await
            .map_err(DriftError::from)?;
        Ok(())
    }
}

impl<S, A, G, J, M> DriftRemediation for Remediation<S, A, G, J, M>
where
    S: ManifestSource,
    A: Account,
    G: IssueTracker + PullRequests,
    J: Jira,
    M: MarkerStore,
{
    async fn merged_pull(
        &self,
        repo: &str,
        merge_commit: &str,
    ) -> Result<Option<u64>, RemediationError> {
        Ok(self
            .github
            .merged_by_commit(repo, merge_commit)
            .await
            .map_err(DriftError::from)?)
    }

    async fn pre_merge(&self, repo: &str, number: u64) -> Result<GuardOutcome, RemediationError> {
        let Some(pull) = self
            .github
            .pull(repo, number)
            .await
            .map_err(DriftError::from)?
        else {
            return Ok(GuardOutcome {
                passed: false,
                reasons: vec![GuardReason::unmet(format!(
                    "pull request {repo}#{number} does not exist"
                ))],
                fields: None,
                approvals: Vec::new(),
                required_approvals: self.min_approvals,
                fingerprint: None,
            });
        };
        let mut checked = self.check(&pull.body).await?;
        if checked.fingerprint.is_some() && !checked.issue_open {
            let issue = checked
                .fields
                .as_ref()
                .map(|f| f.drift_issue)
                .unwrap_or_default();
            checked.reasons.push(GuardReason {
                kind: GuardReasonKind::IssueClosed,
                text: format!("drift issue #{issue} is closed"),
            });
        }
        let reviews = self
            .github
            .reviews(repo, number)
            .await
            .map_err(DriftError::from)?;
        if pull.head_sha.is_empty() {
            checked.reasons.push(GuardReason::unmet(
                "GitHub did not report the pull request's head commit; no approval can be matched to it".into(),
            ));
        }
        let mut approvals: Vec<String> = Vec::new();
        let mut ignored: Vec<String> = Vec::new();
        for login in approvers(&reviews, &pull.author, &pull.head_sha) {
            let permission = self
                .github
                .permission(repo, &login)
                .await
                .map_err(DriftError::from)?;
            if can_write(&permission) {
                approvals.push(login);
            } else {
                ignored.push(format!(
                    "{login}'s approval does not count: their permission on {repo} is `{permission}`, not write or more"
                ));
            }
        }
        if approvals.len() < self.min_approvals {
            checked
                .reasons
                .extend(ignored.into_iter().map(GuardReason::unmet));
        }
        if approvals.len() < self.min_approvals {
            checked.reasons.push(GuardReason::unmet(format!(
                "{} approval(s) from reviewers other than the author; {} required",
                approvals.len(),
                self.min_approvals
            )));
        }
        Ok(GuardOutcome {
            passed: checked.reasons.is_empty(),
            reasons: checked.reasons,
            fields: checked.fields,
            approvals,
            required_approvals: self.min_approvals,
            fingerprint: checked.fingerprint,
        })
    }

    async fn post_merge(
        &self,
        repo: &str,
        number: u64,
        authorized: &GuardOutcome,
    ) -> Result<VerifyOutcome, RemediationError> {
        let Some(pull) = self
            .github
            .pull(repo, number)
            .await
            .map_err(DriftError::from)?
        else {
            return Ok(VerifyOutcome::refused(vec![format!(
                "pull request {repo}#{number} does not exist"
            )]));
        };
        if !pull.merged {
            return Ok(VerifyOutcome::refused(vec![format!(
                "pull request {repo}#{number} is not merged"
            )]));
        }
        let checked = self.check(&pull.body).await?;
        // The description is read again here: it must still be what the caller was authorised
        // on, or a staging-only workflow could swap in a prod issue between the two reads.
        if checked.fields != authorized.fields || checked.fingerprint != authorized.fingerprint {
            return Ok(VerifyOutcome::refused(vec![
                "the pull request description changed after it was authorised; run the verification again".into(),
            ]));
        }
        let reason_texts: Vec<String> = checked.reasons.iter().map(|r| r.text.clone()).collect();
        let (Some(fields), Some(fingerprint)) = (checked.fields, checked.fingerprint) else {
            return Ok(VerifyOutcome::refused(reason_texts));
        };
        if !reason_texts.is_empty() {
            return Ok(VerifyOutcome {
                fields: Some(fields),
                fingerprint: Some(fingerprint),
                merge_commit: pull.merge_commit,
                ..VerifyOutcome::refused(reason_texts)
            });
        }
        let workload = match (fields.drift_type, &self.workload) {
            (DriftType::Workload, None) => {
                return Ok(VerifyOutcome {
                    fields: Some(fields),
                    fingerprint: Some(fingerprint),
                    merge_commit: pull.merge_commit,
                    ..VerifyOutcome::refused(vec![
                        "workload drift cannot be verified here: ENABLE_ARGOCD_CHECK is off".into(),
                    ])
                });
            }
            (DriftType::Workload, Some(check)) => Some(check),
            (DriftType::Infra, _) => None,
        };
        let manifest = self.manifests.manifest().await.map_err(DriftError::from)?;
        let estate = Estate {
            org: manifest.org.as_str(),
            environment: &fields.environment,
        };
        let mut remaining: Vec<String> = self
            .remaining(&fingerprint, estate, &manifest)
            .await?
            .iter()
            .map(|f| {
                let evidence: Vec<String> =
                    f.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} ({})", f.fingerprint, evidence.join(", "))
            })
            .collect();
        // A workload fix is done when Argo CD has synced it and the application is healthy.
        if let Some(check) = workload {
            let app = check
                .argocd
                .application(&check.app)
                .await
                .map_err(|e| DriftError::Workload(self.redactor.safe(&e.to_string())))?;
            if !app.synced_and_healthy() {
                remaining.push(format!(
                    "application {} is {} and {} (Synced and Healthy required)",
                    app.name, app.sync_status, app.health_status
                ));
            }
        }
        let verified = remaining.is_empty();
        // A re-run after the issue was closed verifies again but repeats no side effect.
        let already_verified = verified && !checked.issue_open;
        let fix = Fix {
            pull: format!("{repo}#{number}"),
            merge_commit: pull.merge_commit.clone().unwrap_or_default(),
            fields: &fields,
            fingerprint: &fingerprint,
            issue_jira: checked.issue_jira.as_ref(),
        };
        if verified && !already_verified {
            self.close_verified(&fix).await?;
        } else if !verified {
            self.report_still_detected(&fix, &remaining).await?;
        }
        Ok(VerifyOutcome {
            verdict: if verified {
                Verdict::Verified
            } else {
                Verdict::StillDetected
            },
            reasons: if verified {
                Vec::new()
            } else {
                vec![format!("drift {fingerprint} is still detected")]
            },
            fields: Some(fields),
            fingerprint: Some(fingerprint),
            merge_commit: pull.merge_commit,
            remaining,
            issue_closed: verified,
            already_verified,
        })
    }
}

/// A merged drift fix being verified.
struct Fix<'a> {
    /// `owner/repo#number`.
    pull: String,
    merge_commit: String,
    fields: &'a RemediationFields,
    fingerprint: &'a str,
    /// The Jira key the drift issue records (the detector wrote it).
    issue_jira: Option<&'a String>,
}
