//! The CI gateway, called as GitHub Actions would with tokens from the fake OIDC issuer: a
//! preflight, a denial, a sync request and its replay, all decisions audited.

use anyhow::Result;
use serde_json::json;

use super::Scenario;
use crate::stack::GATEWAY_AUDIENCE;

pub(super) async fn call_the_gateway(s: &mut Scenario) -> Result<()> {
    let issuer = s.stack.gateway.oidc.fake.clone();
    let prod_payments = json!({"environment": "prod", "service": "payments"});
    // acme/payments deploying to prod from main (binding payments-deploy).
    let deploy = issuer.sign(&issuer.github_claims(GATEWAY_AUDIENCE));
    let (status, body) = s
        .stack
        .call_gateway("/v1/preflight", &deploy, &prod_payments, "")
        .await?;
    s.check(
        "gateway: preflight answers (OIDC verified)",
        status == 200 || status == 412,
        format!(
            "{status}: {} checks, {} missing",
            body["checklist"].as_array().map(Vec::len).unwrap_or(0),
            body["missing"].as_array().map(Vec::len).unwrap_or(0)
        ),
    );
    // The same repository name, recreated (new id): no binding.
    let mut claims = issuer.github_claims(GATEWAY_AUDIENCE);
    claims["repository_id"] = "2999999".into();
    let impostor = issuer.sign(&claims);
    let (status, body) = s
        .stack
        .call_gateway(
            "/v1/preflight",
            &impostor,
            &prod_payments,
            "recreated repository",
        )
        .await?;
    s.check(
        "gateway: unbound repository denied",
        status == 403,
        body["error"]["message"].as_str().unwrap_or(""),
    );
    // acme/web's release workflow asks for a Vercel sync, then replays its token.
    let mut claims = issuer.github_claims(GATEWAY_AUDIENCE);
    claims["repository"] = "acme/web".into();
    claims["repository_id"] = "2000003".into();
    claims["event_name"] = "workflow_dispatch".into();
    claims["job_workflow_ref"] = "acme/web/.github/workflows/release.yml@refs/heads/main".into();
    let release = issuer.sign(&claims);
    let scope = json!({"environment": "prod", "service": "web"});
    let (sync, _) = s
        .stack
        .call_gateway("/v1/sync/vercel", &release, &scope, "")
        .await?;
    let (replay, body) = s
        .stack
        .call_gateway("/v1/sync/vercel", &release, &scope, "replayed token")
        .await?;
    s.check(
        "gateway: sync requested once, replay refused",
        sync == 202 && replay == 401,
        format!(
            "first {sync} then {replay} ({})",
            body["error"]["message"].as_str().unwrap_or("")
        ),
    );
    s.tokens.extend([deploy, impostor, release]);
    let deliveries = s.stack.pump().await?;
    // Decisions: preflight allowed, the unbound repository denied, the sync allowed, the
    // replay's policy check allowed and then the replay itself refused (every refusal of an
    // authenticated caller is audited); one VercelSyncRequested. The three refusals also reach
    // the anomaly forwarder (keyward watching itself), under the burst threshold.
    let (audited, objects) = s.audit_grew(6).await?;
    s.check(
        "gateway: decisions and the sync request audited",
        deliveries == 6 + 3 && audited,
        format!(
            "{deliveries} deliveries (6 to the audit writer, 3 refusals to the forwarder); {objects} audit objects"
        ),
    );
    Ok(())
}
