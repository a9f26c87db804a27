//! The Vercel sync ledger: what keyward wrote into Vercel for one secret, kept in the state
//! bucket so parity is known without reading a value back. Written by vercel-sync, read by the
//! drift detection; both derive the slots a mapping implies from [`mapped_slots`].
//!
//! Layout: one JSON object per secret at `vercel/ledger/<sha256(secret name)>.json` (the name is
//! hashed so a key never carries a path of its own).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::governance::{OrphanPolicy, VercelBinding, VercelMapping, VercelTarget};

/// Where every ledger lives in the state bucket.
pub const LEDGER_PREFIX: &str = "vercel/ledger/";

/// The state-bucket key of one secret's ledger.
pub fn ledger_key(secret: &str) -> String {
    format!(
        "{LEDGER_PREFIX}{}.json",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

/// A project as a mapping names it: id (`prj_...`) or name, and the team owning it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProjectRef {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

impl std::fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.team {
            Some(team) => write!(f, "{team}/{}", self.project),
            None => f.write_str(&self.project),
        }
    }
}

/// Where one variable lives: Vercel's conflict space (key, target, git branch), plus the
/// project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    #[serde(flatten)]
    pub project: ProjectRef,
    pub key: String,
    /// As the mapping names it: `production`, `preview`, `development`, or a custom
    /// environment's slug or id.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
}

/// What keyward wrote into one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub slot: Slot,
    pub record_id: String,
    /// The Secrets Manager version whose value the record holds.
    pub version_id: String,
    /// Vercel's `updatedAt` (ms) of keyward's write.
    pub updated_at: i64,
    /// Vercel's `updatedBy` of keyward's write: the token's user, so a concurrent keyward write
    /// is not mistaken for a person's edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    #[serde(rename = "type")]
    pub env_type: String,
}

/// The sync ledger of one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub secret: String,
    /// The orphan policy of the last mapping seen, applied when the mapping or the secret is
    /// gone.
    #[serde(default)]
    pub orphans: OrphanPolicy,
    #[serde(default)]
    pub entries: Vec<LedgerEntry>,
}

impl Ledger {
    pub fn entry(&self, slot: &Slot) -> Option<&LedgerEntry> {
        self.entries.iter().find(|e| &e.slot == slot)
    }

    pub fn upsert(&mut self, entry: LedgerEntry) {
        self.entries.retain(|e| e.slot != entry.slot);
        self.entries.push(entry);
        self.entries.sort_by(|a, b| a.slot.cmp(&b.slot));
    }

    pub fn remove(&mut self, slot: &Slot) {
        self.entries.retain(|e| &e.slot != slot);
    }

    /// The ledger a sync leaves when it has written every variable `mapping` implies at
    /// `version` (sensitive records, ids from `record_id`): parity, as tests of its readers
    /// need it.
    pub fn in_parity(
        secret: &str,
        mapping: &VercelMapping,
        version: &str,
        mut record_id: impl FnMut() -> String,
        written_by: Option<&str>,
    ) -> Self {
        let mut ledger = Ledger {
            secret: secret.to_owned(),
            orphans: mapping.orphans,
            entries: Vec::new(),
        };
        for mapped in mapped_slots(mapping) {
            ledger.upsert(LedgerEntry {
                slot: mapped.slot,
                record_id: record_id(),
                version_id: version.to_owned(),
                updated_at: 1,
                written_by: written_by.map(str::to_owned),
                env_type: "sensitive".into(),
            });
        }
        ledger
    }
}

/// One variable a mapping asks for, before any custom environment is resolved against the
/// project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSlot {
    pub slot: Slot,
    pub target: VercelTarget,
    /// The JSON field the value comes from; `None`: the whole secret string.
    pub field: Option<String>,
}

/// The variables a mapping implies, one per (target, key) in the mapping's order: what a ledger
/// written for it must cover. The git branch applies to the preview target only.
pub fn mapped_slots(mapping: &VercelMapping) -> Vec<MappedSlot> {
    let project = ProjectRef {
        project: mapping.project.clone(),
        team: mapping.team.clone(),
    };
    let keys: Vec<(Option<String>, String)> = match &mapping.binding {
        VercelBinding::Key(key) => vec![(None, key.as_str().to_owned())],
        VercelBinding::JsonMap(map) => map
            .iter()
            .map(|(field, key)| (Some(field.as_str().to_owned()), key.as_str().to_owned()))
            .collect(),
    };
    mapping
        .targets
        .iter()
        .flat_map(|target| {
            let project = &project;
            keys.iter().map(move |(field, key)| MappedSlot {
                slot: Slot {
                    project: project.clone(),
                    key: key.clone(),
                    target: target.as_str().to_owned(),
                    git_branch: if *target == VercelTarget::Preview {
                        mapping.git_branch.clone()
                    } else {
                        None
                    },
                },
                target: target.clone(),
                field: field.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_key_hashes_the_name() {
        let key = ledger_key("/acme/prod/payments/stripe-key");
        assert!(key.starts_with(LEDGER_PREFIX));
        assert!(key.ends_with(".json"));
        assert!(!key.contains("payments"));
        assert_eq!(key.len(), LEDGER_PREFIX.len() + 64 + ".json".len());
    }
}
