//! keyward's CloudTrail anomaly forwarder: detect unauthorised and anomalous access to secrets.
//!
//! - [`record`]: one parser for every real CloudTrail record shape, and the facts keyward
//!   derives from a record (denied, actor, secrets named, public policy, catch-all batch...);
//! - [`logfile`]: CloudTrail log files from S3, streamed (multi-member gzip, one record at a
//!   time, constant memory), de-duplicated by `eventID`;
//! - [`rules`]: the declarative rules (EventBridge patterns matched by quamina, thresholds over
//!   windows, first-seen) and the detector;
//! - [`forward`]: alerts to Grafana Loki (push API, gzip JSON), a Slack-compatible webhook and
//!   the bus (`AnomalyDetected`, which the audit writer records).
//!
//! Work in progress (#7): exactly-once delivery across retries (the shared detection state), the
//! Lambda entry point and its template resources land next.

pub mod forward;
pub mod logfile;
pub mod record;
pub mod rules;

#[cfg(test)]
mod tests;
