//! Grouping: alerts of one rule that share the rule's `group.by` dimensions within one tumbling
//! window (aligned to the epoch, as thresholds are) become one group. The first invocation to
//! claim the group delivers it as a new alert (with every member it found); each later
//! invocation that finds more members delivers an update of the same group, never a new alert.
//!
//! State (create-once markers in the state bucket, expired with the counters):
//! - `state/group/<rule>/<group hash>/m/<alert hash>`: one per member alert;
//! - `state/group/<rule>/<group hash>/head`: which input opened the group (its members' hash,
//!   first member and time);
//! - `state/group/<rule>/<group hash>/chat-<n>`: which update told the chat the group reached
//!   `n` members (1, 2, 5, 10, 20, 50…), so a storm arriving one record per invocation does not
//!   become a message per record.
//!
//! Replay-safe as the counters are: a retry of the same input finds its own head (or computes
//! the same update id), so the delivery ledger sends it nowhere twice; two invocations racing
//! cannot both open a group.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use keyward_shared::events::{AnomalyGroup, GroupRole};
use keyward_shared::ports::{MarkerError, MarkerStore};
use keyward_shared::redact::SafeText;
use serde::{Deserialize, Serialize};

use crate::rules::Alert;
use crate::state::{key_hash, order};

/// Store calls in flight at once.
const CONCURRENCY: usize = 16;
/// Members named in one delivery; the count is exact.
pub const MEMBERS_SHOWN: usize = 20;
/// Members counted before a group's size is reported as "at least".
const MAX_COUNTED: u64 = 10_000;

/// A group as one delivery describes it (the catalogue's [`AnomalyGroup`]: count so far,
/// the opening member's time and the latest of this delivery's, what this delivery's members
/// concern, at most [`MEMBERS_SHOWN`]), and whether the chat hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDelivery {
    pub group: AnomalyGroup,
    pub chat: ChatNotice,
}

impl std::ops::Deref for GroupDelivery {
    type Target = AnomalyGroup;

    fn deref(&self) -> &AnomalyGroup {
        &self.group
    }
}

/// Whether a chat webhook hears of this delivery (Loki and the audit trail hear of all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatNotice {
    Send,
    /// An update that crossed no new size step.
    Skip,
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    /// Hash of the opening input's member alert ids: a retry of that input computes it again.
    members: String,
    event_time: DateTime<Utc>,
}

/// Folds grouped alerts into one delivery per group and input; other alerts pass unchanged.
pub async fn fold<S: MarkerStore>(
    alerts: Vec<Alert>,
    store: &S,
) -> Result<Vec<Alert>, MarkerError> {
    let mut out = Vec::with_capacity(alerts.len());
    let mut groups: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    for alert in alerts {
        match &alert.grouping {
            Some(grouping) => groups.entry(grouping.id()).or_default().push(alert),
            None => out.push(alert),
        }
    }
    let folded: Vec<Alert> = futures::stream::iter(groups)
        .map(|(id, members)| fold_group(store, id, members))
        .buffer_unordered(CONCURRENCY.div_ceil(4))
        .try_collect()
        .await?;
    out.extend(folded);
    Ok(out)
}

async fn fold_group<S: MarkerStore>(
    store: &S,
    id: String,
    mut members: Vec<Alert>,
) -> Result<Alert, MarkerError> {
    members.sort_by(|a, b| order(a).cmp(&order(b)));
    members.dedup_by(|a, b| a.alert_id == b.alert_id);
    let rule = members[0].rule.clone();
    let prefix = format!("state/group/{rule}/{}/", key_hash(&id));
    futures::stream::iter(&members)
        .map(|member| {
            let key = format!("{prefix}m/{}", key_hash(&member.alert_id));
            async move { store.create_or_get(&key, "").await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;

    let ours = Head {
        members: key_hash(
            &members
                .iter()
                .map(|m| m.alert_id.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        event_time: members[0].event_time,
    };
    let unreadable = || MarkerError(SafeText::fixed("a group marker is unreadable"));
    let body = serde_json::to_string(&ours).map_err(|_| unreadable())?;
    let claim = store.create_or_get(&format!("{prefix}head"), &body).await?;
    let head: Head = serde_json::from_str(&claim.body).map_err(|_| unreadable())?;
    let count = store.count(&format!("{prefix}m/"), MAX_COUNTED).await?;

    let role = if head.members == ours.members {
        GroupRole::Opened
    } else {
        GroupRole::Updated
    };
    let mut alert = members[0].clone();
    alert.alert_id = match role {
        GroupRole::Opened => id.clone(),
        GroupRole::Updated => format!("{id}|+{}", ours.members),
    };
    let chat = match role {
        GroupRole::Opened => ChatNotice::Send,
        GroupRole::Updated => chat_notice(store, &prefix, count, &alert.alert_id).await?,
    };
    let mut labels: Vec<String> = Vec::new();
    for member in &members {
        let label = member_label(member);
        if labels.len() < MEMBERS_SHOWN && !labels.contains(&label) {
            labels.push(label);
        }
    }
    alert.group = Some(GroupDelivery {
        group: AnomalyGroup {
            id,
            role,
            count,
            first: head.event_time,
            last: members
                .iter()
                .map(|m| m.event_time)
                .max()
                .unwrap_or(head.event_time),
            members: labels,
        },
        chat,
    });
    Ok(alert)
}

/// An update reaches the chat when the group's size reaches a new step of 1, 2, 5, 10, 20…:
/// the step is claimed once, by the update that saw it first (a retry finds its own claim).
async fn chat_notice<S: MarkerStore>(
    store: &S,
    prefix: &str,
    count: u64,
    update_id: &str,
) -> Result<ChatNotice, MarkerError> {
    let step = size_step(count);
    let claim = store
        .create_or_get(&format!("{prefix}chat-{step}"), update_id)
        .await?;
    Ok(if claim.body == update_id {
        ChatNotice::Send
    } else {
        ChatNotice::Skip
    })
}

/// The largest of 1, 2, 5, 10, 20, 50… not above `count` (1 for 0).
pub fn size_step(count: u64) -> u64 {
    let mut step = 1u64;
    for next in
        (0..).flat_map(|power| [2u64, 5, 10].map(|m| m.saturating_mul(10u64.saturating_pow(power))))
    {
        if next > count || next == u64::MAX {
            break;
        }
        step = next;
    }
    step
}

/// What a member is about: the secret it names, else its call.
fn member_label(alert: &Alert) -> String {
    let name = |id: &str| match keyward_shared::naming::SecretName::name_from_arn(id) {
        Ok(name) => name.to_owned(),
        Err(_) => id.to_owned(),
    };
    alert
        .evidence
        .get("secret")
        .map(|s| name(s))
        .or_else(|| alert.evidence.get("event_name").cloned())
        .unwrap_or_else(|| alert.rule.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_steps_follow_one_two_five() {
        let steps: Vec<u64> = [0, 1, 2, 4, 5, 9, 10, 19, 20, 49, 50, 99, 100, 250, 1_000]
            .iter()
            .map(|n| size_step(*n))
            .collect();
        assert_eq!(
            steps,
            [1, 1, 2, 2, 5, 5, 10, 10, 20, 20, 50, 50, 100, 200, 1_000]
        );
    }
}
