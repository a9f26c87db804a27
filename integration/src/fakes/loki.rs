//! A fake Grafana Loki push endpoint, from Loki's HTTP API reference and its validation
//! defaults (grafana/loki `docs/sources/reference/loki-http-api.md`, `pkg/validation`):
//!
//! - `POST /loki/api/v1/push`, `Content-Type: application/json`, optionally
//!   `Content-Encoding: gzip`; `X-Scope-OrgID` required when the fake is multi-tenant (401
//!   `no org id`);
//! - body `{"streams":[{"stream":{...},"values":[["<ns string>","<line>",{metadata}]]}]}`; a
//!   timestamp that is not a string, a label set over 15 names, a line over 256 KB, an entry older
//!   than 7 days or more than 10 minutes in the future: 400 with Loki's wording;
//! - 204 on success; an entry identical in timestamp and line to the latest entry of its stream
//!   is dropped, as Loki's ingester does (an older repeat is stored again); `throttle_next` answers 429 (ingestion rate limit), `fail_next` 500.

use std::collections::BTreeMap;
use std::io::Read;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::kit::{self, Kit, Running};

const MAX_LABELS: usize = 15;
const MAX_LINE: usize = 256 * 1024;
const MAX_AGE_NS: i128 = 7 * 24 * 3600 * 1_000_000_000;
const MAX_FUTURE_NS: i128 = 10 * 60 * 1_000_000_000;

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub labels: BTreeMap<String, String>,
    pub timestamp_ns: String,
    pub line: String,
    pub metadata: BTreeMap<String, String>,
    pub tenant: Option<String>,
}

#[derive(Default)]
pub struct Store {
    entries: Vec<Entry>,
    requests: u32,
    gzipped_requests: u32,
}

#[derive(Clone)]
pub struct FakeLoki {
    kit: Kit<Store>,
    require_tenant: bool,
}

pub type RunningLoki = Running<FakeLoki>;

impl RunningLoki {
    pub fn push_url(&self) -> String {
        format!("{}/loki/api/v1/push", self.server.base_url())
    }
}

impl FakeLoki {
    pub async fn start(require_tenant: bool) -> std::io::Result<RunningLoki> {
        let fake = FakeLoki {
            kit: Kit::new(Store::default()),
            require_tenant,
        };
        let routes = Router::new().route("/loki/api/v1/push", post(push));
        let kit = fake.kit.clone();
        kit::start(fake, &kit, routes).await
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.kit.lock().state.entries.clone()
    }

    /// (requests received, of which gzip-encoded)
    pub fn requests(&self) -> (u32, u32) {
        let store = &self.kit.lock().state;
        (store.requests, store.gzipped_requests)
    }

    pub fn throttle_next(&self, calls: u32) {
        self.kit.lock().faults.throttle_next(calls, 1);
    }

    pub fn fail_next(&self, calls: u32) {
        self.kit.lock().faults.fail_next(calls);
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

async fn push(
    State(fake): State<FakeLoki>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut guard = fake.kit.lock();
    let kit::Inner { state, faults, .. } = &mut *guard;
    let store = state;
    store.requests += 1;
    let tenant = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if fake.require_tenant && tenant.is_none() {
        return text(StatusCode::UNAUTHORIZED, "no org id\n");
    }
    if faults.take_throttle().is_some() {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '1' lines totaling '100' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n",
        );
    }
    if faults.take_failure() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error: code = Unavailable desc = ingester unavailable\n",
        );
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this fake accepts application/json only\n",
        );
    }
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let bytes = if gzip {
        store.gzipped_requests += 1;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return text(StatusCode::BAD_REQUEST, "gzip: invalid header\n");
        }
        out
    } else {
        body.to_vec()
    };
    let request: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("error parsing push request: {e}\n"),
            );
        }
    };
    let Some(streams) = request.get("streams").and_then(Value::as_array) else {
        return text(
            StatusCode::BAD_REQUEST,
            "error parsing push request: no streams\n",
        );
    };
    let now_ns = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let mut accepted = Vec::new();
    for stream in streams {
        let Some(labels) = stream.get("stream").and_then(Value::as_object) else {
            return text(
                StatusCode::BAD_REQUEST,
                "error parsing labels: missing stream\n",
            );
        };
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        if labels.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "error at least one label pair is required per stream\n",
            );
        }
        if labels.len() > MAX_LABELS {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "entry for stream '{}' has {} label names; limit {MAX_LABELS}\n",
                    labels_text(&labels),
                    labels.len()
                ),
            );
        }
        for value in stream
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(ts) = value.get(0).and_then(Value::as_str) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "error parsing push request: timestamp must be a string of nanoseconds\n",
                );
            };
            let Ok(ts_ns) = ts.parse::<i128>() else {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("error parsing push request: bad timestamp {ts}\n"),
                );
            };
            let Some(line) = value.get(1).and_then(Value::as_str) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "error parsing push request: line must be a string\n",
                );
            };
            if line.len() > MAX_LINE {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Max entry size '{MAX_LINE}' bytes exceeded for stream '{}'\n",
                        labels_text(&labels)
                    ),
                );
            }
            if ts_ns < now_ns - MAX_AGE_NS {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "entry for stream '{}' has timestamp too old: {ts}\n",
                        labels_text(&labels)
                    ),
                );
            }
            if ts_ns > now_ns + MAX_FUTURE_NS {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "entry for stream '{}' has timestamp too new: {ts}\n",
                        labels_text(&labels)
                    ),
                );
            }
            let metadata = value
                .get(2)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            accepted.push(Entry {
                labels: labels.clone(),
                timestamp_ns: ts.to_owned(),
                line: line.to_owned(),
                metadata,
                tenant: tenant.clone(),
            });
        }
    }
    for entry in accepted {
        // Loki drops an entry only when it repeats the latest entry of its stream (same
        // timestamp and line); an older repeat is stored again.
        let latest = store
            .entries
            .iter()
            .rev()
            .find(|e| e.labels == entry.labels && e.tenant == entry.tenant);
        let duplicate =
            latest.is_some_and(|e| e.timestamp_ns == entry.timestamp_ns && e.line == entry.line);
        if !duplicate {
            store.entries.push(entry);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
