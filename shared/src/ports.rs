//! Narrow port traits: what functions need from the outside world. Adapters over AWS live in
//! [`crate::adapters`]; in-memory fakes below are for unit tests of the handlers.

use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::events::DomainEvent;
use crate::governance::Governance;
use crate::redact::SafeText;
use crate::tags::{Tag, TagContractError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing to the event bus failed: {0}")]
    Bus(SafeText),
    #[error("{failed} of {total} events were not accepted by the bus: {codes}")]
    Rejected {
        failed: usize,
        total: usize,
        codes: String,
    },
    #[error(transparent)]
    Event(#[from] crate::events::EventError),
}

/// Puts domain events on the custom bus.
pub trait EventPublisher: Send + Sync {
    fn publish(
        &self,
        events: &[DomainEvent],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// One secret as `ListSecrets` shows it, with its governance decoded from the tag contract.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub arn: String,
    pub name: String,
    pub tags: Vec<Tag>,
    /// `Ok(None)`: the secret carries no keyward tags. `Err`: its tags break the contract.
    pub governance: Result<Option<Governance>, TagContractError>,
    pub rotation_enabled: bool,
    pub rotation_days: Option<i64>,
    pub rotation_lambda_arn: Option<String>,
    pub last_rotated: Option<DateTime<Utc>>,
    pub next_rotation: Option<DateTime<Utc>>,
    pub last_changed: Option<DateTime<Utc>>,
    pub last_accessed: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    pub deleted: Option<DateTime<Utc>>,
    /// Absent when the secret uses the AWS-managed key `aws/secretsmanager`.
    pub kms_key_id: Option<String>,
    pub primary_region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("listing secrets failed: {0}")]
pub struct CatalogError(pub SafeText);

/// Lists secrets and their governance.
pub trait SecretCatalog: Send + Sync {
    /// Every secret whose name starts with `prefix` (`/<org>/` or `/<org>/<env>/`), including
    /// those scheduled for deletion.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<CatalogEntry>, CatalogError>> + Send;
}

/// Records published events; for handler unit tests.
#[derive(Debug, Default)]
pub struct InMemoryEventPublisher {
    pub published: Mutex<Vec<DomainEvent>>,
}

impl EventPublisher for InMemoryEventPublisher {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), PublishError> {
        for event in events {
            event.to_detail_json()?;
        }
        self.published
            .lock()
            .map_err(|_| PublishError::Bus(SafeText::fixed("in-memory publisher poisoned")))?
            .extend_from_slice(events);
        Ok(())
    }
}

/// A fixed list of secrets; for handler unit tests.
#[derive(Debug, Default)]
pub struct InMemorySecretCatalog {
    pub entries: Vec<CatalogEntry>,
}

impl SecretCatalog for InMemorySecretCatalog {
    async fn list(&self, prefix: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        Ok(self
            .entries
            .iter()
            .filter(|e| e.name.starts_with(prefix))
            .cloned()
            .collect())
    }
}
