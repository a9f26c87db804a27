//! The Auth0 port and its adapter over the shared HTTP client.
//!
//! - `POST https://{domain}/oauth/token` (client credentials) for a Management API token and to
//!   test a client secret;
//! - `POST https://{domain}/api/v2/clients/{id}/rotate-secret` (scope `update:client_keys`):
//!   Auth0 generates the new secret and the old one stops working, so it is called in
//!   createSecret and the result stored as AWSPENDING at once. Not idempotent: retried only on
//!   429 and on failures to connect, where Auth0 never acted.
//!
//! Sources: auth0.com/docs/api/management/v2/clients/post-rotate-secret and
//! auth0.com/docs/secure/tokens/access-tokens/management-api-access-tokens.

use std::future::Future;

use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest, Idempotency};
use keyward_shared::redact::SafeText;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where a tenant's APIs live. `domain` in a secret is a host name (`acme.eu.auth0.com`, a
/// custom domain) or an `https://` URL; plain `http://` is accepted for loopback hosts only,
/// where nothing crosses a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    base_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Auth0 `domain` {0}")]
pub struct TenantError(&'static str);

impl Tenant {
    pub fn parse(domain: &str) -> Result<Self, TenantError> {
        let domain = domain.trim_end_matches('/');
        let (scheme, host) = match domain.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            Some(_) => return Err(TenantError("must be a host name or an https:// URL")),
            None => ("https", domain),
        };
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid {
            return Err(TenantError(
                "must be a bare host name such as tenant.eu.auth0.com",
            ));
        }
        if scheme == "http" && !matches!(hostname, "127.0.0.1" | "localhost") {
            return Err(TenantError(
                "uses plain http://, which keyward accepts only for loopback addresses",
            ));
        }
        Ok(Self {
            base_url: format!("{scheme}://{host}"),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The Management API's audience.
    pub fn management_audience(&self) -> String {
        format!("{}/api/v2/", self.base_url)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Auth0Error {
    /// 401 from `/oauth/token`: the client id or secret is wrong (or not yet propagated).
    #[error("Auth0 rejected the client credentials of `{client_id}`")]
    Unauthorized { client_id: String },
    /// 403: authenticated, but not allowed (no client grant for the audience, missing scope).
    #[error("Auth0 refused the request: {message}")]
    Forbidden { message: SafeText },
    #[error("Auth0 has no client `{client_id}`")]
    NoSuchClient { client_id: String },
    #[error("Auth0 answered without {0}")]
    Incomplete(&'static str),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub trait Auth0Api: Send + Sync {
    fn token(
        &self,
        tenant: &Tenant,
        client_id: &str,
        client_secret: &SecretString,
        audience: &str,
    ) -> impl Future<Output = Result<SecretString, Auth0Error>> + Send;

    fn rotate_client_secret(
        &self,
        tenant: &Tenant,
        management_token: &SecretString,
        client_id: &str,
    ) -> impl Future<Output = Result<SecretString, Auth0Error>> + Send;
}

pub struct Auth0Client {
    http: HttpClientSlot,
}

/// The HTTP client, built on first use: building one loads the TLS trust store, a cost every
/// cold start would pay although most rotations never call Auth0.
enum HttpClientSlot {
    Ready(HttpClient),
    Lazy {
        build: Box<dyn Fn() -> Result<HttpClient, HttpError> + Send + Sync>,
        built: std::sync::OnceLock<Result<HttpClient, String>>,
    },
}

impl Auth0Client {
    pub fn new(http: HttpClient) -> Self {
        Self {
            http: HttpClientSlot::Ready(http),
        }
    }

    /// A client whose HTTP client is built by `build` when Auth0 is first called.
    pub fn lazy(build: impl Fn() -> Result<HttpClient, HttpError> + Send + Sync + 'static) -> Self {
        Self {
            http: HttpClientSlot::Lazy {
                build: Box::new(build),
                built: std::sync::OnceLock::new(),
            },
        }
    }

    fn http(&self) -> Result<&HttpClient, Auth0Error> {
        match &self.http {
            HttpClientSlot::Ready(http) => Ok(http),
            HttpClientSlot::Lazy { build, built } => built
                .get_or_init(|| build().map_err(|e| e.to_string()))
                .as_ref()
                .map_err(|e| Auth0Error::Http(HttpError::InvalidRequest(e.clone()))),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct RotatedClient {
    client_secret: Option<String>,
}

/// Auth0's two error shapes: `{error, error_description}` (authentication API) and
/// `{statusCode, error, message, errorCode}` (Management API).
#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

impl Auth0Client {
    fn forbidden(&self, http: &HttpClient, err: &HttpError) -> Auth0Error {
        let message = match err {
            HttpError::Status { body, .. } => {
                let parsed: ErrorBody = serde_json::from_str(body.as_str()).unwrap_or_default();
                let text = [
                    parsed.error,
                    parsed.error_code,
                    parsed.error_description,
                    parsed.message,
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
                if text.is_empty() {
                    // Not Auth0's JSON (or cut by the excerpt cap): keep the redacted excerpt.
                    body.clone()
                } else {
                    http.redactor().safe(&text)
                }
            }
            other => http.redactor().safe(&other.to_string()),
        };
        Auth0Error::Forbidden { message }
    }
}

impl Auth0Api for Auth0Client {
    async fn token(
        &self,
        tenant: &Tenant,
        client_id: &str,
        client_secret: &SecretString,
        audience: &str,
    ) -> Result<SecretString, Auth0Error> {
        let http = self.http()?;
        http.redactor().register(client_secret);
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret.expose_secret(),
            "audience": audience,
        });
        // Minting a token changes nothing, so it may be retried on 5xx and timeouts.
        let request = HttpRequest::new(Method::POST, format!("{}/oauth/token", tenant.base_url))
            .json(&body)?
            .idempotency(Idempotency::Idempotent);
        match http.send(request).await {
            Ok(response) => {
                let token: TokenResponse = response.json()?;
                let token = SecretString::from(
                    token
                        .access_token
                        .ok_or(Auth0Error::Incomplete("an access_token"))?,
                );
                http.redactor().register(&token);
                Ok(token)
            }
            Err(err) if err.status() == Some(StatusCode::UNAUTHORIZED) => {
                Err(Auth0Error::Unauthorized {
                    client_id: client_id.to_owned(),
                })
            }
            Err(err) if err.status() == Some(StatusCode::FORBIDDEN) => {
                Err(self.forbidden(http, &err))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn rotate_client_secret(
        &self,
        tenant: &Tenant,
        management_token: &SecretString,
        client_id: &str,
    ) -> Result<SecretString, Auth0Error> {
        let http = self.http()?;
        let id: String = client_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let request = HttpRequest::new(
            Method::POST,
            format!("{}/api/v2/clients/{id}/rotate-secret", tenant.base_url),
        )
        .bearer(management_token.clone())
        .idempotency(Idempotency::NotIdempotent);
        match http.send(request).await {
            Ok(response) => {
                let client: RotatedClient = response.json()?;
                let secret = SecretString::from(
                    client
                        .client_secret
                        .ok_or(Auth0Error::Incomplete("the new client_secret"))?,
                );
                http.redactor().register(&secret);
                Ok(secret)
            }
            Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => {
                Err(Auth0Error::NoSuchClient {
                    client_id: client_id.to_owned(),
                })
            }
            Err(err)
                if matches!(
                    err.status(),
                    Some(StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED)
                ) =>
            {
                Err(self.forbidden(http, &err))
            }
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_https_except_on_loopback() {
        assert_eq!(
            Tenant::parse("acme.eu.auth0.com").unwrap().base_url(),
            "https://acme.eu.auth0.com"
        );
        assert_eq!(
            Tenant::parse("https://login.acme.com/")
                .unwrap()
                .management_audience(),
            "https://login.acme.com/api/v2/"
        );
        assert_eq!(
            Tenant::parse("http://127.0.0.1:8080").unwrap().base_url(),
            "http://127.0.0.1:8080"
        );
        assert!(Tenant::parse("http://acme.eu.auth0.com").is_err());
        assert!(Tenant::parse("ftp://x").is_err());
        assert!(Tenant::parse("acme.auth0.com/evil?x=").is_err());
        assert!(Tenant::parse("").is_err());
    }
}
