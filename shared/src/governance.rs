//! A secret's governance: who owns it, how sensitive it is, how and how often it rotates, where it
//! replicates, who may read it and where it is mirrored in Vercel.
//!
//! These are the values the manifest declares and the tag contract stores; every type here
//! validates on construction, so a `Governance` that exists is one keyward can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// No secret goes more than 90 days unrotated (AWS Config `secretsmanager-secret-periodic-rotation`
/// default, Checkov CKV_AWS_304).
pub const MAX_ROTATION_DAYS: u32 = 90;
/// `GetRandomPassword` accepts 1..=4096; below 16 characters a password is too weak to govern.
pub const MIN_PASSWORD_LENGTH: u32 = 16;
pub const MAX_PASSWORD_LENGTH: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{value}` {reason}")]
pub struct GovernanceError {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

impl GovernanceError {
    fn new(what: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Characters AWS accepts in a tag value (letters, digits, spaces and `_ . : / = + - @`).
/// Everything we store in tags is checked against this, so a governance value can always be
/// written as a tag.
pub fn is_tag_safe_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = GovernanceError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
    };
}

string_newtype!(
    /// A short identifier from `enums.yaml`: a secret type, a domain or an owner.
    Label
);

impl FromStr for Label {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.chars().count() > 64 {
            return Err(GovernanceError::new(
                "label",
                s,
                "must be 1 to 64 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(GovernanceError::new(
                "label",
                s,
                "may only contain ASCII letters, digits, `-`, `_`, `.` and `@`",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Self::Public,
        Self::Internal,
        Self::Confidential,
        Self::Restricted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Classification {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                GovernanceError::new(
                    "classification",
                    s,
                    "is not one of public, internal, confidential, restricted",
                )
            })
    }
}

/// How a secret is rotated: each strategy is implemented by the rotation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RotationStrategy {
    /// A new value from `GetRandomPassword` (optionally one field of a JSON secret).
    Random,
    /// `ALTER USER` on a PostgreSQL role, as the role itself.
    PostgresSingleUser,
    /// Two PostgreSQL roles (`app`, `app_clone`) alternated by a master user.
    PostgresAlternatingUsers,
    /// A machine-to-machine client secret keyward generates, stores, then sets through the Auth0
    /// Management API (`PATCH /api/v2/clients/{id}`).
    Auth0ClientSecret,
    /// A person rotates it; drift detection holds them to the interval.
    Manual,
}

impl RotationStrategy {
    pub const ALL: [RotationStrategy; 5] = [
        Self::Random,
        Self::PostgresSingleUser,
        Self::PostgresAlternatingUsers,
        Self::Auth0ClientSecret,
        Self::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::PostgresSingleUser => "postgres-single-user",
            Self::PostgresAlternatingUsers => "postgres-alternating-users",
            Self::Auth0ClientSecret => "auth0-client-secret",
            Self::Manual => "manual",
        }
    }

    /// Whether the strategy generates the value with `GetRandomPassword` (and so takes a
    /// password policy).
    pub fn generates_password(self) -> bool {
        matches!(
            self,
            Self::Random | Self::PostgresSingleUser | Self::PostgresAlternatingUsers
        )
    }

    /// Characters excluded when the policy does not say: the AWS templates' defaults, which keep
    /// passwords safe inside connection strings and shell quoting.
    pub fn default_excluded_characters(self) -> &'static str {
        match self {
            Self::PostgresSingleUser | Self::PostgresAlternatingUsers => ":/@\"'\\",
            _ => "/@\"'\\",
        }
    }
}

impl fmt::Display for RotationStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RotationStrategy {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            GovernanceError::new(
                "rotation strategy",
                s,
                "is not one of random, postgres-single-user, postgres-alternating-users, auth0-client-secret, manual",
            )
        })
    }
}

/// Days between rotations, 1 to 90.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RotationInterval(u32);

impl RotationInterval {
    pub fn days(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RotationInterval {
    type Error = GovernanceError;
    fn try_from(days: u32) -> Result<Self, Self::Error> {
        match days {
            0 => Err(GovernanceError::new(
                "rotation interval",
                "0",
                "must be at least 1 day",
            )),
            d if d > MAX_ROTATION_DAYS => Err(GovernanceError::new(
                "rotation interval",
                d.to_string(),
                format!("exceeds the {MAX_ROTATION_DAYS}-day maximum"),
            )),
            d => Ok(Self(d)),
        }
    }
}

impl From<RotationInterval> for u32 {
    fn from(value: RotationInterval) -> u32 {
        value.0
    }
}

/// How `GetRandomPassword` is called. Unset fields take the strategy's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub length: Option<u32>,
    pub exclude_characters: Option<String>,
    /// For a JSON secret: the field that holds the rotated value.
    pub json_key: Option<JsonKey>,
}

impl PasswordPolicy {
    pub fn validate(&self) -> Result<(), GovernanceError> {
        if let Some(length) = self.length
            && !(MIN_PASSWORD_LENGTH..=MAX_PASSWORD_LENGTH).contains(&length)
        {
            return Err(GovernanceError::new(
                "password length",
                length.to_string(),
                format!("must be between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH}"),
            ));
        }
        if let Some(exclude) = &self.exclude_characters
            && !exclude.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(GovernanceError::new(
                "excluded characters",
                exclude.escape_default().to_string(),
                "may only list printable ASCII characters (GetRandomPassword draws from those)",
            ));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.length.is_none() && self.exclude_characters.is_none() && self.json_key.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub strategy: RotationStrategy,
    pub interval: RotationInterval,
    #[serde(default, skip_serializing_if = "PasswordPolicy::is_empty")]
    pub password: PasswordPolicy,
}

impl RotationPolicy {
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.password.validate()?;
        if !self.strategy.generates_password() && !self.password.is_empty() {
            return Err(GovernanceError::new(
                "rotation strategy",
                self.strategy.as_str(),
                "does not generate passwords, so it takes no length, exclude_characters or json_key",
            ));
        }
        Ok(())
    }
}

string_newtype!(
    /// An AWS region code such as `eu-west-1`.
    Region
);

impl FromStr for Region {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts[0].len() == 2
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
            && parts[parts.len() - 1].len() <= 2
            && !parts[parts.len() - 1].is_empty()
            && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(GovernanceError::new(
                "region",
                s,
                "is not an AWS region code such as eu-west-1",
            ))
        }
    }
}

string_newtype!(
    /// An IAM principal allowed to read a secret: an account root, a user or a role.
    PrincipalArn
);

impl FromStr for PrincipalArn {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| GovernanceError::new("reader", s, reason.to_owned());
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(bad("is not an ARN (arn:aws:iam::<account>:role/<name>)"));
        }
        if !matches!(parts[1], "aws" | "aws-us-gov" | "aws-cn") {
            return Err(bad("has an unknown partition"));
        }
        if parts[2] != "iam" || !parts[3].is_empty() {
            return Err(bad("is not an IAM principal ARN"));
        }
        if parts[4].len() != 12 || !parts[4].chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("does not name a 12-digit account"));
        }
        let resource = parts[5];
        let valid_resource = resource == "root"
            || ["user/", "role/"].iter().any(|kind| {
                resource.strip_prefix(kind).is_some_and(|rest| {
                    !rest.is_empty()
                        && !rest.ends_with('/')
                        && rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c))
                })
            });
        if !valid_resource {
            return Err(bad("must name `root`, a `user/...` or a `role/...`"));
        }
        if resource.contains('*') {
            return Err(bad("must not contain wildcards"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A Vercel deployment environment a variable is written to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VercelTarget {
    Production,
    Preview,
    Development,
    /// A custom environment by slug (e.g. `staging`) or id (`env_...`).
    Custom(String),
}

impl VercelTarget {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Production => "production",
            Self::Preview => "preview",
            Self::Development => "development",
            Self::Custom(slug) => slug,
        }
    }
}

impl fmt::Display for VercelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VercelTarget {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "production" => Self::Production,
            "preview" => Self::Preview,
            "development" => Self::Development,
            custom => {
                let valid = !custom.is_empty()
                    && custom.len() <= 64
                    && custom
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if !valid {
                    return Err(GovernanceError::new(
                        "Vercel target",
                        custom,
                        "is not production, preview, development or a custom environment slug/id",
                    ));
                }
                Self::Custom(custom.to_owned())
            }
        })
    }
}

impl Serialize for VercelTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for VercelTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Keys Vercel reserves for its runtime (vercel.com/docs/environment-variables/reserved-environment-variables).
pub const VERCEL_RESERVED_KEYS: &[&str] = &[
    "AWS_SECRET_KEY",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "NOW_REGION",
    "TZ",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

string_newtype!(
    /// An environment variable key such as `DATABASE_URL`.
    EnvVarKey
);

impl FromStr for EnvVarKey {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let starts_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || s.len() > 128 {
            return Err(GovernanceError::new(
                "environment variable key",
                s,
                "must be 1 to 128 of A-Z, a-z, 0-9 and `_`, not starting with a digit",
            ));
        }
        if VERCEL_RESERVED_KEYS.contains(&s) {
            return Err(GovernanceError::new(
                "environment variable key",
                s,
                "is reserved by Vercel",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

string_newtype!(
    /// A top-level field of a JSON secret.
    JsonKey
);

/// Tag keys are at most 128 characters and the map tags spend 19 on `keyward:vercel:map:`.
pub const MAX_JSON_KEY_LEN: usize = 100;

impl FromStr for JsonKey {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty()
            || s.len() > MAX_JSON_KEY_LEN
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(GovernanceError::new(
                "JSON key",
                s,
                "must be 1 to 100 of A-Z, a-z, 0-9, `_`, `-` and `.`",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// How a secret's value becomes Vercel variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VercelBinding {
    /// The whole value in one variable.
    Key(EnvVarKey),
    /// One variable per field of a JSON secret.
    JsonMap(BTreeMap<JsonKey, EnvVarKey>),
}

/// What the sync does with variables it wrote that the mapping no longer asks for (a target
/// or key removed, the mapping or the secret gone).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrphanPolicy {
    /// Leave them in Vercel and stop managing them (the default: deleting a variable can break
    /// a deployment, so it has to be asked for).
    #[default]
    Keep,
    /// Delete them, as long as nobody edited them after keyward wrote them.
    Delete,
}

/// What the sync does with a variable of its own that someone changed by hand after it wrote it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EditPolicy {
    /// Report the drift and leave the edit in place (the default).
    #[default]
    Report,
    /// Report it and write the secret's value back.
    Overwrite,
}

impl OrphanPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Delete => "delete",
        }
    }
}

impl FromStr for OrphanPolicy {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(Self::Keep),
            "delete" => Ok(Self::Delete),
            other => Err(GovernanceError::new(
                "Vercel orphan policy",
                other,
                "must be `keep` or `delete`",
            )),
        }
    }
}

impl EditPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Overwrite => "overwrite",
        }
    }
}

impl FromStr for EditPolicy {
    type Err = GovernanceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "report" => Ok(Self::Report),
            "overwrite" => Ok(Self::Overwrite),
            other => Err(GovernanceError::new(
                "Vercel edit policy",
                other,
                "must be `report` or `overwrite`",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VercelMapping {
    /// Project id (`prj_...`) or name.
    pub project: String,
    /// Team id (`team_...`) or slug; absent for a personal account.
    pub team: Option<String>,
    pub targets: Vec<VercelTarget>,
    /// Restricts the preview record to one git branch.
    pub git_branch: Option<String>,
    pub binding: VercelBinding,
    #[serde(default)]
    pub orphans: OrphanPolicy,
    #[serde(default)]
    pub on_edit: EditPolicy,
    /// A restricted secret goes to Vercel only when its declaration says so in these words.
    #[serde(default)]
    pub allow_restricted: bool,
}

impl VercelMapping {
    /// The classification rules: what a secret of this classification may become in Vercel.
    /// Restricted: only with `allow_restricted`. Above public: no `NEXT_PUBLIC_` key (those are
    /// built into browser bundles). Confidential and above: no development target (its variables
    /// are of the readable `encrypted` type).
    pub fn permits(&self, classification: Classification) -> Result<(), GovernanceError> {
        if classification == Classification::Restricted && !self.allow_restricted {
            return Err(GovernanceError::new(
                "Vercel mapping",
                &self.project,
                "maps a restricted secret; restricted secrets go to Vercel only with `allow_restricted: true` in their declaration",
            ));
        }
        if classification > Classification::Public
            && let Some(key) = self.keys().find(|k| k.starts_with("NEXT_PUBLIC_"))
        {
            return Err(GovernanceError::new(
                "Vercel key",
                key,
                "is built into browser bundles; only a public secret may use a NEXT_PUBLIC_ key",
            ));
        }
        if classification >= Classification::Confidential
            && self.targets.contains(&VercelTarget::Development)
        {
            return Err(GovernanceError::new(
                "Vercel target",
                VercelTarget::Development.as_str(),
                "holds readable (encrypted, not sensitive) variables; confidential and restricted secrets may not go there",
            ));
        }
        Ok(())
    }

    /// The variable keys the mapping writes.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match &self.binding {
            VercelBinding::Key(key) => (Some(key.as_str()), None),
            VercelBinding::JsonMap(map) => (None, Some(map.values().map(|k| k.as_str()))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub fn validate(&self) -> Result<(), GovernanceError> {
        let project_ok = !self.project.is_empty()
            && self.project.len() <= 100
            && self
                .project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !project_ok {
            return Err(GovernanceError::new(
                "Vercel project",
                &self.project,
                "must be a project id or name (1 to 100 of a-z, 0-9, `-`, `_`, `.`)",
            ));
        }
        if let Some(team) = &self.team
            && (team.is_empty()
                || team.len() > 100
                || !team
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(GovernanceError::new(
                "Vercel team",
                team,
                "must be a team id or slug",
            ));
        }
        if self.targets.is_empty() {
            return Err(GovernanceError::new(
                "Vercel targets",
                "[]",
                "must name at least one target",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for target in &self.targets {
            if !seen.insert(target) {
                return Err(GovernanceError::new(
                    "Vercel target",
                    target.as_str(),
                    "is listed twice",
                ));
            }
        }
        if let Some(branch) = &self.git_branch {
            if !self.targets.contains(&VercelTarget::Preview) {
                return Err(GovernanceError::new(
                    "Vercel git branch",
                    branch,
                    "needs the preview target (Vercel scopes branch variables to preview)",
                ));
            }
            if branch.is_empty()
                || branch.len() > 250
                || !branch.chars().all(is_tag_safe_char)
                || branch.contains(' ')
            {
                return Err(GovernanceError::new(
                    "Vercel git branch",
                    branch,
                    "must be a git branch name of letters, digits and `_ . / = + - @`",
                ));
            }
        }
        if let VercelBinding::JsonMap(map) = &self.binding {
            if map.is_empty() {
                return Err(GovernanceError::new(
                    "Vercel env_map",
                    "{}",
                    "must map at least one JSON key",
                ));
            }
            let mut keys = std::collections::BTreeSet::new();
            for key in map.values() {
                if !keys.insert(key) {
                    return Err(GovernanceError::new(
                        "Vercel env_map",
                        key.as_str(),
                        "receives two JSON keys; each variable must come from one field",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Everything keyward knows about how one secret is governed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    pub secret_type: Label,
    pub domain: Label,
    pub owner: Label,
    pub classification: Classification,
    pub rotation: RotationPolicy,
    /// Regions the secret must be replicated to (besides its primary).
    pub replicas: Vec<Region>,
    /// IAM principals allowed to read the value.
    pub readers: Vec<PrincipalArn>,
    /// The environment's CI reader role (the template's `CiReaderRole`) may read the value.
    pub ci_read: bool,
    pub vercel: Option<VercelMapping>,
}

impl Governance {
    /// Cross-field rules that the individual types cannot check alone.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.rotation.validate()?;
        let mut regions = std::collections::BTreeSet::new();
        for region in &self.replicas {
            if !regions.insert(region) {
                return Err(GovernanceError::new(
                    "replica region",
                    region.as_str(),
                    "is listed twice",
                ));
            }
        }
        let mut readers = std::collections::BTreeSet::new();
        for reader in &self.readers {
            if !readers.insert(reader) {
                return Err(GovernanceError::new(
                    "reader",
                    reader.as_str(),
                    "is listed twice",
                ));
            }
        }
        // A CI job's credentials reach every step and action of the job: restricted values stay
        // with the principals named one by one in `readers`.
        if self.ci_read && self.classification == Classification::Restricted {
            return Err(GovernanceError::new(
                "ci_read",
                "true",
                "a restricted secret is never readable by the CI reader role",
            ));
        }
        if let Some(vercel) = &self.vercel {
            vercel.validate()?;
            vercel.permits(self.classification)?;
            if let VercelBinding::JsonMap(_) = vercel.binding
                && self.rotation.password.json_key.is_none()
                && self.rotation.strategy == RotationStrategy::Random
            {
                // A plain random secret is a single string, so there are no fields to explode.
                return Err(GovernanceError::new(
                    "Vercel env_map",
                    "{...}",
                    "needs a JSON secret; a `random` secret without json_key is a plain string (use `key`)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_interval_bounds() {
        assert!(RotationInterval::try_from(0).is_err());
        assert_eq!(RotationInterval::try_from(90).unwrap().days(), 90);
        let err = RotationInterval::try_from(120).unwrap_err().to_string();
        assert_eq!(err, "rotation interval `120` exceeds the 90-day maximum");
    }

    #[test]
    fn regions() {
        for ok in [
            "eu-west-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "il-central-1",
        ] {
            ok.parse::<Region>().unwrap();
        }
        for bad in [
            "",
            "eu",
            "EU-west-1",
            "eu-west",
            "eu-west-x",
            "eu_west_1",
            "eu-west-123",
        ] {
            assert!(bad.parse::<Region>().is_err(), "{bad}");
        }
    }

    #[test]
    fn principals() {
        for ok in [
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/payments-api",
            "arn:aws:iam::123456789012:role/service-role/app+x=y,z@w",
            "arn:aws-us-gov:iam::123456789012:user/alice",
        ] {
            ok.parse::<PrincipalArn>().unwrap();
        }
        for bad in [
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:group/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/*",
            "arn:aws:sts::123456789012:assumed-role/x/y",
            "arn:aws:s3:::bucket",
            "*",
        ] {
            assert!(bad.parse::<PrincipalArn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_keys() {
        "DATABASE_URL".parse::<EnvVarKey>().unwrap();
        "_x1".parse::<EnvVarKey>().unwrap();
        for bad in ["", "1ABC", "A-B", "TZ", "AWS_LAMBDA_FUNCTION_NAME", "a b"] {
            assert!(bad.parse::<EnvVarKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn vercel_targets() {
        assert_eq!(
            "preview".parse::<VercelTarget>().unwrap(),
            VercelTarget::Preview
        );
        assert_eq!(
            "staging".parse::<VercelTarget>().unwrap(),
            VercelTarget::Custom("staging".into())
        );
        assert!("stag ing".parse::<VercelTarget>().is_err());
    }

    fn mapping() -> VercelMapping {
        VercelMapping {
            project: "web".into(),
            team: Some("team_abc".into()),
            targets: vec![VercelTarget::Production, VercelTarget::Preview],
            git_branch: None,
            binding: VercelBinding::Key("API_KEY".parse().unwrap()),
            orphans: OrphanPolicy::Keep,
            on_edit: EditPolicy::Report,
            allow_restricted: false,
        }
    }

    #[test]
    fn vercel_mapping_rules() {
        mapping().validate().unwrap();
        let mut m = mapping();
        m.targets = vec![VercelTarget::Production];
        m.git_branch = Some("feature/x".into());
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("needs the preview target")
        );
        let mut m = mapping();
        m.targets.push(VercelTarget::Preview);
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        let mut m = mapping();
        m.targets.clear();
        assert!(m.validate().is_err());
        let mut m = mapping();
        m.binding = VercelBinding::JsonMap(BTreeMap::from([
            ("a".parse().unwrap(), "X".parse().unwrap()),
            ("b".parse().unwrap(), "X".parse().unwrap()),
        ]));
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("two JSON keys")
        );
    }

    #[test]
    fn password_policy_only_for_generating_strategies() {
        let policy = RotationPolicy {
            strategy: RotationStrategy::Auth0ClientSecret,
            interval: RotationInterval::try_from(30).unwrap(),
            password: PasswordPolicy {
                length: Some(32),
                ..Default::default()
            },
        };
        assert!(
            policy
                .validate()
                .unwrap_err()
                .to_string()
                .contains("does not generate passwords")
        );
        let short = PasswordPolicy {
            length: Some(8),
            ..Default::default()
        };
        assert!(
            short
                .validate()
                .unwrap_err()
                .to_string()
                .contains("between 16 and 4096")
        );
    }
}
