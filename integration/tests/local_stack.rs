//! The local stack end to end: the real function binaries, routed by the template's rules.
//! Needs the binaries built (`cargo build --workspace --bins`, which scripts/test.sh does).

use keyward_integration::scenario;
use keyward_integration::stack::StackOptions;

#[tokio::test]
async fn the_scenario_passes_every_check() {
    let options = StackOptions::defaults();
    let (stack, report) = scenario::run(&options, false).await.unwrap();
    let failures: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    assert!(failures.is_empty(), "failed checks: {failures:#?}");
    assert!(report.checks.len() >= 9);
    // Every routed delivery is on the timeline, with its rule and function.
    assert!(
        stack
            .timeline
            .iter()
            .any(|t| t.rule == "AuditWriterFunction.AllDomainEvents"
                && t.function == "audit-writer"
                && t.outcome.starts_with("written "))
    );
}
