//! `POST /v1/preflight`: is every secret the manifest requires for a scope in place and within
//! policy? Reads governance and metadata only (`ListSecrets`), never a value.

use chrono::{DateTime, Utc};
use keyward_shared::governance::RotationStrategy;
use keyward_shared::manifest::{DeclaredSecret, Manifest};
use keyward_shared::ports::CatalogEntry;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub secret: String,
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The checklist for the secrets `manifest` declares in `environment` (and `service`).
pub fn checklist(
    manifest: &Manifest,
    entries: &[CatalogEntry],
    environment: &str,
    service: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<Item> {
    let mut items = Vec::new();
    for declared in manifest.scope(environment, service) {
        let name = declared.name.to_string();
        let entry = entries.iter().find(|e| e.name == name);
        let mut push = |check: &'static str, ok: bool, detail: String| {
            items.push(Item {
                secret: name.clone(),
                check,
                ok,
                detail,
            })
        };
        let Some(entry) = entry else {
            push("exists", false, "not found in Secrets Manager".into());
            continue;
        };
        push("exists", true, entry.arn.clone());
        // Metadata only: `SecretVersionsToStages` says whether a current value exists.
        match &entry.current_version {
            Some(version) => push("has-value", true, format!("AWSCURRENT is {version}")),
            None => push(
                "has-value",
                false,
                "no value: no version is labelled AWSCURRENT".into(),
            ),
        }
        match entry.deleted {
            Some(at) => push(
                "not-scheduled-for-deletion",
                false,
                format!("scheduled for deletion on {}", at.to_rfc3339()),
            ),
            None => push("not-scheduled-for-deletion", true, String::new()),
        }
        let (ok, detail) = rotation(declared, entry, now);
        push("rotation-within-policy", ok, detail);
        if let Some(mapping) = &declared.governance.vercel {
            let tagged = entry
                .governance
                .as_ref()
                .ok()
                .and_then(|g| g.as_ref())
                .and_then(|g| g.vercel.as_ref());
            let (ok, detail) = match tagged {
                Some(on_secret) if on_secret == mapping => {
                    (true, format!("mapped to {}", mapping.project))
                }
                Some(_) => (
                    false,
                    "the secret's Vercel mapping differs from the manifest's".into(),
                ),
                None => (false, "the secret carries no Vercel mapping".into()),
            };
            push("vercel-sync-declared", ok, detail);
        }
    }
    items
}

fn rotation(declared: &DeclaredSecret, entry: &CatalogEntry, now: DateTime<Utc>) -> (bool, String) {
    let policy = &declared.governance.rotation;
    let days = i64::from(policy.interval.days());
    let last = entry.last_rotated.or(entry.last_changed).or(entry.created);
    let age_days = last.map(|t| (now - t).num_days());
    if policy.strategy == RotationStrategy::Manual {
        return match age_days {
            Some(age) if age <= days => (
                true,
                format!("rotated by hand {age} days ago (at most {days})"),
            ),
            Some(age) => (
                false,
                format!("rotated by hand {age} days ago, policy is {days}"),
            ),
            None => (false, "no change date recorded".into()),
        };
    }
    if !entry.rotation_enabled {
        return (false, "rotation is not enabled".into());
    }
    match entry.rotation_days {
        Some(every) if every > days => {
            return (
                false,
                format!("rotates every {every} days, policy is {days}"),
            );
        }
        None => return (false, "no rotation schedule".into()),
        Some(_) => {}
    }
    match age_days {
        Some(age) if age > days => (
            false,
            format!("last rotated {age} days ago, policy is {days}"),
        ),
        Some(age) => (true, format!("every {days} days, last {age} days ago")),
        None => (true, format!("every {days} days")),
    }
}
