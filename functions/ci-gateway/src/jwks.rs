//! The issuers' signing keys, cached across warm invocations.
//!
//! - A known `kid` is answered from memory.
//! - An unknown `kid` refetches the issuer's JWKS, at most once per [`MIN_REFETCH`] per issuer
//!   and one fetch at a time (single flight); otherwise the token fails closed. Key rotation is
//!   picked up; a flood of made-up `kid`s costs one fetch a minute.
//! - A bad signature on a known key never refetches (it is the token that is wrong).
//! - Only RSA keys of at least 2048 bits, `use` absent or `sig`, `alg` absent or `RS256`, with a
//!   `kid`, are kept: an `oct` key cannot turn RS256 into HMAC.
//! - Keys older than [`MAX_AGE`] are refreshed on the next request; if that fetch fails the old
//!   keys keep serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::token::TokenError;

pub const MIN_REFETCH: Duration = Duration::from_secs(60);
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// A JWKS is a few KB; anything bigger is refused.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The longest a request waits for an issuer's keys, the refresh's retries and `Retry-After`
/// waits included (and the wait for another request's refresh): well inside the gateway's own
/// timeout, so a slow issuer answers 503 instead of timing out every request behind it.
pub const KEYS_DEADLINE: Duration = Duration::from_secs(5);

/// Where a JWKS document comes from (HTTPS in production, the fake issuer in tests).
pub trait JwksFetcher: Send + Sync {
    fn fetch(&self, url: &str)
    -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
}

/// JWKS over HTTP(S) with the shared client (3 s timeout, retries on 5xx) and a size cap.
pub struct HttpJwksFetcher(pub keyward_shared::adapters::http::HttpClient);

impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .0
            .send(keyward_shared::adapters::http::HttpRequest::new(
                keyward_shared::adapters::http::Method::GET,
                url,
            ))
            .await
            .map_err(|e| e.to_string())?;
        if response.body.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        Ok(response.body)
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The usable keys of a JWKS document, by `kid`. Unusable entries are skipped, not errors: a
/// JWKS may list keys for other purposes.
pub fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let set: JwkSet = serde_json::from_slice(body).map_err(|_| "the JWKS is not a key set")?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<RsaJwk>(value) else {
            continue;
        };
        let usable = jwk.kty == "RSA"
            && jwk.use_.as_deref().is_none_or(|u| u == "sig")
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
        let (Some(kid), Some(n), Some(e), true) = (jwk.kid, jwk.n, jwk.e, usable) else {
            continue;
        };
        // Modulus bits from its base64url length (leading zero bytes aside).
        use base64::Engine as _;
        let Ok(modulus) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&n) else {
            continue;
        };
        let significant = modulus.iter().skip_while(|b| **b == 0).count();
        if significant * 8 < 2048 {
            continue;
        }
        if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

struct IssuerKeys {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

pub struct JwksCache<F> {
    fetcher: F,
    /// Issuer → its JWKS URL.
    urls: HashMap<String, String>,
    keys: Mutex<HashMap<String, IssuerKeys>>,
    single_flight: tokio::sync::Mutex<()>,
}

impl<F: JwksFetcher> JwksCache<F> {
    /// `issuers`: each trusted issuer and its JWKS URL.
    pub fn new(fetcher: F, issuers: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            fetcher,
            urls: issuers.into_iter().collect(),
            keys: Mutex::new(HashMap::new()),
            single_flight: tokio::sync::Mutex::new(()),
        }
    }

    pub fn trusts(&self, issuer: &str) -> bool {
        self.urls.contains_key(issuer)
    }

    fn cached(&self, issuer: &str, kid: &str) -> (Option<Arc<DecodingKey>>, Option<Instant>) {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get(issuer) {
            Some(entry) => (entry.keys.get(kid).cloned(), entry.fetched_at),
            None => (None, None),
        }
    }

    fn last_error(&self, issuer: &str) -> Option<String> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(issuer).and_then(|entry| entry.last_error.clone())
    }

    async fn refresh(&self, issuer: &str) -> Result<(), String> {
        let url = self.urls.get(issuer).ok_or("untrusted issuer")?;
        let fetched = self
            .fetcher
            .fetch(url)
            .await
            .and_then(|body| parse_jwks(&body));
        self.record(issuer, fetched)
    }

    /// What a refresh brought (or why it failed), remembered for the rate limit.
    fn record(
        &self,
        issuer: &str,
        fetched: Result<HashMap<String, Arc<DecodingKey>>, String>,
    ) -> Result<(), String> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let entry = keys.entry(issuer.to_owned()).or_insert(IssuerKeys {
            keys: HashMap::new(),
            fetched_at: None,
            last_error: None,
        });
        // A failed fetch still counts towards the rate limit, and keeps the keys it had.
        entry.fetched_at = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                entry.keys = keys;
                entry.last_error = None;
                Ok(())
            }
            Err(e) => {
                entry.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The key for `kid` of a trusted `issuer`.
    pub async fn key(&self, issuer: &str, kid: &str) -> Result<Arc<DecodingKey>, TokenError> {
        if !self.trusts(issuer) {
            return Err(TokenError::Issuer);
        }
        let (found, fetched_at) = self.cached(issuer, kid);
        let stale = fetched_at.is_none_or(|at| at.elapsed() >= MAX_AGE);
        if let (Some(key), false) = (&found, stale) {
            return Ok(Arc::clone(key));
        }
        let deadline = tokio::time::Instant::now() + KEYS_DEADLINE;
        let Ok(_guard) = tokio::time::timeout_at(deadline, self.single_flight.lock()).await else {
            return found.ok_or_else(|| {
                TokenError::KeysUnavailable("another request's key refresh is still running".into())
            });
        };
        // Another request may have refreshed while this one waited.
        let (found_now, fetched_at) = self.cached(issuer, kid);
        let recently = fetched_at.is_some_and(|at| at.elapsed() < MIN_REFETCH);
        if let Some(key) = &found_now
            && fetched_at.is_some_and(|at| at.elapsed() < MAX_AGE)
        {
            return Ok(Arc::clone(key));
        }
        if recently {
            return match (found_now, self.last_error(issuer)) {
                (Some(key), _) => Ok(key),
                (None, Some(error)) => Err(TokenError::KeysUnavailable(error)),
                (None, None) => Err(TokenError::UnknownKey),
            };
        }
        let refreshed = tokio::time::timeout_at(deadline, self.refresh(issuer))
            .await
            .unwrap_or_else(|_| {
                // Counted like any failed fetch: the next attempt waits MIN_REFETCH.
                self.record(
                    issuer,
                    Err(format!(
                        "the issuer's keys did not arrive within {} s",
                        KEYS_DEADLINE.as_secs()
                    )),
                )
            });
        match refreshed {
            Ok(()) => self.cached(issuer, kid).0.ok_or(TokenError::UnknownKey),
            // Stale keys keep serving when a refresh fails; with none, the keys are unavailable.
            Err(e) => found.ok_or(TokenError::KeysUnavailable(e)),
        }
    }
}
