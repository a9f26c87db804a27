//! Governance reads back from ListSecrets alone (the tag contract round trip).

use anyhow::Result;
use keyward_shared::adapters::aws::SecretsManagerCatalog;
use keyward_shared::manifest::DeclaredSecret;
use keyward_shared::ports::SecretCatalog;

use super::Scenario;

pub(super) async fn round_trip(s: &mut Scenario) -> Result<()> {
    let stack = &s.stack;
    let catalog = SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(
        &stack.moto.sdk_config(),
    ));
    let listed = catalog.list(&format!("/{}/", stack.manifest.org)).await?;
    if s.verbose {
        println!(
            "\n{:<42} {:<13} {:<30} vercel",
            "secret", "class", "rotation"
        );
    }
    let mut round_trips = 0;
    for declared in &stack.manifest.secrets {
        let entry = listed.iter().find(|e| e.name == declared.name.to_string());
        let governance = entry
            .and_then(|e| e.governance.as_ref().ok())
            .and_then(|g| g.as_ref());
        if governance == Some(&declared.governance) {
            round_trips += 1;
        }
        if s.verbose {
            print_row(declared);
        }
    }
    let declared = stack.manifest.secrets.len();
    s.check(
        "tag contract round trip",
        round_trips == declared,
        format!("{round_trips}/{declared} declared secrets read back identically from ListSecrets"),
    );
    Ok(())
}

fn print_row(declared: &DeclaredSecret) {
    let g = &declared.governance;
    let vercel = g
        .vercel
        .as_ref()
        .map(|v| {
            let targets: Vec<&str> = v.targets.iter().map(|t| t.as_str()).collect();
            format!("{} → {}", v.project, targets.join(","))
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "{:<42} {:<13} {:<30} {}",
        declared.name.to_string(),
        g.classification.as_str(),
        format!(
            "{} / {} days",
            g.rotation.strategy,
            g.rotation.interval.days()
        ),
        vercel
    );
}
