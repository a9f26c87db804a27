//! The tag contract: how a secret's [`Governance`] is stored as Secrets Manager tags, so every
//! function can read it from `ListSecrets`/`DescribeSecret` alone (no side database).
//!
//! | tag key                         | value                                            |
//! |---------------------------------|--------------------------------------------------|
//! | `keyward:contract`              | `1` (the contract version)                       |
//! | `keyward:type`                  | secret type label from `enums.yaml`              |
//! | `keyward:domain`                | domain label                                     |
//! | `keyward:owner`                 | owner label                                      |
//! | `keyward:classification`        | `public` `internal` `confidential` `restricted`  |
//! | `keyward:rotation`              | rotation strategy                                |
//! | `keyward:rotation-days`         | 1..=90                                           |
//! | `keyward:password-length`       | optional, 16..=4096                              |
//! | `keyward:password-exclude`      | optional; verbatim, or `b64:<base64>` when the set holds characters tags forbid |
//! | `keyward:json-key`              | optional JSON field rotated in a JSON secret     |
//! | `keyward:replicas`              | optional, space-separated regions                |
//! | `keyward:reader:<n>`            | one allowed reader ARN per tag, n = 1, 2, ...    |
//! | `keyward:vercel:project`        | Vercel project id or name                        |
//! | `keyward:vercel:team`           | optional team id or slug                         |
//! | `keyward:vercel:targets`        | space-separated targets / custom environments    |
//! | `keyward:vercel:branch`         | optional preview git branch                      |
//! | `keyward:vercel:key`            | env var key for the whole value, or ...          |
//! | `keyward:vercel:map:<json-key>` | ... one env var key per JSON field               |
//! | `keyward:vercel:orphans`        | optional `keep` (default) or `delete`            |
//! | `keyward:vercel:on-edit`        | optional `report` (default) or `overwrite`       |
//! | `keyward:vercel:allow-restricted` | `true`: a restricted secret may go to Vercel   |
//! | `keyward:ci-read`               | `true`: the environment's CI reader role may read the value |
//!
//! AWS limits: 50 tags per resource, keys up to 128 and values up to 256 characters, values
//! drawn from letters, digits, spaces and `_ . : / = + - @`. keyward uses at most
//! [`MAX_KEYWARD_TAGS`], leaving room for the owner's own tags. Decoding is strict: an unknown
//! `keyward:` tag is an error, because a misspelt tag would otherwise silently drop governance.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::governance::{
    Classification, EditPolicy, Governance, GovernanceError, OrphanPolicy, PasswordPolicy,
    RotationInterval, RotationPolicy, VercelBinding, VercelMapping, VercelTarget, is_tag_safe_char,
};

pub const PREFIX: &str = "keyward:";
pub const CONTRACT_VERSION: &str = "1";
pub const MAX_TAGS_PER_SECRET: usize = 50;
pub const MAX_KEYWARD_TAGS: usize = 40;
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 256;
const BASE64_MARKER: &str = "b64:";

pub mod keys {
    pub const CONTRACT: &str = "keyward:contract";
    pub const TYPE: &str = "keyward:type";
    pub const DOMAIN: &str = "keyward:domain";
    pub const OWNER: &str = "keyward:owner";
    pub const CLASSIFICATION: &str = "keyward:classification";
    pub const ROTATION: &str = "keyward:rotation";
    pub const ROTATION_DAYS: &str = "keyward:rotation-days";
    pub const PASSWORD_LENGTH: &str = "keyward:password-length";
    pub const PASSWORD_EXCLUDE: &str = "keyward:password-exclude";
    pub const JSON_KEY: &str = "keyward:json-key";
    pub const REPLICAS: &str = "keyward:replicas";
    pub const READER_PREFIX: &str = "keyward:reader:";
    pub const VERCEL_PROJECT: &str = "keyward:vercel:project";
    pub const VERCEL_TEAM: &str = "keyward:vercel:team";
    pub const VERCEL_TARGETS: &str = "keyward:vercel:targets";
    pub const VERCEL_BRANCH: &str = "keyward:vercel:branch";
    pub const VERCEL_KEY: &str = "keyward:vercel:key";
    pub const VERCEL_MAP_PREFIX: &str = "keyward:vercel:map:";
    pub const VERCEL_ORPHANS: &str = "keyward:vercel:orphans";
    pub const VERCEL_ON_EDIT: &str = "keyward:vercel:on-edit";
    pub const VERCEL_ALLOW_RESTRICTED: &str = "keyward:vercel:allow-restricted";
    /// The template's CI reader role reads exactly the secrets carrying this tag (an IAM
    /// condition on `aws:ResourceTag/keyward:ci-read`).
    pub const CI_READ: &str = "keyward:ci-read";
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagContractError {
    #[error("tag `{tag}` is required but missing")]
    Missing { tag: &'static str },
    #[error("tag `{tag}` is not part of the keyward tag contract")]
    Unknown { tag: String },
    #[error("tag `{tag}` appears more than once")]
    Duplicate { tag: String },
    #[error("tag `{tag}`: {source}")]
    Invalid {
        tag: String,
        #[source]
        source: GovernanceError,
    },
    #[error("tag `{tag}` has value `{value}`: {reason}")]
    BadValue {
        tag: String,
        value: String,
        reason: String,
    },
    #[error("tag `{tag}` is {len} characters; AWS allows {max}")]
    TooLong { tag: String, len: usize, max: usize },
    #[error("tag `{tag}` needs `{requires}`")]
    Incomplete { tag: String, requires: &'static str },
    #[error("tags `{first}` and `{second}` cannot both be set")]
    Conflicting { first: &'static str, second: String },
    #[error(
        "tag contract version `{found}` is not supported (this build reads version {CONTRACT_VERSION})"
    )]
    UnsupportedVersion { found: String },
    #[error("governance needs {count} keyward tags; at most {MAX_KEYWARD_TAGS} are allowed")]
    TooManyKeywardTags { count: usize },
    #[error("the secret would carry {count} tags; AWS allows {MAX_TAGS_PER_SECRET}")]
    TooManyTags { count: usize },
}

fn check_limits(tag: &Tag) -> Result<(), TagContractError> {
    let key_len = tag.key.chars().count();
    if key_len > MAX_KEY_LEN {
        return Err(TagContractError::TooLong {
            tag: tag.key.clone(),
            len: key_len,
            max: MAX_KEY_LEN,
        });
    }
    let value_len = tag.value.chars().count();
    if value_len > MAX_VALUE_LEN {
        return Err(TagContractError::TooLong {
            tag: tag.key.clone(),
            len: value_len,
            max: MAX_VALUE_LEN,
        });
    }
    if let Some(bad) = tag.value.chars().find(|c| !is_tag_safe_char(*c)) {
        return Err(TagContractError::BadValue {
            tag: tag.key.clone(),
            value: tag.value.clone(),
            reason: format!("`{}` is not allowed in a tag value", bad.escape_default()),
        });
    }
    Ok(())
}

fn encode_exclude(set: &str) -> String {
    let verbatim_ok =
        set.chars().all(|c| is_tag_safe_char(c) && c != ' ') && !set.starts_with(BASE64_MARKER);
    if verbatim_ok {
        set.to_owned()
    } else {
        format!("{BASE64_MARKER}{}", BASE64.encode(set.as_bytes()))
    }
}

fn decode_exclude(value: &str) -> Result<String, String> {
    match value.strip_prefix(BASE64_MARKER) {
        None => Ok(value.to_owned()),
        Some(encoded) => {
            let bytes = BASE64
                .decode(encoded)
                .map_err(|_| "is not valid base64 after `b64:`".to_owned())?;
            String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text".to_owned())
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes governance as tags, sorted by key. Fails if any value breaks an AWS tag limit.
pub fn encode(governance: &Governance) -> Result<Vec<Tag>, TagContractError> {
    let mut tags = vec![
        Tag::new(keys::CONTRACT, CONTRACT_VERSION),
        Tag::new(keys::TYPE, governance.secret_type.as_str()),
        Tag::new(keys::DOMAIN, governance.domain.as_str()),
        Tag::new(keys::OWNER, governance.owner.as_str()),
        Tag::new(keys::CLASSIFICATION, governance.classification.as_str()),
        Tag::new(keys::ROTATION, governance.rotation.strategy.as_str()),
        Tag::new(
            keys::ROTATION_DAYS,
            governance.rotation.interval.days().to_string(),
        ),
    ];
    let password = &governance.rotation.password;
    if let Some(length) = password.length {
        tags.push(Tag::new(keys::PASSWORD_LENGTH, length.to_string()));
    }
    if let Some(exclude) = &password.exclude_characters {
        tags.push(Tag::new(keys::PASSWORD_EXCLUDE, encode_exclude(exclude)));
    }
    if let Some(json_key) = &password.json_key {
        tags.push(Tag::new(keys::JSON_KEY, json_key.as_str()));
    }
    if !governance.replicas.is_empty() {
        tags.push(Tag::new(keys::REPLICAS, join(&governance.replicas)));
    }
    for (index, reader) in governance.readers.iter().enumerate() {
        tags.push(Tag::new(
            format!("{}{}", keys::READER_PREFIX, index + 1),
            reader.as_str(),
        ));
    }
    // Written only when set: a secret CI may not read keeps its tag set.
    if governance.ci_read {
        tags.push(Tag::new(keys::CI_READ, "true"));
    }
    if let Some(vercel) = &governance.vercel {
        tags.push(Tag::new(keys::VERCEL_PROJECT, &vercel.project));
        if let Some(team) = &vercel.team {
            tags.push(Tag::new(keys::VERCEL_TEAM, team));
        }
        tags.push(Tag::new(keys::VERCEL_TARGETS, join(&vercel.targets)));
        if let Some(branch) = &vercel.git_branch {
            tags.push(Tag::new(keys::VERCEL_BRANCH, branch));
        }
        // Defaults are not written, so a mapping that never set a policy keeps its tag set.
        if vercel.orphans != OrphanPolicy::default() {
            tags.push(Tag::new(keys::VERCEL_ORPHANS, vercel.orphans.as_str()));
        }
        if vercel.on_edit != EditPolicy::default() {
            tags.push(Tag::new(keys::VERCEL_ON_EDIT, vercel.on_edit.as_str()));
        }
        if vercel.allow_restricted {
            tags.push(Tag::new(keys::VERCEL_ALLOW_RESTRICTED, "true"));
        }
        match &vercel.binding {
            VercelBinding::Key(key) => tags.push(Tag::new(keys::VERCEL_KEY, key.as_str())),
            VercelBinding::JsonMap(map) => {
                for (field, key) in map {
                    tags.push(Tag::new(
                        format!("{}{field}", keys::VERCEL_MAP_PREFIX),
                        key.as_str(),
                    ));
                }
            }
        }
    }
    if tags.len() > MAX_KEYWARD_TAGS {
        return Err(TagContractError::TooManyKeywardTags { count: tags.len() });
    }
    for tag in &tags {
        check_limits(tag)?;
    }
    tags.sort();
    Ok(tags)
}

/// The tags to put on a secret that already carries `existing`: its own (non-keyward) tags stay,
/// keyward's are replaced. Returns (tags to set, keyward tag keys to remove).
pub fn merge(
    existing: &[Tag],
    governance: &Governance,
) -> Result<(Vec<Tag>, Vec<String>), TagContractError> {
    let wanted = encode(governance)?;
    // `aws:` tags are system tags and do not count against the 50-tag limit.
    let foreign = existing
        .iter()
        .filter(|t| !t.key.starts_with(PREFIX) && !t.key.starts_with("aws:"))
        .count();
    let total = foreign + wanted.len();
    if total > MAX_TAGS_PER_SECRET {
        return Err(TagContractError::TooManyTags { count: total });
    }
    let stale = existing
        .iter()
        .filter(|t| t.key.starts_with(PREFIX) && !wanted.iter().any(|w| w.key == t.key))
        .map(|t| t.key.clone())
        .collect();
    let to_set = wanted
        .into_iter()
        .filter(|w| !existing.contains(w))
        .collect();
    Ok((to_set, stale))
}

fn take<'a>(ours: &mut BTreeMap<&str, &'a str>, key: &'static str) -> Option<&'a str> {
    ours.remove(key)
}

fn require<'a>(
    ours: &mut BTreeMap<&str, &'a str>,
    key: &'static str,
) -> Result<&'a str, TagContractError> {
    ours.remove(key)
        .ok_or(TagContractError::Missing { tag: key })
}

fn parse_field<T>(tag: &str, value: &str) -> Result<T, TagContractError>
where
    T: std::str::FromStr<Err = GovernanceError>,
{
    value.parse().map_err(|source| TagContractError::Invalid {
        tag: tag.to_owned(),
        source,
    })
}

/// Reads governance back from a secret's tags. `Ok(None)` when the secret carries no keyward
/// tag at all (it is not governed); an error names the offending tag.
pub fn decode(tags: &[Tag]) -> Result<Option<Governance>, TagContractError> {
    let mut ours: BTreeMap<&str, &str> = BTreeMap::new();
    for tag in tags.iter().filter(|t| t.key.starts_with(PREFIX)) {
        if ours.insert(tag.key.as_str(), tag.value.as_str()).is_some() {
            return Err(TagContractError::Duplicate {
                tag: tag.key.clone(),
            });
        }
    }
    if ours.is_empty() {
        return Ok(None);
    }

    let version = require(&mut ours, keys::CONTRACT)?;
    if version != CONTRACT_VERSION {
        return Err(TagContractError::UnsupportedVersion {
            found: version.to_owned(),
        });
    }
    let secret_type = parse_field(keys::TYPE, require(&mut ours, keys::TYPE)?)?;
    let domain = parse_field(keys::DOMAIN, require(&mut ours, keys::DOMAIN)?)?;
    let owner = parse_field(keys::OWNER, require(&mut ours, keys::OWNER)?)?;
    let classification: Classification = parse_field(
        keys::CLASSIFICATION,
        require(&mut ours, keys::CLASSIFICATION)?,
    )?;
    let strategy = parse_field(keys::ROTATION, require(&mut ours, keys::ROTATION)?)?;
    let days_raw = require(&mut ours, keys::ROTATION_DAYS)?;
    let days: u32 = days_raw.parse().map_err(|_| TagContractError::BadValue {
        tag: keys::ROTATION_DAYS.to_owned(),
        value: days_raw.to_owned(),
        reason: "is not a whole number of days".to_owned(),
    })?;
    let interval =
        RotationInterval::try_from(days).map_err(|source| TagContractError::Invalid {
            tag: keys::ROTATION_DAYS.to_owned(),
            source,
        })?;

    let length = match take(&mut ours, keys::PASSWORD_LENGTH) {
        None => None,
        Some(raw) => Some(raw.parse::<u32>().map_err(|_| TagContractError::BadValue {
            tag: keys::PASSWORD_LENGTH.to_owned(),
            value: raw.to_owned(),
            reason: "is not a whole number".to_owned(),
        })?),
    };
    let exclude_characters = match take(&mut ours, keys::PASSWORD_EXCLUDE) {
        None => None,
        Some(raw) => Some(
            decode_exclude(raw).map_err(|reason| TagContractError::BadValue {
                tag: keys::PASSWORD_EXCLUDE.to_owned(),
                value: raw.to_owned(),
                reason,
            })?,
        ),
    };
    let json_key = take(&mut ours, keys::JSON_KEY)
        .map(|raw| parse_field(keys::JSON_KEY, raw))
        .transpose()?;
    let rotation = RotationPolicy {
        strategy,
        interval,
        password: PasswordPolicy {
            length,
            exclude_characters,
            json_key,
        },
    };
    rotation
        .validate()
        .map_err(|source| TagContractError::Invalid {
            tag: keys::ROTATION.to_owned(),
            source,
        })?;

    let replicas = match take(&mut ours, keys::REPLICAS) {
        None => Vec::new(),
        Some(raw) => raw
            .split(' ')
            .map(|r| parse_field(keys::REPLICAS, r))
            .collect::<Result<_, _>>()?,
    };

    // Readers: keyward:reader:<n>, ordered by n.
    let reader_keys: Vec<&str> = ours
        .keys()
        .copied()
        .filter(|k| k.starts_with(keys::READER_PREFIX))
        .collect();
    let mut indexed_readers = Vec::with_capacity(reader_keys.len());
    for key in reader_keys {
        let value = ours.remove(key).unwrap_or_default();
        let index: u32 = key[keys::READER_PREFIX.len()..]
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| TagContractError::Unknown {
                tag: key.to_owned(),
            })?;
        indexed_readers.push((index, parse_field(key, value)?));
    }
    indexed_readers.sort_by_key(|(index, _)| *index);
    let readers = indexed_readers.into_iter().map(|(_, r)| r).collect();

    let ci_read = match ours.remove(keys::CI_READ) {
        None => false,
        Some("true") => true,
        Some(other) => {
            return Err(TagContractError::BadValue {
                tag: keys::CI_READ.to_owned(),
                value: other.to_owned(),
                reason: "must be `true` or absent".into(),
            });
        }
    };

    let vercel = decode_vercel(&mut ours)?;

    if let Some(unknown) = ours.keys().next() {
        return Err(TagContractError::Unknown {
            tag: (*unknown).to_owned(),
        });
    }
    let governance = Governance {
        secret_type,
        domain,
        owner,
        classification,
        rotation,
        replicas,
        readers,
        ci_read,
        vercel,
    };
    governance
        .validate()
        .map_err(|source| TagContractError::Invalid {
            tag: PREFIX.trim_end_matches(':').to_owned(),
            source,
        })?;
    Ok(Some(governance))
}

fn decode_vercel(
    ours: &mut BTreeMap<&str, &str>,
) -> Result<Option<VercelMapping>, TagContractError> {
    let map_keys: Vec<&str> = ours
        .keys()
        .copied()
        .filter(|k| k.starts_with(keys::VERCEL_MAP_PREFIX))
        .collect();
    let project = ours.remove(keys::VERCEL_PROJECT);
    let team = ours.remove(keys::VERCEL_TEAM);
    let targets = ours.remove(keys::VERCEL_TARGETS);
    let branch = ours.remove(keys::VERCEL_BRANCH);
    let key = ours.remove(keys::VERCEL_KEY);
    let orphans = ours.remove(keys::VERCEL_ORPHANS);
    let on_edit = ours.remove(keys::VERCEL_ON_EDIT);
    let allow_restricted = ours.remove(keys::VERCEL_ALLOW_RESTRICTED);

    let Some(project) = project else {
        // Any other vercel tag without the project is a half-written mapping.
        let stray = [
            (keys::VERCEL_TEAM, team),
            (keys::VERCEL_TARGETS, targets),
            (keys::VERCEL_BRANCH, branch),
            (keys::VERCEL_KEY, key),
            (keys::VERCEL_ORPHANS, orphans),
            (keys::VERCEL_ON_EDIT, on_edit),
            (keys::VERCEL_ALLOW_RESTRICTED, allow_restricted),
        ]
        .into_iter()
        .find_map(|(k, v)| v.map(|_| k.to_owned()))
        .or_else(|| map_keys.first().map(|k| (*k).to_owned()));
        return match stray {
            Some(tag) => Err(TagContractError::Incomplete {
                tag,
                requires: keys::VERCEL_PROJECT,
            }),
            None => Ok(None),
        };
    };
    let targets_raw = targets.ok_or(TagContractError::Incomplete {
        tag: keys::VERCEL_PROJECT.to_owned(),
        requires: keys::VERCEL_TARGETS,
    })?;
    let targets = targets_raw
        .split(' ')
        .map(|t| parse_field::<VercelTarget>(keys::VERCEL_TARGETS, t))
        .collect::<Result<Vec<_>, _>>()?;

    let binding = match (key, map_keys.is_empty()) {
        (Some(_), false) => {
            return Err(TagContractError::Conflicting {
                first: keys::VERCEL_KEY,
                second: map_keys[0].to_owned(),
            });
        }
        (Some(key), true) => VercelBinding::Key(parse_field(keys::VERCEL_KEY, key)?),
        (None, false) => {
            let mut map = BTreeMap::new();
            for tag in map_keys {
                let value = ours.remove(tag).unwrap_or_default();
                let field = parse_field(tag, &tag[keys::VERCEL_MAP_PREFIX.len()..])?;
                map.insert(field, parse_field(tag, value)?);
            }
            VercelBinding::JsonMap(map)
        }
        (None, true) => {
            return Err(TagContractError::Incomplete {
                tag: keys::VERCEL_PROJECT.to_owned(),
                requires: "keyward:vercel:key or keyward:vercel:map:<json-key>",
            });
        }
    };
    let mapping = VercelMapping {
        project: project.to_owned(),
        team: team.map(str::to_owned),
        targets,
        git_branch: branch.map(str::to_owned),
        binding,
        orphans: orphans
            .map(|v| parse_field(keys::VERCEL_ORPHANS, v))
            .transpose()?
            .unwrap_or_default(),
        on_edit: on_edit
            .map(|v| parse_field(keys::VERCEL_ON_EDIT, v))
            .transpose()?
            .unwrap_or_default(),
        allow_restricted: match allow_restricted {
            None => false,
            Some("true") => true,
            Some(other) => {
                return Err(TagContractError::BadValue {
                    tag: keys::VERCEL_ALLOW_RESTRICTED.to_owned(),
                    value: other.to_owned(),
                    reason: "must be `true` or absent".into(),
                });
            }
        },
    };
    mapping
        .validate()
        .map_err(|source| TagContractError::Invalid {
            tag: keys::VERCEL_PROJECT.to_owned(),
            source,
        })?;
    Ok(Some(mapping))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{JsonKey, RotationStrategy};

    fn base() -> Governance {
        Governance {
            secret_type: "postgres-credentials".parse().unwrap(),
            domain: "payments".parse().unwrap(),
            owner: "team-payments".parse().unwrap(),
            classification: Classification::Restricted,
            rotation: RotationPolicy {
                strategy: RotationStrategy::PostgresAlternatingUsers,
                interval: RotationInterval::try_from(30).unwrap(),
                password: PasswordPolicy {
                    length: Some(40),
                    exclude_characters: Some(":/@\"'\\".into()),
                    json_key: Some("password".parse().unwrap()),
                },
            },
            replicas: vec!["eu-west-1".parse().unwrap(), "us-east-2".parse().unwrap()],
            readers: vec![
                "arn:aws:iam::123456789012:role/payments-api"
                    .parse()
                    .unwrap(),
                "arn:aws:iam::123456789012:role/payments-worker"
                    .parse()
                    .unwrap(),
            ],
            ci_read: false,
            vercel: Some(VercelMapping {
                project: "payments-web".into(),
                team: Some("team_abc123".into()),
                targets: vec![
                    VercelTarget::Production,
                    VercelTarget::Preview,
                    VercelTarget::Custom("staging".into()),
                ],
                git_branch: Some("release/next".into()),
                binding: VercelBinding::JsonMap(BTreeMap::from([
                    (
                        "password".parse::<JsonKey>().unwrap(),
                        "DB_PASSWORD".parse().unwrap(),
                    ),
                    (
                        "username".parse::<JsonKey>().unwrap(),
                        "DB_USER".parse().unwrap(),
                    ),
                ])),
                orphans: OrphanPolicy::Delete,
                on_edit: EditPolicy::Overwrite,
                allow_restricted: true,
            }),
        }
    }

    fn minimal() -> Governance {
        Governance {
            secret_type: "api-key".parse().unwrap(),
            domain: "web".parse().unwrap(),
            owner: "team-web".parse().unwrap(),
            classification: Classification::Internal,
            rotation: RotationPolicy {
                strategy: RotationStrategy::Manual,
                interval: RotationInterval::try_from(90).unwrap(),
                password: PasswordPolicy::default(),
            },
            replicas: vec![],
            readers: vec![],
            ci_read: false,
            vercel: None,
        }
    }

    #[test]
    fn round_trips_full_and_minimal_governance() {
        for governance in [base(), minimal()] {
            let tags = encode(&governance).unwrap();
            assert!(tags.iter().all(|t| t.key.starts_with(PREFIX)));
            assert_eq!(decode(&tags).unwrap(), Some(governance));
        }
    }

    #[test]
    fn exclude_characters_outside_the_tag_alphabet_are_base64_encoded() {
        let tags = encode(&base()).unwrap();
        let exclude = tags
            .iter()
            .find(|t| t.key == keys::PASSWORD_EXCLUDE)
            .unwrap();
        assert!(exclude.value.starts_with("b64:"), "{exclude:?}");
        let mut g = base();
        g.rotation.password.exclude_characters = Some("/@".into());
        let tags = encode(&g).unwrap();
        let exclude = tags
            .iter()
            .find(|t| t.key == keys::PASSWORD_EXCLUDE)
            .unwrap();
        assert_eq!(exclude.value, "/@");
        // A verbatim set that looks like the marker is encoded too, so decoding stays exact.
        g.rotation.password.exclude_characters = Some("b64:x".into());
        assert_eq!(decode(&encode(&g).unwrap()).unwrap(), Some(g));
    }

    #[test]
    fn randomised_round_trips() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let mut g = base();
            g.rotation.interval = RotationInterval::try_from(rng.u32(1..=90)).unwrap();
            g.rotation.password.length = rng.bool().then(|| rng.u32(16..=4096));
            g.rotation.password.exclude_characters = rng.bool().then(|| {
                (0..rng.usize(0..12))
                    .map(|_| char::from(rng.u8(33..127)))
                    .collect()
            });
            g.readers.truncate(rng.usize(0..=2));
            g.replicas.truncate(rng.usize(0..=2));
            if rng.bool() {
                g.vercel = None;
            }
            let tags = encode(&g).unwrap();
            assert_eq!(decode(&tags).unwrap(), Some(g));
        }
    }

    #[test]
    fn untagged_secret_is_ungoverned() {
        assert_eq!(decode(&[Tag::new("team", "x")]).unwrap(), None);
    }

    fn without(tags: &[Tag], key: &str) -> Vec<Tag> {
        tags.iter().filter(|t| t.key != key).cloned().collect()
    }

    fn with(tags: &[Tag], key: &str, value: &str) -> Vec<Tag> {
        let mut out = without(tags, key);
        out.push(Tag::new(key, value));
        out
    }

    #[test]
    fn bad_tags_are_named_in_the_error() {
        let good = encode(&base()).unwrap();
        let cases: Vec<(Vec<Tag>, &str)> = vec![
            (
                without(&good, keys::OWNER),
                "tag `keyward:owner` is required but missing",
            ),
            (
                with(&good, keys::ROTATION_DAYS, "120"),
                "tag `keyward:rotation-days`: rotation interval `120` exceeds the 90-day maximum",
            ),
            (
                with(&good, keys::ROTATION_DAYS, "ten"),
                "tag `keyward:rotation-days` has value `ten`",
            ),
            (
                with(&good, keys::CLASSIFICATION, "secret"),
                "tag `keyward:classification`: classification `secret` is not one of",
            ),
            (
                with(&good, keys::ROTATION, "yearly"),
                "tag `keyward:rotation`: rotation strategy `yearly`",
            ),
            (
                with(&good, "keyward:rotaton", "random"),
                "tag `keyward:rotaton` is not part of the keyward tag contract",
            ),
            (
                with(&good, keys::CONTRACT, "2"),
                "contract version `2` is not supported",
            ),
            (
                with(&good, "keyward:reader:x", "arn:aws:iam::123456789012:root"),
                "`keyward:reader:x` is not part",
            ),
            (
                with(&good, "keyward:reader:1", "arn:aws:iam::1:root"),
                "tag `keyward:reader:1`: reader",
            ),
            (
                with(&good, keys::VERCEL_TARGETS, "production  preview"),
                "tag `keyward:vercel:targets`",
            ),
            (
                with(&good, keys::VERCEL_KEY, "API_KEY"),
                "cannot both be set",
            ),
            (
                without(&good, keys::VERCEL_TARGETS),
                "needs `keyward:vercel:targets`",
            ),
            (
                without(&good, keys::VERCEL_PROJECT),
                "needs `keyward:vercel:project`",
            ),
            (
                with(&good, keys::PASSWORD_EXCLUDE, "b64:***"),
                "is not valid base64",
            ),
            (
                with(&good, keys::REPLICAS, "eu-west-1 mars-1"),
                "tag `keyward:replicas`: region `mars-1`",
            ),
        ];
        for (tags, expected) in cases {
            let err = decode(&tags).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn arbitrary_tags_never_panic() {
        let mut rng = fastrand::Rng::with_seed(3);
        let good = encode(&base()).unwrap();
        let junk = [
            "",
            " ",
            "b64:",
            "b64:!!",
            "0",
            "-1",
            "99999999999",
            "x y",
            "\u{0}",
            "é",
            "keyward:",
            "keyward:reader:0",
            "keyward:vercel:map:",
            "production preview",
            "arn:aws:iam::123456789012:role/x",
        ];
        for _ in 0..5000 {
            let mut tags = good.clone();
            for _ in 0..rng.usize(1..4) {
                let pick = |rng: &mut fastrand::Rng| junk[rng.usize(0..junk.len())].to_owned();
                match rng.u8(0..3) {
                    0 if !tags.is_empty() => {
                        let i = rng.usize(0..tags.len());
                        tags[i].value = pick(&mut rng);
                    }
                    1 if !tags.is_empty() => {
                        tags.remove(rng.usize(0..tags.len()));
                    }
                    _ => {
                        let key = if rng.bool() {
                            format!("{}{}", keys::READER_PREFIX, pick(&mut rng))
                        } else {
                            pick(&mut rng)
                        };
                        tags.push(Tag::new(key, pick(&mut rng)));
                    }
                }
            }
            // Either a governance or an error naming a tag: never a panic.
            if let Err(err) = decode(&tags) {
                assert!(err.to_string().contains("tag"), "{err}");
            }
        }
    }

    #[test]
    fn duplicate_tag_keys_are_rejected() {
        let mut tags = encode(&minimal()).unwrap();
        tags.push(Tag::new(keys::OWNER, "someone-else"));
        assert_eq!(
            decode(&tags).unwrap_err(),
            TagContractError::Duplicate {
                tag: keys::OWNER.to_owned()
            }
        );
    }

    #[test]
    fn encode_enforces_aws_limits() {
        let mut g = minimal();
        g.readers = (0..40)
            .map(|i| {
                format!("arn:aws:iam::123456789012:role/r{i}")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(matches!(
            encode(&g),
            Err(TagContractError::TooManyKeywardTags { .. })
        ));

        let mut g = minimal();
        let long_role = format!("arn:aws:iam::123456789012:role/{}", "p/".repeat(120) + "x");
        g.readers = vec![long_role.parse().unwrap()];
        let err = encode(&g).unwrap_err().to_string();
        assert!(
            err.contains("keyward:reader:1") && err.contains("AWS allows 256"),
            "{err}"
        );
    }

    #[test]
    fn merge_keeps_foreign_tags_and_removes_stale_keyward_tags() {
        let mut existing = encode(&base()).unwrap();
        existing.push(Tag::new("cost-center", "42"));
        let (to_set, to_remove) = merge(&existing, &minimal()).unwrap();
        assert!(to_set.iter().all(|t| t.key.starts_with(PREFIX)));
        assert!(to_remove.contains(&keys::VERCEL_PROJECT.to_owned()));
        assert!(!to_remove.iter().any(|k| k == "cost-center"));
        // Unchanged tags are not rewritten.
        let (to_set, to_remove) = merge(&encode(&base()).unwrap(), &base()).unwrap();
        assert!(to_set.is_empty() && to_remove.is_empty());

        let crowded: Vec<Tag> = (0..45).map(|i| Tag::new(format!("t{i}"), "v")).collect();
        assert!(matches!(
            merge(&crowded, &minimal()),
            Err(TagContractError::TooManyTags { .. })
        ));
    }

    #[test]
    fn classification_decides_what_may_go_to_vercel() {
        let mut g = base();
        g.vercel.as_mut().unwrap().allow_restricted = false;
        let err = g.validate().unwrap_err().to_string();
        assert!(err.contains("allow_restricted"), "{err}");
        // The tags alone cannot grant it either: decoding refuses the same governance.
        let mut tags = encode(&base()).unwrap();
        tags.retain(|t| t.key != keys::VERCEL_ALLOW_RESTRICTED);
        assert!(decode(&tags).is_err());

        let mut confidential = base();
        confidential.classification = Classification::Confidential;
        confidential.vercel.as_mut().unwrap().binding =
            VercelBinding::Key("NEXT_PUBLIC_DB_PASSWORD".parse().unwrap());
        let err = confidential.validate().unwrap_err().to_string();
        assert!(err.contains("NEXT_PUBLIC_"), "{err}");
        assert!(decode(&encode(&confidential).unwrap()).is_err());

        let mut development = base();
        development.classification = Classification::Confidential;
        development.vercel.as_mut().unwrap().targets = vec![VercelTarget::Development];
        development.vercel.as_mut().unwrap().git_branch = None;
        let err = development.validate().unwrap_err().to_string();
        assert!(err.contains("development"), "{err}");
        assert!(decode(&encode(&development).unwrap()).is_err());

        let mut public = base();
        public.classification = Classification::Public;
        public.vercel.as_mut().unwrap().allow_restricted = false;
        public.vercel.as_mut().unwrap().targets = vec![VercelTarget::Development];
        public.vercel.as_mut().unwrap().git_branch = None;
        public.vercel.as_mut().unwrap().binding =
            VercelBinding::Key("NEXT_PUBLIC_SITE_KEY".parse().unwrap());
        assert_eq!(decode(&encode(&public).unwrap()).unwrap(), Some(public));
    }

    #[test]
    fn ci_read_is_one_tag_written_only_when_set() {
        assert!(
            !encode(&minimal())
                .unwrap()
                .iter()
                .any(|t| t.key == keys::CI_READ)
        );
        let mut g = minimal();
        g.ci_read = true;
        let tags = encode(&g).unwrap();
        assert!(tags.contains(&Tag::new(keys::CI_READ, "true")));
        assert_eq!(decode(&tags).unwrap(), Some(g));

        let mut odd = encode(&minimal()).unwrap();
        odd.push(Tag::new(keys::CI_READ, "yes"));
        let err = decode(&odd).unwrap_err().to_string();
        assert!(
            err.contains("keyward:ci-read") && err.contains("yes"),
            "{err}"
        );
    }

    #[test]
    fn restricted_secrets_are_never_ci_readable() {
        let mut g = base();
        g.vercel = None;
        g.ci_read = true;
        let err = g.validate().unwrap_err().to_string();
        assert!(err.contains("ci_read"), "{err}");
        // A tag set by hand cannot grant it either.
        let mut tags = encode(&base()).unwrap();
        tags.push(Tag::new(keys::CI_READ, "true"));
        assert!(decode(&tags).is_err());
    }
}
