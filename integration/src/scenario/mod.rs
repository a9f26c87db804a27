//! The scripted scenario the local stack runs: provision, read governance back, route domain
//! events to the functions, and check every outcome. Each function's steps are a module of
//! their own; [`run`] plays them in order on one [`Scenario`].

mod anomaly;
mod audit;
mod drift;
mod gateway;
mod governance;
mod posture;
mod rotation;
mod vercel;

use anyhow::Result;
use keyward_shared::redact::ExposeSecret;

use crate::stack::{LocalStack, StackOptions};

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct ScenarioReport {
    pub checks: Vec<Check>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The stack being played, what the steps found so far, and what they carry over.
struct Scenario {
    stack: LocalStack,
    report: ScenarioReport,
    verbose: bool,
    /// How many audit objects the last count found.
    audited: usize,
    /// Every OIDC token sent, for the log scan.
    tokens: Vec<String>,
    /// Drift fingerprints the posture showed open before their fix.
    open_drift: Vec<String>,
}

impl Scenario {
    fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.report.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        });
    }

    /// Counts the audit objects again: whether exactly `added` were written since the last
    /// count, and how many there are now.
    async fn audit_grew(&mut self, added: usize) -> Result<(bool, usize)> {
        let now = self.stack.audit_versions().await?.len();
        let grew = now == self.audited + added;
        self.audited = now;
        Ok((grew, now))
    }
}

pub async fn run(options: &StackOptions, verbose: bool) -> Result<(LocalStack, ScenarioReport)> {
    let stack = LocalStack::start(options).await?;
    if verbose {
        describe(&stack);
    }
    let mut scenario = Scenario {
        stack,
        report: ScenarioReport::default(),
        verbose,
        audited: 0,
        tokens: Vec::new(),
        open_drift: Vec::new(),
    };
    let s = &mut scenario;
    governance::round_trip(s).await?;
    audit::route_events(s).await?;
    vercel::sweep(s).await?;
    rotation::rotate_each_strategy(s).await?;
    vercel::rotation_reaches_vercel(s).await?;
    anomaly::forward_anomalies(s).await?;
    gateway::call_the_gateway(s).await?;
    drift::remediate_drift(s).await?;
    audit::seal_and_verify(s).await?;
    posture::daily_report(s).await?;
    no_secret_in_logs(s);
    Ok((scenario.stack, scenario.report))
}

fn describe(stack: &LocalStack) {
    println!(
        "moto at {}; bus {}; audit bucket {}",
        stack.moto.endpoint, stack.bus.name, stack.audit.bucket
    );
    println!(
        "functions: {}",
        stack
            .functions
            .values()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// No provisioned or rotated secret value (nor a token) appears in any function's logs.
fn no_secret_in_logs(s: &mut Scenario) {
    let logs = s.stack.function_logs();
    let leaked = s
        .stack
        .provisioned_values
        .iter()
        .filter(|v| logs.contains(v.expose_secret()))
        .count()
        + s.tokens
            .iter()
            .filter(|t| logs.contains(t.as_str()) || logs.contains(&t[t.len() - 40..]))
            .count();
    s.check(
        "no secret value in logs",
        leaked == 0 && !logs.is_empty(),
        format!("{} log bytes scanned, {leaked} leaks", logs.len()),
    );
}
