//! The Vercel sync: the parity sweep mirrors this (dev) stack's mapped secrets into the fake
//! Vercel project and a second sweep writes nothing; after rotation the new value reaches
//! Vercel and one redeploy runs.

use anyhow::Result;

use super::Scenario;
use crate::stack::LocalStack;

/// The dev secret with a Vercel mapping (preview and development, `SESSION_SECRET`).
const VERCEL_SECRET: &str = "/acme/dev/web/session-key";

pub(super) async fn sweep(s: &mut Scenario) -> Result<()> {
    let now = chrono::Utc::now();
    let first = s.stack.tick("VercelSyncFunction.ParitySweep", now).await?;
    let (mirrored, detail) = matches_current(&s.stack, VERCEL_SECRET).await?;
    let second = s.stack.tick("VercelSyncFunction.ParitySweep", now).await?;
    s.check(
        "vercel: sweep mirrors mapped secrets",
        mirrored && first["writes"].as_u64() == Some(1),
        format!("{detail}; {} write call(s)", first["writes"]),
    );
    let second_sweep_writes = second["writes"].as_u64().unwrap_or(u64::MAX);
    s.check(
        "vercel: parity sweep writes nothing",
        second_sweep_writes == 0,
        format!("{second_sweep_writes} write call(s) on the second sweep"),
    );
    let deliveries = s.stack.pump().await?;
    let (audited, objects) = s.audit_grew(1).await?;
    s.check(
        "vercel: sync events audited",
        deliveries == 1 && audited,
        format!("{deliveries} VercelSyncCompleted delivered; {objects} audit objects"),
    );
    Ok(())
}

/// After the rotation step: the rotated value is in Vercel, and the two queued redeploy
/// requests (sweep, rotation) make one deployment.
pub(super) async fn rotation_reaches_vercel(s: &mut Scenario) -> Result<()> {
    let (rotated, detail) = matches_current(&s.stack, VERCEL_SECRET).await?;
    let (requests, _) = s.stack.drain_redeploys().await?;
    let vercel = &s.stack.vercel;
    let deployments = vercel.api.fake.deployments(&vercel.project);
    s.check(
        "vercel: rotation reaches Vercel, one redeploy",
        rotated && deployments == 1 && requests == 2,
        format!(
            "{detail}; {deployments} deployment(s) for {requests} queued request(s) (sweep, rotation)"
        ),
    );
    Ok(())
}

/// Whether every record keyward wrote for `secret` holds its AWSCURRENT value (the fake keeps
/// values; the real API would not show sensitive ones).
async fn matches_current(stack: &LocalStack, secret: &str) -> Result<(bool, String)> {
    let current = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config())
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await?
        .secret_string
        .unwrap_or_default();
    let marker = format!("secret={secret};");
    let ours: Vec<_> = stack
        .vercel
        .api
        .fake
        .envs(&stack.vercel.project)
        .into_iter()
        .filter(|e| e.comment.as_deref().is_some_and(|c| c.contains(&marker)))
        .collect();
    let targets: Vec<String> = ours.iter().map(|e| e.target.join("+")).collect();
    let matching = ours.iter().filter(|e| e.value == current).count();
    Ok((
        ours.len() == 2 && matching == 2,
        format!(
            "{secret}: {matching}/{} records hold AWSCURRENT ({})",
            ours.len(),
            targets.join(", ")
        ),
    ))
}
