//! `keyward-bench`: prints the benchmark table. Figures, not pass/fail: targets are judged by
//! reading them (timed assertions flake on shared machines).
//!
//! Rows: the release binary size of every function in the template, and each function's cold
//! start (process spawn to first response through the local Runtime API, doing its real work
//! against moto) side by side with a Python + boto3 handler doing the same, with peak RSS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use keyward_integration::moto::MotoServer;
use keyward_integration::router::TemplateModel;
use keyward_integration::runtime_api::LocalFunction;
use keyward_shared::events::{Actor, CorrelationId, DomainEvent, EventData, Outcome, Severity};

#[derive(Parser)]
struct Args {
    /// Directory with the release binaries.
    #[arg(long, default_value_os_t = keyward_integration::target_dir().join("release"))]
    bin_dir: PathBuf,
    /// Cold starts measured per program (the median is reported).
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

fn envelope() -> serde_json::Value {
    let event = DomainEvent::new(
        CorrelationId::generate(),
        Actor::service("drift-detector"),
        None,
        Outcome::Detected,
        EventData::DriftDetected {
            fingerprint: "bench".into(),
            finding: "rotation-disabled".into(),
            severity: Severity::Low,
            evidence: Default::default(),
        },
    );
    serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": event.detail_type(), "source": event.source(),
        "account": "123456789012", "time": event.time.to_rfc3339(), "region": keyward_integration::moto::REGION, "resources": [],
        "detail": serde_json::to_value(&event).unwrap_or_default(),
    })
}

struct ColdStart {
    median_ms: f64,
    p90_ms: f64,
    peak_rss_mib: f64,
}

async fn measure(
    runs: usize,
    spawn: impl Fn(
        usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<LocalFunction>>>,
    >,
) -> Result<ColdStart> {
    let mut times = Vec::with_capacity(runs);
    let mut peak = 0u64;
    for run in 0..runs {
        let function = spawn(run).await?;
        function
            .invoke(&envelope(), Duration::from_secs(60))
            .await
            .with_context(|| {
                format!(
                    "{} failed; see {}",
                    function.name,
                    function.log_path.display()
                )
            })?;
        times.push(function.started_at.elapsed().as_secs_f64() * 1000.0);
        peak = peak.max(function.peak_rss_kib().unwrap_or(0));
        function.stop();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(ColdStart {
        median_ms: times[times.len() / 2],
        p90_ms: times[(times.len() * 9 / 10).min(times.len() - 1)],
        peak_rss_mib: peak as f64 / 1024.0,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = keyward_integration::repo_root();
    let model = TemplateModel::load(&root.join("infra/template.yaml"))?;
    let moto = MotoServer::start().await?;
    let s3 = moto.s3();
    let bucket = "keyward-bench";
    s3.create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    keyward_integration::moto::REGION,
                ))
                .build(),
        )
        .send()
        .await?;
    let mut env = moto.function_env();
    env.push(("AUDIT_BUCKET".into(), bucket.into()));
    env.push(("KEYWARD_EVENT_BUS".into(), "keyward-bench".into()));
    let logs = keyward_integration::target_dir().join("keyward-logs/bench");

    println!(
        "keyward benchmarks ({} runs per cold start, {} cores)",
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    println!("| metric | keyward | baseline | ratio |");
    println!("|---|---:|---:|---:|");
    for function in model.functions.values() {
        let binary = args.bin_dir.join(&function.binary);
        let size = std::fs::metadata(&binary)
            .with_context(|| {
                format!(
                    "{} missing: run scripts/bench.sh (it builds the release binaries)",
                    binary.display()
                )
            })?
            .len();
        println!(
            "| {} release binary ({}) | {:.2} MiB | | |",
            function.binary,
            std::env::consts::ARCH,
            size as f64 / 1_048_576.0
        );
    }
    let python = keyward_integration::venv_dir().join("bin/python");
    let handler = root.join("integration/bench/python_handler.py");
    for function in model.functions.values() {
        let binary = args.bin_dir.join(&function.binary);
        let rust = measure(args.runs, |run| {
            let (binary, env, log) = (
                binary.clone(),
                env.clone(),
                logs.join(format!("{}-{run}.log", function.binary)),
            );
            Box::pin(async move { LocalFunction::spawn("bench-rust", &binary, &env, &log).await })
        })
        .await?;
        let baseline = if function.binary == "audit-writer" {
            Some(
                measure(args.runs, |run| {
                    let (python, handler, env, log) = (
                        python.clone(),
                        handler.clone(),
                        env.clone(),
                        logs.join(format!("python-{run}.log")),
                    );
                    Box::pin(async move {
                        LocalFunction::spawn_program(
                            "bench-python",
                            &python,
                            &[handler.to_str().unwrap_or_default()],
                            &env,
                            &log,
                        )
                        .await
                    })
                })
                .await?,
            )
        } else {
            None
        };
        let cell = |b: &Option<ColdStart>, f: fn(&ColdStart) -> f64, unit: &str| {
            b.as_ref()
                .map(|b| format!("{:.1} {unit}", f(b)))
                .unwrap_or_default()
        };
        let ratio = |b: &Option<ColdStart>, f: fn(&ColdStart) -> f64, r: f64| {
            b.as_ref()
                .map(|b| format!("{:.1}x", f(b) / r))
                .unwrap_or_default()
        };
        println!(
            "| {} cold start, median (spawn → first response, real S3 write) | {:.1} ms | {} | {} |",
            function.binary,
            rust.median_ms,
            cell(&baseline, |b| b.median_ms, "ms"),
            ratio(&baseline, |b| b.median_ms, rust.median_ms)
        );
        println!(
            "| {} cold start, p90 | {:.1} ms | {} | {} |",
            function.binary,
            rust.p90_ms,
            cell(&baseline, |b| b.p90_ms, "ms"),
            ratio(&baseline, |b| b.p90_ms, rust.p90_ms)
        );
        println!(
            "| {} peak RSS during cold start | {:.1} MiB | {} | {} |",
            function.binary,
            rust.peak_rss_mib,
            cell(&baseline, |b| b.peak_rss_mib, "MiB"),
            ratio(&baseline, |b| b.peak_rss_mib, rust.peak_rss_mib)
        );
    }
    println!();
    println!(
        "baseline: Python {} + boto3 (integration/bench/python_handler.py) doing the same PUT",
        python.display()
    );
    Ok(())
}
