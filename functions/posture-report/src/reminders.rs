//! Owner reminders: a secret rotated by hand (`manual`) that falls due within a week, or is
//! overdue, gets one notification per due date. Never twice: the reminder is claimed with a
//! create-once marker before it is sent, so a retry (or a second run the same day) finds the
//! claim and sends nothing; a send that failed is marked so, and the next run sends it.

use chrono::{DateTime, Utc};
use keyward_shared::adapters::http::ChatWebhook;
use keyward_shared::governance::RotationStrategy;
use keyward_shared::ports::{MarkerError, MarkerStore};
use keyward_shared::posture::{DUE_SOON, Posture};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the claims live in the state bucket.
pub const REMINDER_PREFIX: &str = "state/reminders/";

const SENT: &str = "sent";
const PENDING: &str = "pending";
const FAILED: &str = "failed";

/// Where reminders go: the chat webhook when deployed.
pub trait ReminderSink: Send + Sync {
    fn send(&self, text: &str) -> impl Future<Output = Result<(), String>> + Send;
}

impl ReminderSink for ChatWebhook {
    async fn send(&self, text: &str) -> Result<(), String> {
        self.post(text).await.map_err(|e| e.to_string())
    }
}

/// One reminder to send: names and dates only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub secret: String,
    pub owner: String,
    pub due: DateTime<Utc>,
}

impl Reminder {
    /// The claim's key: one per secret and due date.
    pub fn key(&self) -> String {
        format!(
            "{REMINDER_PREFIX}{}/{}",
            hex::encode(Sha256::digest(self.secret.as_bytes())),
            self.due.format("%Y-%m-%d")
        )
    }

    pub fn text(&self, now: DateTime<Utc>) -> String {
        let days = (self.due - now).num_days();
        let when = if self.due < now {
            format!(
                "was due on {} ({} day(s) overdue)",
                self.due.format("%Y-%m-%d"),
                (now - self.due).num_days()
            )
        } else {
            format!(
                "is due on {} (in {days} day(s))",
                self.due.format("%Y-%m-%d")
            )
        };
        format!(
            "keyward: {} (owner {}) is rotated by hand and {when}. Rotate it, then record the rotation.",
            self.secret, self.owner
        )
    }
}

/// Manual secrets, declared and present, due within [`DUE_SOON`] or overdue.
pub fn due(posture: &Posture, now: DateTime<Utc>) -> Vec<Reminder> {
    posture
        .secrets
        .iter()
        .filter(|s| s.declared && s.exists && s.strategy == Some(RotationStrategy::Manual))
        .filter_map(|s| {
            let due = s.next_due?;
            (due - now <= DUE_SOON).then(|| Reminder {
                secret: s.name.clone(),
                owner: s.owner.clone().unwrap_or_default(),
                due,
            })
        })
        .collect()
}

/// What happened to the reminders of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReminderTally {
    pub due: usize,
    pub sent: usize,
    /// Sent by an earlier run or attempt.
    pub already_sent: usize,
    /// Claimed by an attempt that did not report back (it crashed or is still sending): not
    /// sent again, so never twice.
    pub unconfirmed: usize,
    pub failed: usize,
    /// No webhook configured: due, and not sent.
    pub no_webhook: usize,
}

pub async fn remind<M: MarkerStore, W: ReminderSink>(
    store: &M,
    sink: Option<&W>,
    reminders: &[Reminder],
    now: DateTime<Utc>,
) -> Result<ReminderTally, MarkerError> {
    let mut tally = ReminderTally {
        due: reminders.len(),
        ..ReminderTally::default()
    };
    let Some(sink) = sink else {
        tally.no_webhook = reminders.len();
        return Ok(tally);
    };
    for reminder in reminders {
        let key = reminder.key();
        let claim = store.create_or_get(&key, PENDING).await?;
        if !claim.created {
            match claim.body.as_str() {
                SENT => {
                    tally.already_sent += 1;
                    continue;
                }
                FAILED => store.overwrite(&key, PENDING).await?,
                _ => {
                    tally.unconfirmed += 1;
                    continue;
                }
            }
        }
        match sink.send(&reminder.text(now)).await {
            Ok(()) => {
                store.overwrite(&key, SENT).await?;
                tally.sent += 1;
            }
            Err(reason) => {
                tracing::warn!(secret = %reminder.secret, %reason, "owner reminder not delivered");
                store.overwrite(&key, FAILED).await?;
                tally.failed += 1;
            }
        }
    }
    Ok(tally)
}
