//! From what was read to the posture document: pure, so every rule here is tested without a
//! bucket or an account.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::model::*;
use super::readers::readers;
use crate::events::{DomainEvent, EventData, GroupRole, PostureFigures, VercelTargetStatus};
use crate::manifest::{DeclaredSecret, Manifest};
use crate::naming::SecretName;
use crate::policy::PolicyGrants;
use crate::ports::CatalogEntry;
use crate::vercel_ledger::{Ledger, mapped_slots};

/// A rotation falls "due soon" this long before its due date (and owners are reminded).
pub const DUE_SOON: Duration = Duration::days(7);
const TOP_PRINCIPALS: usize = 10;

/// Everything posture is computed from. A `None` is a source that could not be read (its
/// reason is in `sources`): the parts that need it stay empty, never guessed.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub org: String,
    pub now: DateTime<Utc>,
    /// Alerts are counted over this window; rotations and drift are read from `events`,
    /// which may reach further back.
    pub window: Window,
    pub manifest: Option<Manifest>,
    /// Every secret under `/<org>/`, as `ListSecrets` shows it.
    pub catalog: Option<Vec<CatalogEntry>>,
    /// By secret name: the parsed resource policy (`None` inside: no policy).
    pub policies: Option<BTreeMap<String, Option<PolicyGrants>>>,
    /// By secret name: the Vercel sync ledger.
    pub ledgers: Option<BTreeMap<String, Ledger>>,
    /// By secret name: principals the forwarder saw read the value.
    pub readers_seen: Option<BTreeMap<String, Vec<SeenReader>>>,
    /// The audit trail's domain events over the history read, in any order.
    pub events: Option<Vec<DomainEvent>>,
    pub chain: ChainState,
    pub sources: Vec<SourceState>,
}

pub fn compute(g: &Gathered) -> Posture {
    let events = g.events.as_deref().unwrap_or_default();
    let history = History::from_events(events);
    let declared: BTreeMap<String, &DeclaredSecret> = g
        .manifest
        .iter()
        .flat_map(|m| m.secrets.iter())
        .map(|d| (d.name.to_string(), d))
        .collect();
    let existing: BTreeMap<&str, &CatalogEntry> = g
        .catalog
        .iter()
        .flatten()
        .filter(|e| e.deleted.is_none())
        .map(|e| (e.name.as_str(), e))
        .collect();
    let names: BTreeSet<&str> = declared
        .keys()
        .map(String::as_str)
        .chain(existing.keys().copied())
        .collect();
    let mut secrets: Vec<SecretPosture> = names
        .iter()
        .map(|name| {
            let found = Found {
                declared: declared.get(*name).copied(),
                entry: existing.get(name).copied(),
            };
            secret_posture(g, &history, name, found)
        })
        .collect();
    secrets.sort_by(|a, b| (a.health, a.rotation, &a.name).cmp(&(b.health, b.rotation, &b.name)));
    let drift = history.drift_items(g.now, g.window.from);
    let alerts = alert_summary(events, &g.window);
    let keys_by_environment = keys_grid(g.manifest.as_ref(), &secrets);
    let headline = headline(&secrets, &drift, &alerts, g.chain.verdict);
    Posture {
        schema_version: POSTURE_SCHEMA_VERSION,
        generated_at: g.now,
        org: g.org.clone(),
        window: g.window.clone(),
        headline,
        sources: g.sources.clone(),
        secrets,
        drift,
        alerts,
        chain: g.chain.clone(),
        keys_by_environment,
    }
}

/// One name's declaration and listing, either of which may be absent.
struct Found<'a> {
    declared: Option<&'a DeclaredSecret>,
    entry: Option<&'a CatalogEntry>,
}

fn secret_posture(g: &Gathered, history: &History, name: &str, found: Found<'_>) -> SecretPosture {
    let parsed = name.parse::<SecretName>().ok();
    let segment = |pick: fn(&SecretName) -> String| parsed.as_ref().map(pick).unwrap_or_default();
    let governance = found.declared.map(|d| &d.governance);
    let rotation = rotation_of(g.now, history.last_rotation(name), &found);
    let vercel = parity_of(g, history, name, &found);
    let readers = readers(
        governance.map(|gov| gov.readers.iter().map(|r| r.as_str().to_owned()).collect()),
        g.policies
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(Option::as_ref),
        g.readers_seen.as_ref().and_then(|r| r.get(name)),
    );
    let open_drift = history.open_drift_of(name);
    let rotation_failures = history.failures.get(name).map_or(0, |times| {
        times.iter().filter(|t| **t >= g.window.from).count() as u64
    });
    let health = [
        rotation.state.health(),
        if rotation_failures > 0 {
            Health::Warn
        } else {
            Health::Ok
        },
        if open_drift > 0 {
            Health::Bad
        } else {
            Health::Ok
        },
        if readers.public || !readers.ghost.is_empty() {
            Health::Bad
        } else {
            Health::Ok
        },
        vercel
            .iter()
            .map(|t| parity_health(t.state))
            .min()
            .unwrap_or(Health::Ok),
    ]
    .into_iter()
    .min()
    .unwrap_or(Health::Ok);
    SecretPosture {
        name: name.to_owned(),
        environment: segment(|n| n.env().to_string()),
        service: segment(|n| n.service().to_string()),
        declared: found.declared.is_some(),
        exists: found.entry.is_some(),
        health,
        owner: governance.map(|gov| gov.owner.as_str().to_owned()),
        classification: governance.map(|gov| gov.classification),
        strategy: governance.map(|gov| gov.rotation.strategy),
        interval_days: governance.map(|gov| gov.rotation.interval.days()),
        rotation: rotation.state,
        last_rotated: rotation.last.map(|l| l.at),
        last_rotation_evidence: rotation.last.map(|l| l.evidence),
        next_due: rotation.next_due,
        age_days: rotation
            .age
            .map(|age| round1(age.num_minutes() as f64 / 1440.0)),
        rotation_failures,
        vercel,
        open_drift,
        readers,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn parity_health(state: ParityState) -> Health {
    match state {
        ParityState::InParity => Health::Ok,
        ParityState::Stale | ParityState::NeverSynced | ParityState::Unknown => Health::Warn,
        ParityState::Failed => Health::Bad,
    }
}

/// The last rotation and where it is recorded.
#[derive(Debug, Clone, Copy)]
struct LastRotation {
    at: DateTime<Utc>,
    evidence: RotationEvidence,
}

struct RotationView {
    state: RotationState,
    last: Option<LastRotation>,
    next_due: Option<DateTime<Utc>>,
    /// Age of the current value as far as rotation knows it.
    age: Option<Duration>,
}

/// Rotation evidence is `LastRotatedDate` or a `SecretRotated` record, never `LastChangedDate`
/// (a tag edit moves it, and would make a secret nobody rotated look fresh).
fn rotation_of(
    now: DateTime<Utc>,
    audited: Option<DateTime<Utc>>,
    found: &Found<'_>,
) -> RotationView {
    let from_catalog = found
        .entry
        .and_then(|e| e.last_rotated)
        .map(|at| LastRotation {
            at,
            evidence: RotationEvidence::SecretsManager,
        });
    let from_audit = audited.map(|at| LastRotation {
        at,
        evidence: RotationEvidence::AuditRecord,
    });
    let last = match (from_catalog, from_audit) {
        (Some(c), Some(a)) => Some(if a.at > c.at { a } else { c }),
        (c, a) => c.or(a),
    };
    let view = |state, next_due, age| RotationView {
        state,
        last,
        next_due,
        age,
    };
    let (Some(declared), Some(entry)) = (found.declared, found.entry) else {
        let state = if found.declared.is_some() {
            RotationState::Missing
        } else {
            RotationState::Undeclared
        };
        return view(state, None, last.map(|l| now - l.at));
    };
    if entry.current_version.is_none() {
        return view(RotationState::NoValue, None, None);
    }
    let interval = Duration::days(i64::from(declared.governance.rotation.interval.days()));
    let Some(last_rotation) = last else {
        let created = entry.created.unwrap_or(now);
        let due = created + interval;
        let state = if now > due {
            RotationState::NeverRotatedOverdue
        } else {
            RotationState::NeverRotated
        };
        return view(state, Some(due), Some(now - created));
    };
    let due = last_rotation.at + interval;
    let state = if now > due {
        RotationState::Overdue
    } else if due - now <= DUE_SOON {
        RotationState::DueSoon
    } else {
        RotationState::WithinPolicy
    };
    view(state, Some(due), Some(now - last_rotation.at))
}

/// Each variable the mapping asks for, against the ledger keyward wrote and the last sync.
fn parity_of(g: &Gathered, history: &History, name: &str, found: &Found<'_>) -> Vec<TargetParity> {
    let Some(mapping) = found.declared.and_then(|d| d.governance.vercel.as_ref()) else {
        return Vec::new();
    };
    let ledger = g.ledgers.as_ref().map(|l| l.get(name));
    let current = found.entry.and_then(|e| e.current_version.as_deref());
    let failed = history.failed_syncs.get(name);
    mapped_slots(mapping)
        .into_iter()
        .map(|mapped| {
            let slot = mapped.slot;
            let state = match ledger {
                None => ParityState::Unknown,
                Some(ledger) => {
                    let written = ledger.and_then(|l| l.entries.iter().find(|e| e.slot == slot));
                    let failed_here = failed
                        .is_some_and(|f| f.contains(&(slot.target.clone(), slot.key.clone())));
                    match written {
                        _ if failed_here => ParityState::Failed,
                        None => ParityState::NeverSynced,
                        Some(entry) if Some(entry.version_id.as_str()) == current => {
                            ParityState::InParity
                        }
                        Some(_) => ParityState::Stale,
                    }
                }
            };
            TargetParity {
                project: slot.project.to_string(),
                target: slot.target,
                git_branch: slot.git_branch,
                key: slot.key,
                state,
            }
        })
        .collect()
}

/// What the audit trail says, folded by secret and fingerprint.
#[derive(Debug, Default)]
struct History {
    rotated: BTreeMap<String, DateTime<Utc>>,
    failures: BTreeMap<String, Vec<DateTime<Utc>>>,
    /// Secret name -> (target, key) pairs the latest sync left failed or edited.
    failed_syncs: BTreeMap<String, BTreeSet<(String, String)>>,
    drift: Vec<DriftItem>,
}

impl History {
    fn from_events(events: &[DomainEvent]) -> Self {
        let mut ordered: Vec<&DomainEvent> = events.iter().collect();
        ordered.sort_by_key(|e| (e.time, e.event_id.to_string()));
        let mut history = Self::default();
        let mut open: BTreeMap<String, usize> = BTreeMap::new();
        for event in ordered {
            let secret = event.secret.as_ref().map(|s| secret_name_of(&s.name));
            match &event.data {
                EventData::SecretRotated { .. } => {
                    if let Some(name) = secret {
                        history.rotated.insert(name, event.time);
                    }
                }
                EventData::RotationFailed { .. } => {
                    if let Some(name) = secret {
                        history.failures.entry(name).or_default().push(event.time);
                    }
                }
                EventData::VercelSyncCompleted { .. } => {
                    if let Some(name) = secret {
                        history.failed_syncs.remove(&name);
                    }
                }
                EventData::VercelSyncFailed { results, .. } => {
                    if let Some(name) = secret {
                        let failed = results
                            .iter()
                            .filter(|r| {
                                matches!(
                                    r.status,
                                    VercelTargetStatus::Failed | VercelTargetStatus::DriftDetected
                                )
                            })
                            .map(|r| (r.target.as_str().to_owned(), r.key.clone()))
                            .collect();
                        history.failed_syncs.insert(name, failed);
                    }
                }
                // Detected again while open: the same finding, still open since first seen.
                EventData::DriftDetected {
                    fingerprint,
                    finding,
                    severity,
                    ..
                } if !open.contains_key(fingerprint) => {
                    open.insert(fingerprint.clone(), history.drift.len());
                    history.drift.push(DriftItem {
                        fingerprint: fingerprint.clone(),
                        finding: finding.clone(),
                        severity: *severity,
                        secret,
                        detected: event.time,
                        closed: None,
                        age_hours: 0.0,
                    });
                }
                EventData::DriftRemediated {
                    fingerprint,
                    verified: true,
                    ..
                } => {
                    if let Some(i) = open.remove(fingerprint) {
                        history.drift[i].closed = Some(event.time);
                    }
                }
                _ => {}
            }
        }
        history
    }

    fn last_rotation(&self, name: &str) -> Option<DateTime<Utc>> {
        self.rotated.get(name).copied()
    }

    fn open_drift_of(&self, name: &str) -> u64 {
        self.drift
            .iter()
            .filter(|d| d.closed.is_none() && d.secret.as_deref() == Some(name))
            .count() as u64
    }

    /// Open findings, and those closed after `since`, newest first.
    fn drift_items(&self, now: DateTime<Utc>, since: DateTime<Utc>) -> Vec<DriftItem> {
        let mut items: Vec<DriftItem> = self
            .drift
            .iter()
            .filter(|d| d.closed.is_none_or(|closed| closed >= since))
            .map(|d| DriftItem {
                age_hours: round1(
                    (d.closed.unwrap_or(now) - d.detected).num_minutes() as f64 / 60.0,
                ),
                ..d.clone()
            })
            .collect();
        items.sort_by(|a, b| {
            (b.closed.is_none(), b.detected).cmp(&(a.closed.is_none(), a.detected))
        });
        items
    }
}

/// A secret as an event or a sighting names it: its name, or the name inside its ARN.
pub(super) fn secret_name_of(text: &str) -> String {
    SecretName::name_from_arn(text).unwrap_or(text).to_owned()
}

/// New alerts in the window: a group's updates are the same alert again and are not counted.
fn alert_summary(events: &[DomainEvent], window: &Window) -> AlertSummary {
    let mut summary = AlertSummary::default();
    let mut principals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut days: BTreeMap<String, u64> = BTreeMap::new();
    let mut day = Some(window.from.date_naive());
    while let Some(d) = day.filter(|d| *d <= window.to.date_naive()) {
        days.insert(d.to_string(), 0);
        day = d.succ_opt();
    }
    for event in events {
        let EventData::AnomalyDetected {
            rule,
            severity,
            principal,
            group,
            ..
        } = &event.data
        else {
            continue;
        };
        if event.time < window.from
            || event.time > window.to
            || group.as_ref().is_some_and(|g| g.role == GroupRole::Updated)
        {
            continue;
        }
        summary.total += 1;
        *summary.by_rule.entry(rule.clone()).or_default() += 1;
        *summary.by_severity.entry(wire_name(severity)).or_default() += 1;
        *principals.entry(principal.as_str()).or_default() += 1;
        *days.entry(event.time.date_naive().to_string()).or_default() += 1;
    }
    let mut top: Vec<Count> = principals
        .into_iter()
        .map(|(name, count)| Count {
            name: name.to_owned(),
            count,
        })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    top.truncate(TOP_PRINCIPALS);
    summary.top_principals = top;
    summary.by_day = days
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    summary
}

/// Each service's names across the manifest's environments (or, without a manifest, the
/// environments the names show).
fn keys_grid(manifest: Option<&Manifest>, secrets: &[SecretPosture]) -> KeysGrid {
    let environments: Vec<String> = match manifest {
        Some(m) => m.environments.iter().map(|e| e.to_string()).collect(),
        None => secrets
            .iter()
            .filter(|s| !s.environment.is_empty())
            .map(|s| s.environment.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut by_key: BTreeMap<(String, String), BTreeMap<&str, KeyCell>> = BTreeMap::new();
    for s in secrets.iter().filter(|s| !s.service.is_empty()) {
        let short = s.name.rsplit('/').next().unwrap_or_default().to_owned();
        let cell = match (s.declared, s.exists) {
            (true, true) => KeyCell::Present,
            (true, false) => KeyCell::Missing,
            (false, _) => KeyCell::Undeclared,
        };
        by_key
            .entry((s.service.clone(), short))
            .or_default()
            .insert(s.environment.as_str(), cell);
    }
    let mut rows: Vec<KeyRow> = by_key
        .into_iter()
        .map(|((service, name), cells)| {
            let cells: Vec<KeyCell> = environments
                .iter()
                .map(|env| cells.get(env.as_str()).copied().unwrap_or(KeyCell::Absent))
                .collect();
            let gap = cells.iter().any(|c| *c != KeyCell::Present);
            KeyRow {
                service,
                name,
                cells,
                gap,
            }
        })
        .collect();
    rows.sort_by(|a, b| (!a.gap, &a.service, &a.name).cmp(&(!b.gap, &b.service, &b.name)));
    KeysGrid { environments, rows }
}

fn headline(
    secrets: &[SecretPosture],
    drift: &[DriftItem],
    alerts: &AlertSummary,
    chain: ChainVerdict,
) -> Headline {
    let count = |f: &dyn Fn(&SecretPosture) -> bool| secrets.iter().filter(|s| f(s)).count() as u64;
    let governed = count(&|s| s.declared && s.exists);
    let within = count(&|s| {
        matches!(
            s.rotation,
            RotationState::WithinPolicy | RotationState::DueSoon | RotationState::NeverRotated
        )
    });
    let targets: Vec<&TargetParity> = secrets.iter().flat_map(|s| s.vercel.iter()).collect();
    let figures = PostureFigures {
        secrets_governed: governed,
        secrets_declared: count(&|s| s.declared),
        secrets_existing: count(&|s| s.exists),
        within_policy: within,
        overdue: count(&|s| {
            matches!(
                s.rotation,
                RotationState::Overdue | RotationState::NeverRotatedOverdue
            )
        }),
        never_rotated: count(&|s| {
            matches!(
                s.rotation,
                RotationState::NeverRotated | RotationState::NeverRotatedOverdue
            )
        }),
        no_value: count(&|s| s.rotation == RotationState::NoValue),
        missing: count(&|s| s.rotation == RotationState::Missing),
        undeclared: count(&|s| s.rotation == RotationState::Undeclared),
        vercel_targets: targets.len() as u64,
        vercel_targets_in_parity: targets
            .iter()
            .filter(|t| t.state == ParityState::InParity)
            .count() as u64,
        open_drift: drift.iter().filter(|d| d.closed.is_none()).count() as u64,
        alerts_in_window: alerts.total,
        ghost_readers: secrets.iter().map(|s| s.readers.ghost.len() as u64).sum(),
        chain,
    };
    let within_policy_percent = if governed == 0 {
        100.0
    } else {
        round1(within as f64 * 100.0 / governed as f64)
    };
    Headline {
        figures,
        within_policy_percent,
    }
}
