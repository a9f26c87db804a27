//! What every fake shares: its state behind one lock together with the request log, the fault
//! switches and its base URL ([`Kit`]); starting its router on a free port and the running
//! handle ([`start`], [`Running`]); the rate-limit headers providers put on their answers; and
//! the random identifiers fakes hand out.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Uri};
use axum::response::Response;

use super::{FakeServer, serve};

/// One request as a fake saw it (no bodies: they hold secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string, "" if none.
    pub query: String,
    pub status: u16,
}

impl Seen {
    pub fn new(method: &Method, uri: &Uri, status: u16) -> Self {
        Self {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            status,
        }
    }
}

/// The switches a test flips to make a fake misbehave the way its provider can.
#[derive(Debug, Default)]
pub struct Faults {
    throttle: u32,
    retry_after: u64,
    fail: u32,
    down: bool,
}

impl Faults {
    /// The next `n` calls the fake applies its throttle to are refused as rate limited,
    /// advising a wait of `retry_after_secs`.
    pub fn throttle_next(&mut self, n: u32, retry_after_secs: u64) {
        self.throttle = n;
        self.retry_after = retry_after_secs;
    }

    /// Spends one throttled call if any is armed; returns the advised wait.
    pub fn take_throttle(&mut self) -> Option<u64> {
        (self.throttle > 0).then(|| {
            self.throttle -= 1;
            self.retry_after
        })
    }

    /// The next `n` calls fail with a server error.
    pub fn fail_next(&mut self, n: u32) {
        self.fail = n;
    }

    /// Spends one failing call if any is armed.
    pub fn take_failure(&mut self) -> bool {
        let armed = self.fail > 0;
        self.fail = self.fail.saturating_sub(1);
        armed
    }

    /// While down, the fake answers as unavailable.
    pub fn set_down(&mut self, down: bool) {
        self.down = down;
    }

    pub fn down(&self) -> bool {
        self.down
    }
}

/// Everything one fake holds, behind its one lock.
pub struct Inner<S, E = Seen> {
    /// What the provider stores (projects, issues, keys, ...).
    pub state: S,
    /// Every request, in order.
    pub seen: Vec<E>,
    pub faults: Faults,
    /// Where the fake is served (set by [`start`]; "" before).
    pub base_url: String,
}

/// A fake's shared state: cloned into every handler, one lock for all of it.
pub struct Kit<S, E = Seen> {
    inner: Arc<Mutex<Inner<S, E>>>,
}

impl<S, E> Clone for Kit<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> Kit<S> {
    /// Answers a request under the lock and logs it with the answer's status: what a fake that
    /// routes by hand does for every request, whatever the answer.
    pub fn answer(
        &self,
        parts: &Parts,
        respond: impl FnOnce(&mut S, &mut Faults) -> Response,
    ) -> Response {
        let mut inner = self.lock();
        let Inner {
            state,
            faults,
            seen,
            ..
        } = &mut *inner;
        let response = respond(state, faults);
        seen.push(Seen::new(
            &parts.method,
            &parts.uri,
            response.status().as_u16(),
        ));
        response
    }
}

impl<S, E: Clone> Kit<S, E> {
    pub fn new(state: S) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                seen: Vec::new(),
                faults: Faults::default(),
                base_url: String::new(),
            })),
        }
    }

    /// The lock; a test that panicked while holding it does not poison the fake for the next.
    pub fn lock(&self) -> MutexGuard<'_, Inner<S, E>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<E> {
        self.lock().seen.clone()
    }

    pub fn clear_seen(&self) {
        self.lock().seen.clear();
    }

    pub fn base_url(&self) -> String {
        self.lock().base_url.clone()
    }
}

/// A running fake: the handle tests drive it with, and the server (stopped on drop).
pub struct Running<F> {
    pub fake: F,
    pub server: FakeServer,
}

/// Serves `routes` with `fake` (a cheap handle onto `kit`) as their state on a free loopback
/// port, and records the base URL in the kit.
pub async fn start<F, S, E: Clone>(
    fake: F,
    kit: &Kit<S, E>,
    routes: axum::Router<F>,
) -> std::io::Result<Running<F>>
where
    F: Clone + Send + Sync + 'static,
{
    let server = serve(routes.with_state(fake.clone())).await?;
    kit.lock().base_url = server.base_url();
    Ok(Running { fake, server })
}

/// A request's head, and its body unless it is over `max_body` bytes.
pub async fn read(request: Request, max_body: usize) -> (Parts, Option<axum::body::Bytes>) {
    let (parts, body) = request.into_parts();
    (parts, axum::body::to_bytes(body, max_body).await.ok())
}

/// The rate-limit headers a provider puts on every answer: `x-ratelimit-limit`, and each of
/// `counters` (remaining, reset, ...) unless the answer set its own (a rate-limited one does).
pub fn with_rate_headers(
    mut response: Response,
    limit: u64,
    counters: &[(&'static str, HeaderValue)],
) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    for (name, value) in counters {
        headers.entry(*name).or_insert_with(|| value.clone());
    }
    response
}

/// A rate-limited answer's own counters: nothing remaining until `reset`.
pub fn exhausted(mut response: Response, reset: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
    headers.insert("x-ratelimit-reset", reset);
    response
}

/// `Retry-After` in seconds.
pub fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(secs));
    response
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n + 16);
    while bytes.len() < n {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    bytes.truncate(n);
    bytes
}

/// `len` random characters of `alphabet`.
pub fn random_text(alphabet: &[u8], len: usize) -> String {
    random_bytes(len)
        .into_iter()
        .map(|b| alphabet[b as usize % alphabet.len()] as char)
        .collect()
}

pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
