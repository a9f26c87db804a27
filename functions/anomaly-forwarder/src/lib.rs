//! keyward's CloudTrail anomaly forwarder: detect unauthorised and anomalous access to secrets.
//!
//! - **Trigger**: default-bus rules on Secrets Manager API calls via CloudTrail and on trail log
//!   files created in S3.
//! - **Input**: one CloudTrail record, or a log file streamed from S3.
//! - **Events out**: `AnomalyDetected` per alert (also to Loki and the webhook, once per sink).
//! - **State**: counters, first-seen markers and the delivery ledger in the state bucket.
//! - **Code**: this crate ([`handler::Forwarder`]).
//!
//! - [`record`]: one parser for every real CloudTrail record shape, and the facts keyward
//!   derives from a record (denied, actor, secrets named, public policy, catch-all batch...);
//! - [`logfile`]: CloudTrail log files from S3, streamed (multi-member gzip, one record at a
//!   time, constant memory), de-duplicated by `eventID`;
//! - [`rules`]: the declarative rules (EventBridge patterns matched by quamina, thresholds over
//!   windows, first-seen) and the detector;
//! - [`forward`]: alerts to Grafana Loki (push API, gzip JSON), a Slack-compatible webhook and
//!   the bus (`AnomalyDetected`, which the audit writer records);
//! - [`client`]: how a principal calls (user-agent family, source network) and the
//!   organisation's known automation;
//! - [`gateway`]: the CI gateway's refusals as records, so keyward's rules watch keyward;
//! - [`group`]: alerts folded into groups per rule, dimensions and window, delivered once and
//!   then as updates;
//! - [`state`]: threshold counters and first-seen memory shared across invocations (create-once
//!   markers in the state bucket), replay-safe;
//! - [`deliver`]: the delivery ledger, so each alert reaches each sink once across retries;
//! - [`handler`]: the Lambda handler (EventBridge CloudTrail events and S3 log files).

pub mod client;
pub mod deliver;
pub mod forward;
pub mod gateway;
pub mod group;
pub mod handler;
pub mod logfile;
mod prefilter;
pub mod record;
pub mod rules;
pub mod state;

#[cfg(test)]
mod grouping_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
