//! One CloudTrail record, as every real shape has it: EventBridge `detail`, an element of a log
//! file's `Records`, a Panther test event. Option-heavy and borrowed from the record's bytes.
//!
//! Shapes it accepts (AWS CloudTrail record contents and user identity references; the public
//! corpora in `../shared/data/cloudtrail`):
//! - service events (`AwsServiceEvent`) whose `userIdentity` has no `type`, only `invokedBy`;
//! - booleans written as strings (`readOnly`, `mfaAuthenticated`, `sessionCredentialFromConsole`);
//! - `requestParameters.resourcePolicy` as a JSON string or an object; `aRN` for `arn` in older
//!   `responseElements`;
//! - `eventTime` in RFC 3339 or Panther's `YYYY-MM-DD HH:MM:SS.fffffffff`.
//!
//! Errors name the field and position, never a value.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("the record's `{path}` has the wrong type or shape")]
    Shape { path: String },
    #[error("the record has no `eventTime`")]
    NoTime,
    #[error("the record's `eventTime` is neither RFC 3339 nor `YYYY-MM-DD HH:MM:SS`")]
    BadTime,
    #[error("the record is not a JSON object")]
    NotAnObject,
}

type Text<'a> = Option<Cow<'a, str>>;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    #[serde(borrow, default)]
    pub event_version: Text<'a>,
    #[serde(borrow, default, rename = "eventID")]
    pub event_id: Text<'a>,
    #[serde(borrow, default)]
    pub event_time: Text<'a>,
    #[serde(borrow, default)]
    pub event_source: Text<'a>,
    #[serde(borrow, default)]
    pub event_name: Text<'a>,
    #[serde(borrow, default)]
    pub event_type: Text<'a>,
    #[serde(borrow, default)]
    pub aws_region: Text<'a>,
    #[serde(borrow, default, rename = "sourceIPAddress")]
    pub source_ip_address: Text<'a>,
    #[serde(borrow, default)]
    pub user_agent: Text<'a>,
    #[serde(borrow, default)]
    pub error_code: Text<'a>,
    #[serde(borrow, default)]
    pub error_message: Text<'a>,
    #[serde(default, deserialize_with = "flexible_bool")]
    pub read_only: Option<bool>,
    #[serde(borrow, default)]
    pub recipient_account_id: Text<'a>,
    #[serde(borrow, default)]
    pub vpc_endpoint_id: Text<'a>,
    #[serde(borrow, default)]
    pub user_identity: Option<UserIdentity<'a>>,
    /// Parsed only for the calls whose facts need it.
    #[serde(borrow, default)]
    pub request_parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_elements: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub additional_event_data: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Text<'a>,
    #[serde(borrow, default)]
    pub principal_id: Text<'a>,
    #[serde(borrow, default)]
    pub arn: Text<'a>,
    #[serde(borrow, default)]
    pub account_id: Text<'a>,
    #[serde(borrow, default)]
    pub access_key_id: Text<'a>,
    #[serde(borrow, default)]
    pub user_name: Text<'a>,
    #[serde(borrow, default)]
    pub invoked_by: Text<'a>,
    #[serde(borrow, default)]
    pub session_context: Option<SessionContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext<'a> {
    #[serde(borrow, default)]
    pub session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Text<'a>,
    #[serde(borrow, default)]
    pub arn: Text<'a>,
    #[serde(borrow, default)]
    pub user_name: Text<'a>,
}

/// `true`, `false`, `"true"`, `"false"` (any case) or null.
fn flexible_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible<'a> {
        Bool(bool),
        #[serde(borrow)]
        Text(Cow<'a, str>),
    }
    match Option::<Flexible>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Flexible::Bool(b)) => Ok(Some(b)),
        Some(Flexible::Text(t)) if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Flexible::Text(t)) if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(Flexible::Text(_)) => Err(serde::de::Error::custom("not a boolean")),
    }
}

impl<'a> Record<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, RecordError> {
        let trimmed = raw.trim_start();
        if !trimmed.starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(raw) {
                Ok(_) => Err(RecordError::NotAnObject),
                Err(e) => Err(RecordError::NotJson {
                    line: e.line(),
                    column: e.column(),
                }),
            };
        }
        // The fast path; only a record that fails is parsed again to find the failing field.
        if let Ok(record) = serde_json::from_str(raw) {
            return Ok(record);
        }
        let mut deserializer = serde_json::Deserializer::from_str(raw);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                RecordError::NotJson {
                    line: inner.line(),
                    column: inner.column(),
                }
            } else {
                RecordError::Shape {
                    path: e.path().to_string(),
                }
            }
        })
    }

    pub fn time(&self) -> Result<DateTime<Utc>, RecordError> {
        let text = self.event_time.as_deref().ok_or(RecordError::NoTime)?;
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Ok(time.with_timezone(&Utc));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| t.and_utc())
            .map_err(|_| RecordError::BadTime)
    }

    /// The user agent's family (tool and major version, [`crate::client::user_agent_family`]):
    /// derived when a rule keys on it, not for every record.
    pub fn user_agent_family(&self) -> String {
        crate::client::user_agent_family(self.user_agent.as_deref().unwrap_or(""))
    }

    /// The source network ([`crate::client::source_network`]).
    pub fn source_network(&self) -> String {
        crate::client::source_network(
            self.source_ip_address.as_deref().unwrap_or(""),
            self.vpc_endpoint_id.as_deref(),
        )
    }

    pub fn is_secrets_manager(&self) -> bool {
        self.event_source.as_deref() == Some("secretsmanager.amazonaws.com")
    }
}

/// What keyward derives from a record, matched by rules under the `keyward` key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// The call was refused for lack of permission (`AccessDenied`, `AccessDeniedException`,
    /// `Client.UnauthorizedOperation`, `VpceAccessDenied`, `Unauthorized*`).
    pub denied: bool,
    /// No `errorCode` and no `errorMessage`.
    pub success: bool,
    /// Who acted: the user name; the role (session issuer) for assumed roles; the SSO user for
    /// `AWSReservedSSO_*` roles; the invoking service for service events.
    pub actor: String,
    /// `userIdentity.type`, or `AWSService` when only `invokedBy` is present.
    pub identity_type: String,
    /// Secrets the call names (request, response or additional data), ARNs or names.
    pub secrets: Vec<String>,
    /// `sourceIPAddress` is an IP address (not a service name).
    pub from_ip: bool,
    /// `BatchGetSecretValue` by filters, every filter value negated (`!`): "all but these".
    pub catch_all_batch: bool,
    /// `BatchGetSecretValue` selecting by filters rather than naming secrets.
    pub filter_batch: bool,
    /// `PutResourcePolicy` granting `*` without an organisation, VPC or IP condition.
    pub policy_public: bool,
    /// `DeleteSecret` with `forceDeleteWithoutRecovery`.
    pub force_delete: bool,
    /// A successful read of secret values: `GetSecretValue`, or `BatchGetSecretValue` (by list
    /// or by filters).
    pub value_read: bool,
    /// The principal or its client family is the organisation's own automation (false when no
    /// allow-list is configured).
    pub known_automation: bool,
    /// Set when allowed networks are configured: the call came from neither an allowed CIDR nor
    /// an allowed VPC endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_allowed_network: Option<bool>,
    /// Set when the secret's allowed readers are known: a successful read by a principal not
    /// among them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlisted_reader: Option<bool>,
    /// Set when keyward's own resources are known: the call names one of them (the audit
    /// bucket, the digest key, the event bus), by name, id or ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyward_resource: Option<bool>,
}

pub fn is_denied(code: &str) -> bool {
    let lower = code.to_ascii_lowercase();
    lower.contains("accessdenied") || lower.contains("unauthorized") || lower == "forbidden"
}

impl Record<'_> {
    pub fn facts(&self) -> Facts {
        let identity = self.user_identity.as_ref();
        let identity_type = identity
            .and_then(|i| i.kind.as_deref())
            .map(str::to_owned)
            .or_else(|| {
                identity
                    .and_then(|i| i.invoked_by.as_ref())
                    .map(|_| "AWSService".to_owned())
            })
            .unwrap_or_default();
        let mut facts = Facts {
            denied: self.error_code.as_deref().is_some_and(is_denied),
            success: self.error_code.is_none() && self.error_message.is_none(),
            actor: self.actor(),
            identity_type,
            from_ip: self
                .source_ip_address
                .as_deref()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
            ..Facts::default()
        };
        if self.is_secrets_manager() {
            self.secrets_manager_facts(&mut facts);
        }
        facts
    }

    /// Panther's actor rule (`global_helpers/panther_aws_helpers.py`), plus service events.
    pub fn actor(&self) -> String {
        let Some(identity) = &self.user_identity else {
            return String::new();
        };
        let kind = identity.kind.as_deref().unwrap_or("");
        if matches!(kind, "AssumedRole" | "Role" | "FederatedUser")
            && let Some(issuer) = identity
                .session_context
                .as_ref()
                .and_then(|c| c.session_issuer.as_ref())
        {
            let name = issuer.user_name.as_deref().unwrap_or("");
            if name.starts_with("AWSReservedSSO_")
                && let Some((_, user)) = identity
                    .principal_id
                    .as_deref()
                    .unwrap_or("")
                    .split_once(':')
            {
                return user.to_owned();
            }
            if !name.is_empty() {
                return name.to_owned();
            }
            if let Some(arn) = issuer.arn.as_deref() {
                return arn.to_owned();
            }
        }
        if kind == "Root" {
            return "root".to_owned();
        }
        identity
            .user_name
            .as_deref()
            .or(identity.arn.as_deref())
            .or(identity.invoked_by.as_deref())
            .or(identity.principal_id.as_deref())
            .unwrap_or("")
            .to_owned()
    }

    /// The principal ARN a reader check compares with: the session issuer's role for assumed
    /// roles, else the identity's ARN.
    pub fn principal_arn(&self) -> Option<String> {
        let identity = self.user_identity.as_ref()?;
        if matches!(identity.kind.as_deref(), Some("AssumedRole"))
            && let Some(arn) = identity
                .session_context
                .as_ref()
                .and_then(|c| c.session_issuer.as_ref())
                .and_then(|i| i.arn.as_deref())
        {
            return Some(arn.to_owned());
        }
        identity.arn.as_deref().map(str::to_owned)
    }

    fn secrets_manager_facts(&self, facts: &mut Facts) {
        let parse = |raw: Option<&RawValue>| {
            raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        };
        let request = parse(self.request_parameters);
        let event = self.event_name.as_deref().unwrap_or("");
        facts.value_read =
            facts.success && matches!(event, "GetSecretValue" | "BatchGetSecretValue");
        let mut secrets = Vec::new();
        if let Some(request) = &request {
            if let Some(id) = request.get("secretId").and_then(|v| v.as_str()) {
                secrets.push(id.to_owned());
            }
            if let Some(list) = request.get("secretIdList").and_then(|v| v.as_array()) {
                secrets.extend(list.iter().filter_map(|v| v.as_str()).map(str::to_owned));
            }
            if event == "BatchGetSecretValue"
                && let Some(filters) = request.get("filters").and_then(|v| v.as_array())
                && !filters.is_empty()
            {
                facts.filter_batch = true;
                facts.catch_all_batch = filters.iter().all(|filter| {
                    filter
                        .get("values")
                        .and_then(|v| v.as_array())
                        .is_some_and(|values| {
                            !values.is_empty()
                                && values
                                    .iter()
                                    .all(|v| v.as_str().is_some_and(|s| s.starts_with('!')))
                        })
                });
            }
            if event == "PutResourcePolicy" {
                facts.policy_public = request.get("resourcePolicy").is_some_and(policy_is_public);
            }
            if event == "DeleteSecret" {
                facts.force_delete = request
                    .get("forceDeleteWithoutRecovery")
                    .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
            }
        }
        for blob in [
            parse(self.response_elements),
            parse(self.additional_event_data),
        ]
        .into_iter()
        .flatten()
        {
            for key in ["arn", "aRN", "ARN", "SecretId", "Name"] {
                if let Some(id) = blob.get(key).and_then(|v| v.as_str())
                    && !secrets.iter().any(|s| s == id)
                {
                    secrets.push(id.to_owned());
                }
            }
        }
        facts.secrets = secrets;
    }
}

/// A resource policy (JSON text or object) that allows `*` without a condition narrowing it to
/// an organisation, account, VPC, VPC endpoint or IP range.
pub fn policy_is_public(policy: &serde_json::Value) -> bool {
    let document = match policy {
        serde_json::Value::String(text) => match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return false,
        },
        other => other.clone(),
    };
    let statements = match document.get("Statement") {
        Some(serde_json::Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
        None => return false,
    };
    const NARROWING: [&str; 6] = [
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceip",
        "aws:sourceaccount",
    ];
    statements.iter().any(|statement| {
        let allows = statement.get("Effect").and_then(|e| e.as_str()) == Some("Allow");
        let principal = statement.get("Principal");
        let everyone = match principal {
            Some(serde_json::Value::String(p)) => p == "*",
            Some(serde_json::Value::Object(map)) => map.get("AWS").is_some_and(|aws| match aws {
                serde_json::Value::String(p) => p == "*",
                serde_json::Value::Array(items) => items.iter().any(|p| p.as_str() == Some("*")),
                _ => false,
            }),
            _ => false,
        };
        let narrowed = statement
            .get("Condition")
            .and_then(|c| c.as_object())
            .is_some_and(|operators| {
                operators.values().any(|keys| {
                    keys.as_object().is_some_and(|keys| {
                        keys.keys()
                            .any(|k| NARROWING.contains(&k.to_ascii_lowercase().as_str()))
                    })
                })
            });
        allows && everyone && !narrowed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_service_events_string_booleans_and_panther_times() {
        let raw = r#"{"eventVersion":"1.05","eventID":"e1","eventTime":"2024-10-17 21:48:45.000000000",
            "eventSource":"secretsmanager.amazonaws.com","eventName":"RotationFailed","eventType":"AwsServiceEvent",
            "readOnly":"false","userIdentity":{"accountId":"1","invokedBy":"secretsmanager.amazonaws.com"},
            "sourceIPAddress":"secretsmanager.amazonaws.com","additionalEventData":{"SecretId":"arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf"}}"#;
        let record = Record::parse(raw).unwrap();
        assert_eq!(record.read_only, Some(false));
        assert_eq!(
            record.time().unwrap().to_rfc3339(),
            "2024-10-17T21:48:45+00:00"
        );
        let facts = record.facts();
        assert_eq!(facts.identity_type, "AWSService");
        assert_eq!(facts.actor, "secretsmanager.amazonaws.com");
        assert!(!facts.from_ip);
        assert_eq!(
            facts.secrets,
            ["arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf"]
        );
    }

    #[test]
    fn actors_follow_the_identity_type() {
        let assumed = r#"{"userIdentity":{"type":"AssumedRole","principalId":"AROA:alice@acme.com","arn":"arn:aws:sts::1:assumed-role/AWSReservedSSO_Admin_1/alice@acme.com",
            "sessionContext":{"sessionIssuer":{"type":"Role","userName":"AWSReservedSSO_Admin_1","arn":"arn:aws:iam::1:role/AWSReservedSSO_Admin_1"},"attributes":{"mfaAuthenticated":"true"}}}}"#;
        let record = Record::parse(assumed).unwrap();
        assert_eq!(record.actor(), "alice@acme.com");
        assert_eq!(
            record.principal_arn().unwrap(),
            "arn:aws:iam::1:role/AWSReservedSSO_Admin_1"
        );
        let root = Record::parse(r#"{"userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root"}}"#)
            .unwrap();
        assert_eq!(root.actor(), "root");
    }

    #[test]
    fn denied_codes_are_normalised_across_services() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "Client.UnauthorizedOperation",
            "VpceAccessDenied",
        ] {
            assert!(is_denied(code), "{code}");
        }
        for code in [
            "ResourceNotFoundException",
            "ThrottlingException",
            "DecryptionFailure",
        ] {
            assert!(!is_denied(code), "{code}");
        }
    }

    #[test]
    fn public_policies_are_recognised_as_string_or_object() {
        let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
        assert!(policy_is_public(&serde_json::Value::String(public.into())));
        assert!(policy_is_public(&serde_json::from_str(public).unwrap()));
        let narrowed = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}}}"#;
        assert!(!policy_is_public(&serde_json::from_str(narrowed).unwrap()));
        let named = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:role/app"},"Action":"*"}]}"#;
        assert!(!policy_is_public(&serde_json::from_str(named).unwrap()));
    }

    #[test]
    fn catch_all_batches_negate_every_filter() {
        let record = |filters: &str| {
            format!(
                r#"{{"eventSource":"secretsmanager.amazonaws.com","eventName":"BatchGetSecretValue","requestParameters":{{"filters":{filters}}}}}"#
            )
        };
        let all = record(
            r#"[{"key":"tag-key","values":["!a","!b"]},{"key":"tag-value","values":["!c"]}]"#,
        );
        let some = record(r#"[{"key":"tag-key","values":["StratusRedTeam"]}]"#);
        assert!(Record::parse(&all).unwrap().facts().catch_all_batch);
        let facts = Record::parse(&some).unwrap().facts();
        assert!(!facts.catch_all_batch && facts.filter_batch);
    }

    #[test]
    fn shape_errors_name_the_field_not_the_value() {
        let err = Record::parse(
            r#"{"eventName":"GetSecretValue","userIdentity":{"type":["very-secret-looking"]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("userIdentity.type"), "{err}");
        assert!(!err.contains("very-secret"), "{err}");
        assert!(matches!(
            Record::parse("[1]"),
            Err(RecordError::NotAnObject)
        ));
        assert!(matches!(
            Record::parse("{\"a\":"),
            Err(RecordError::NotJson { .. })
        ));
    }
}
