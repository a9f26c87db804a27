//! The invocation Secrets Manager sends: `{Step, SecretId, ClientRequestToken, RotationToken?}`.
//!
//! Parsed by hand from JSON rather than derived so that every defect gets its own message, and
//! so that `RotationToken` (a credential for `PutSecretValue`) never reaches a `Debug` or an
//! error.

use keyward_shared::events::RotationStep;
use secrecy::SecretString;
use serde_json::Value;

/// Secrets Manager's bounds on `ClientRequestToken`.
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 32..=64;
/// A secret ARN is at most 2048 characters; so is a name.
const MAX_SECRET_ID: usize = 2048;

#[derive(Debug)]
pub struct RotationRequest {
    pub step: RotationStep,
    /// The ARN on AWS (moto sends the name; both work as `SecretId`).
    pub secret_id: String,
    /// `ClientRequestToken`: the id of the version being created.
    pub token: String,
    /// Present in newer invocations; passed to `PutSecretValue` unchanged. `SecretString`'s
    /// `Debug` prints `[REDACTED]`.
    pub rotation_token: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the rotation event is not a JSON object")]
    NotAnObject,
    #[error("the rotation event lacks `{0}`")]
    Missing(&'static str),
    #[error("the rotation event's `{0}` is not a string")]
    NotAString(&'static str),
    #[error(
        "unknown rotation step `{0}`: expected createSecret, setSecret, testSecret or finishSecret"
    )]
    UnknownStep(String),
    #[error("`SecretId` must be 1 to {MAX_SECRET_ID} characters")]
    BadSecretId,
    #[error(
        "`ClientRequestToken` must be 32 to 64 printable ASCII characters (got {0} characters)"
    )]
    BadToken(usize),
}

impl RotationRequest {
    pub fn parse(event: &Value) -> Result<Self, RequestError> {
        let object = event.as_object().ok_or(RequestError::NotAnObject)?;
        let text = |field: &'static str| -> Result<&str, RequestError> {
            match object.get(field) {
                None | Some(Value::Null) => Err(RequestError::Missing(field)),
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(RequestError::NotAString(field)),
            }
        };
        let name = text("Step")?;
        let Some(step) = RotationStep::ALL.into_iter().find(|s| s.as_str() == name) else {
            // The step is echoed back to say what was wrong; cap it so a hostile event cannot
            // put a novel into the logs.
            let shown: String = name.chars().take(40).collect();
            return Err(RequestError::UnknownStep(
                shown.escape_default().to_string(),
            ));
        };
        let secret_id = text("SecretId")?;
        if secret_id.is_empty() || secret_id.len() > MAX_SECRET_ID {
            return Err(RequestError::BadSecretId);
        }
        let token = text("ClientRequestToken")?;
        if !TOKEN_LEN.contains(&token.len()) || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(RequestError::BadToken(token.chars().count()));
        }
        let rotation_token = match object.get("RotationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(SecretString::from(s.clone())),
            Some(_) => return Err(RequestError::NotAString("RotationToken")),
        };
        Ok(Self {
            step,
            secret_id: secret_id.to_owned(),
            token: token.to_owned(),
            rotation_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    const TOKEN: &str = "0190a6f2-4c3b-7d1e-9a2b-3c4d5e6f7a8b";

    #[test]
    fn reads_every_step_and_the_optional_rotation_token() {
        for (name, step) in [
            ("createSecret", RotationStep::CreateSecret),
            ("setSecret", RotationStep::SetSecret),
            ("testSecret", RotationStep::TestSecret),
            ("finishSecret", RotationStep::FinishSecret),
        ] {
            let request = RotationRequest::parse(&json!({
                "Step": name, "SecretId": "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf",
                "ClientRequestToken": TOKEN,
            }))
            .unwrap();
            assert_eq!(request.step, step);
            assert!(request.rotation_token.is_none());
        }
        let request = RotationRequest::parse(&json!({
            "Step": "createSecret", "SecretId": "s", "ClientRequestToken": TOKEN,
            "RotationToken": "rt-very-secret-value", "SomethingNew": 1
        }))
        .unwrap();
        assert_eq!(
            request.rotation_token.as_ref().unwrap().expose_secret(),
            "rt-very-secret-value"
        );
        assert!(!format!("{request:?}").contains("rt-very-secret-value"));
    }

    #[test]
    fn the_sample_events_parse_as_documented() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/rotation");
        for (file, ok) in [
            ("createSecret.json", true),
            ("setSecret.json", true),
            ("testSecret.json", true),
            ("finishSecret.json", true),
            ("unknown-step.json", false),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let parsed = RotationRequest::parse(&serde_json::from_str(&text).unwrap());
            assert_eq!(parsed.is_ok(), ok, "{file}: {parsed:?}");
        }
    }

    #[test]
    fn every_defect_has_its_own_message() {
        let cases = [
            (json!([]), RequestError::NotAnObject),
            (
                json!({"SecretId": "s", "ClientRequestToken": TOKEN}),
                RequestError::Missing("Step"),
            ),
            (
                json!({"Step": 3, "SecretId": "s", "ClientRequestToken": TOKEN}),
                RequestError::NotAString("Step"),
            ),
            (
                json!({"Step": "create_secret", "SecretId": "s", "ClientRequestToken": TOKEN}),
                RequestError::UnknownStep("create_secret".into()),
            ),
            (
                json!({"Step": "setSecret", "SecretId": "", "ClientRequestToken": TOKEN}),
                RequestError::BadSecretId,
            ),
            (
                json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": "short"}),
                RequestError::BadToken(5),
            ),
            (
                json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": TOKEN, "RotationToken": 7}),
                RequestError::NotAString("RotationToken"),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(RotationRequest::parse(&event).unwrap_err(), expected);
        }
        let long = "x".repeat(10_000);
        let err = RotationRequest::parse(
            &json!({"Step": long, "SecretId": "s", "ClientRequestToken": TOKEN}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.len() < 200, "{err}");
    }
}
