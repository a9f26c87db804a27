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
    let tenant = header(&headers, "x-scope-orgid").map(str::to_owned);
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
    let accepted = decode(store, &headers, &body).and_then(|request| {
        let now_ns = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
        let streams = request.get("streams").and_then(Value::as_array);
        let streams = streams.ok_or_else(|| bad("error parsing push request: no streams"))?;
        let mut accepted = Vec::new();
        for stream in streams {
            accepted.extend(stream_entries(stream, now_ns, &tenant)?);
        }
        Ok(accepted)
    });
    match accepted {
        Ok(entries) => {
            store.keep(entries);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a push is refused: Loki's status and wording.
type Refusal = (StatusCode, String);

/// Loki's 400, with its wording.
fn bad(message: impl std::fmt::Display) -> Refusal {
    (StatusCode::BAD_REQUEST, format!("{message}\n"))
}

/// The push request's JSON: only `application/json`, optionally gzip-encoded.
fn decode(store: &mut Store, headers: &HeaderMap, body: &[u8]) -> Result<Value, Refusal> {
    let content_type = header(headers, "content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this fake accepts application/json only\n".to_owned(),
        ));
    }
    let gzip = header(headers, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let bytes = if gzip {
        store.gzipped_requests += 1;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(|_| bad("gzip: invalid header"))?;
        out
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("error parsing push request: {e}")))
}

/// String values of a JSON object (others as "").
fn string_map(object: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    object
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// One stream's entries, each validated as Loki does.
fn stream_entries(
    stream: &Value,
    now_ns: i128,
    tenant: &Option<String>,
) -> Result<Vec<Entry>, Refusal> {
    let labels = stream.get("stream").and_then(Value::as_object);
    let labels = string_map(labels.ok_or_else(|| bad("error parsing labels: missing stream"))?);
    if labels.is_empty() {
        return Err(bad("error at least one label pair is required per stream"));
    }
    if labels.len() > MAX_LABELS {
        return Err(bad(format!(
            "entry for stream '{}' has {} label names; limit {MAX_LABELS}",
            labels_text(&labels),
            labels.len()
        )));
    }
    let values = stream.get("values").and_then(Value::as_array);
    values
        .into_iter()
        .flatten()
        .map(|value| {
            let (timestamp_ns, line) = checked_entry(value, &labels, now_ns)?;
            let metadata = value.get(2).and_then(Value::as_object);
            Ok(Entry {
                labels: labels.clone(),
                timestamp_ns,
                line,
                metadata: metadata.map(string_map).unwrap_or_default(),
                tenant: tenant.clone(),
            })
        })
        .collect()
}

/// `[timestamp, line, ...]`: the timestamp a string of nanoseconds within Loki's window, the line
/// within its size limit.
fn checked_entry(
    value: &Value,
    labels: &BTreeMap<String, String>,
    now_ns: i128,
) -> Result<(String, String), Refusal> {
    let stream = labels_text(labels);
    let ts = value.get(0).and_then(Value::as_str).ok_or_else(|| {
        bad("error parsing push request: timestamp must be a string of nanoseconds")
    })?;
    let ts_ns = ts
        .parse::<i128>()
        .map_err(|_| bad(format!("error parsing push request: bad timestamp {ts}")))?;
    let line = value
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| bad("error parsing push request: line must be a string"))?;
    if line.len() > MAX_LINE {
        return Err(bad(format!(
            "Max entry size '{MAX_LINE}' bytes exceeded for stream '{stream}'"
        )));
    }
    if ts_ns < now_ns - MAX_AGE_NS {
        return Err(bad(format!(
            "entry for stream '{stream}' has timestamp too old: {ts}"
        )));
    }
    if ts_ns > now_ns + MAX_FUTURE_NS {
        return Err(bad(format!(
            "entry for stream '{stream}' has timestamp too new: {ts}"
        )));
    }
    Ok((ts.to_owned(), line.to_owned()))
}

impl Store {
    /// Loki drops an entry only when it repeats the latest entry of its stream (same timestamp
    /// and line); an older repeat is stored again.
    fn keep(&mut self, accepted: Vec<Entry>) {
        for entry in accepted {
            let latest = self
                .entries
                .iter()
                .rev()
                .find(|e| e.labels == entry.labels && e.tenant == entry.tenant);
            let duplicate = latest
                .is_some_and(|e| e.timestamp_ns == entry.timestamp_ns && e.line == entry.line);
            if !duplicate {
                self.entries.push(entry);
            }
        }
    }
}
