//! keyward's drift library: what runs against what was declared.
//!
//! - [`detect`]: reads everything first (one `ListSecrets` walk, `DescribeSecret` only for
//!   secrets that declare replicas, resource policies at bounded concurrency, the Vercel sync
//!   ledgers), then evaluates the rules of [`findings`]. Any read failure fails the whole
//!   detection: nothing downstream acts on a half-read state.
//! - [`run`]: one detector run, detection then ticketing ([`tickets`]: a GitHub issue per
//!   fingerprint, Jira, a webhook, `DriftDetected` events for new or changed findings).
//! - [`workload`]: the Argo CD application and the `ExternalSecret`s it runs, against keyward's
//!   projections ([`argocd`]: the REST adapter).
//! - [`native`]: AWS Config's compliance verdicts on the Secrets Manager managed rules.
//! - [`remediation`]: the pre-merge guard and post-merge verification of a drift fix, as the CI
//!   gateway enforces them.
//! - [`account`]: the ports detection reads through (the account, the manifest) and their AWS
//!   adapters; [`settings`] and [`credentials`]: what the detector function and the gateway
//!   both read at cold start.
//!
//! Used by the drift-detector function, the CI gateway and the CLI (`keyward plan`, `keyward
//! drift`).

pub mod account;
pub mod argocd;
pub mod credentials;
pub mod detect;
pub mod findings;
pub mod native;
pub mod remediation;
pub mod run;
pub mod settings;
pub mod tickets;
pub mod workload;

#[cfg(test)]
mod native_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;

use keyward_shared::events::{
    Actor, ActorKind, CorrelationId, DomainEvent, EventData, Outcome, SecretRef,
};
use keyward_shared::redact::SafeText;
use sha2::{Digest, Sha256};

use crate::account::AccountError;
use crate::findings::Finding;
use crate::tickets::TicketError;

pub use detect::{Detection, DetectionRequest, DetectionSettings, DriftScope, Estate, detect};
pub use run::{Detector, RunReport, TicketReport};

/// State-bucket prefix of the reported-finding markers (`drift/seen/<sha256(fingerprint)>`).
pub const SEEN_PREFIX: &str = "drift/seen/";

/// The marker key remembering what was reported for one fingerprint.
pub fn seen_key(fingerprint: &str) -> String {
    format!(
        "{SEEN_PREFIX}{}",
        hex::encode(Sha256::digest(fingerprint.as_bytes()))
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Nothing was ticketed: a run never acts on a half-read state.
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("ticketing: {0}")]
    Tickets(#[from] TicketError),
    #[error("state: {0}")]
    State(SafeText),
    #[error("publishing drift events: {0}")]
    Publish(SafeText),
    /// Argo CD could not be read: workload detection, like the rest, is all or nothing.
    #[error("{0}")]
    Workload(SafeText),
    #[error(transparent)]
    Native(#[from] crate::native::NativeError),
}

impl From<keyward_shared::ports::ManifestReadError> for DriftError {
    fn from(e: keyward_shared::ports::ManifestReadError) -> Self {
        Self::Account(e.into())
    }
}

impl DriftError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::Account(AccountError::Manifest(_)) => "ManifestError",
            Self::Account(AccountError::Aws { .. }) => "SecretsManagerError",
            Self::Tickets(_) => "TicketingError",
            Self::State(_) => "StateError",
            Self::Publish(_) => "PublishError",
            Self::Workload(_) => "ArgoCdError",
            Self::Native(_) => "ConfigComplianceError",
        }
    }
}

/// The Jira key an issue body records (`Jira: KEY-1`).
pub fn jira_key_in(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Jira: "))
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

pub fn drift_event(finding: &Finding) -> DomainEvent {
    DomainEvent::new(
        CorrelationId::new(format!(
            "drift:{}",
            &hex::encode(Sha256::digest(finding.fingerprint.as_bytes()))[..32]
        ))
        .unwrap_or_else(|_| CorrelationId::generate()),
        Actor {
            kind: ActorKind::Schedule,
            id: "keyward.drift-detector".into(),
        },
        // An application's own state is about the estate (`/<org>/<env>/`), not one secret.
        (!finding.secret.ends_with('/')).then(|| SecretRef {
            name: finding.secret.clone(),
            arn: None,
        }),
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: finding.fingerprint.clone(),
            finding: finding.kind.slug().to_owned(),
            severity: finding.severity,
            evidence: finding.evidence.clone(),
        },
    )
}
