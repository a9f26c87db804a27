//! What one sync of one secret must do, decided without reading any value back from Vercel:
//! from the mapping (what should exist), the ledger (what keyward wrote, and when) and the
//! project's records as listed now (what exists).
//!
//! - One record per (key, target, git branch): Vercel's conflict space. A record keyward writes
//!   never spans two targets, so a later change to one environment never has to split it.
//! - A record is keyward's when the ledger holds its id, or (ledger lost) its comment carries
//!   keyward's provenance for this very secret and it covers exactly the one slot. Anything
//!   else in the slot (another tool's variable, an integration's, a system variable, a record
//!   spanning several targets) is refused, never overwritten.
//! - Edited by hand = Vercel's `updatedAt` is newer than what keyward recorded, by someone other
//!   than keyward's token. Reported; written back only under `on-edit: overwrite`.
//! - Orphans (ledger entries the mapping no longer asks for) are deleted only under
//!   `orphans: delete`, and never when edited by hand since.

use std::collections::BTreeMap;

use keyward_shared::governance::{EditPolicy, OrphanPolicy, VercelMapping, VercelTarget};
pub use keyward_shared::vercel_ledger::{Ledger, LedgerEntry, Slot};
use keyward_shared::vercel_ledger::{MappedSlot, ProjectRef, mapped_slots};

use crate::vercel::{CustomEnvironment, EnvRecord};

/// The comment on every record keyward writes. Names the secret and version, never a value or
/// a hash of one.
pub fn provenance(secret: &str, version: &str) -> String {
    format!("managed-by=keyward;secret={secret};version={version}")
}

/// The secret a keyward comment names, if the comment is keyward's.
pub fn provenance_secret(comment: &str) -> Option<&str> {
    let rest = comment.strip_prefix("managed-by=keyward;")?;
    rest.split(';')
        .find_map(|part| part.strip_prefix("secret="))
}

/// A slot as Vercel addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Standard(&'static str),
    Custom { id: String },
}

/// One variable the mapping asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub slot: Slot,
    pub scope: Scope,
    /// The JSON field the value comes from; `None`: the whole secret string.
    pub field: Option<String>,
    pub env_type: &'static str,
}

/// Sensitive (write-only) wherever Vercel allows it: not in development, and not for
/// `NEXT_PUBLIC_` keys, which are inlined into the browser bundle and public anyway.
pub fn env_type_for(target: &VercelTarget, key: &str) -> &'static str {
    if *target == VercelTarget::Development || key.starts_with("NEXT_PUBLIC_") {
        "encrypted"
    } else {
        "sensitive"
    }
}

/// A custom environment the project does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    pub slot: Slot,
}

/// The mapping's slots, custom environments resolved to ids.
pub fn desired_slots(
    mapping: &VercelMapping,
    custom: &[CustomEnvironment],
) -> (Vec<Desired>, Vec<UnknownTarget>) {
    let mut desired = Vec::new();
    let mut unknown = Vec::new();
    for MappedSlot {
        slot,
        target,
        field,
    } in mapped_slots(mapping)
    {
        let scope = match &target {
            VercelTarget::Production => Scope::Standard("production"),
            VercelTarget::Preview => Scope::Standard("preview"),
            VercelTarget::Development => Scope::Standard("development"),
            VercelTarget::Custom(name) => {
                match custom.iter().find(|c| &c.id == name || &c.slug == name) {
                    Some(env) => Scope::Custom { id: env.id.clone() },
                    None => {
                        unknown.push(UnknownTarget { slot });
                        continue;
                    }
                }
            }
        };
        desired.push(Desired {
            env_type: env_type_for(&target, &slot.key),
            slot,
            scope,
            field,
        });
    }
    (desired, unknown)
}

/// Whether the record sits in (part of) the slot's conflict space.
fn overlaps(record: &EnvRecord, desired: &Desired) -> bool {
    record.key == desired.slot.key
        && record.git_branch == desired.slot.git_branch
        && match &desired.scope {
            Scope::Standard(target) => record.target.iter().any(|t| t == target),
            Scope::Custom { id } => record.custom_environment_ids.iter().any(|c| c == id),
        }
}

/// Whether the record covers exactly this one slot.
fn exactly(record: &EnvRecord, desired: &Desired) -> bool {
    overlaps(record, desired)
        && match &desired.scope {
            Scope::Standard(_) => {
                record.target.len() == 1 && record.custom_environment_ids.is_empty()
            }
            Scope::Custom { .. } => {
                record.custom_environment_ids.len() == 1 && record.target.is_empty()
            }
        }
}

fn same_type(record: &EnvRecord, wanted: &str) -> bool {
    // `secret` is the legacy name (and the `visibility` flag's) for write-only values.
    fn normalise(t: &str) -> &str {
        if t == "secret" { "sensitive" } else { t }
    }
    normalise(&record.env_type) == normalise(wanted)
}

fn edited_by_hand(record: &EnvRecord, entry: &LedgerEntry) -> bool {
    record.updated_at > entry.updated_at
        && (entry.written_by.is_none() || record.updated_by != entry.written_by)
}

fn when(record: &EnvRecord) -> String {
    let at = chrono::DateTime::from_timestamp_millis(record.updated_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| record.updated_at.to_string());
    match &record.updated_by {
        Some(by) => format!("by {by} at {at}"),
        None => format!("at {at}"),
    }
}

/// Whether a write creates the slot's record or updates keyward's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Update,
}

/// What happens to one desired slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The record holds the current version and nobody touched it: no call at all.
    Unchanged { record_id: String },
    /// Upsert the current value. `replace`: a record of keyward's that must be deleted first
    /// (its type changes, which Vercel cannot do in place).
    Write {
        kind: WriteKind,
        replace: Option<String>,
        note: Option<String>,
    },
    /// Not in parity, and policy says leave it (reported as drift).
    Drift { note: String },
    /// Someone else's variable holds the slot: never touched.
    Refuse { note: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    pub desired: Desired,
    pub action: Action,
}

/// What happens to a ledger entry the mapping no longer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanAction {
    Delete {
        record_id: String,
    },
    /// Left in Vercel and dropped from the ledger (`orphans: keep`).
    Release,
    /// Already gone from Vercel.
    Gone,
    /// Edited by hand since keyward wrote it: not deleted, still reported.
    Drift {
        note: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanPlan {
    pub entry: LedgerEntry,
    pub action: OrphanAction,
}

pub struct PlanInput<'a> {
    pub secret: &'a str,
    pub version: &'a str,
    pub on_edit: EditPolicy,
    pub orphans: OrphanPolicy,
    pub ledger: &'a Ledger,
    /// The records of every project the desired slots and the ledger name.
    pub records: &'a BTreeMap<ProjectRef, Vec<EnvRecord>>,
}

pub fn plan_slot(input: &PlanInput<'_>, desired: Desired) -> SlotPlan {
    let empty = Vec::new();
    let records = input.records.get(&desired.slot.project).unwrap_or(&empty);
    let entry = input.ledger.entry(&desired.slot);
    let holders: Vec<&EnvRecord> = records.iter().filter(|r| overlaps(r, &desired)).collect();
    let ours = |r: &EnvRecord| {
        !r.is_protected()
            && exactly(r, &desired)
            && (entry.is_some_and(|e| e.record_id == r.id)
                || r.comment.as_deref().and_then(provenance_secret) == Some(input.secret))
    };
    let action = match holders.as_slice() {
        [] => match entry {
            Some(_) if input.on_edit == EditPolicy::Report => Action::Drift {
                note: "deleted in Vercel after keyward wrote it; left deleted (on-edit: report)"
                    .into(),
            },
            Some(_) => Action::Write {
                kind: WriteKind::Create,
                replace: None,
                note: Some("was deleted in Vercel; recreated (on-edit: overwrite)".into()),
            },
            None => Action::Write {
                kind: WriteKind::Create,
                replace: None,
                note: None,
            },
        },
        [record] if ours(record) => {
            let edited =
                entry.is_some_and(|e| e.record_id == record.id && edited_by_hand(record, e));
            let replace = (!same_type(record, desired.env_type)).then(|| record.id.clone());
            if edited && input.on_edit == EditPolicy::Report {
                Action::Drift {
                    note: format!(
                        "edited in Vercel {} after keyward wrote it; left as it is (on-edit: report)",
                        when(record)
                    ),
                }
            } else if edited {
                Action::Write {
                    kind: WriteKind::Update,
                    replace,
                    note: Some(format!(
                        "edited in Vercel {}; written back (on-edit: overwrite)",
                        when(record)
                    )),
                }
            } else if entry
                .is_some_and(|e| e.record_id == record.id && e.version_id == input.version)
                && replace.is_none()
            {
                Action::Unchanged {
                    record_id: record.id.clone(),
                }
            } else {
                Action::Write {
                    kind: WriteKind::Update,
                    replace,
                    note: entry
                        .is_none()
                        .then(|| "adopted keyward's own record (ledger entry missing)".into()),
                }
            }
        }
        [first, ..] => Action::Refuse {
            note: format!(
                "`{}` on {} is held by a variable keyward does not own (id {}{}); left untouched",
                desired.slot.key,
                desired.slot.target,
                first.id,
                if first.configuration_id.is_some() {
                    ", managed by an integration"
                } else if first.is_protected() {
                    ", a system variable"
                } else if !exactly(first, &desired) {
                    ", spanning more than this target"
                } else {
                    ""
                }
            ),
        },
    };
    SlotPlan { desired, action }
}

/// The ledger entries no desired slot covers, and what becomes of each.
pub fn plan_orphans(input: &PlanInput<'_>, desired: &[Slot]) -> Vec<OrphanPlan> {
    let empty = Vec::new();
    input
        .ledger
        .entries
        .iter()
        .filter(|e| !desired.contains(&e.slot))
        .map(|entry| {
            let records = input.records.get(&entry.slot.project).unwrap_or(&empty);
            let action = match records.iter().find(|r| r.id == entry.record_id) {
                None => OrphanAction::Gone,
                Some(_) if input.orphans == OrphanPolicy::Keep => OrphanAction::Release,
                Some(record) if edited_by_hand(record, entry) => OrphanAction::Drift {
                    note: format!(
                        "no longer mapped, but edited in Vercel {} after keyward wrote it; not deleted",
                        when(record)
                    ),
                },
                Some(record) => OrphanAction::Delete {
                    record_id: record.id.clone(),
                },
            };
            OrphanPlan {
                entry: entry.clone(),
                action,
            }
        })
        .collect()
}
