//! Secret naming: `/<org>/<env>/<service>/<name>`.
//!
//! Every governed secret lives under this hierarchy so that one `ListSecrets` name filter
//! (`/<org>/<env>/`) selects an environment, IAM policies can scope by path, and a name alone
//! tells a reader whose secret it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Secrets Manager's own limit on a secret name.
pub const MAX_SECRET_NAME_LEN: usize = 512;
/// Our limit on one segment: keeps names readable and tag values short.
pub const MAX_SEGMENT_LEN: usize = 64;

/// Which part of a secret name a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Org,
    Env,
    Service,
    Name,
}

impl SegmentKind {
    const ALL: [SegmentKind; 4] = [Self::Org, Self::Env, Self::Service, Self::Name];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Env => "env",
            Self::Service => "service",
            Self::Name => "name",
        }
    }
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("secret name is empty")]
    Empty,
    #[error("secret name `{0}` must start with `/` (expected /<org>/<env>/<service>/<name>)")]
    MissingLeadingSlash(String),
    #[error(
        "secret name `{name}` has {found} segments; expected exactly 4: /<org>/<env>/<service>/<name>"
    )]
    WrongSegmentCount { name: String, found: usize },
    #[error("secret name `{name}`: the {kind} segment is empty")]
    EmptySegment { name: String, kind: SegmentKind },
    #[error("secret name `{name}`: the {kind} segment `{segment}` {reason}")]
    InvalidSegment {
        name: String,
        kind: SegmentKind,
        segment: String,
        reason: &'static str,
    },
    #[error(
        "secret name is {len} characters long; Secrets Manager allows at most {MAX_SECRET_NAME_LEN}"
    )]
    TooLong { len: usize },
    #[error(
        "secret name `{0}` ends with a hyphen and six characters, which Secrets Manager cannot tell apart from its ARN suffix"
    )]
    AmbiguousArnSuffix(String),
    #[error("`{0}` is not a Secrets Manager secret ARN")]
    NotASecretArn(String),
}

/// One validated segment of a secret name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment(String);

impl Segment {
    /// Validates a standalone segment (an org, an environment, a service or a name).
    pub fn parse(kind: SegmentKind, value: &str) -> Result<Self, NameError> {
        validate_segment(value, kind, value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_segment(segment: &str, kind: SegmentKind, full_name: &str) -> Result<(), NameError> {
    let invalid = |reason| NameError::InvalidSegment {
        name: full_name.to_owned(),
        kind,
        segment: segment.to_owned(),
        reason,
    };
    if segment.is_empty() {
        return Err(NameError::EmptySegment {
            name: full_name.to_owned(),
            kind,
        });
    }
    if segment.chars().count() > MAX_SEGMENT_LEN {
        return Err(invalid("is longer than 64 characters"));
    }
    let first = segment.chars().next().unwrap_or('-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(invalid("must start with a lowercase letter or a digit"));
    }
    if !segment
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "may only contain lowercase letters, digits, `-`, `_` and `.`",
        ));
    }
    if segment.ends_with(['-', '_', '.']) {
        return Err(invalid("must not end with `-`, `_` or `.`"));
    }
    Ok(())
}

/// True when `s` ends in `-` followed by six alphanumerics: the shape Secrets Manager appends to
/// every ARN. AWS documents that such names make partial-ARN lookups ambiguous.
fn has_arn_like_suffix(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() >= 7
        && bytes[bytes.len() - 7] == b'-'
        && bytes[bytes.len() - 6..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
}

/// A governed secret's name: `/<org>/<env>/<service>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName {
    org: Segment,
    env: Segment,
    service: Segment,
    name: Segment,
}

impl SecretName {
    pub fn new(
        org: Segment,
        env: Segment,
        service: Segment,
        name: Segment,
    ) -> Result<Self, NameError> {
        let candidate = Self {
            org,
            env,
            service,
            name,
        };
        // Re-run the whole-name checks (length, ARN suffix) on the assembled name.
        candidate.to_string().parse()
    }

    pub fn org(&self) -> &Segment {
        &self.org
    }
    pub fn env(&self) -> &Segment {
        &self.env
    }
    pub fn service(&self) -> &Segment {
        &self.service
    }
    pub fn name(&self) -> &Segment {
        &self.name
    }

    /// The `ListSecrets` name-filter prefix that selects one environment of an organisation.
    pub fn env_prefix(org: &Segment, env: &Segment) -> String {
        format!("/{org}/{env}/")
    }

    /// The secret name inside a Secrets Manager ARN
    /// (`arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 chars>`).
    pub fn name_from_arn(arn: &str) -> Result<&str, NameError> {
        let not_arn = || NameError::NotASecretArn(arn.to_owned());
        let mut parts = arn.splitn(7, ':');
        let (
            Some("arn"),
            Some(_partition),
            Some("secretsmanager"),
            Some(_region),
            Some(_acct),
            Some("secret"),
            Some(rest),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(not_arn());
        };
        if !has_arn_like_suffix(rest) {
            return Err(not_arn());
        }
        Ok(&rest[..rest.len() - 7])
    }

    /// Parses the governed name inside a Secrets Manager ARN.
    pub fn from_arn(arn: &str) -> Result<Self, NameError> {
        Self::name_from_arn(arn)?.parse()
    }
}

impl FromStr for SecretName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_SECRET_NAME_LEN {
            return Err(NameError::TooLong { len: s.len() });
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(NameError::MissingLeadingSlash(s.to_owned()));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != 4 {
            return Err(NameError::WrongSegmentCount {
                name: s.to_owned(),
                found: parts.len(),
            });
        }
        for (segment, kind) in parts.iter().zip(SegmentKind::ALL) {
            validate_segment(segment, kind, s)?;
        }
        if has_arn_like_suffix(s) {
            return Err(NameError::AmbiguousArnSuffix(s.to_owned()));
        }
        let seg = |i: usize| Segment(parts[i].to_owned());
        Ok(Self {
            org: seg(0),
            env: seg(1),
            service: seg(2),
            name: seg(3),
        })
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/{}/{}/{}/{}",
            self.org, self.env, self.service, self.name
        )
    }
}

impl Serialize for SecretName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let name: SecretName = "/acme/prod/payments/db-credentials".parse().unwrap();
        assert_eq!(name.org().as_str(), "acme");
        assert_eq!(name.env().as_str(), "prod");
        assert_eq!(name.service().as_str(), "payments");
        assert_eq!(name.name().as_str(), "db-credentials");
        assert_eq!(name.to_string(), "/acme/prod/payments/db-credentials");
    }

    #[test]
    fn rejects_bad_names_with_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("acme/prod/payments/db", "must start with `/`"),
            ("/acme/prod/payments", "has 3 segments"),
            ("/acme/prod/payments/db/extra", "has 5 segments"),
            ("/acme//payments/db", "env segment is empty"),
            (
                "/Acme/prod/payments/db",
                "org segment `Acme` must start with a lowercase",
            ),
            (
                "/acme/prod/pay ments/db",
                "service segment `pay ments` may only contain",
            ),
            ("/acme/prod/payments/db-", "must not end with"),
            ("/acme/prod/payments/api-key-abcdef", "ARN suffix"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<SecretName>().unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{input:?}: {err:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn rejects_overlong_names_and_segments() {
        let long_segment = "a".repeat(65);
        let err = format!("/acme/prod/{long_segment}/x")
            .parse::<SecretName>()
            .unwrap_err();
        assert!(err.to_string().contains("longer than 64"), "{err}");
        let huge = format!("/{}", "a/".repeat(300));
        assert!(matches!(
            huge.parse::<SecretName>(),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn reads_names_from_arns() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/prod/payments/db-credentials-AbC123";
        assert_eq!(
            SecretName::from_arn(arn).unwrap().to_string(),
            "/acme/prod/payments/db-credentials"
        );
        assert!(SecretName::from_arn("arn:aws:s3:::bucket").is_err());
        assert!(
            SecretName::from_arn("arn:aws:secretsmanager:eu-west-1:1:secret:/a/b/c/d").is_err()
        );
    }

    #[test]
    fn env_prefix_selects_an_environment() {
        let org = Segment::parse(SegmentKind::Org, "acme").unwrap();
        let env = Segment::parse(SegmentKind::Env, "prod").unwrap();
        assert_eq!(SecretName::env_prefix(&org, &env), "/acme/prod/");
    }

    #[test]
    fn serde_validates() {
        let ok: SecretName = serde_json::from_str("\"/acme/dev/web/session-key\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"/acme/dev/web/session-key\""
        );
        assert!(serde_json::from_str::<SecretName>("\"/acme/dev\"").is_err());
    }
}
