//! `keyward plan`: the delta between the manifest and the live account, as a reviewer reads it
//! (text, or Markdown for a pull-request comment). Built on the drift detector's reading of
//! the account (one `ListSecrets` walk, `DescribeSecret` only for replicas, resource policies):
//! each finding that infrastructure code fixes becomes a planned change; operational findings
//! (overdue rotation, unused, Vercel parity) are listed as notes, not changes.

use keyward_drift::findings::{Finding, FindingKind};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub action: &'static str,
    pub secret: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub environment: String,
    pub changes: Vec<PlannedChange>,
    pub notes: Vec<PlannedChange>,
}

impl Plan {
    /// `terraform plan -detailed-exitcode`: 0 nothing to change, 2 changes.
    pub fn exit_code(&self) -> u8 {
        if self.changes.is_empty() { 0 } else { 2 }
    }
}

fn evidence(f: &Finding) -> String {
    f.evidence
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What applying the manifest would do about each finding.
pub fn plan_from(environment: &str, findings: &[Finding]) -> Plan {
    let mut plan = Plan {
        environment: environment.to_owned(),
        ..Plan::default()
    };
    // The module manages only declared secrets: what it finds on others is a note.
    let undeclared: std::collections::BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Undeclared)
        .map(|f| f.secret.as_str())
        .collect();
    for f in findings {
        let (action, change) = match f.kind {
            FindingKind::DeclaredMissing => ("create", true),
            // The module creates containers, never values: the owner puts the first one.
            FindingKind::NoValue => ("no value yet (put one, or rotate it)", false),
            FindingKind::GovernanceMismatch | FindingKind::TagContractBroken => {
                ("update tags", true)
            }
            FindingKind::RotationDisabled => ("enable rotation", true),
            FindingKind::RotationIntervalOverPolicy => ("update rotation schedule", true),
            FindingKind::ReplicaMissing => ("add replica", true),
            FindingKind::ReplicaFailing => ("replica failing (see its status message)", false),
            FindingKind::AwsManagedKey => ("use the customer-managed key", true),
            // Terraform cannot restore a secret: `aws secretsmanager restore-secret` first.
            FindingKind::ScheduledForDeletion => {
                ("scheduled for deletion (restore it first)", false)
            }
            FindingKind::PolicyPublic | FindingKind::PolicyUndeclaredReader
                if undeclared.contains(f.secret.as_str()) =>
            {
                (
                    "resource policy open on a secret not in the manifest",
                    false,
                )
            }
            FindingKind::PolicyPublic | FindingKind::PolicyUndeclaredReader => {
                ("replace resource policy", true)
            }
            FindingKind::Undeclared => ("not in the manifest (left alone)", false),
            FindingKind::RotationOverdue | FindingKind::NeverRotated => {
                ("rotation overdue (operational)", false)
            }
            FindingKind::Unused => ("unused (operational)", false),
            // Not reached from the CLI (it reads no ledgers); kept for callers that do.
            FindingKind::VercelMissing | FindingKind::VercelStale => {
                ("Vercel not in parity (vercel-sync)", false)
            }
            // Not reached from the CLI either (it reads no Argo CD): the chart and the sync
            // fix these, not the Terraform module.
            FindingKind::WorkloadOutOfSync
            | FindingKind::WorkloadDegraded
            | FindingKind::ExternalSecretMissing
            | FindingKind::ExternalSecretSpecDrift
            | FindingKind::ExternalSecretNotSynced => ("workload drift (chart, Argo CD)", false),
            // Not reached from the CLI (it reads no AWS Config); Config's verdict is a note.
            FindingKind::NativeNonCompliant => ("AWS Config rule non-compliant", false),
        };
        let item = PlannedChange {
            action,
            secret: f.secret.clone(),
            detail: evidence(f),
        };
        if change {
            plan.changes.push(item);
        } else {
            plan.notes.push(item);
        }
    }
    plan
}

pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() {
        out.push_str(&format!(
            "No changes: {} matches the manifest.\n",
            plan.environment
        ));
    } else {
        out.push_str(&format!(
            "{} change(s) in {}:\n",
            plan.changes.len(),
            plan.environment
        ));
        for c in &plan.changes {
            out.push_str(&format!(
                "  ~ {:<32} {} ({})\n",
                c.action, c.secret, c.detail
            ));
        }
    }
    for n in &plan.notes {
        out.push_str(&format!(
            "  note: {} {} ({})\n",
            n.action, n.secret, n.detail
        ));
    }
    out
}

pub fn markdown(plan: &Plan) -> String {
    let mut out = format!("### keyward plan: `{}`\n\n", plan.environment);
    if plan.changes.is_empty() {
        out.push_str("No changes: the account matches the manifest.\n");
    } else {
        out.push_str(&format!(
            "**{} change(s)**\n\n| change | secret | detail |\n|---|---|---|\n",
            plan.changes.len()
        ));
        for c in &plan.changes {
            out.push_str(&format!(
                "| {} | `{}` | {} |\n",
                c.action,
                c.secret,
                c.detail.replace('|', "\\|")
            ));
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\n<details><summary>Notes (not changed by this plan)</summary>\n\n");
        for n in &plan.notes {
            out.push_str(&format!("- {}: `{}` ({})\n", n.action, n.secret, n.detail));
        }
        out.push_str("\n</details>\n");
    }
    out
}
