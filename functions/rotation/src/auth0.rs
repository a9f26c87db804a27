//! The Auth0 port and its adapter over the shared HTTP client.
//!
//! - `POST https://{domain}/oauth/token` (client credentials) for a Management API token and to
//!   test a client secret;
//! - `PATCH https://{domain}/api/v2/clients/{id}` with `{"client_secret": ...}` (scope
//!   `update:client_keys`): keyward generates the secret itself and stores it as AWSPENDING
//!   first, so setting it is idempotent (the same value again) and may be retried on 5xx and
//!   timeouts. `rotate-secret` is never used: it revokes the old secret before the new one is
//!   stored anywhere.
//!
//! Only Auth0's own answers count: a 401 or 403 whose body is not Auth0's JSON error (a proxy's
//! or a WAF's page) is [`Auth0Error::NotAuth0`], never taken as Auth0 accepting a secret.
//!
//! Sources: auth0.com/docs/api/management/v2/clients/patch-clients-by-id and
//! auth0.com/docs/secure/tokens/access-tokens/management-api-access-tokens.

use std::future::Future;

use keyward_shared::adapters::http::{HttpClient, HttpError, HttpRequest, Idempotency};
use keyward_shared::adapters::http::{Method, StatusCode};
use keyward_shared::redact::SafeText;
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
    /// 401 from `/oauth/token` in Auth0's JSON error shape: the client id or secret is wrong
    /// (or a new secret is not yet propagated).
    #[error("Auth0 rejected the client credentials of `{client_id}`")]
    Unauthorized { client_id: String },
    /// 403 from `/oauth/token` in Auth0's JSON error shape (`access_denied`,
    /// `unauthorized_client`): Auth0 authenticated the client, then refused the grant.
    #[error("Auth0 authenticated `{client_id}` but refused the grant ({error}): {message}")]
    GrantRefused {
        client_id: String,
        error: String,
        message: SafeText,
    },
    /// 401/403 from the Management API (missing scope, bad token).
    #[error("Auth0 refused the request: {message}")]
    Forbidden { message: SafeText },
    /// A 401 or 403 that is not Auth0's JSON error: a proxy, a WAF or a captive portal
    /// answered, so it says nothing about the secret.
    #[error(
        "{what} answered {status} with a body that is not Auth0's JSON error (a proxy or a WAF?): {excerpt}"
    )]
    NotAuth0 {
        what: &'static str,
        status: u16,
        excerpt: SafeText,
    },
    #[error("Auth0 has no client `{client_id}`")]
    NoSuchClient { client_id: String },
    #[error("Auth0 answered without {0}")]
    Incomplete(&'static str),
    #[error(transparent)]
    Http(#[from] HttpError),
}

pub trait Auth0Api: Send + Sync {
    /// A client credentials grant; the access token when Auth0 issues one.
    fn token(
        &self,
        tenant: &Tenant,
        client_id: &str,
        client_secret: &SecretString,
        audience: &str,
    ) -> impl Future<Output = Result<SecretString, Auth0Error>> + Send;

    /// Sets the client's secret to `client_secret` (Management API, `update:client_keys`).
    /// Idempotent: setting the same value again changes nothing.
    fn set_client_secret(
        &self,
        tenant: &Tenant,
        management_token: &SecretString,
        client_id: &str,
        client_secret: &SecretString,
    ) -> impl Future<Output = Result<(), Auth0Error>> + Send;
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

/// What a failed `/oauth/token` call means. Only Auth0's authentication-API error shape
/// (`{"error": ..., "error_description": ...}`, both strings) is Auth0 speaking; anything else
/// on a 401 or 403 came from something in between.
pub fn classify_token_failure(
    client_id: &str,
    status: StatusCode,
    body: &SafeText,
    redactor: &keyward_shared::redact::Redactor,
) -> Option<Auth0Error> {
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return None;
    }
    let parsed = serde_json::from_str::<serde_json::Value>(body.as_str())
        .ok()
        .and_then(|v| {
            let error = v.get("error")?.as_str()?.to_owned();
            let description = v.get("error_description")?.as_str()?.to_owned();
            Some((error, description))
        });
    let not_auth0 = || Auth0Error::NotAuth0 {
        what: "the tenant's /oauth/token",
        status: status.as_u16(),
        excerpt: body.clone(),
    };
    Some(match (status, parsed) {
        (StatusCode::UNAUTHORIZED, Some(_)) => Auth0Error::Unauthorized {
            client_id: client_id.to_owned(),
        },
        (StatusCode::FORBIDDEN, Some((error, description)))
            if matches!(error.as_str(), "access_denied" | "unauthorized_client") =>
        {
            Auth0Error::GrantRefused {
                client_id: client_id.to_owned(),
                error,
                message: redactor.safe(&description),
            }
        }
        _ => not_auth0(),
    })
}

impl Auth0Client {
    fn forbidden(&self, http: &HttpClient, err: &HttpError) -> Auth0Error {
        let message = match err {
            HttpError::Status { body, status, .. } => {
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
                    return Auth0Error::NotAuth0 {
                        what: "the Management API",
                        status: status.as_u16(),
                        excerpt: body.clone(),
                    };
                }
                http.redactor().safe(&text)
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
                        .filter(|t| !t.is_empty())
                        .ok_or(Auth0Error::Incomplete("an access_token"))?,
                );
                http.redactor().register(&token);
                Ok(token)
            }
            Err(HttpError::Status { status, body, .. })
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
            {
                Err(
                    classify_token_failure(client_id, status, &body, http.redactor())
                        .expect("401 and 403 are classified"),
                )
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn set_client_secret(
        &self,
        tenant: &Tenant,
        management_token: &SecretString,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<(), Auth0Error> {
        let http = self.http()?;
        http.redactor().register(client_secret);
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
        let body = serde_json::json!({ "client_secret": client_secret.expose_secret() });
        // Setting the same value twice is the same as once: retried on 5xx and timeouts, so a
        // lost response converges.
        let request = HttpRequest::new(
            Method::PATCH,
            format!("{}/api/v2/clients/{id}", tenant.base_url),
        )
        .json(&body)?
        .bearer(management_token.clone())
        .idempotency(Idempotency::Idempotent);
        match http.send(request).await {
            Ok(_) => Ok(()),
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

    #[test]
    fn only_auth0s_own_error_shape_counts_as_auth0_speaking() {
        let redactor = keyward_shared::redact::Redactor::new();
        let classify = |status: u16, body: &str| {
            classify_token_failure(
                "app",
                StatusCode::from_u16(status).unwrap(),
                &redactor.safe(body),
                &redactor,
            )
            .unwrap()
        };
        let granted = classify(
            403,
            r#"{"error":"access_denied","error_description":"Client is not authorized to access \"https://api/\"."}"#,
        );
        assert!(
            matches!(&granted, Auth0Error::GrantRefused { error, .. } if error == "access_denied"),
            "{granted}"
        );
        let grant_type = classify(
            403,
            r#"{"error":"unauthorized_client","error_description":"Grant type 'client_credentials' not allowed for the client."}"#,
        );
        assert!(matches!(grant_type, Auth0Error::GrantRefused { .. }));
        let wrong = classify(
            401,
            r#"{"error":"access_denied","error_description":"Unauthorized"}"#,
        );
        assert!(matches!(wrong, Auth0Error::Unauthorized { .. }));
        for (status, body) in [
            (
                403,
                "<html><body><h1>403 Forbidden</h1>Request blocked by WAF</body></html>",
            ),
            (401, "<html>Proxy Authentication Required</html>"),
            (403, r#"{"message":"Forbidden"}"#),
            (
                403,
                r#"{"error":"insufficient_scope","error_description":"x"}"#,
            ),
            (403, r#"{"error":"access_denied"}"#),
            (403, ""),
        ] {
            let err = classify(status, body);
            assert!(
                matches!(err, Auth0Error::NotAuth0 { .. }),
                "{status} {body}: {err}"
            );
        }
        assert!(
            classify_token_failure(
                "app",
                StatusCode::BAD_REQUEST,
                &redactor.safe("x"),
                &redactor
            )
            .is_none()
        );
    }
}
