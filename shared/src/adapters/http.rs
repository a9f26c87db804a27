//! The HTTP client every third-party adapter (Vercel, GitHub, Jira, Loki, Auth0, webhooks) uses.
//!
//! - timeouts on connect and on the whole request, answer body included;
//! - retries with full-jitter exponential backoff on 429 (always safe: the server refused before
//!   acting) and on 5xx or timeouts only for idempotent requests;
//! - `Retry-After` (seconds or HTTP date) honoured first, then `X-RateLimit-Reset` (epoch
//!   seconds, Vercel and GitHub), and a wait longer than the policy allows is reported, not slept;
//! - bearer tokens travel as sensitive headers, are registered with the [`Redactor`], and every
//!   URL and body excerpt in an error passes through it;
//! - no redirect is followed: a token goes only to the URL its adapter was configured with, and
//!   a 3xx is an error naming its status.
//!
//! Connections come from [`crate::adapters::connect`], the stack the SDK's calls use.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::{ExposeSecret, SecretString};

pub use ::http::header::{self, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
pub use ::http::{Method, StatusCode, Uri};

use crate::adapters::connect::{PooledClient, pooled_client, timed_out};
use crate::redact::{Redactor, SafeText, error_chain};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_backoff: Duration,
    /// A server asking to wait longer than this gets an error instead of a sleeping Lambda.
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_server_wait: Duration::from_secs(60),
        }
    }
}

/// Whether repeating the request after an ambiguous failure (5xx, timeout) is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    /// Retried only on 429 and on failures to connect, where the server never acted.
    NotIdempotent,
}

#[derive(Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub bearer: Option<SecretString>,
    pub body: Option<Vec<u8>>,
    pub idempotency: Idempotency,
}

impl HttpRequest {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        let idempotency = if matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        };
        Self {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            bearer: None,
            body: None,
            idempotency,
        }
    }

    pub fn bearer(mut self, token: SecretString) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn json<T: serde::Serialize>(mut self, body: &T) -> Result<Self, HttpError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| HttpError::InvalidRequest(format!("body does not serialise: {e}")))?;
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.body = Some(bytes);
        Ok(self)
    }

    pub fn body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = Some(bytes);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// How many attempts it took.
    pub attempts: u32,
}

impl HttpResponse {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Decode(format!("response body is not the expected JSON: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{method} {url} returned {status} after {attempts} attempt(s): {body}")]
    Status {
        method: Method,
        url: SafeText,
        status: StatusCode,
        body: SafeText,
        attempts: u32,
        /// The server's requested wait, when it sent one.
        retry_after: Option<Duration>,
    },
    #[error("{method} {url} asked to wait {wait:?}, longer than the {limit:?} this client waits")]
    WaitTooLong {
        method: Method,
        url: SafeText,
        wait: Duration,
        limit: Duration,
    },
    #[error("{method} {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        method: Method,
        url: SafeText,
        message: SafeText,
        attempts: u32,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Decode(String),
}

impl HttpError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpClient {
    /// Built on the first request, once for every clone, over the process's one TLS
    /// configuration (`crate::tls`), the one the SDK's calls use.
    client: Arc<OnceLock<PooledClient<Full<Bytes>>>>,
    user_agent: HeaderValue,
    timeout: Duration,
    policy: RetryPolicy,
    redactor: Redactor,
}

/// The longest body excerpt kept in an error.
const BODY_EXCERPT: usize = 512;

/// The longest a connection may take to open, whatever the request's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole answer, read within the timeout.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Why an attempt got no answer, in the terms the retry rule needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// No connection was made, so the server never saw the request: always safe to retry.
    NeverConnected,
    /// No complete answer in time: the server may have acted.
    TimedOut,
    /// The connection broke, or the request could not be sent as written.
    Broken,
}

struct TransportFailure {
    kind: FailureKind,
    /// The error chain, before redaction.
    message: String,
}

impl TransportFailure {
    fn of(err: &(dyn std::error::Error + 'static), never_connected: bool) -> Self {
        // A connection that timed out opening is still one the server never saw.
        let kind = if never_connected {
            FailureKind::NeverConnected
        } else if timed_out(err) {
            FailureKind::TimedOut
        } else {
            FailureKind::Broken
        };
        Self {
            kind,
            message: error_chain(err),
        }
    }
}

impl HttpClient {
    /// The client a keyward function uses: user agent `keyward-<function>/<version>`, the
    /// default retry policy, and the function's one redactor.
    pub fn for_function(
        function: &str,
        timeout: Duration,
        redactor: Redactor,
    ) -> Result<Self, HttpError> {
        Self::new(
            &format!("keyward-{function}/{}", env!("CARGO_PKG_VERSION")),
            timeout,
            RetryPolicy::default(),
            redactor,
        )
    }

    pub fn new(
        user_agent: &str,
        timeout: Duration,
        policy: RetryPolicy,
        redactor: Redactor,
    ) -> Result<Self, HttpError> {
        let user_agent = HeaderValue::from_str(user_agent).map_err(|_| {
            HttpError::InvalidRequest(format!("`{user_agent}` is not a valid user agent"))
        })?;
        Ok(Self {
            client: Arc::new(OnceLock::new()),
            user_agent,
            timeout,
            policy,
            redactor,
        })
    }

    fn client(&self) -> Result<&PooledClient<Full<Bytes>>, HttpError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let tls = crate::tls::process_client_config()
            .map_err(|e| HttpError::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
        let built = pooled_client(&tls, Some(self.timeout.min(CONNECT_TIMEOUT)));
        // A racing first request may have built one too: either serves.
        Ok(self.client.get_or_init(|| built))
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let HttpRequest {
            method,
            url: raw_url,
            mut headers,
            bearer,
            body,
            idempotency,
        } = request;
        if let Some(token) = &bearer {
            self.redactor.register(token);
        }
        let url = self.redactor.safe(&raw_url);
        let uri: Uri = raw_url
            .parse()
            .map_err(|_| HttpError::InvalidRequest(format!("`{url}` is not a valid URL")))?;
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    HttpError::InvalidRequest("the bearer token is not a valid header value".into())
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
            .entry(header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        let body = Bytes::from(body.unwrap_or_default());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.max_attempts;
            let mut outgoing = ::http::Request::new(Full::new(body.clone()));
            *outgoing.method_mut() = method.clone();
            *outgoing.uri_mut() = uri.clone();
            *outgoing.headers_mut() = headers.clone();
            match self.exchange(outgoing).await {
                Ok(answer) => {
                    let status = answer.status;
                    if status.is_success() {
                        return Ok(HttpResponse {
                            status,
                            headers: answer.headers,
                            body: answer.body.to_vec(),
                            attempts: attempt,
                        });
                    }
                    let server_wait = server_requested_wait(&answer.headers, SystemTime::now());
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (idempotency == Idempotency::Idempotent
                            && matches!(status.as_u16(), 500 | 502 | 503 | 504));
                    if !retryable || last {
                        return Err(HttpError::Status {
                            method,
                            url,
                            status,
                            body: self
                                .redactor
                                .excerpt(&String::from_utf8_lossy(&answer.body), BODY_EXCERPT),
                            attempts: attempt,
                            retry_after: server_wait,
                        });
                    }
                    let wait = match server_wait {
                        Some(wait) if wait > self.policy.max_server_wait => {
                            return Err(HttpError::WaitTooLong {
                                method,
                                url,
                                wait,
                                limit: self.policy.max_server_wait,
                            });
                        }
                        // Jitter even a server-given wait, so a fleet of retries does not return
                        // in lockstep.
                        Some(wait) => wait + jitter(self.policy.base_delay),
                        None => self.backoff(attempt),
                    };
                    tracing::warn!(status = status.as_u16(), url = %url, attempt, wait_ms = wait.as_millis() as u64, "retrying HTTP request");
                    tokio::time::sleep(wait).await;
                }
                Err(failure) => {
                    let retryable = match failure.kind {
                        FailureKind::NeverConnected => true,
                        FailureKind::TimedOut => idempotency == Idempotency::Idempotent,
                        FailureKind::Broken => false,
                    };
                    if !retryable || last {
                        return Err(HttpError::Transport {
                            method,
                            url,
                            message: self.redactor.safe(&failure.message),
                            attempts: attempt,
                        });
                    }
                    let wait = self.backoff(attempt);
                    tracing::warn!(url = %url, attempt, wait_ms = wait.as_millis() as u64, "retrying HTTP request after a transport error");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt: the request sent and the whole answer read, within the client's timeout.
    async fn exchange(
        &self,
        outgoing: ::http::Request<Full<Bytes>>,
    ) -> Result<Answer, TransportFailure> {
        let client = self.client().map_err(|e| TransportFailure {
            kind: FailureKind::Broken,
            message: e.to_string(),
        })?;
        let attempt = async {
            let response = client
                .request(outgoing)
                .await
                .map_err(|err| TransportFailure::of(&err, err.is_connect()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|err| TransportFailure::of(&err, false))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(TransportFailure {
                    kind: FailureKind::TimedOut,
                    message: format!("no complete answer within {:?}", self.timeout),
                })
            })
    }

    /// Full jitter: uniform in [0, min(max, base * 2^attempt)).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << attempt.min(16));
        jitter(exp.min(self.policy.max_backoff))
    }
}

fn jitter(upper: Duration) -> Duration {
    let millis = upper.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(if millis == 0 {
        0
    } else {
        fastrand::u64(0..millis)
    })
}

/// The wait a server asked for: `Retry-After` (delta-seconds or HTTP-date), else
/// `X-RateLimit-Reset` (epoch seconds).
pub fn server_requested_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(value) = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(date.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let reset = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())?
        .trim()
        .parse::<u64>()
        .ok()?;
    let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;

/// A Slack-compatible incoming webhook (`{"text"}`): the URL is a credential, registered with
/// the redactor by whoever read it, so an error names it only redacted.
#[derive(Clone)]
pub struct ChatWebhook {
    pub http: HttpClient,
    pub url: secrecy::SecretString,
}

impl ChatWebhook {
    pub async fn post(&self, text: &str) -> Result<(), HttpError> {
        use secrecy::ExposeSecret as _;
        let request = HttpRequest::new(Method::POST, self.url.expose_secret())
            .json(&serde_json::json!({ "text": text }))?;
        self.http.send(request).await.map(|_| ())
    }
}

/// Reads a webhook URL from its secret's value and registers it (and its path, which is the
/// credential in a Slack URL) with the redactor, so no log or error ever shows it.
pub fn webhook_url_from_secret(
    value: &str,
    redactor: &Redactor,
) -> Result<secrecy::SecretString, &'static str> {
    let url = value.trim().to_owned();
    if !crate::config::https_or_loopback(&url) {
        return Err("the webhook secret's value must be an https:// URL");
    }
    redactor.register(&secrecy::SecretString::from(url.clone()));
    if let Some((_, path)) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
    {
        redactor.register(&secrecy::SecretString::from(format!("/{path}")));
    }
    Ok(secrecy::SecretString::from(url))
}
