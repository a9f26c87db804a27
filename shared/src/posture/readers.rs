//! Readers, declared against seen: who the manifest allows, who the resource policy admits,
//! and who CloudTrail saw read the value.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Readers, SeenReader};
use crate::policy::PolicyGrants;

/// The first-seen rule whose sightings (`[actor, secret]`) are the readers seen. The
/// forwarder's shipped rules define it; a test there holds them to this id and key.
pub const READER_RULE: &str = "first-seen-reader";
/// Where the forwarder keeps that rule's sightings in the state bucket.
pub const READER_SIGHTINGS_PREFIX: &str = "state/first-seen/first-seen-reader/";

/// A first-seen marker's body (`state/first-seen/<rule>/<key hash>`): the record that first saw
/// the key, and, so posture can name readers without reversing a hash, the principal and the
/// secret that record concerned (names and ARNs, never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A principal in a form that compares across sources: a role by account and name (an
/// assumed-role session and a role ARN with a path name the same role), anything else as
/// written.
pub fn principal_identity(principal: &str) -> String {
    let parts: Vec<&str> = principal.splitn(6, ':').collect();
    if let [_, _, service @ ("iam" | "sts"), _, account, resource] = parts.as_slice() {
        let mut segments = resource.split('/');
        let kind = segments.next().unwrap_or_default();
        let rest: Vec<&str> = segments.collect();
        let name = match (*service, kind) {
            // assumed-role/<role>/<session>
            ("sts", "assumed-role") => rest.first().copied(),
            // role/<path>/<name>, user/<path>/<name>
            ("iam", "role" | "user") => rest.last().copied(),
            _ => None,
        };
        if let Some(name) = name {
            let kind = if kind == "assumed-role" { "role" } else { kind };
            return format!("{account}:{kind}/{name}");
        }
    }
    principal.to_owned()
}

pub fn readers(
    declared: Option<Vec<String>>,
    policy: Option<&PolicyGrants>,
    seen: Option<&Vec<SeenReader>>,
) -> Readers {
    let declared = declared.unwrap_or_default();
    let admitted: Vec<String> = policy
        .map(|p| p.principals.iter().cloned().collect())
        .unwrap_or_default();
    let mut seen: Vec<SeenReader> = seen.cloned().unwrap_or_default();
    seen.sort_by(|a, b| a.principal.cmp(&b.principal));
    let allowed: BTreeMap<String, &str> = declared
        .iter()
        .chain(admitted.iter())
        .map(|p| (principal_identity(p), p.as_str()))
        .collect();
    let seen_ids: BTreeSet<String> = seen
        .iter()
        .map(|s| principal_identity(&s.principal))
        .collect();
    let ghost: Vec<String> = seen
        .iter()
        .filter(|s| !allowed.contains_key(&principal_identity(&s.principal)))
        .map(|s| s.principal.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let unused: Vec<String> = allowed
        .iter()
        .filter(|(id, _)| !seen_ids.contains(*id))
        .map(|(_, p)| (*p).to_owned())
        .collect();
    let exposure = (allowed.len() + ghost.len()) as u64;
    Readers {
        declared,
        admitted,
        public: policy.is_some_and(|p| p.public),
        seen,
        ghost,
        unused,
        exposure,
    }
}
