//! GitHub Actions OIDC token verification: `jsonwebtoken` (RS256 over ring, `jwt_crypto`) checks the
//! signature and the registered claims; this wrapper adds what it does not do
//! (`../shared/reference/github-oidc.md` §4, the "W" rows): a size cap, a strict token shape,
//! a header denylist (`crit`, `jku`, `x5u`, `jwk`, `x5c`, `b64`, `zip`, `enc`...), duplicate keys
//! refused in the header and the claims, the issuer pinned exactly before any key is fetched,
//! `aud` a single string, `iat` not in the future and `exp - iat` capped, and typed, non-empty
//! GitHub claims.
//!
//! Errors say which check failed, never the token or a claim value an attacker controls beyond
//! short identifiers.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;

/// Real GitHub tokens are 1–2 KB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 60;
/// GitHub mints tokens valid for 5 minutes; anything claiming longer is refused.
pub const MAX_LIFETIME_SECS: i64 = 600;

/// Header parameters that make a verifier fetch keys, change how the payload is read, or
/// demand extensions: none has a place in a GitHub token.
const FORBIDDEN_HEADERS: &[&str] = &[
    "crit", "jku", "x5u", "jwk", "x5c", "b64", "zip", "enc", "p2c", "p2s", "epk", "cty",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a compact JWS (three base64url segments)")]
    Malformed,
    #[error("the token {0} is not a JSON object without duplicate keys")]
    NotAnObject(&'static str),
    #[error("the token's algorithm must be RS256")]
    Algorithm,
    #[error("the token's `typ` must be JWT")]
    Type,
    #[error("the token has no `kid`")]
    NoKeyId,
    #[error("the token's header carries `{0}`, which is refused")]
    ForbiddenHeader(String),
    #[error("the token's issuer is not trusted")]
    Issuer,
    #[error("the signing key is unknown")]
    UnknownKey,
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token's lifetime exceeds {MAX_LIFETIME_SECS} seconds")]
    LifetimeTooLong,
    #[error("the token's audience is not this endpoint's")]
    Audience,
    #[error("claim `{0}` is missing, empty or of the wrong type")]
    Claim(&'static str),
    #[error("the token was already used")]
    Replayed,
}

impl TokenError {
    /// Whether the failure is ours (keys unavailable): 503, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// A JSON object that refuses duplicate keys (serde_json keeps the last one silently).
#[derive(Debug, Default)]
pub struct StrictObject(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrictVisitor;
        impl<'de> Visitor<'de> for StrictVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if out.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                }
                Ok(StrictObject(out))
            }
        }
        deserializer.deserialize_map(StrictVisitor)
    }
}

/// The claims keyward reads, typed. Identifiers are strings in GitHub tokens, IDs included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub jti: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub repository_id: String,
    pub repository_owner_id: String,
    pub repository: String,
    pub r#ref: String,
    pub ref_type: String,
    pub event_name: String,
    pub job_workflow_ref: String,
    pub runner_environment: String,
    pub run_id: String,
    pub environment: Option<String>,
    /// The commit the workflow runs on: on a `push` to the default branch after a merge, the
    /// merge commit (how post-merge verification finds its pull request).
    pub sha: Option<String>,
}

impl GithubClaims {
    fn from_object(object: &StrictObject) -> Result<Self, TokenError> {
        let get = |name: &'static str| object.0.get(name);
        let text = |name: &'static str| -> Result<String, TokenError> {
            match get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(TokenError::Claim(name)),
            }
        };
        let optional_text = |name: &'static str| -> Result<Option<String>, TokenError> {
            match get(name) {
                None => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(TokenError::Claim(name)),
            }
        };
        // Whole seconds as JSON integers: not strings, not floats (`1e300`).
        let seconds = |name: &'static str| -> Result<Option<i64>, TokenError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(TokenError::Claim(name)),
                Some(_) => Err(TokenError::Claim(name)),
            }
        };
        Ok(Self {
            iss: text("iss")?,
            aud: text("aud")?,
            sub: text("sub")?,
            jti: text("jti")?,
            exp: seconds("exp")?.ok_or(TokenError::Claim("exp"))?,
            iat: seconds("iat")?.ok_or(TokenError::Claim("iat"))?,
            nbf: seconds("nbf")?,
            repository_id: text("repository_id")?,
            repository_owner_id: text("repository_owner_id")?,
            repository: text("repository")?,
            r#ref: text("ref")?,
            ref_type: text("ref_type")?,
            event_name: text("event_name")?,
            job_workflow_ref: text("job_workflow_ref")?,
            runner_environment: text("runner_environment")?,
            run_id: text("run_id")?,
            environment: optional_text("environment")?,
            sha: optional_text("sha")?,
        })
    }

    /// What the audit trail records about the caller (never the token).
    pub fn workflow(&self) -> keyward_shared::events::WorkflowClaims {
        keyward_shared::events::WorkflowClaims {
            repository_owner_id: self.repository_owner_id.clone(),
            repository_id: self.repository_id.clone(),
            repository: self.repository.clone(),
            r#ref: self.r#ref.clone(),
            event_name: self.event_name.clone(),
            job_workflow_ref: self.job_workflow_ref.clone(),
            environment: self.environment.clone(),
            runner_environment: self.runner_environment.clone(),
            run_id: self.run_id.clone(),
            jti: self.jti.clone(),
        }
    }
}

/// A token taken apart and checked for shape, before any key is looked at.
#[derive(Debug)]
pub struct Unverified<'t> {
    pub token: &'t str,
    pub kid: String,
    pub issuer: String,
    claims: StrictObject,
}

fn segment(part: &str, what: &'static str) -> Result<StrictObject, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice::<StrictObject>(&bytes).map_err(|_| TokenError::NotAnObject(what))
}

/// Checks size, shape and header, and reads the claimed issuer (not yet trusted).
pub fn parse(token: &str) -> Result<Unverified<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let valid = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.len() != 3 || !parts.iter().all(valid) {
        return Err(TokenError::Malformed);
    }
    let header = segment(parts[0], "header")?;
    if let Some(name) = FORBIDDEN_HEADERS
        .iter()
        .find(|name| header.0.contains_key(**name))
    {
        return Err(TokenError::ForbiddenHeader((*name).to_owned()));
    }
    match header.0.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        _ => return Err(TokenError::Algorithm),
    }
    match header.0.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" => {}
        Some(_) => return Err(TokenError::Type),
    }
    let kid = match header.0.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= 256 => kid.clone(),
        _ => return Err(TokenError::NoKeyId),
    };
    let claims = segment(parts[1], "payload")?;
    let issuer = match claims.0.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        _ => return Err(TokenError::Issuer),
    };
    Ok(Unverified {
        token,
        kid,
        issuer,
        claims,
    })
}

/// What a verified token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub audience: String,
    /// Unix seconds.
    pub now: i64,
}

/// Verifies the signature with `key` (the issuer's key for `kid`) and every claim rule.
pub fn verify(
    unverified: &Unverified<'_>,
    key: &jsonwebtoken::DecodingKey,
    expect: &Expectations,
) -> Result<GithubClaims, TokenError> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = LEEWAY_SECS as u64;
    validation.validate_nbf = true;
    validation.validate_exp = true;
    validation.set_issuer(&[&unverified.issuer]);
    validation.set_audience(&[&expect.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // jsonwebtoken checks the signature first, then exp/nbf/iss/aud against the real clock.
    crate::jwt_crypto::install();
    if let Err(e) = jsonwebtoken::decode::<serde_json::Value>(unverified.token, key, &validation) {
        use jsonwebtoken::errors::ErrorKind;
        return Err(match e.kind() {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                TokenError::Claim("exp")
            }
            _ => TokenError::Malformed,
        });
    }
    // Our own reading, strictly typed, and the checks jsonwebtoken does not make.
    let claims = GithubClaims::from_object(&unverified.claims)?;
    if claims.aud != expect.audience {
        return Err(TokenError::Audience);
    }
    if claims.exp + LEEWAY_SECS < expect.now {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > expect.now) {
        return Err(TokenError::NotYetValid);
    }
    if claims.iat - LEEWAY_SECS > expect.now {
        return Err(TokenError::IssuedInFuture);
    }
    if claims.exp - claims.iat > MAX_LIFETIME_SECS {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(claims)
}
