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

/// The declared manifest could not be read (or did not load): the reason, naming the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ManifestReadError(pub String);

/// Where the declared manifest is read from: the files CI publishes.
pub trait ManifestSource: Send + Sync {
    /// The manifest as CI last wrote it; an incomplete or invalid one is an error, never a
    /// partial result.
    fn manifest(
        &self,
    ) -> impl Future<Output = Result<crate::manifest::Manifest, ManifestReadError>> + Send;
}

/// A manifest already in memory (tests, and callers that loaded it themselves).
#[derive(Debug, Clone)]
pub struct StaticManifest(pub crate::manifest::Manifest);

impl ManifestSource for StaticManifest {
    async fn manifest(&self) -> Result<crate::manifest::Manifest, ManifestReadError> {
        Ok(self.0.clone())
    }
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
    /// The version labelled `AWSCURRENT` (from `SecretVersionsToStages`): tells a consumer
    /// whether the value changed without reading it.
    pub current_version: Option<String>,
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

/// Reads a secret's resource policy (`GetResourcePolicy`: metadata, never the value).
pub trait ResourcePolicies: Send + Sync {
    /// `Ok(None)`: the secret has no resource policy.
    fn policy(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<String>, CatalogError>> + Send;
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

/// Secrets listed in memory have no resource policy.
impl ResourcePolicies for InMemorySecretCatalog {
    async fn policy(&self, _arn: &str) -> Result<Option<String>, CatalogError> {
        Ok(None)
    }
}

/// Resource policy documents by secret ARN; for unit tests.
#[derive(Debug, Default)]
pub struct InMemoryResourcePolicies {
    pub by_arn: std::collections::BTreeMap<String, String>,
}

impl ResourcePolicies for InMemoryResourcePolicies {
    async fn policy(&self, arn: &str) -> Result<Option<String>, CatalogError> {
        Ok(self.by_arn.get(arn).cloned())
    }
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

/// A small create-once object: who made it (the body) and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub body: String,
    /// True when this call created it; false when an earlier writer had.
    pub created: bool,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
#[error("marker store: {0}")]
pub struct MarkerError(pub SafeText);

/// Create-once markers: the building block for work that must happen once across retries and
/// concurrent invocations (alert delivery, detection thresholds, single-use tokens). Backed by
/// S3 conditional writes (`If-None-Match: *`), which are strongly consistent; old markers are
/// removed by the bucket's lifecycle rules, not by the code.
pub trait MarkerStore: Send + Sync {
    /// Creates `key` holding `body` unless it exists; returns what is stored afterwards (ours,
    /// or the earlier writer's body with `created == false`).
    fn create_or_get(
        &self,
        key: &str,
        body: &str,
    ) -> impl Future<Output = Result<Marker, MarkerError>> + Send;
    /// The marker under `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Marker>, MarkerError>> + Send;
    /// Writes `key` whether or not it exists (last writer wins).
    fn overwrite(
        &self,
        key: &str,
        body: &str,
    ) -> impl Future<Output = Result<(), MarkerError>> + Send;
    /// Every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, MarkerError>> + Send;
    /// How many markers live under `prefix`, counting no further than `at_least`.
    fn count(
        &self,
        prefix: &str,
        at_least: u64,
    ) -> impl Future<Output = Result<u64, MarkerError>> + Send;
}

/// Key to (body, last written).
type MarkerMap = std::collections::BTreeMap<String, (String, DateTime<Utc>)>;

/// Markers in memory, with a clock the tests set; can be told to fail after N writes.
#[derive(Debug, Default)]
pub struct InMemoryMarkerStore {
    markers: Mutex<MarkerMap>,
    /// When set, writes fail once this many more have succeeded (fault injection).
    pub fail_after_writes: Mutex<Option<usize>>,
    pub now: Mutex<Option<DateTime<Utc>>>,
}

impl InMemoryMarkerStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MarkerMap>, MarkerError> {
        self.markers
            .lock()
            .map_err(|_| MarkerError(SafeText::fixed("in-memory marker store poisoned")))
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
            .lock()
            .ok()
            .and_then(|n| *n)
            .unwrap_or_else(Utc::now)
    }

    fn spend_write(&self) -> Result<(), MarkerError> {
        let mut budget = self
            .fail_after_writes
            .lock()
            .map_err(|_| MarkerError(SafeText::fixed("in-memory marker store poisoned")))?;
        match budget.as_mut() {
            Some(0) => Err(MarkerError(SafeText::fixed("injected write failure"))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl MarkerStore for InMemoryMarkerStore {
    async fn create_or_get(&self, key: &str, body: &str) -> Result<Marker, MarkerError> {
        if let Some((body, at)) = self.lock()?.get(key) {
            return Ok(Marker {
                body: body.clone(),
                created: false,
                last_modified: Some(*at),
            });
        }
        self.spend_write()?;
        let now = self.now();
        self.lock()?.insert(key.to_owned(), (body.to_owned(), now));
        Ok(Marker {
            body: body.to_owned(),
            created: true,
            last_modified: Some(now),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Marker>, MarkerError> {
        Ok(self.lock()?.get(key).map(|(body, at)| Marker {
            body: body.clone(),
            created: false,
            last_modified: Some(*at),
        }))
    }

    async fn overwrite(&self, key: &str, body: &str) -> Result<(), MarkerError> {
        self.spend_write()?;
        let now = self.now();
        self.lock()?.insert(key.to_owned(), (body.to_owned(), now));
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, MarkerError> {
        Ok(self
            .lock()?
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn count(&self, prefix: &str, at_least: u64) -> Result<u64, MarkerError> {
        Ok(self
            .lock()?
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(at_least as usize)
            .count() as u64)
    }
}

/// Where reports go (the posture page and its JSON): whole objects, replaced by each write of
/// the same key.
pub trait ReportStore: Send + Sync {
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> impl Future<Output = Result<(), MarkerError>> + Send;
}

/// Reports kept in memory; for handler unit tests.
#[derive(Debug, Default)]
pub struct InMemoryReportStore {
    pub objects: Mutex<std::collections::BTreeMap<String, (Vec<u8>, &'static str)>>,
}

impl ReportStore for InMemoryReportStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), MarkerError> {
        self.objects
            .lock()
            .map_err(|_| MarkerError(SafeText::fixed("in-memory report store poisoned")))?
            .insert(key.to_owned(), (bytes, content_type));
        Ok(())
    }
}
