//! Rotation: the stack plays Secrets Manager (RotateSecret in moto, then the four steps through
//! the rotation function's Runtime API) for one secret of each strategy, and a manual secret is
//! refused.

use anyhow::Result;
use keyward_shared::redact::SecretString;

use super::Scenario;
use crate::stack::{APP_DATABASE, LocalStack};

const ROTATING: [&str; 3] = [
    "/acme/dev/web/session-key",
    "/acme/prod/payments/db-credentials",
    "/acme/prod/web/auth0-m2m",
];

pub(super) async fn rotate_each_strategy(s: &mut Scenario) -> Result<()> {
    let mut rotated = 0;
    let mut failures = Vec::new();
    for name in ROTATING {
        match rotate_one(s, name).await? {
            Ok(()) => rotated += 1,
            Err(failure) => failures.push(failure),
        }
    }
    s.check(
        "rotation: every strategy end to end",
        failures.is_empty() && rotated == 3,
        if failures.is_empty() {
            format!(
                "{rotated} secrets rotated (random, postgres-alternating-users, auth0-client-secret)"
            )
        } else {
            failures.join("; ")
        },
    );
    let token = uuid::Uuid::new_v4().to_string();
    let manual_refusal = match s
        .stack
        .rotate("/acme/prod/payments/stripe-api-key", &token)
        .await
    {
        Ok(()) => "a manual secret was rotated".into(),
        Err(err) => err.to_string(),
    };
    s.check(
        "rotation: manual secret refused",
        manual_refusal.contains("GovernanceError"),
        manual_refusal.clone(),
    );
    let deliveries = s.stack.pump().await?;
    // 3 SecretRotated and 1 RotationFailed to the audit writer; the dev SecretRotated also to
    // vercel-sync, whose VercelSyncCompleted goes to the audit writer.
    let (audited, objects) = s.audit_grew(5).await?;
    s.check(
        "rotation events audited",
        deliveries == 6 && audited,
        format!(
            "{deliveries} deliveries (3 SecretRotated, 1 RotationFailed, 1 to vercel-sync, 1 VercelSyncCompleted); {objects} audit objects"
        ),
    );
    Ok(())
}

/// Rotates one secret; the inner `Err` says why it does not count as rotated. The new values
/// join the provisioned ones for the log scan.
async fn rotate_one(s: &mut Scenario, name: &str) -> Result<Result<(), String>> {
    let before = current(&s.stack, name).await;
    let token = uuid::Uuid::new_v4().to_string();
    let started = std::time::Instant::now();
    if let Err(err) = s.stack.rotate(name, &token).await {
        return Ok(Err(format!("{name}: {err}")));
    }
    let after = current(&s.stack, name).await;
    let doc: serde_json::Value = serde_json::from_str(&after).unwrap_or_default();
    for field in ["password", "client_secret"] {
        if let Some(value) = doc[field].as_str() {
            s.stack
                .provisioned_values
                .push(SecretString::from(value.to_owned()));
        }
    }
    s.stack
        .provisioned_values
        .push(SecretString::from(after.clone()));
    let works = works(&s.stack, name, &after, &doc).await;
    if after == before || !works {
        return Ok(Err(format!(
            "{name}: AWSCURRENT changed={}, works={works}",
            after != before
        )));
    }
    if s.verbose {
        let user = doc["username"]
            .as_str()
            .map(|u| format!(" (now {u})"))
            .unwrap_or_default();
        let ms = started.elapsed().as_millis();
        println!("rotated {name}{user} in {ms} ms");
    }
    Ok(Ok(()))
}

async fn current(stack: &LocalStack, name: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config())
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .ok()
        .and_then(|o| o.secret_string)
        .unwrap_or_default()
}

/// The rotated credential works where it is used.
async fn works(stack: &LocalStack, name: &str, after: &str, doc: &serde_json::Value) -> bool {
    let rotation = &stack.rotation;
    if name.ends_with("db-credentials") {
        let user = doc["username"].as_str().unwrap_or_default();
        let password = doc["password"].as_str().unwrap_or_default();
        rotation
            .postgres
            .connect_as(user, password, APP_DATABASE)
            .await
            .is_ok()
    } else if name.ends_with("auth0-m2m") {
        let client = rotation.auth0_clients.get(name);
        client
            .and_then(|id| rotation.auth0.fake.secret_of(id))
            .as_deref()
            == doc["client_secret"].as_str()
    } else {
        !after.is_empty()
    }
}
