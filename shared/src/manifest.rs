//! The declared-secrets manifest: the secrets an organisation declares, per environment and
//! service, in YAML (one file or a directory of files), checked against `enums.yaml`.
//!
//! Loading collects every problem it finds, each pointing at its file and path
//! (`secrets[3].rotation.days: 120 exceeds the 90-day maximum`), and yields either a whole,
//! valid [`Manifest`] or nothing: callers never act on a half-read manifest.
//!
//! The published JSON Schemas (`schemas/manifest.schema.json`, `schemas/enums.schema.json`) are
//! generated from the document types below and checked in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::governance::{
    Classification, EditPolicy, EnvVarKey, Governance, GovernanceError, JsonKey, Label,
    MAX_ROTATION_DAYS, OrphanPolicy, PasswordPolicy, PrincipalArn, Region, RotationInterval,
    RotationPolicy, RotationStrategy, VercelBinding, VercelMapping, VercelTarget,
};
use crate::naming::{NameError, SecretName, Segment, SegmentKind};
use crate::tags;

pub const MANIFEST_VERSION: u32 = 1;
pub const ENUMS_FILE: &str = "enums.yaml";

// ---------------------------------------------------------------------------------------------
// Documents as written (the JSON Schema is derived from these).
// ---------------------------------------------------------------------------------------------

/// One manifest file. In a directory, `org` and `environments` may be given in any one file
/// (or repeated identically); `secrets` from all files are combined.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    feature = "schema",
    schemars(title = "keyward declared-secrets manifest")
)]
pub struct ManifestDocument {
    /// Manifest format version. Must be 1.
    pub version: u32,
    /// The organisation: the first segment of every secret name (`/<org>/<env>/<service>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The environments secrets may be declared in (e.g. dev, staging, prod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    #[serde(default)]
    pub secrets: Vec<SecretDecl>,
}

/// A secret declared for one service, in one or more environments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// The service segment of the name.
    pub service: String,
    /// The last segment of the name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A secret type from enums.yaml.
    #[serde(rename = "type")]
    pub secret_type: String,
    /// A domain from enums.yaml.
    pub domain: String,
    /// An owner from enums.yaml.
    pub owner: String,
    pub classification: Classification,
    /// Strategy and days are required here; environments may override any field.
    pub rotation: RotationDecl,
    /// Regions the secret is replicated to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// IAM principal ARNs allowed to read the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<String>,
    /// The environment's CI reader role may read the value (tag `keyward:ci-read`); never for
    /// a restricted secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ci_read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vercel: Option<VercelDecl>,
    /// For services on Kubernetes: the `ExternalSecret` that `keyward render` projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesDecl>,
    /// The environments the secret exists in: a list, or a map of environment to overrides.
    pub environments: EnvironmentsDecl,
}

/// How a secret reaches a Kubernetes workload through the External Secrets Operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KubernetesDecl {
    /// The namespace the `ExternalSecret` (and the Kubernetes Secret it creates) lives in.
    pub namespace: String,
    /// The Kubernetes Secret's name (default `<service>-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// How often the operator re-reads the value (default `1h`; e.g. `15m`, `1h`, `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// JSON fields to project one key each; absent: the whole value under `value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl KubernetesDecl {
    /// Every problem, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !is_dns_label(&self.namespace) {
            out.push(("namespace", format!("`{}` is not a Kubernetes namespace name (a DNS label: a-z, 0-9, `-`, at most 63)", self.namespace)));
        }
        if let Some(name) = &self.secret_name
            && (name.len() > 253 || !name.split('.').all(is_dns_label))
        {
            out.push((
                "secret_name",
                format!("`{name}` is not a Kubernetes Secret name (DNS subdomain)"),
            ));
        }
        if let Some(interval) = &self.refresh_interval {
            let digits = interval.trim_end_matches(['s', 'm', 'h']);
            let unit_ok = interval.len() > digits.len() && interval.len() - digits.len() == 1;
            if !unit_ok
                || digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.parse::<u64>().ok() == Some(0)
            {
                out.push((
                    "refresh_interval",
                    format!("`{interval}` is not a duration like 15m, 1h or 24h"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for p in &self.properties {
            // The operator reads `.` in a property as a path into nested JSON.
            if p.parse::<JsonKey>().is_err() || p.contains('.') {
                out.push((
                    "properties",
                    format!("`{p}` is not a top-level JSON field name (letters, digits, `_`, `-`)"),
                ));
            } else if !seen.insert(p) {
                out.push(("properties", format!("`{p}` is listed twice")));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RotationDecl {
    /// A rotation choice from enums.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Days between rotations: 1 to 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Generated password length (16 to 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    /// Characters never used in generated passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_characters: Option<String>,
    /// In a JSON secret, the field that is rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_key: Option<String>,
    /// `postgres-*` strategies: the database rotation logs in to. Rotation refuses a secret
    /// whose value names another host, port, database or master secret. An environment's
    /// `database` replaces the declaration's whole block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseTargetDecl>,
    /// `auth0-client-secret`: the tenant and the management secret rotation uses. Rotation
    /// refuses a secret whose value names another domain or management secret. An
    /// environment's `auth0` replaces the declaration's whole block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth0: Option<Auth0TargetDecl>,
}

/// Where a `postgres-*` rotation connects: declared here, never taken from the secret's value
/// (anyone who may write the value could otherwise send the master password elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DatabaseTargetDecl {
    /// Host name or IP address of the PostgreSQL server (no scheme, no port).
    pub host: String,
    /// Port (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database name (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// `postgres-alternating-users` only, and required there: the master secret by its keyward
    /// name `/<org>/<env>/<service>/<name>`, in the same organisation and environment and
    /// declared in this manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_secret: Option<String>,
}

/// Where an `auth0-client-secret` rotation calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Auth0TargetDecl {
    /// The tenant's domain: a host name (`acme.eu.auth0.com`, a custom domain) or an
    /// `https://` URL; `http://` only for 127.0.0.1 or localhost.
    pub domain: String,
    /// The secret holding the rotator application's `{client_id, client_secret}`, by its keyward
    /// name `/<org>/<env>/<service>/<name>`, in the same organisation and environment and
    /// declared in this manifest.
    pub management_secret: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VercelDecl {
    /// Project id (prj_...) or name.
    pub project: String,
    /// Team id (team_...) or slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// production, preview, development, or custom environment slugs/ids.
    pub targets: Vec<String>,
    /// Git branch for the preview record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// One variable holding the whole value...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// ...or one variable per JSON field (field -> variable key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_map: Option<BTreeMap<String, String>>,
    /// Variables keyward wrote that this mapping no longer asks for: `keep` (default) or
    /// `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphans: Option<OrphanPolicy>,
    /// A variable of keyward's edited by hand: `report` (default) or `overwrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_edit: Option<EditPolicy>,
    /// `true` lets a restricted secret go to Vercel; nothing else does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_restricted: Option<bool>,
}

/// Per-environment overrides of a secret declaration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Fields given here replace the secret's rotation fields one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationDecl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<Vec<String>>,
    /// Replaces the secret's `ci_read` in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_read: Option<bool>,
    /// Replaces the secret's Vercel mapping in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vercel: Option<VercelDecl>,
}

/// `environments: [dev, prod]` or `environments: {dev: {}, prod: {rotation: {days: 30}}}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum EnvironmentsDecl {
    List(Vec<String>),
    Map(BTreeMap<String, Option<EnvOverride>>),
}

impl<'de> Deserialize<'de> for EnvironmentsDecl {
    // Hand-written rather than `untagged`, so a bad entry reports its own path and message
    // instead of "data did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvironmentsDecl;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of environments or a map of environment to overrides")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut envs = Vec::new();
                while let Some(env) = seq.next_element::<String>()? {
                    envs.push(env);
                }
                Ok(EnvironmentsDecl::List(envs))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut envs = BTreeMap::new();
                while let Some(env) = map.next_key::<String>()? {
                    let value = map.next_value::<Option<EnvOverride>>()?;
                    if envs.insert(env.clone(), value).is_some() {
                        return Err(de::Error::custom(format!(
                            "environment `{env}` is listed twice"
                        )));
                    }
                }
                Ok(EnvironmentsDecl::Map(envs))
            }
        }
        deserializer.deserialize_any(EnvVisitor)
    }
}

/// `enums.yaml`: the allowed values validation enforces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(title = "keyward manifest enums"))]
pub struct EnumsDocument {
    /// Must be 1.
    pub version: u32,
    /// Secret types, each optionally restricting the rotation strategies it may use.
    pub secret_types: BTreeMap<String, SecretTypeDecl>,
    pub domains: Vec<String>,
    pub owners: Vec<String>,
    /// The rotation strategies this organisation allows.
    pub rotation: Vec<RotationStrategy>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretTypeDecl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Strategies allowed for this type; absent means any allowed strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Vec<RotationStrategy>>,
}

#[cfg(feature = "schema")]
pub fn manifest_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ManifestDocument)).unwrap_or_default()
}

#[cfg(feature = "schema")]
pub fn enums_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(EnumsDocument)).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// One problem, located by file and path inside the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManifestIssue {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ManifestIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.path.is_empty()) {
            (false, false) => write!(f, "{}: {}: {}", self.file, self.path, self.message),
            (false, true) => write!(f, "{}: {}", self.file, self.message),
            (true, false) => write!(f, "{}: {}", self.path, self.message),
            (true, true) => f.write_str(&self.message),
        }
    }
}

/// Every problem found; the manifest is unusable while any remains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub issues: Vec<ManifestIssue>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the manifest has {} problem(s):", self.issues.len())?;
        for issue in &self.issues {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Issues(BTreeSet<ManifestIssue>);

impl Issues {
    fn push(&mut self, file: &str, path: impl Into<String>, message: impl Into<String>) {
        self.0.insert(ManifestIssue {
            file: file.to_owned(),
            path: path.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The validated manifest.
// ---------------------------------------------------------------------------------------------

/// Where a declared secret came from, for error messages and drift evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredSecret {
    pub name: SecretName,
    pub description: Option<String>,
    pub governance: Governance,
    /// Where rotation sends the credential. Declared governance only: it is never written to
    /// tags (anyone with `TagResource` on one secret could change those).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_target: Option<RotationTarget>,
    pub kubernetes: Option<KubernetesDecl>,
    pub origin: Origin,
}

/// The declared destination of a rotation, resolved for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationTarget {
    Database(DatabaseTarget),
    Auth0(Auth0Target),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseTarget {
    /// As declared (compare host names ASCII case-insensitively).
    pub host: String,
    pub port: u16,
    pub dbname: String,
    /// Required for alternating users, absent for single user.
    #[serde(serialize_with = "serialize_opt_name")]
    pub master_secret: Option<SecretName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Auth0Target {
    /// As declared: a host name, an `https://` URL, or `http://` on loopback.
    pub domain: String,
    #[serde(serialize_with = "serialize_name")]
    pub management_secret: SecretName,
}

fn serialize_name<S: serde::Serializer>(name: &SecretName, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(name)
}

fn serialize_opt_name<S: serde::Serializer>(
    name: &Option<SecretName>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match name {
        Some(name) => s.collect_str(name),
        None => s.serialize_none(),
    }
}

impl RotationTarget {
    /// The secret rotation reads credentials from (master or management secret).
    pub fn linked_secret(&self) -> Option<&SecretName> {
        match self {
            Self::Database(d) => d.master_secret.as_ref(),
            Self::Auth0(a) => Some(&a.management_secret),
        }
    }
}

/// A host name (letters, digits, `-` in dot-separated labels) or an IP address; no scheme,
/// port or path.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An Auth0 domain as rotation accepts it: `host[:port]`, `https://host[:port]`, or
/// `http://` with 127.0.0.1 or localhost.
pub fn valid_auth0_domain(domain: &str) -> Result<(), &'static str> {
    let domain = domain.strip_suffix('/').unwrap_or(domain);
    let (scheme, rest) = match domain.split_once("://") {
        Some(("https", rest)) => ("https", rest),
        Some(("http", rest)) => ("http", rest),
        Some(_) => return Err("must be a host name or an https:// URL"),
        None => ("https", domain),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if !valid_host(host) || host.contains(':') {
        return Err("must be a host name such as tenant.eu.auth0.com, without a path");
    }
    if let Some(port) = port
        && port.parse::<u16>().ok().filter(|p| *p != 0).is_none()
    {
        return Err("has a port that is not 1-65535");
    }
    if scheme == "http" && !matches!(host, "127.0.0.1" | "localhost") {
        return Err("uses plain http://, which keyward accepts only for 127.0.0.1 and localhost");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enums {
    pub secret_types: BTreeMap<String, Option<Vec<RotationStrategy>>>,
    pub domains: BTreeSet<String>,
    pub owners: BTreeSet<String>,
    pub rotation: Vec<RotationStrategy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub org: Segment,
    pub environments: Vec<Segment>,
    pub enums: Enums,
    /// Sorted by name.
    pub secrets: Vec<DeclaredSecret>,
}

impl Manifest {
    /// Builds the manifest from already-read files: `enums.yaml` plus every other `.yaml`/`.yml`.
    pub fn from_files(files: &[(String, String)]) -> Result<Manifest, String> {
        let enums = files
            .iter()
            .find(|(name, _)| name.rsplit('/').next() == Some(ENUMS_FILE))
            .ok_or_else(|| format!("no {ENUMS_FILE} beside the manifest files"))?;
        let documents: Vec<(&str, &str)> = files
            .iter()
            .filter(|(name, _)| {
                name.rsplit('/').next() != Some(ENUMS_FILE)
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
            })
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        if documents.is_empty() {
            return Err("no manifest files found".into());
        }
        Manifest::from_sources(&documents, (enums.0.as_str(), enums.1.as_str()))
            .map_err(|e| e.to_string())
    }

    pub fn secret(&self, name: &SecretName) -> Option<&DeclaredSecret> {
        self.secrets
            .binary_search_by(|s| s.name.cmp(name))
            .ok()
            .map(|i| &self.secrets[i])
    }

    /// The secrets declared for one environment and, optionally, one service.
    pub fn scope<'a>(
        &'a self,
        env: &'a str,
        service: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DeclaredSecret> {
        self.secrets.iter().filter(move |s| {
            s.name.env().as_str() == env
                && service.is_none_or(|svc| s.name.service().as_str() == svc)
        })
    }

    /// Loads a manifest file, or every `*.yaml`/`*.yml` in a directory (except `enums.yaml`),
    /// with `enums.yaml` from the same directory (or beside the file).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let fail = |file: &Path, message: String| ManifestError {
            issues: vec![ManifestIssue {
                file: file.display().to_string(),
                path: String::new(),
                message,
            }],
        };
        let (files, enums_path) = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| fail(path, format!("cannot read the manifest directory: {e}")))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        && p.file_name().and_then(|n| n.to_str()) != Some(ENUMS_FILE)
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(fail(path, "holds no manifest files (*.yaml)".to_owned()));
            }
            (files, path.join(ENUMS_FILE))
        } else {
            let parent = path.parent().unwrap_or(Path::new("."));
            (vec![path.to_path_buf()], parent.join(ENUMS_FILE))
        };
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| fail(p, format!("cannot read: {e}")));
        let enums_text = read(&enums_path)?;
        let mut sources = Vec::with_capacity(files.len());
        for file in &files {
            sources.push((file.display().to_string(), read(file)?));
        }
        let sources: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        Self::from_sources(&sources, (&enums_path.display().to_string(), &enums_text))
    }

    /// Parses and validates manifest documents given as (file label, YAML text).
    pub fn from_sources(
        documents: &[(&str, &str)],
        enums: (&str, &str),
    ) -> Result<Self, ManifestError> {
        let mut issues = Issues::default();
        let enums_doc = parse_yaml::<EnumsDocument>(enums.0, enums.1, &mut issues);
        let docs: Vec<(&str, ManifestDocument)> = documents
            .iter()
            .filter_map(|(file, text)| {
                parse_yaml::<ManifestDocument>(file, text, &mut issues).map(|d| (*file, d))
            })
            .collect();
        // Syntax and shape errors come first: semantic checks on a half-parsed set would only
        // add noise (and "missing" errors for secrets that are merely unparsed).
        if !issues.0.is_empty() {
            return Err(ManifestError {
                issues: issues.0.into_iter().collect(),
            });
        }
        let Some(enums_doc) = enums_doc else {
            unreachable!("no parse issue implies the enums parsed");
        };
        let enums = validate_enums(enums.0, &enums_doc, &mut issues);
        let (org, environments) = resolve_header(&docs, &mut issues);
        let mut secrets: BTreeMap<SecretName, DeclaredSecret> = BTreeMap::new();
        if let (Some(org), Some(environments)) = (&org, &environments) {
            for (file, doc) in &docs {
                if doc.version != MANIFEST_VERSION {
                    issues.push(
                        file,
                        "version",
                        format!(
                            "{} is not a supported manifest version (expected {MANIFEST_VERSION})",
                            doc.version
                        ),
                    );
                    continue;
                }
                for (index, decl) in doc.secrets.iter().enumerate() {
                    let ctx = DeclContext {
                        file,
                        base: format!("secrets[{index}]"),
                        org,
                        environments,
                        enums: &enums,
                    };
                    for declared in expand(&ctx, decl, &mut issues) {
                        match secrets.get(&declared.name) {
                            Some(existing) => issues.push(
                                file,
                                declared.origin.path.clone(),
                                format!(
                                    "{} is declared twice (also at {}: {})",
                                    declared.name, existing.origin.file, existing.origin.path
                                ),
                            ),
                            None => {
                                secrets.insert(declared.name.clone(), declared);
                            }
                        }
                    }
                }
            }
        }
        // A master or management secret must itself be declared (and so governed).
        for declared in secrets.values() {
            if let Some(linked) = declared
                .rotation_target
                .as_ref()
                .and_then(RotationTarget::linked_secret)
                && !secrets.contains_key(linked)
            {
                let field = match declared.rotation_target {
                    Some(RotationTarget::Auth0(_)) => "auth0.management_secret",
                    _ => "database.master_secret",
                };
                issues.push(
                    &declared.origin.file,
                    declared.origin.path.clone(),
                    format!("rotation.{field} names {linked}, which the manifest does not declare"),
                );
            }
        }
        if !issues.0.is_empty() {
            return Err(ManifestError {
                issues: issues.0.into_iter().collect(),
            });
        }
        let (Some(org), Some(environments)) = (org, environments) else {
            unreachable!("header problems are issues");
        };
        Ok(Self {
            org,
            environments,
            enums,
            secrets: secrets.into_values().collect(),
        })
    }
}

fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    issues: &mut Issues,
) -> Option<T> {
    // serde_yaml_ng's errors already carry the path (`secrets[0].rotation.days: ...`) and the
    // line and column, which is exactly what a person fixing the file needs.
    match serde_yaml_ng::from_str::<T>(text) {
        Ok(value) => Some(value),
        Err(err) => {
            issues.push(file, String::new(), err.to_string());
            None
        }
    }
}

fn validate_enums(file: &str, doc: &EnumsDocument, issues: &mut Issues) -> Enums {
    if doc.version != MANIFEST_VERSION {
        issues.push(
            file,
            "version",
            format!(
                "{} is not a supported enums version (expected {MANIFEST_VERSION})",
                doc.version
            ),
        );
    }
    let mut check_labels = |field: &str, values: &mut dyn Iterator<Item = &String>| {
        let mut seen = BTreeSet::new();
        for (i, value) in values.enumerate() {
            if let Err(e) = value.parse::<Label>() {
                issues.push(file, format!("{field}[{i}]"), e.to_string());
            }
            if !seen.insert(value.clone()) {
                issues.push(
                    file,
                    format!("{field}[{i}]"),
                    format!("`{value}` is listed twice"),
                );
            }
        }
        seen
    };
    check_labels("secret_types", &mut doc.secret_types.keys());
    let domains = check_labels("domains", &mut doc.domains.iter());
    let owners = check_labels("owners", &mut doc.owners.iter());
    if doc.rotation.is_empty() {
        issues.push(
            file,
            "rotation",
            "must allow at least one rotation strategy",
        );
    }
    for (name, decl) in &doc.secret_types {
        for (i, strategy) in decl.rotation.iter().flatten().enumerate() {
            if !doc.rotation.contains(strategy) {
                issues.push(
                    file,
                    format!("secret_types.{name}.rotation[{i}]"),
                    format!("`{strategy}` is not in the top-level rotation list"),
                );
            }
        }
    }
    Enums {
        secret_types: doc
            .secret_types
            .iter()
            .map(|(k, v)| (k.clone(), v.rotation.clone()))
            .collect(),
        domains,
        owners,
        rotation: doc.rotation.clone(),
    }
}

fn resolve_header(
    docs: &[(&str, ManifestDocument)],
    issues: &mut Issues,
) -> (Option<Segment>, Option<Vec<Segment>>) {
    let mut org: Option<(&str, &String)> = None;
    let mut envs: Option<(&str, &Vec<String>)> = None;
    for (file, doc) in docs {
        if let Some(o) = &doc.org {
            match org {
                Some((first_file, first)) if first != o => issues.push(
                    file,
                    "org",
                    format!("`{o}` conflicts with org `{first}` declared in {first_file}"),
                ),
                _ => org = Some((file, o)),
            }
        }
        if let Some(e) = &doc.environments {
            match envs {
                Some((first_file, first)) if first != e => issues.push(
                    file,
                    "environments",
                    format!("conflicts with the environments declared in {first_file}"),
                ),
                _ => envs = Some((file, e)),
            }
        }
    }
    let first_file = docs.first().map(|(f, _)| *f).unwrap_or("");
    let org = match org {
        None => {
            issues.push(first_file, "org", "no manifest file declares the org");
            None
        }
        Some((file, o)) => Segment::parse(SegmentKind::Org, o)
            .map_err(|e| issues.push(file, "org", segment_message(&e)))
            .ok(),
    };
    let envs = match envs {
        None => {
            issues.push(
                first_file,
                "environments",
                "no manifest file declares the environments",
            );
            None
        }
        Some((file, list)) => {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, env) in list.iter().enumerate() {
                match Segment::parse(SegmentKind::Env, env) {
                    Ok(seg) if seen.insert(seg.clone()) => out.push(seg),
                    Ok(_) => issues.push(
                        file,
                        format!("environments[{i}]"),
                        format!("`{env}` is listed twice"),
                    ),
                    Err(e) => issues.push(file, format!("environments[{i}]"), segment_message(&e)),
                }
            }
            if list.is_empty() {
                issues.push(file, "environments", "must list at least one environment");
            }
            Some(out)
        }
    };
    (org, envs)
}

fn segment_message(err: &NameError) -> String {
    match err {
        NameError::InvalidSegment {
            segment, reason, ..
        } => format!("`{segment}` {reason}"),
        NameError::EmptySegment { .. } => "must not be empty".to_owned(),
        other => other.to_string(),
    }
}

struct DeclContext<'a> {
    file: &'a str,
    base: String,
    org: &'a Segment,
    environments: &'a [Segment],
    enums: &'a Enums,
}

/// A value together with the path it was written at, so merged fields report the right place.
struct At<'a, T> {
    value: &'a T,
    path: String,
}

fn at<T>(value: &T, path: String) -> At<'_, T> {
    At { value, path }
}

/// Turns one declaration into one [`DeclaredSecret`] per environment.
fn expand(ctx: &DeclContext, decl: &SecretDecl, issues: &mut Issues) -> Vec<DeclaredSecret> {
    let base = &ctx.base;
    let file = ctx.file;
    let service = Segment::parse(SegmentKind::Service, &decl.service)
        .map_err(|e| issues.push(file, format!("{base}.service"), segment_message(&e)))
        .ok();
    let name = Segment::parse(SegmentKind::Name, &decl.name)
        .map_err(|e| issues.push(file, format!("{base}.name"), segment_message(&e)))
        .ok();
    let label = |field: &str,
                 value: &str,
                 allowed: &dyn Fn(&str) -> bool,
                 list: String,
                 issues: &mut Issues| {
        match value.parse::<Label>() {
            Err(e) => {
                issues.push(file, format!("{base}.{field}"), e.to_string());
                None
            }
            Ok(_) if !allowed(value) => {
                issues.push(
                    file,
                    format!("{base}.{field}"),
                    format!("`{value}` is not a {field} declared in enums.yaml ({list})"),
                );
                None
            }
            Ok(l) => Some(l),
        }
    };
    let enums = ctx.enums;
    let secret_type = label(
        "type",
        &decl.secret_type,
        &|v| enums.secret_types.contains_key(v),
        enums
            .secret_types
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        issues,
    );
    let domain = label(
        "domain",
        &decl.domain,
        &|v| enums.domains.contains(v),
        enums.domains.iter().cloned().collect::<Vec<_>>().join(", "),
        issues,
    );
    let owner = label(
        "owner",
        &decl.owner,
        &|v| enums.owners.contains(v),
        enums.owners.iter().cloned().collect::<Vec<_>>().join(", "),
        issues,
    );

    let envs: Vec<(String, String, Option<&EnvOverride>)> = match &decl.environments {
        EnvironmentsDecl::List(list) => list
            .iter()
            .enumerate()
            .map(|(i, e)| (e.clone(), format!("{base}.environments[{i}]"), None))
            .collect(),
        EnvironmentsDecl::Map(map) => map
            .iter()
            .map(|(e, o)| (e.clone(), format!("{base}.environments.{e}"), o.as_ref()))
            .collect(),
    };
    if envs.is_empty() {
        issues.push(
            file,
            format!("{base}.environments"),
            "must name at least one environment",
        );
    }
    // Reported with the declaration's other problems; the secret is dropped at the end.
    let mut kubernetes_ok = true;
    if let Some(k8s) = &decl.kubernetes {
        for (field, message) in k8s.problems() {
            issues.push(file, format!("{base}.kubernetes.{field}"), message);
            kubernetes_ok = false;
        }
    }
    let mut out = Vec::new();
    let mut seen_envs = BTreeSet::new();
    for (env, env_path, overrides) in envs {
        if !seen_envs.insert(env.clone()) {
            issues.push(
                file,
                env_path.clone(),
                format!("environment `{env}` is listed twice"),
            );
            continue;
        }
        let Some(env_seg) = ctx.environments.iter().find(|s| s.as_str() == env) else {
            let declared: Vec<&str> = ctx.environments.iter().map(Segment::as_str).collect();
            issues.push(
                file,
                env_path,
                format!(
                    "`{env}` is not a declared environment ({})",
                    declared.join(", ")
                ),
            );
            continue;
        };
        let governance = resolve_governance(
            ctx,
            decl,
            overrides,
            &env_path,
            secret_type.as_ref(),
            issues,
        );
        let (
            Some(service),
            Some(name),
            Some(secret_type),
            Some(domain),
            Some(owner),
            Some(ResolvedGovernance {
                classification,
                rotation,
                replicas,
                readers,
                ci_read,
                vercel,
            }),
        ) = (&service, &name, &secret_type, &domain, &owner, governance)
        else {
            continue;
        };
        let secret_name = match SecretName::new(
            ctx.org.clone(),
            env_seg.clone(),
            service.clone(),
            name.clone(),
        ) {
            Ok(n) => n,
            Err(e) => {
                issues.push(file, format!("{base}.name"), e.to_string());
                continue;
            }
        };
        let governance = Governance {
            secret_type: secret_type.clone(),
            domain: domain.clone(),
            owner: owner.clone(),
            classification,
            rotation,
            replicas,
            readers,
            ci_read,
            vercel,
        };
        let where_ = if overrides.is_some() {
            env_path.clone()
        } else {
            base.clone()
        };
        if let Err(e) = governance.validate() {
            issues.push(file, where_.clone(), e.to_string());
            continue;
        }
        // Everything declared must also be storable as tags.
        if let Err(e) = tags::encode(&governance) {
            issues.push(file, where_, e.to_string());
            continue;
        }
        let paths = DeclPaths {
            base,
            env_path: &env_path,
        };
        let Ok(rotation_target) = resolve_target(
            file,
            decl,
            overrides.and_then(|o| o.rotation.as_ref()),
            &paths,
            &secret_name,
            governance.rotation.strategy,
            issues,
        ) else {
            continue;
        };
        out.push(DeclaredSecret {
            name: secret_name,
            description: decl.description.clone(),
            governance,
            rotation_target,
            kubernetes: decl.kubernetes.clone(),
            origin: Origin {
                file: file.to_owned(),
                path: env_path,
            },
        });
    }
    if kubernetes_ok { out } else { Vec::new() }
}

/// The governance fields of one secret in one environment, the override applied.
struct ResolvedGovernance {
    classification: Classification,
    rotation: RotationPolicy,
    replicas: Vec<Region>,
    readers: Vec<PrincipalArn>,
    ci_read: bool,
    vercel: Option<VercelMapping>,
}

/// Where one secret's declaration and its environment override sit, for naming fields.
struct DeclPaths<'a> {
    /// The declaration: `secrets[3]`.
    base: &'a str,
    /// The environment's override: `secrets[3].environments.prod`.
    env_path: &'a str,
}

impl DeclPaths<'_> {
    fn over(&self, field: &str) -> String {
        format!("{}.{field}", self.env_path)
    }
}

fn resolve_governance(
    ctx: &DeclContext,
    decl: &SecretDecl,
    overrides: Option<&EnvOverride>,
    env_path: &str,
    secret_type: Option<&Label>,
    issues: &mut Issues,
) -> Option<ResolvedGovernance> {
    let paths = DeclPaths {
        base: &ctx.base,
        env_path,
    };
    let file = ctx.file;
    let classification = overrides
        .and_then(|o| o.classification)
        .unwrap_or(decl.classification);
    let mut ok = true;
    let rotation = resolve_rotation(
        ctx,
        decl,
        overrides.and_then(|o| o.rotation.as_ref()),
        &paths,
        secret_type,
        issues,
    );

    // Replicas and readers: the override's list replaces the declaration's.
    let (replicas_src, replicas_path) = match overrides.and_then(|o| o.replicas.as_ref()) {
        Some(list) => (list, paths.over("replicas")),
        None => (&decl.replicas, format!("{}.replicas", paths.base)),
    };
    let replicas = parse_list::<Region>(file, &replicas_path, replicas_src, issues, &mut ok);
    let (readers_src, readers_path) = match overrides.and_then(|o| o.readers.as_ref()) {
        Some(list) => (list, paths.over("readers")),
        None => (&decl.readers, format!("{}.readers", paths.base)),
    };
    let readers = parse_list::<PrincipalArn>(file, &readers_path, readers_src, issues, &mut ok);
    let ci_read = overrides.and_then(|o| o.ci_read).unwrap_or(decl.ci_read);

    let vercel = match overrides.and_then(|o| o.vercel.as_ref()) {
        Some(v) => resolve_vercel(file, &paths.over("vercel"), v, issues, &mut ok),
        None => decl.vercel.as_ref().and_then(|v| {
            resolve_vercel(file, &format!("{}.vercel", paths.base), v, issues, &mut ok)
        }),
    };

    let (Some(rotation), true) = (rotation, ok) else {
        return None;
    };
    Some(ResolvedGovernance {
        classification,
        rotation,
        replicas,
        readers,
        ci_read,
        vercel,
    })
}

/// A rotation field from the override when given there, else from the declaration, with the
/// path it was read at.
fn rotation_field<'a, T>(
    over: Option<&'a RotationDecl>,
    decl: &'a RotationDecl,
    paths: &DeclPaths<'_>,
    field: &str,
    get: fn(&RotationDecl) -> &Option<T>,
) -> Option<At<'a, T>> {
    if let Some(v) = over.and_then(|o| get(o).as_ref()) {
        return Some(at(v, paths.over(&format!("rotation.{field}"))));
    }
    get(decl)
        .as_ref()
        .map(|v| at(v, format!("{}.rotation.{field}", paths.base)))
}

/// The declared rotation destination (`rotation.database` / `rotation.auth0`), the override's
/// block replacing the declaration's. `Err` when a problem was recorded.
fn resolve_target(
    file: &str,
    decl: &SecretDecl,
    over: Option<&RotationDecl>,
    paths: &DeclPaths<'_>,
    secret: &SecretName,
    strategy: RotationStrategy,
    issues: &mut Issues,
) -> Result<Option<RotationTarget>, ()> {
    let declared = &decl.rotation;
    let database = rotation_field(over, declared, paths, "database", |r| &r.database);
    let auth0 = rotation_field(over, declared, paths, "auth0", |r| &r.auth0);
    let link = Linking { file, secret };
    let mut ok = true;
    let mut target = None;
    if let Some(at) = database {
        match resolve_database(&link, at, strategy, issues) {
            Some(database) => target = Some(RotationTarget::Database(database)),
            None => ok = false,
        }
    }
    if let Some(at) = auth0 {
        match resolve_auth0(&link, at, strategy, issues) {
            Some(auth0) => target = Some(RotationTarget::Auth0(auth0)),
            None => ok = false,
        }
    }
    if ok { Ok(target) } else { Err(()) }
}

/// Where a declaration names a linked secret: its file, and the secret declaring it.
struct Linking<'a> {
    file: &'a str,
    secret: &'a SecretName,
}

impl Linking<'_> {
    /// A linked secret: a keyward name in the same organisation and environment, not the secret
    /// itself. Whether the manifest declares it is checked once every secret is known.
    fn linked(&self, path: String, value: &str, issues: &mut Issues) -> Option<SecretName> {
        let (file, secret) = (self.file, self.secret);
        match value.parse::<SecretName>() {
            Err(e) => {
                issues.push(
                    file,
                    path,
                    format!("`{value}` is not a keyward secret name: {e}"),
                );
                None
            }
            Ok(name) if name.org() != secret.org() || name.env() != secret.env() => {
                issues.push(
                    file,
                    path,
                    format!(
                        "`{value}` is outside {}: a linked secret must be in the same organisation and environment",
                        SecretName::env_prefix(secret.org(), secret.env())
                    ),
                );
                None
            }
            Ok(name) if &name == secret => {
                issues.push(file, path, "names the secret itself");
                None
            }
            Ok(name) => Some(name),
        }
    }
}

/// `rotation.database`: where a postgres rotation logs in. `None` when anything is wrong (each
/// problem recorded).
fn resolve_database(
    link: &Linking<'_>,
    At { value, path }: At<'_, DatabaseTargetDecl>,
    strategy: RotationStrategy,
    issues: &mut Issues,
) -> Option<DatabaseTarget> {
    use RotationStrategy as S;
    let file = link.file;
    let mut ok = true;
    if !matches!(
        strategy,
        S::PostgresSingleUser | S::PostgresAlternatingUsers
    ) {
        issues.push(
            file,
            path.clone(),
            format!("is only for postgres-single-user and postgres-alternating-users rotation, not `{strategy}`"),
        );
        ok = false;
    }
    if !valid_host(&value.host) {
        issues.push(
            file,
            format!("{path}.host"),
            format!(
                "`{}` is not a host name or IP address (no scheme, port or path)",
                value.host
            ),
        );
        ok = false;
    }
    if value.port == Some(0) {
        issues.push(file, format!("{path}.port"), "must be 1-65535");
        ok = false;
    }
    if let Some(dbname) = &value.dbname
        && (dbname.is_empty() || dbname.len() > 63)
    {
        issues.push(
            file,
            format!("{path}.dbname"),
            "must be 1 to 63 bytes (PostgreSQL's identifier limit)",
        );
        ok = false;
    }
    let master = match (&value.master_secret, strategy) {
        (None, S::PostgresAlternatingUsers) => {
            issues.push(
                file,
                format!("{path}.master_secret"),
                "is required for postgres-alternating-users: the secret of the user that manages the application users",
            );
            ok = false;
            None
        }
        (Some(_), S::PostgresSingleUser) => {
            issues.push(
                file,
                format!("{path}.master_secret"),
                "is only for postgres-alternating-users; single-user rotation logs in as the user itself",
            );
            ok = false;
            None
        }
        (Some(m), _) => {
            let parsed = link.linked(format!("{path}.master_secret"), m, issues);
            ok &= parsed.is_some();
            parsed
        }
        (None, _) => None,
    };
    ok.then(|| DatabaseTarget {
        host: value.host.clone(),
        port: value.port.unwrap_or(5432),
        dbname: value.dbname.clone().unwrap_or_else(|| "postgres".into()),
        master_secret: master,
    })
}

/// `rotation.auth0`: the tenant and management secret an Auth0 rotation uses. `None` when
/// anything is wrong (each problem recorded).
fn resolve_auth0(
    link: &Linking<'_>,
    At { value, path }: At<'_, Auth0TargetDecl>,
    strategy: RotationStrategy,
    issues: &mut Issues,
) -> Option<Auth0Target> {
    let file = link.file;
    let mut ok = true;
    if strategy != RotationStrategy::Auth0ClientSecret {
        issues.push(
            file,
            path.clone(),
            format!("is only for auth0-client-secret rotation, not `{strategy}`"),
        );
        ok = false;
    }
    if let Err(problem) = valid_auth0_domain(&value.domain) {
        issues.push(
            file,
            format!("{path}.domain"),
            format!("`{}` {problem}", value.domain),
        );
        ok = false;
    }
    let management = link.linked(
        format!("{path}.management_secret"),
        &value.management_secret,
        issues,
    );
    match (management, ok) {
        (Some(management_secret), true) => Some(Auth0Target {
            domain: value.domain.clone(),
            management_secret,
        }),
        _ => None,
    }
}

/// The rotation policy: each field from the override when given there, else from the
/// declaration. Every problem is recorded; `None` when there was one.
fn resolve_rotation(
    ctx: &DeclContext,
    decl: &SecretDecl,
    over: Option<&RotationDecl>,
    paths: &DeclPaths<'_>,
    secret_type: Option<&Label>,
    issues: &mut Issues,
) -> Option<RotationPolicy> {
    let file = ctx.file;
    let base = paths.base;
    let declared = &decl.rotation;
    let strategy = rotation_field(over, declared, paths, "strategy", |r| &r.strategy);
    let days = rotation_field(over, declared, paths, "days", |r| &r.days);
    let length = rotation_field(over, declared, paths, "length", |r| &r.length);
    let exclude = rotation_field(over, declared, paths, "exclude_characters", |r| {
        &r.exclude_characters
    });
    let json_key = rotation_field(over, declared, paths, "json_key", |r| &r.json_key);

    let mut ok = true;
    let strategy = match strategy {
        None => {
            issues.push(file, format!("{base}.rotation.strategy"), "is required");
            ok = false;
            None
        }
        Some(at) => parse_strategy(ctx, at, secret_type, issues),
    };
    let interval = match days {
        None => {
            issues.push(file, format!("{base}.rotation.days"), "is required");
            ok = false;
            None
        }
        Some(at) => parse_interval(file, at, issues),
    };
    let json_key = match json_key {
        None => None,
        Some(At { value, path }) => match value.parse::<JsonKey>() {
            Ok(k) => Some(k),
            Err(e) => {
                issues.push(file, path, e.to_string());
                ok = false;
                None
            }
        },
    };
    let password = PasswordPolicy {
        length: length.as_ref().map(|l| *l.value),
        exclude_characters: exclude.as_ref().map(|e| e.value.clone()),
        json_key,
    };
    if let Err(e) = password.validate() {
        let path = match e.what {
            "password length" => length.map(|l| l.path),
            _ => exclude.map(|e| e.path),
        }
        .unwrap_or_else(|| format!("{base}.rotation"));
        issues.push(file, path, e.to_string());
        ok = false;
    }
    let (Some(strategy), Some(interval), true) = (strategy, interval, ok) else {
        return None;
    };
    Some(RotationPolicy {
        strategy,
        interval,
        password,
    })
}

/// A rotation strategy that parses, that enums.yaml allows, and that the secret type allows.
fn parse_strategy(
    ctx: &DeclContext,
    At { value, path }: At<'_, String>,
    secret_type: Option<&Label>,
    issues: &mut Issues,
) -> Option<RotationStrategy> {
    let file = ctx.file;
    let s = match value.parse::<RotationStrategy>() {
        Err(e) => {
            issues.push(file, path, e.to_string());
            return None;
        }
        Ok(s) => s,
    };
    if !ctx.enums.rotation.contains(&s) {
        let allowed: Vec<&str> = ctx.enums.rotation.iter().map(|r| r.as_str()).collect();
        issues.push(
            file,
            path,
            format!(
                "`{s}` is not a rotation choice allowed in enums.yaml ({})",
                allowed.join(", ")
            ),
        );
        return None;
    }
    let type_allows = secret_type
        .and_then(|t| ctx.enums.secret_types.get(t.as_str()))
        .and_then(|allowed| allowed.as_ref());
    if let (Some(allowed), Some(t)) = (type_allows, secret_type)
        && !allowed.contains(&s)
    {
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        issues.push(
            file,
            path,
            format!(
                "`{s}` is not allowed for secret type `{t}` (allowed: {})",
                names.join(", ")
            ),
        );
        return None;
    }
    Some(s)
}

/// A rotation interval of 1 to the maximum days.
fn parse_interval(
    file: &str,
    At { value, path }: At<'_, u32>,
    issues: &mut Issues,
) -> Option<RotationInterval> {
    match RotationInterval::try_from(*value) {
        Ok(i) => Some(i),
        Err(_) if *value == 0 => {
            issues.push(file, path, "must be at least 1 day");
            None
        }
        Err(_) => {
            issues.push(
                file,
                path,
                format!("{value} exceeds the {MAX_ROTATION_DAYS}-day maximum"),
            );
            None
        }
    }
}

fn parse_list<T: std::str::FromStr<Err = GovernanceError>>(
    file: &str,
    path: &str,
    values: &[String],
    issues: &mut Issues,
    ok: &mut bool,
) -> Vec<T> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match v.parse::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                issues.push(file, format!("{path}[{i}]"), e.to_string());
                *ok = false;
                None
            }
        })
        .collect()
}

fn resolve_vercel(
    file: &str,
    path: &str,
    decl: &VercelDecl,
    issues: &mut Issues,
    ok: &mut bool,
) -> Option<VercelMapping> {
    let targets =
        parse_list::<VercelTarget>(file, &format!("{path}.targets"), &decl.targets, issues, ok);
    let binding = match (&decl.key, &decl.env_map) {
        (Some(_), Some(_)) => {
            issues.push(file, path, "set either `key` or `env_map`, not both");
            *ok = false;
            None
        }
        (None, None) => {
            issues.push(
                file,
                path,
                "needs `key` (one variable) or `env_map` (one variable per JSON field)",
            );
            *ok = false;
            None
        }
        (Some(key), None) => match key.parse::<EnvVarKey>() {
            Ok(k) => Some(VercelBinding::Key(k)),
            Err(e) => {
                issues.push(file, format!("{path}.key"), e.to_string());
                *ok = false;
                None
            }
        },
        (None, Some(map)) => {
            let mut out = BTreeMap::new();
            for (field, key) in map {
                let field_ok = field.parse::<JsonKey>();
                let key_ok = key.parse::<EnvVarKey>();
                match (field_ok, key_ok) {
                    (Ok(f), Ok(k)) => {
                        out.insert(f, k);
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        issues.push(file, format!("{path}.env_map.{field}"), e.to_string());
                        *ok = false;
                    }
                }
            }
            Some(VercelBinding::JsonMap(out))
        }
    }?;
    let mapping = VercelMapping {
        project: decl.project.clone(),
        team: decl.team.clone(),
        targets,
        git_branch: decl.branch.clone(),
        binding,
        orphans: decl.orphans.unwrap_or_default(),
        on_edit: decl.on_edit.unwrap_or_default(),
        allow_restricted: decl.allow_restricted.unwrap_or(false),
    };
    if let Err(e) = mapping.validate() {
        let field = match e.what {
            "Vercel project" => ".project",
            "Vercel team" => ".team",
            "Vercel targets" | "Vercel target" => ".targets",
            "Vercel git branch" => ".branch",
            _ => ".env_map",
        };
        issues.push(file, format!("{path}{field}"), e.to_string());
        *ok = false;
        return None;
    }
    Some(mapping)
}

#[cfg(test)]
mod tests;
