//! Posture: the state of a secrets estate in one document. For every declared and every existing
//! secret: governance, rotation against policy, Vercel parity, open drift, readers declared
//! against seen; the alerts of a window; the audit chain's verdict; each service's names across
//! environments.
//!
//! Read-only and value-free: it lists metadata, resource policies, ledgers, first-seen markers
//! and audit records, and never calls `GetSecretValue`. [`gather`] reads the sources through the
//! ports (a source that fails is named in the document, never guessed), [`compute`] is pure,
//! and [`text`] and [`html`] render it.

mod collect;
mod compute;
pub mod html;
mod model;
mod readers;
pub mod text;

pub use collect::{PostureRequest, PostureSources, gather};
pub use compute::{DUE_SOON, Gathered, compute};
pub use model::*;
pub use readers::{READER_RULE, READER_SIGHTINGS_PREFIX, Sighting, principal_identity, readers};

#[cfg(test)]
mod tests;
