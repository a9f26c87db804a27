//! keyward's domain crate, shared by every function.
//!
//! Pure domain modules ([`naming`], [`governance`], [`tags`], [`manifest`], [`events`],
//! [`redact`]) hold no I/O; [`ports`] names what functions need from outside, and [`adapters`]
//! implements those ports over the AWS SDK and a shared HTTP client.

pub mod adapters;
pub mod audit;
pub mod config;
pub mod events;
pub mod evidence;
pub mod governance;
pub mod lambda;
pub mod manifest;
pub mod mutate;
pub mod naming;
pub mod policy;
pub mod ports;
pub mod posture;
pub mod projections;
pub mod redact;
pub mod rsa_verify;
pub mod tags;
pub mod telemetry;
pub mod tls;
pub mod vercel_ledger;

#[cfg(test)]
mod test_fixtures;
