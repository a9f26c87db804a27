//! Applying a secret's plan: the planned writes (value read once, type changes deleted first,
//! one batch upsert per project) and the orphans. Every result is recorded per target; the
//! ledger follows what Vercel confirmed.

use std::collections::{BTreeMap, BTreeSet};

use keyward_shared::events::VercelTargetStatus;
use keyward_shared::ports::{EventPublisher, ManifestSource, MarkerStore};
use keyward_shared::redact::SafeText;
use keyward_shared::vercel_ledger::{Ledger, LedgerEntry};
use secrecy::{ExposeSecret, SecretString};

use crate::plan::{
    Action, Desired, OrphanAction, OrphanPlan, Scope, SlotPlan, WriteKind, provenance,
};
use crate::redeploy::RedeployQueue;
use crate::report::{SecretOutcome, result};
use crate::source::{SecretSnapshot, SecretSource};
use crate::vercel::{EnvRecord, NewEnv, ProjectRef, VercelApi};
use crate::{ProjectCache, Syncer};

/// One upsert the plan asks for.
pub(crate) struct PlannedWrite {
    pub desired: Desired,
    /// A record of keyward's to delete first (its type changes).
    pub replaces: Option<String>,
    pub note: Option<String>,
    pub kind: WriteKind,
}

/// Whose value the writes carry.
pub(crate) struct WriteTarget<'a> {
    pub secret: &'a str,
    pub version: &'a str,
    pub snapshot: &'a SecretSnapshot,
}

/// Why the value could not be read: the text to report, and whether a retry can fix it.
struct ValueError {
    text: SafeText,
    retryable: bool,
}

impl<S, V, M, P, Q, D> Syncer<S, V, M, P, Q, D>
where
    S: SecretSource,
    V: VercelApi,
    M: MarkerStore,
    P: EventPublisher,
    Q: RedeployQueue,
    D: ManifestSource,
{
    /// Records the result of every slot that needs no write; returns the writes.
    pub(crate) fn record_unwritten(
        &self,
        slot_plans: Vec<SlotPlan>,
        outcome: &mut SecretOutcome,
    ) -> Vec<PlannedWrite> {
        let mut writes = Vec::new();
        for p in slot_plans {
            let slot = &p.desired.slot;
            match p.action {
                Action::Unchanged { .. } => {
                    outcome
                        .results
                        .push(result(slot, VercelTargetStatus::Unchanged, None))
                }
                Action::Drift { note } => outcome.results.push(result(
                    slot,
                    VercelTargetStatus::DriftDetected,
                    Some(self.redactor.safe(&note)),
                )),
                Action::Refuse { note } => outcome.results.push(result(
                    slot,
                    VercelTargetStatus::Failed,
                    Some(self.redactor.safe(&note)),
                )),
                Action::Write {
                    kind,
                    replace,
                    note,
                } => writes.push(PlannedWrite {
                    desired: p.desired,
                    replaces: replace,
                    note,
                    kind,
                }),
            }
        }
        writes
    }

    /// The value of each written variable: the whole secret, or its JSON fields. Errors name the
    /// field, never the value.
    async fn values(
        &self,
        target: &WriteTarget<'_>,
        writes: &[PlannedWrite],
    ) -> Result<BTreeMap<Option<String>, SecretString>, ValueError> {
        let value = self
            .source
            .value(&target.snapshot.arn, target.version)
            .await
            .map_err(|e| ValueError {
                text: self.redactor.safe(&e.to_string()),
                retryable: true,
            })?;
        let fields: BTreeSet<Option<String>> =
            writes.iter().map(|w| w.desired.field.clone()).collect();
        let mut out = BTreeMap::new();
        let mut parsed: Option<serde_json::Map<String, serde_json::Value>> = None;
        for field in fields {
            let Some(name) = &field else {
                out.insert(None, value.clone());
                continue;
            };
            if parsed.is_none() {
                parsed = Some(
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                        value.expose_secret(),
                    )
                    .map_err(|_| ValueError {
                        text: SafeText::fixed(
                            "the mapping names JSON fields but the secret value is not a JSON object",
                        ),
                        retryable: false,
                    })?,
                );
            }
            let object = parsed.as_ref().expect("parsed above");
            let text = match object.get(name) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                Some(_) => {
                    return Err(ValueError {
                        text: self.redactor.safe(&format!(
                            "JSON field `{name}` is not a string, number or boolean"
                        )),
                        retryable: false,
                    });
                }
                None => {
                    return Err(ValueError {
                        text: self
                            .redactor
                            .safe(&format!("the secret has no JSON field `{name}`")),
                        retryable: false,
                    });
                }
            };
            let text = SecretString::from(text);
            self.redactor.register(&text);
            out.insert(field, text);
        }
        Ok(out)
    }

    /// The planned writes: the value is read once, and only because something must be written.
    pub(crate) async fn apply_writes(
        &self,
        target: &WriteTarget<'_>,
        writes: Vec<PlannedWrite>,
        cache: &mut ProjectCache,
        ledger: &mut Ledger,
        outcome: &mut SecretOutcome,
    ) {
        let values = match self.values(target, &writes).await {
            Ok(values) => values,
            Err(e) => {
                for w in &writes {
                    outcome.results.push(result(
                        &w.desired.slot,
                        VercelTargetStatus::Failed,
                        Some(e.text.clone()),
                    ));
                }
                outcome.retryable |= e.retryable;
                return;
            }
        };
        let batch = self.delete_replaced(writes, cache, ledger, outcome).await;
        // One upsert per project (a mapping has one project, so one call per secret).
        let mut by_project: BTreeMap<ProjectRef, Vec<PlannedWrite>> = BTreeMap::new();
        for write in batch {
            by_project
                .entry(write.desired.slot.project.clone())
                .or_default()
                .push(write);
        }
        let comment = provenance(target.secret, target.version);
        for (project, items) in by_project {
            self.upsert_project(
                &project,
                items,
                &values,
                &comment,
                target.version,
                cache,
                ledger,
                outcome,
            )
            .await;
        }
    }

    /// A type change (sensitive <-> encrypted) is delete + create: Vercel keeps the type on
    /// update. Returns the writes whose slot is ready for the upsert.
    async fn delete_replaced(
        &self,
        writes: Vec<PlannedWrite>,
        cache: &mut ProjectCache,
        ledger: &mut Ledger,
        outcome: &mut SecretOutcome,
    ) -> Vec<PlannedWrite> {
        let mut ready = Vec::new();
        for write in writes {
            if let Some(id) = &write.replaces {
                let slot = &write.desired.slot;
                outcome.writes += 1;
                if let Err(e) = self.vercel.delete_env(&slot.project, id).await {
                    outcome.retryable |= e.is_transient();
                    outcome.results.push(result(
                        slot,
                        VercelTargetStatus::Failed,
                        Some(self.redactor.safe(&e.to_string())),
                    ));
                    continue;
                }
                if let Some(records) = cache.records.get_mut(&slot.project) {
                    records.retain(|r| &r.id != id);
                }
                // The record is gone: if the upsert below fails, the retry must see an empty
                // slot to create, not a variable "deleted by hand" to leave deleted.
                ledger.remove(slot);
            }
            ready.push(write);
        }
        ready
    }

    /// One batch upsert for one project, then each variable's result from Vercel's answer.
    #[allow(clippy::too_many_arguments)]
    async fn upsert_project(
        &self,
        project: &ProjectRef,
        items: Vec<PlannedWrite>,
        values: &BTreeMap<Option<String>, SecretString>,
        comment: &str,
        version: &str,
        cache: &mut ProjectCache,
        ledger: &mut Ledger,
        outcome: &mut SecretOutcome,
    ) {
        {
            let envs: Vec<NewEnv> = items
                .iter()
                .map(|PlannedWrite { desired: d, .. }| NewEnv {
                    key: d.slot.key.clone(),
                    value: values
                        .get(&d.field)
                        .cloned()
                        .unwrap_or_else(|| SecretString::from(String::new())),
                    env_type: d.env_type,
                    target: match &d.scope {
                        Scope::Standard(t) => vec![(*t).to_owned()],
                        Scope::Custom { .. } => Vec::new(),
                    },
                    git_branch: d.slot.git_branch.clone(),
                    custom_environment_ids: match &d.scope {
                        Scope::Custom { id } => vec![id.clone()],
                        Scope::Standard(_) => Vec::new(),
                    },
                    comment: comment.to_owned(),
                })
                .collect();
            outcome.writes += 1;
            let response = match self.vercel.upsert_envs(project, &envs).await {
                Ok(r) => r,
                Err(e) => {
                    outcome.retryable |= e.is_transient();
                    let text = self.redactor.safe(&e.to_string());
                    for w in &items {
                        outcome.results.push(result(
                            &w.desired.slot,
                            VercelTargetStatus::Failed,
                            Some(text.clone()),
                        ));
                    }
                    return;
                }
            };
            for PlannedWrite {
                desired: d,
                note,
                kind,
                ..
            } in items
            {
                let created = response.created.iter().find(|r| covers_exactly(r, &d));
                let failed = response.failed.iter().find(|f| {
                    f.key.as_deref() == Some(d.slot.key.as_str())
                        && (f.target.is_empty()
                            || match &d.scope {
                                Scope::Standard(t) => f.target.iter().any(|x| x == t),
                                Scope::Custom { .. } => true,
                            })
                        && (f.git_branch.is_none() || f.git_branch == d.slot.git_branch)
                });
                match (created, failed) {
                    (Some(record), _) => {
                        ledger.upsert(LedgerEntry {
                            slot: d.slot.clone(),
                            record_id: record.id.clone(),
                            version_id: version.to_owned(),
                            updated_at: record.updated_at,
                            written_by: record.updated_by.clone(),
                            env_type: d.env_type.to_owned(),
                        });
                        if let Some(records) = cache.records.get_mut(project) {
                            records.retain(|r| r.id != record.id);
                            records.push(record.clone());
                        }
                        outcome.results.push(result(
                            &d.slot,
                            match kind {
                                WriteKind::Create => VercelTargetStatus::Created,
                                WriteKind::Update => VercelTargetStatus::Updated,
                            },
                            note.map(|n| self.redactor.safe(&n)),
                        ));
                    }
                    (None, Some(f)) => {
                        // ENV_CONFLICT and validation codes need a person; anything else may
                        // pass on retry.
                        outcome.retryable |= matches!(
                            f.code.as_str(),
                            "rate_limited" | "internal_server_error" | "UNKNOWN_ERROR"
                        );
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(
                                self.redactor
                                    .safe(&format!("Vercel refused it: {} {}", f.code, f.message)),
                            ),
                        ));
                    }
                    (None, None) => {
                        outcome.retryable = true;
                        outcome.results.push(result(
                            &d.slot,
                            VercelTargetStatus::Failed,
                            Some(SafeText::fixed(
                                "Vercel's answer listed this variable neither as created nor as failed",
                            )),
                        ));
                    }
                }
            }
        }
    }

    /// Ledger entries the mapping no longer asks for: released, reported, or deleted per the
    /// orphan policy the plan applied.
    pub(crate) async fn apply_orphans(
        &self,
        orphan_plans: Vec<OrphanPlan>,
        cache: &mut ProjectCache,
        ledger: &mut Ledger,
        outcome: &mut SecretOutcome,
    ) {
        for orphan in orphan_plans {
            let slot = orphan.entry.slot.clone();
            match orphan.action {
                OrphanAction::Gone => {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Deleted,
                        Some(SafeText::fixed(
                            "no longer mapped; already deleted in Vercel",
                        )),
                    ));
                }
                OrphanAction::Release => {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Unchanged,
                        Some(SafeText::fixed(
                            "no longer mapped; left in Vercel and no longer managed (orphans: keep)",
                        )),
                    ));
                }
                OrphanAction::Drift { note } => outcome.results.push(result(
                    &slot,
                    VercelTargetStatus::DriftDetected,
                    Some(self.redactor.safe(&note)),
                )),
                // A renamed mapping (a project name for its id, a slug for an id) adopts the
                // same record under its new slot: never delete what a slot now holds.
                OrphanAction::Delete { record_id }
                    if ledger
                        .entries
                        .iter()
                        .any(|e| e.record_id == record_id && e.slot != slot) =>
                {
                    ledger.remove(&slot);
                    outcome.results.push(result(
                        &slot,
                        VercelTargetStatus::Unchanged,
                        Some(SafeText::fixed(
                            "mapping renamed; the record is kept under its new name",
                        )),
                    ));
                }
                OrphanAction::Delete { record_id } => {
                    outcome.writes += 1;
                    match self.vercel.delete_env(&slot.project, &record_id).await {
                        Ok(()) => {
                            ledger.remove(&slot);
                            if let Some(records) = cache.records.get_mut(&slot.project) {
                                records.retain(|r| r.id != record_id);
                            }
                            outcome.results.push(result(
                                &slot,
                                VercelTargetStatus::Deleted,
                                Some(SafeText::fixed("no longer mapped (orphans: delete)")),
                            ));
                        }
                        Err(e) => {
                            outcome.retryable |= e.is_transient();
                            outcome.results.push(result(
                                &slot,
                                VercelTargetStatus::Failed,
                                Some(self.redactor.safe(&e.to_string())),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn covers_exactly(record: &EnvRecord, d: &Desired) -> bool {
    record.key == d.slot.key
        && record.git_branch == d.slot.git_branch
        && match &d.scope {
            Scope::Standard(t) => {
                record.target.len() == 1
                    && record.target[0] == *t
                    && record.custom_environment_ids.is_empty()
            }
            Scope::Custom { id } => {
                record.custom_environment_ids.len() == 1
                    && record.custom_environment_ids[0] == *id
                    && record.target.is_empty()
            }
        }
}
