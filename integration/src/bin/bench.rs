//! `keyward-bench`: prints the benchmark table. Figures, not pass/fail: targets are judged by
//! reading them (timed assertions flake on shared machines).
//!
//! Rows: the release binary size of every function in the template; each function's cold start
//! (process spawn to first response through the local Runtime API, doing its real work against
//! moto), split into init (spawn to the first poll for an event), start-up cost (cold start less
//! a warm invocation of the same event) and that warm invocation, with peak RSS, each against
//! the bare reference function of the same run, and the audit writer and rotation side by side
//! with Python + boto3 handlers doing the same; audit verification throughput against
//! `sha256sum`; audit writes per second against moto; and the other areas' rows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use keyward_integration::moto::{BucketKind, MotoServer, REGION};
use keyward_integration::router::{TemplateModel, TemplateValue};
use keyward_integration::runtime_api::LocalFunction;
use keyward_integration::samples;
use keyward_shared::audit::{
    self, DigestDocument, DigestEntry, DigestSigner, DigestWriter, InMemoryAuditBucket,
    LocalKeySigner,
};

#[derive(Parser)]
struct Args {
    /// Directory with the release binaries.
    #[arg(long, default_value_os_t = keyward_integration::target_dir().join("release"))]
    bin_dir: PathBuf,
    /// Cold starts measured per program (the median is reported).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Records in the verification benchmark.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Only the rows of one area (`cold-start` (with binary sizes), `vercel`, `drift`,
    /// `posture`, `render`, `verify`, `cloudtrail` or `quality`), for a quick look; the full
    /// table by default.
    #[arg(long)]
    only: Option<String>,
    /// Secrets in the drift benchmark.
    #[arg(long, default_value_t = 5_000)]
    drift_secrets: usize,
    /// Secrets in the render benchmark.
    #[arg(long, default_value_t = 10_000)]
    render_secrets: usize,
}

fn domain_envelope() -> serde_json::Value {
    samples::envelope(&samples::drift_detected("bench"))
}

fn scheduled_envelope() -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": REGION,
        "resources": [], "detail": {}
    })
}

struct ColdStart {
    /// Spawn to first response.
    median_ms: f64,
    p90_ms: f64,
    /// Spawn to the first poll for an event (Lambda's `Init Duration`).
    init_ms: f64,
    /// The same event again in the same process: the job without the start.
    warm_ms: f64,
    /// Cold start less the warm invocation: what starting costs beyond the job (init, first
    /// connections, anything built lazily on first use).
    startup_ms: f64,
    peak_rss_mib: f64,
}

/// One printed row of a function's cold-start figures.
struct ColdStartRow {
    label: String,
    figure: fn(&ColdStart) -> f64,
    unit: &'static str,
    bare: AgainstBare,
}

/// Whether a row also gives the figure as a multiple of the bare function's.
enum AgainstBare {
    Shown,
    Omitted,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

type Spawn<'a> = Box<
    dyn Fn(
            usize,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<LocalFunction>> + 'a>,
        > + 'a,
>;

async fn measure(
    runs: usize,
    spawn: Spawn<'_>,
    event: &dyn Fn() -> serde_json::Value,
) -> Result<ColdStart> {
    let (mut times, mut inits, mut warms, mut startups) = (
        Vec::with_capacity(runs),
        Vec::with_capacity(runs),
        Vec::with_capacity(runs),
        Vec::with_capacity(runs),
    );
    let mut peak = 0u64;
    for run in 0..runs {
        let function = spawn(run).await?;
        let failed = |function: &LocalFunction| {
            format!(
                "{} failed; see {}",
                function.name,
                function.log_path.display()
            )
        };
        function
            .invoke(&event(), Duration::from_secs(60))
            .await
            .with_context(|| failed(&function))?;
        let cold = function.started_at.elapsed().as_secs_f64() * 1000.0;
        let init = function
            .init_duration()
            .ok_or_else(|| anyhow!("{} answered without polling for an event", function.name))?
            .as_secs_f64()
            * 1000.0;
        let warm_started = Instant::now();
        function
            .invoke(&event(), Duration::from_secs(60))
            .await
            .with_context(|| failed(&function))?;
        let warm = warm_started.elapsed().as_secs_f64() * 1000.0;
        times.push(cold);
        inits.push(init);
        warms.push(warm);
        startups.push(cold - warm);
        peak = peak.max(function.peak_rss_kib().unwrap_or(0));
        function.stop();
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Ok(ColdStart {
        median_ms: median(times),
        p90_ms: sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)],
        init_ms: median(inits),
        warm_ms: median(warms),
        startup_ms: median(startups),
        peak_rss_mib: peak as f64 / 1024.0,
    })
}

/// Spawns the release binary `name` for each run, its log under `logs`.
fn spawn_binary<'a>(
    bin_dir: &std::path::Path,
    name: &str,
    env: &[(String, String)],
    logs: &std::path::Path,
) -> Spawn<'a> {
    let (binary, env, logs, name) = (
        bin_dir.join(name),
        env.to_vec(),
        logs.to_path_buf(),
        name.to_owned(),
    );
    Box::new(move |run| {
        let (binary, env, log) = (
            binary.clone(),
            env.clone(),
            logs.join(format!("{name}-{run}.log")),
        );
        Box::pin(async move { LocalFunction::spawn("bench-rust", &binary, &env, &log).await })
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = keyward_integration::repo_root();
    let model = TemplateModel::load(&root.join("infra/template.yaml"))?;
    if args.only.as_deref() == Some("quality") {
        return quality_rows();
    }
    match args.only.as_deref() {
        // These need neither moto nor the template.
        Some("render") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return render_row(&args.bin_dir, args.render_secrets);
        }
        Some("verify") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return verify_row(args.records).await;
        }
        _ => {}
    }
    let moto = MotoServer::start().await?;
    match args.only.as_deref() {
        None | Some("cold-start") => {}
        Some("vercel") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return vercel_rows(&moto).await;
        }
        Some("drift") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return drift_rows(&moto, args.drift_secrets).await;
        }
        Some("posture") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return posture_row(&args.bin_dir, &moto, args.drift_secrets).await;
        }
        Some("cloudtrail") => {
            println!("| metric | keyward | baseline | baseline / keyward |");
            println!("|---|---:|---:|---:|");
            return cloudtrail_rows(&args.bin_dir, args.records);
        }
        Some(other) => anyhow::bail!(
            "--only takes `cold-start`, `vercel`, `drift`, `posture`, `render`, `verify`, `cloudtrail` or `quality`, not `{other}`"
        ),
    }
    let bucket = "keyward-bench";
    moto.create_bucket(bucket, BucketKind::ObjectLockCompliance { days: 1 })
        .await?;
    let kms_key = moto.create_signing_key().await?;
    // A governed secret for the rotation function's first event: a step for its current
    // version, which both sides answer after the protocol guard (DescribeSecret).
    let probe = aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .create_secret()
        .name("/acme/dev/bench/rotation-probe")
        .secret_string("bench-initial-value")
        .set_tags(Some(keyward_shared::adapters::aws::tags_to_sdk(
            &samples::governance_tags("random", &[]),
        )))
        .send()
        .await?;
    let rotation_event = serde_json::json!({
        "Step": "testSecret",
        "SecretId": probe.arn.clone().unwrap_or_default(),
        "ClientRequestToken": probe.version_id.clone().unwrap_or_default(),
    });
    let rotation_event = move || rotation_event.clone();
    // The anomaly forwarder's first event: one denied read from the CloudTrail stream (state
    // and ledger in a bucket, the alert to the bus); the gateway's: a preflight with a token
    // from the fake GitHub issuer (its JWKS fetched at cold start).
    let state_bucket = "keyward-bench-state";
    moto.create_bucket(state_bucket, BucketKind::Versioned)
        .await?;
    aws_sdk_eventbridge::Client::new(&moto.sdk_config())
        .create_event_bus()
        .name("keyward-bench")
        .send()
        .await?;
    let stream_event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("events/anomaly-forwarder/get-secret-value-denied.json"),
    )?)?;
    let anomaly_event = move || {
        let mut event = stream_event.clone();
        event["detail"]["eventID"] = uuid::Uuid::new_v4().to_string().into();
        event
    };
    let issuer = keyward_integration::fakes::oidc::FakeIssuer::start().await?;
    let gateway_event = {
        let fake = issuer.fake.clone();
        move || gateway_request(&fake.sign(&fake.github_claims(GATEWAY_AUDIENCE)))
    };
    let logs = keyward_integration::target_dir().join("keyward-logs/bench");
    for (name, text) in keyward_integration::declared::manifest_files("acme") {
        moto.s3()
            .put_object()
            .bucket(state_bucket)
            .key(format!("manifest/{name}"))
            .body(text.into_bytes().into())
            .send()
            .await?;
    }
    // The Vercel sync's first event is a parity sweep against the fake Vercel API.
    let vercel = keyward_integration::fakes::vercel::FakeVercel::start(BENCH_VERCEL_TOKEN).await?;
    vercel
        .fake
        .add_project("acme-web", Some(("team_acme", "acme")));
    let vercel_credentials = aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .create_secret()
        .name("keyward-bench-vercel")
        .secret_string(serde_json::json!({"token": BENCH_VERCEL_TOKEN}).to_string())
        .send()
        .await?
        .arn
        .unwrap_or_default();

    println!(
        "keyward benchmarks ({} runs per cold start, {} cores, {})",
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::env::consts::ARCH
    );
    println!();
    println!("| metric | keyward | baseline | baseline / keyward |");
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
            "| {} release binary | {:.2} MiB | | |",
            function.binary,
            size as f64 / 1_048_576.0
        );
    }

    // The yardstick, measured in the same run and the same way as every function.
    let bare = measure(
        args.runs,
        spawn_binary(&args.bin_dir, "bare-reference", &moto.function_env(), &logs),
        &rotation_event,
    )
    .await?;
    println!(
        "| bare Rust function cold start, median (lambda_runtime, aws-config, one Secrets Manager client; one `DescribeSecret`): the yardstick | {:.1} ms | | |",
        bare.median_ms
    );
    println!(
        "| bare Rust function init, median (spawn → first poll for an event: Lambda's Init Duration) | {:.1} ms | | |",
        bare.init_ms
    );
    println!(
        "| bare Rust function start-up cost, median (cold start less a warm invocation of the same event) | {:.1} ms | | |",
        bare.startup_ms
    );
    println!(
        "| bare Rust function peak RSS | {:.1} MiB | | |",
        bare.peak_rss_mib
    );

    let python = keyward_integration::venv_dir().join("bin/python");
    for function in model.functions.values() {
        let mut env = moto.function_env();
        env.push(("KEYWARD_EVENT_BUS".into(), "keyward-bench".into()));
        for (name, value) in &function.env {
            let value = match (name.as_str(), value) {
                // The config layer at /opt in Lambda is infra/config here.
                ("KEYWARD_CONFIG_DIR", _) => root.join("infra/config").display().to_string(),
                (_, TemplateValue::Literal(v)) => v.clone(),
                ("AUDIT_BUCKET", _) => bucket.into(),
                ("DIGEST_KMS_KEY_ID", _) => kms_key.clone(),
                // The system trust store; the benchmark's event never opens a database.
                ("KEYWARD_DB_CA_BUNDLE" | "KEYWARD_DB_SYSTEM_TRUST_SECRETS", _) => String::new(),
                ("KEYWARD_STATE_BUCKET", _) => state_bucket.into(),
                ("KEYWARD_OIDC_AUDIENCE", _) => GATEWAY_AUDIENCE.into(),
                ("KEYWARD_OIDC_ISSUERS", _) => issuer.issuer(),
                ("KEYWARD_SECRET_PREFIX", _) => "/acme/dev/".into(),
                ("KEYWARD_VERCEL_CREDENTIALS_SECRET_ARN", _) => vercel_credentials.clone(),
                ("KEYWARD_VERCEL_API_URL", _) => vercel.api_url(),
                ("KEYWARD_VERCEL_REDEPLOY_QUEUE_URL", _) => String::new(),
                ("KEYWARD_VERCEL_REDEPLOY_DEBOUNCE_SECS", _) => "60".into(),
                // The drift detector reads the sample manifest from the state bucket and only
                // publishes events (no GitHub, Jira or webhook); the gateway's drift routes stay
                // unconfigured.
                ("KEYWARD_MANIFEST_S3_URI", _) => format!("s3://{state_bucket}/manifest/"),
                (
                    "KEYWARD_DRIFT_CREDENTIALS_SECRET_ARN"
                    | "KEYWARD_DRIFT_GITHUB_REPO"
                    | "KEYWARD_JIRA_URL"
                    | "KEYWARD_JIRA_PROJECT"
                    | "JIRA_ISSUE_TYPE"
                    | "ARGOCD_SERVER"
                    | "ARGOCD_APP_NAME"
                    | "NATIVE_CHECKS_AWS_COMMAND",
                    _,
                ) => String::new(),
                ("ENABLE_ARGOCD_CHECK" | "ENABLE_NATIVE_CHECKS", _) => "false".into(),
                ("WORKLOAD_NAMESPACE", _) => "default".into(),
                ("KEYWARD_GITHUB_API_URL", _) => "https://api.github.com".into(),
                ("ENABLE_JIRA_INTEGRATION" | "ENABLE_DRIFT_NOTIFICATIONS", _) => "false".into(),
                ("KEYWARD_DRIFT_UNUSED_DAYS", _) => "90".into(),
                ("MIN_DRIFT_PR_APPROVALS", _) => "2".into(),
                // No Loki, no webhook, no network rules: the alert goes to the bus only.
                (
                    "KEYWARD_LOKI_PUSH_URL"
                    | "KEYWARD_LOKI_TENANT"
                    | "KEYWARD_ALERT_WEBHOOK_SECRET_ARN"
                    | "KEYWARD_ALLOWED_CIDRS"
                    | "KEYWARD_ALLOWED_VPC_ENDPOINTS"
                    | "KEYWARD_AUTOMATION_PRINCIPALS"
                    | "KEYWARD_AUTOMATION_USER_AGENTS"
                    | "KEYWARD_PROTECTED_RESOURCES",
                    _,
                ) => String::new(),
                (other, _) => anyhow::bail!("the bench does not know how to provide {other}"),
            };
            env.push((name.clone(), value));
        }
        let scheduled = model
            .schedules
            .iter()
            .any(|s| s.function == function.logical_id);
        let event: &dyn Fn() -> serde_json::Value = if scheduled {
            &scheduled_envelope
        } else if function.binary == "rotation" {
            &rotation_event
        } else if function.binary == "anomaly-forwarder" {
            &anomaly_event
        } else if function.binary == "ci-gateway" {
            &gateway_event
        } else {
            &domain_envelope
        };
        let rust = measure(
            args.runs,
            spawn_binary(&args.bin_dir, &function.binary, &env, &logs),
            event,
        )
        .await?;
        let python_equivalent = match function.binary.as_str() {
            "audit-writer" => Some(root.join("integration/bench/python_handler.py")),
            "rotation" => Some(root.join("integration/bench/python_rotation_handler.py")),
            _ => None,
        };
        let baseline = match python_equivalent {
            Some(handler) => {
                let (python, env, logs) = (python.clone(), env.clone(), logs.clone());
                let label = function.binary.clone();
                Some(
                    measure(
                        args.runs,
                        Box::new(move |run| {
                            let (python, handler, env, log) = (
                                python.clone(),
                                handler.clone(),
                                env.clone(),
                                logs.join(format!("python-{label}-{run}.log")),
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
                        }),
                        event,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let cell = |f: fn(&ColdStart) -> f64, unit: &str| {
            baseline
                .as_ref()
                .map(|b| format!("{:.1} {unit}", f(b)))
                .unwrap_or_default()
        };
        let ratio = |f: fn(&ColdStart) -> f64| {
            baseline
                .as_ref()
                .map(|b| format!("{:.1}x", f(b) / f(&rust)))
                .unwrap_or_default()
        };
        let what = if scheduled {
            "scheduled run"
        } else if function.binary == "rotation" {
            "protocol guard of one step"
        } else if function.binary == "anomaly-forwarder" {
            "one CloudTrail event, alert delivered"
        } else if function.binary == "ci-gateway" {
            "JWKS fetch, token verified, preflight"
        } else {
            "one audit write"
        };
        let rows = [
            ColdStartRow {
                label: format!("cold start, median (spawn → first response, {what})"),
                figure: |c| c.median_ms,
                unit: "ms",
                bare: AgainstBare::Shown,
            },
            ColdStartRow {
                label: "init, median (spawn → first poll for an event)".into(),
                figure: |c| c.init_ms,
                unit: "ms",
                bare: AgainstBare::Shown,
            },
            ColdStartRow {
                label:
                    "start-up cost, median (cold start less a warm invocation of the same event)"
                        .into(),
                figure: |c| c.startup_ms,
                unit: "ms",
                bare: AgainstBare::Shown,
            },
            ColdStartRow {
                label: "warm invocation of the same event, median (the job alone)".into(),
                figure: |c| c.warm_ms,
                unit: "ms",
                bare: AgainstBare::Omitted,
            },
            ColdStartRow {
                label: "cold start, p90".into(),
                figure: |c| c.p90_ms,
                unit: "ms",
                bare: AgainstBare::Omitted,
            },
            ColdStartRow {
                label: "peak RSS".into(),
                figure: |c| c.peak_rss_mib,
                unit: "MiB",
                bare: AgainstBare::Omitted,
            },
        ];
        for row in rows {
            let figure = row.figure;
            let against = match row.bare {
                AgainstBare::Shown => format!(" ({:.2}x bare)", figure(&rust) / figure(&bare)),
                AgainstBare::Omitted => String::new(),
            };
            println!(
                "| {} {} | {:.1} {}{against} | {} | {} |",
                function.binary,
                row.label,
                figure(&rust),
                row.unit,
                cell(figure, row.unit),
                ratio(figure)
            );
        }
    }
    if args.only.is_some() {
        return Ok(());
    }
    gateway_rps_row(&issuer).await?;
    vercel_rows(&moto).await?;
    drift_rows(&moto, args.drift_secrets).await?;
    posture_row(&args.bin_dir, &moto, args.drift_secrets).await?;
    render_row(&args.bin_dir, args.render_secrets)?;
    verify_row(args.records).await?;
    cloudtrail_rows(&args.bin_dir, args.records)?;
    writes_row(&moto, args.runs).await?;
    println!();
    quality_rows()?;
    println!();
    println!(
        "baselines: {} + boto3 doing the same work (integration/bench/python_handler.py: the conditional PUT; python_rotation_handler.py: the rotation templates' start and step guard); `sha256sum` over the same record bytes",
        python.display()
    );
    Ok(())
}

const GATEWAY_AUDIENCE: &str = "https://keyward.acme.test/ci";
const BENCH_VERCEL_TOKEN: &str = "vcp_bench_token_0123456789";

type BenchSyncer = vercel_sync::Syncer<
    vercel_sync::source::SecretsManagerSource,
    vercel_sync::vercel::HttpVercel,
    keyward_shared::adapters::aws::S3MarkerStore,
    keyward_shared::ports::InMemoryEventPublisher,
    vercel_sync::redeploy::InMemoryRedeployQueue,
    keyward_integration::declared::LiveManifest,
>;

/// A syncer over moto (secrets, ledger bucket) and a fresh fake Vercel project.
async fn bench_syncer(
    moto: &MotoServer,
    prefix: &str,
    declared: keyward_integration::declared::LiveManifest,
) -> Result<(
    BenchSyncer,
    keyward_integration::fakes::vercel::RunningVercel,
)> {
    use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
    let vercel = keyward_integration::fakes::vercel::FakeVercel::start(BENCH_VERCEL_TOKEN).await?;
    vercel
        .fake
        .add_project("acme-web", Some(("team_acme", "acme")));
    let bucket = format!(
        "keyward-bench-vercel-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    moto.create_bucket(&bucket, BucketKind::Versioned).await?;
    let redactor = keyward_shared::redact::Redactor::new();
    let http = HttpClient::new(
        "keyward-bench",
        Duration::from_secs(10),
        RetryPolicy::default(),
        redactor.clone(),
    )?;
    let syncer = vercel_sync::Syncer {
        manifests: declared,
        source: vercel_sync::source::SecretsManagerSource::new(
            aws_sdk_secretsmanager::Client::new(&moto.sdk_config()),
            redactor.clone(),
        ),
        vercel: vercel_sync::vercel::HttpVercel::new(
            http,
            vercel.api_url(),
            keyward_shared::redact::SecretString::from(BENCH_VERCEL_TOKEN.to_owned()),
        ),
        state: keyward_shared::adapters::aws::S3MarkerStore::new(moto.s3(), &bucket),
        publisher: keyward_shared::ports::InMemoryEventPublisher::default(),
        redeploy: None,
        deploy_hooks: Default::default(),
        secret_prefix: prefix.to_owned(),
        debounce_secs: 0,
        redactor,
    };
    Ok((syncer, vercel))
}

/// Creates `count` internal secrets under `prefix`, each mapped to production, preview and
/// development, and declared so in `declared`.
async fn mapped_secrets(
    moto: &MotoServer,
    prefix: &str,
    count: usize,
    declared: &keyward_integration::declared::LiveManifest,
) -> Result<Vec<String>> {
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let mut arns = Vec::with_capacity(count);
    let mut pending = futures::stream::FuturesOrdered::new();
    for n in 0..count {
        let sm = sm.clone();
        let mut tags = samples::governance_tags(
            "random",
            &[
                ("keyward:vercel:project", "acme-web"),
                ("keyward:vercel:team", "team_acme"),
                ("keyward:vercel:targets", "production preview development"),
                ("keyward:vercel:key", &format!("SECRET_{n:05}")),
            ],
        );
        for tag in tags
            .iter_mut()
            .filter(|t| t.key == "keyward:classification")
        {
            tag.value = "internal".into();
        }
        let name = format!("{prefix}svc/secret-{n:05}");
        declared.declare_tags(&name, &tags);
        pending.push_back(async move {
            sm.create_secret()
                .name(name)
                .secret_string(format!("value-{n}"))
                .set_tags(Some(keyward_shared::adapters::aws::tags_to_sdk(&tags)))
                .send()
                .await
        });
        if pending.len() >= 8
            && let Some(out) = futures::StreamExt::next(&mut pending).await
        {
            arns.push(out?.arn.unwrap_or_default());
        }
    }
    while let Some(out) = futures::StreamExt::next(&mut pending).await {
        arns.push(out?.arn.unwrap_or_default());
    }
    Ok(arns)
}

/// Vercel API calls per sync of 50 secrets x 3 targets (first, unchanged, one rotated), and the
/// sweep time for 1,000 mapped secrets, all against the fake Vercel API and moto.
async fn vercel_rows(moto: &MotoServer) -> Result<()> {
    let calls = |vercel: &keyward_integration::fakes::vercel::RunningVercel| {
        let seen = vercel.fake.seen();
        let writes = seen.iter().filter(|s| s.method != "GET").count();
        vercel.fake.clear_seen();
        (seen.len(), writes)
    };
    let sweep =
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
            .to_string();
    let prefix = "/bench50/prod/";
    let declared = keyward_integration::declared::LiveManifest::default();
    let arns = mapped_secrets(moto, prefix, 50, &declared).await?;
    let (syncer, vercel) = bench_syncer(moto, prefix, declared).await?;
    for (label, prepare) in [
        ("first sync", false),
        ("unchanged re-sync", false),
        ("one rotated secret", true),
    ] {
        if prepare {
            aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
                .put_secret_value()
                .secret_id(&arns[7])
                .secret_string("rotated-value")
                .send()
                .await?;
        }
        let report = keyward_shared::lambda::Handler::handle(&syncer, &sweep)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let (total, writes) = calls(&vercel);
        println!(
            "| Vercel API calls, 50 secrets x 3 targets, {label} | {total} calls ({writes} writes, {} records changed) | | |",
            report.changed.len() * 3
        );
    }

    let prefix = "/bench1k/prod/";
    let created = Instant::now();
    let declared = keyward_integration::declared::LiveManifest::default();
    mapped_secrets(moto, prefix, 1_000, &declared).await?;
    let setup = created.elapsed().as_secs_f64();
    let (syncer, vercel) = bench_syncer(moto, prefix, declared).await?;
    for label in [
        "first sweep (3,000 records written)",
        "parity sweep (nothing to write)",
    ] {
        let started = Instant::now();
        let report = keyward_shared::lambda::Handler::handle(&syncer, &sweep)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let secs = started.elapsed().as_secs_f64();
        let (total, writes) = calls(&vercel);
        println!(
            "| Vercel sweep, 1,000 mapped secrets, {label} | {secs:.2} s ({total} Vercel calls, {writes} writes, {} secrets) | | |",
            report.secrets
        );
    }
    eprintln!("(creating the 1,000 secrets in moto took {setup:.1} s; not part of the sweep)");
    Ok(())
}

/// A Function URL request (payload 2.0) for `POST /v1/preflight` with `token`.
fn gateway_request(token: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/preflight", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
        "requestContext": {"accountId": "anonymous", "apiId": "bench", "domainName": "bench.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "bench", "http": {"method": "POST", "path": "/v1/preflight", "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1", "userAgent": "bench"}, "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default", "stage": "$default", "time": "23/Nov/2026:03:00:00 +0000", "timeEpoch": 0},
        "body": "{\"environment\":\"prod\",\"service\":\"payments\"}", "isBase64Encoded": false
    })
}

/// Verified requests per second on one core with a warm JWKS cache: the gateway's whole
/// request path (token checks, RS256 verification, policy, audit event, preflight over an
/// in-memory catalog), one request at a time.
async fn gateway_rps_row(issuer: &keyward_integration::fakes::oidc::RunningIssuer) -> Result<()> {
    use ci_gateway::jwks::{HttpJwksFetcher, JwksCache};
    use keyward_shared::ports::{InMemoryMarkerStore, InMemorySecretCatalog};
    let http = keyward_shared::adapters::http::HttpClient::new(
        "keyward-bench",
        Duration::from_secs(3),
        keyward_shared::adapters::http::RetryPolicy::default(),
        keyward_shared::redact::Redactor::new(),
    )?;
    let gateway = ci_gateway::Gateway {
        keys: JwksCache::new(
            HttpJwksFetcher(http),
            [(issuer.issuer(), issuer.jwks_url())],
        ),
        audience: GATEWAY_AUDIENCE.into(),
        loaded: ci_gateway::load(
            keyward_integration::support::config_for_issuer(&issuer.issuer())?.path(),
        )?,
        catalog: InMemorySecretCatalog::default(),
        replay: InMemoryMarkerStore::default(),
        publisher: DiscardingPublisher,
        drift: None::<ci_gateway::Disabled>,
    };
    let tokens: Vec<String> = (0..64)
        .map(|_| {
            issuer
                .fake
                .sign(&issuer.fake.github_claims(GATEWAY_AUDIENCE))
        })
        .collect();
    let request = |token: &str| ci_gateway::Request {
        method: "POST".into(),
        path: "/v1/preflight".into(),
        authorization: Some(format!("Bearer {token}")),
        source_ip: Some("203.0.113.50".into()),
        body: br#"{"environment":"prod","service":"payments"}"#.to_vec(),
    };
    // Warm the cache.
    let warm = gateway.handle(&request(&tokens[0])).await;
    ensure!(
        warm.status == 412,
        "the warm-up request answered {}",
        warm.status
    );
    let started = Instant::now();
    let mut served = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        let response = gateway
            .handle(&request(&tokens[served % tokens.len()]))
            .await;
        ensure!(
            response.status == 412,
            "a request answered {}",
            response.status
        );
        served += 1;
    }
    println!(
        "| ci-gateway verified requests per second, one core, warm JWKS (RS256 verify, policy, audit event, preflight) | {:.0} requests/s | | |",
        served as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Accepts events and drops them (the requests-per-second row measures the gateway itself).
struct DiscardingPublisher;

impl keyward_shared::ports::EventPublisher for DiscardingPublisher {
    async fn publish(
        &self,
        events: &[keyward_shared::events::DomainEvent],
    ) -> Result<(), keyward_shared::ports::PublishError> {
        for event in events {
            event.to_detail_json()?;
        }
        Ok(())
    }
}

/// Verification against the physical limit: every record byte must be hashed once.
async fn verify_row(records: usize) -> Result<()> {
    let bucket = InMemoryAuditBucket::default();
    let signer = LocalKeySigner::generate()?;
    let end = chrono::Utc::now();
    let written = end - chrono::Duration::minutes(30);
    let partition = audit::record_partition(&written);
    let mut entries = Vec::with_capacity(records);
    let mut all_bytes = Vec::new();
    for n in 0..records {
        let envelope = serde_json::from_value(domain_envelope())?;
        let record =
            audit_writer::AuditRecord::from_envelope(&envelope).map_err(|e| anyhow!("{e}"))?;
        let bytes = record.to_bytes().map_err(|e| anyhow!("{e}"))?;
        let key = format!("{partition}{n:08}.json");
        all_bytes.extend_from_slice(&bytes);
        let version = bucket.put(&key, bytes.clone(), Default::default(), written);
        entries.push(DigestEntry {
            key,
            version_id: Some(version),
            sha256: audit::sha256_hex(&bytes),
        });
    }
    let public_key = signer.public_key_der().await?;
    let document = DigestDocument {
        digest_version: audit::DIGEST_VERSION,
        bucket: "bench".into(),
        key: audit::digest_key(&end),
        period_start: end - chrono::Duration::hours(1),
        period_end: end,
        records: entries,
        previous: None,
        public_key_fingerprint: audit::key_fingerprint(&public_key),
        signature_algorithm: audit::SIGNATURE_ALGORITHM.into(),
    };
    let sealed = audit::seal(&signer, document).await?;
    bucket.put_digest(&sealed).await?;
    // Best of three on both sides: one-off timings on a shared 2-core machine are noisy.
    let mut verify_secs = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let report = audit::verify(
            &bucket,
            "bench",
            &public_key,
            &audit::VerifyOptions::default(),
        )
        .await?;
        verify_secs = verify_secs.min(started.elapsed().as_secs_f64());
        ensure!(
            report.ok() && report.records_checked == records,
            "bench trail did not verify: {}",
            report.summary()
        );
    }

    let file = keyward_integration::target_dir().join("keyward-logs/bench/records.bin");
    std::fs::create_dir_all(file.parent().context("no parent")?)?;
    std::fs::write(&file, &all_bytes)?;
    let mut sha_secs = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let status = std::process::Command::new("sha256sum")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()?;
        sha_secs = sha_secs.min(started.elapsed().as_secs_f64());
        ensure!(status.success(), "sha256sum failed");
    }
    println!(
        "| audit verify, {records} records ({:.1} MiB, one digest) | {:.0} records/s | {:.0} records/s (sha256sum) | {:.2}x |",
        all_bytes.len() as f64 / 1_048_576.0,
        records as f64 / verify_secs,
        records as f64 / sha_secs,
        (records as f64 / sha_secs) / (records as f64 / verify_secs)
    );
    Ok(())
}

/// Conditional, checksummed writes through the audit writer's S3 adapter, 8 writers at once.
async fn writes_row(moto: &MotoServer, runs: usize) -> Result<()> {
    let locked = "keyward-bench-writes";
    moto.create_bucket(locked, BucketKind::ObjectLockCompliance { days: 1 })
        .await?;
    let store = Arc::new(audit_writer::s3::S3AuditStore::new(moto.s3(), locked));
    let per_writer = (runs * 20).max(50);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let envelope = serde_json::from_value(domain_envelope())?;
                audit_writer::handle(store.as_ref(), &envelope)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| audit writes against moto, 8 concurrent writers ({} writes) | {:.0} writes/s | (moto bounds it) | |",
        8 * per_writer,
        (8 * per_writer) as f64 / secs
    );
    Ok(())
}

/// Seed records for the log-file benchmark: the public corpus when present (Stratus detonations
/// and Panther test events with CloudTrail timestamps), else a few realistic shapes.
fn cloudtrail_seeds() -> Vec<serde_json::Value> {
    let corpus = keyward_integration::repo_root().join("../shared/data/cloudtrail");
    let mut seeds = Vec::new();
    if let Ok(entries) = std::fs::read_dir(corpus.join("stratus-red-team-detonation-logs")) {
        for entry in entries.flatten() {
            if let Ok(serde_json::Value::Array(records)) = std::fs::read_to_string(entry.path())
                .map_err(|_| ())
                .and_then(|t| serde_json::from_str(&t).map_err(|_| ()))
            {
                seeds.extend(records);
            }
        }
    }
    if let Ok(text) =
        std::fs::read_to_string(corpus.join("panther-analysis/cloudtrail_rule_tests.jsonl"))
    {
        for line in text.lines() {
            if let Ok(test) = serde_json::from_str::<serde_json::Value>(line) {
                let log = &test["log"];
                // The Python baseline parses CloudTrail's own time format only.
                let time = log["eventTime"].as_str().unwrap_or("");
                if time.len() == 20 && time.ends_with('Z') && log["eventID"].is_string() {
                    seeds.push(log.clone());
                }
            }
        }
    }
    if seeds.is_empty() {
        for (name, error) in [
            ("GetSecretValue", None),
            ("GetSecretValue", Some("AccessDenied")),
            ("DescribeInstances", None),
        ] {
            let mut record = serde_json::json!({
                "eventVersion": "1.09", "eventID": "seed", "eventTime": "2026-11-22T12:00:00Z",
                "eventSource": if name == "DescribeInstances" { "ec2.amazonaws.com" } else { "secretsmanager.amazonaws.com" },
                "eventName": name, "eventType": "AwsApiCall", "awsRegion": "eu-west-1",
                "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0",
                "userIdentity": {"type": "IAMUser", "userName": "alice", "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012"},
                "requestParameters": {"secretId": "/acme/prod/payments/db-credentials"}, "responseElements": null,
            });
            if let Some(code) = error {
                record["errorCode"] = code.into();
            }
            seeds.push(record);
        }
    }
    seeds
}

/// Log-file throughput: the detector over a `records`-record `.json.gz` file (several gzip
/// members, as CloudTrail may write), against a plain Python script doing the same scan and
/// against decompression alone (`gzip -dc`, and `libdeflate-gunzip` when installed).
fn cloudtrail_rows(bin_dir: &std::path::Path, records: usize) -> Result<()> {
    use std::io::Write;
    let seeds = cloudtrail_seeds();
    let dir = keyward_integration::target_dir().join("keyward-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("cloudtrail-{records}.json.gz"));
    let mut file = std::fs::File::create(&path)?;
    let members = 4;
    let per_member = records.div_ceil(members);
    let mut written = 0;
    for member in 0..members {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if member == 0 {
            encoder.write_all(b"{\"Records\":[")?;
        }
        for _ in 0..per_member.min(records - written) {
            let mut record = seeds[written % seeds.len()].clone();
            record["eventID"] = format!("bench-{written:08}").into();
            if written > 0 {
                encoder.write_all(b",")?;
            }
            serde_json::to_writer(&mut encoder, &record)?;
            written += 1;
        }
        if member == members - 1 {
            encoder.write_all(b"]}")?;
        }
        file.write_all(&encoder.finish()?)?;
    }
    drop(file);
    let compressed = std::fs::metadata(&path)?.len();

    let time = |program: &std::path::Path,
                args: &[&std::ffi::OsStr]|
     -> Result<(f64, serde_json::Value)> {
        let mut best = f64::MAX;
        let mut report = serde_json::Value::Null;
        for _ in 0..3 {
            let started = Instant::now();
            let out = std::process::Command::new(program).args(args).output()?;
            let elapsed = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                out.status.success(),
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            if elapsed < best {
                best = elapsed;
                report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            }
        }
        Ok((best, report))
    };
    let file_arg = path.as_os_str();
    let (rust_secs, rust) = time(&bin_dir.join("scan-logfile"), &[file_arg])?;
    let python = keyward_integration::venv_dir().join("bin/python");
    let script =
        keyward_integration::repo_root().join("integration/bench/python_cloudtrail_scan.py");
    let (python_secs, python_report) = time(&python, &[script.as_os_str(), file_arg])?;
    let shell = std::path::Path::new("/bin/sh");
    let decompress = |tool: &str| -> Option<f64> {
        let command = format!("{tool} -c '{}' > /dev/null", path.display());
        let c = std::ffi::OsString::from("-c");
        let command = std::ffi::OsString::from(command);
        which(tool)
            .and_then(|_| time(shell, &[&c, &command]).ok())
            .map(|(s, _)| s)
    };
    let gzip_secs = decompress("gzip -d").or_else(|| decompress("gzip"));
    let libdeflate_secs = decompress("libdeflate-gunzip");
    let rate = |secs: f64| records as f64 / secs;
    println!(
        "| CloudTrail log file, {records} records ({:.1} MiB gzip, {members} members): scan + shipped rules | {:.0} records/s | {:.0} records/s (Python: gunzip, json.load, same rules) | {:.1}x |",
        compressed as f64 / 1_048_576.0,
        rate(rust_secs),
        rate(python_secs),
        python_secs / rust_secs
    );
    println!(
        "| CloudTrail log file: alerts raised (keyward / Python) | {} | {} | |",
        rust["alerts"], python_report["alerts"]
    );
    println!(
        "| CloudTrail log file: peak RSS | {:.1} MiB | {:.1} MiB | {:.1}x |",
        rust["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        python_report["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        python_report["peak_rss_kib"].as_f64().unwrap_or(0.0)
            / rust["peak_rss_kib"].as_f64().unwrap_or(1.0).max(1.0)
    );
    for (tool, secs) in [
        ("gzip -dc", gzip_secs),
        ("libdeflate-gunzip", libdeflate_secs),
    ] {
        match secs {
            Some(secs) => println!(
                "| CloudTrail log file vs decompression alone ({tool}) | {:.3} s | {:.3} s | keyward takes {:.2}x |",
                rust_secs,
                secs,
                rust_secs / secs
            ),
            None => println!(
                "| CloudTrail log file vs decompression alone ({tool}) | | not installed | |"
            ),
        }
    }
    Ok(())
}

/// The shipped anomaly rules on the public CloudTrail corpus, when it is present.
fn quality_rows() -> Result<()> {
    let dir = keyward_integration::repo_root().join("../shared/data/cloudtrail");
    if !dir.is_dir() {
        println!("detection quality: skipped ({} is absent)", dir.display());
        return Ok(());
    }
    let report = keyward_integration::detection_quality::measure(&dir)?;
    let rows = keyward_integration::detection_quality::rows(&report);
    if let Some((header, rules)) = rows.split_first() {
        println!("{header}");
        println!("|---|---:|---:|---:|---|");
        rules.iter().for_each(|row| println!("{row}"));
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let program = tool.split_whitespace().next()?;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.exists())
}

/// Drift detection over `count` declared secrets in moto: keyward's ListSecrets-first walk
/// (the rules that need only `ListSecrets`, then with resource policies) against a naive
/// detector that calls `DescribeSecret` for every secret.
/// Runs the calls `limit` at a time; the first error stops it. Returns how many succeeded.
async fn in_flight<T, E, F>(calls: impl Iterator<Item = F>, limit: usize) -> Result<usize>
where
    F: std::future::Future<Output = std::result::Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    use futures::{StreamExt as _, TryStreamExt as _};
    let done: Vec<T> = futures::stream::iter(calls)
        .buffer_unordered(limit)
        .try_collect()
        .await?;
    Ok(done.len())
}

/// An estate of `count` declared secrets in one environment of a fresh organisation: the
/// manifest published to a fresh bucket, every secret created in moto with its tags. Every
/// `vercel_every`-th secret (0: none) has a Vercel mapping.
struct BenchEstate {
    org: String,
    bucket: String,
    files: Vec<(&'static str, String)>,
    manifest: keyward_shared::manifest::Manifest,
}

async fn bench_estate(moto: &MotoServer, count: usize, vercel_every: usize) -> Result<BenchEstate> {
    use keyward_drift::account::{ManifestSource, S3Manifest};
    use keyward_shared::adapters::aws::tags_to_sdk;
    let org = format!("bd{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let bucket = format!(
        "keyward-bench-estate-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    moto.create_bucket(&bucket, BucketKind::Versioned).await?;
    let root = keyward_integration::repo_root().join("infra/config/manifest");
    let mut secrets_yaml = String::from("version: 1\nsecrets:\n");
    for n in 0..count {
        secrets_yaml.push_str(&format!(
            "  - service: svc{}\n    name: key-{n:05}\n    type: api-key\n    domain: platform\n    owner: team-platform\n    classification: confidential\n    rotation: {{strategy: manual, days: 90}}\n    environments: [prod]\n",
            n % 50
        ));
        if vercel_every > 0 && n % vercel_every == 0 {
            secrets_yaml.push_str(&format!(
                "    vercel: {{project: bench-web, targets: [production], key: KEY_{n:05}}}\n"
            ));
        }
    }
    let files = vec![
        (
            "org.yaml",
            format!("version: 1\norg: {org}\nenvironments: [prod]\n"),
        ),
        (
            "enums.yaml",
            std::fs::read_to_string(root.join("enums.yaml"))?,
        ),
        ("secrets.yaml", secrets_yaml),
    ];
    moto.put_manifest(&bucket, &files).await?;
    let manifest = S3Manifest {
        s3: moto.s3().into(),
        bucket: bucket.clone(),
        prefix: "manifest/".into(),
    }
    .manifest()
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let created = Instant::now();
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let requests = manifest
        .secrets
        .iter()
        .map(|d| {
            let tags = keyward_shared::tags::encode(&d.governance)?;
            Ok(sm
                .create_secret()
                .name(d.name.to_string())
                .secret_string("bench")
                .kms_key_id("arn:aws:kms:eu-west-1:123456789012:key/bench")
                .set_tags(Some(tags_to_sdk(&tags))))
        })
        .collect::<Result<Vec<_>>>()?;
    in_flight(requests.into_iter().map(|r| r.send()), 8).await?;
    eprintln!(
        "(creating {count} secrets in moto took {:.1} s; not part of the runs)",
        created.elapsed().as_secs_f64()
    );
    Ok(BenchEstate {
        org,
        bucket,
        files,
        manifest,
    })
}

async fn drift_rows(moto: &MotoServer, count: usize) -> Result<()> {
    use keyward_drift::account::AwsAccount;
    let BenchEstate {
        org,
        bucket,
        manifest,
        ..
    } = bench_estate(moto, count, 0).await?;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let prefix = format!("/{org}/prod/");
    let state = keyward_shared::adapters::aws::S3MarkerStore::new(moto.s3(), &bucket);
    let redactor = keyward_shared::redact::Redactor::new();
    for (label, policies) in [
        ("ListSecrets rules", false),
        ("with resource policies", true),
    ] {
        let account = AwsAccount::new(sm.clone());
        let started = Instant::now();
        let detection = keyward_drift::detect(
            &account,
            keyward_drift::DetectionRequest {
                manifest: &manifest,
                estate: keyward_drift::Estate {
                    org: &org,
                    environment: "prod",
                },
                scope: &keyward_drift::DriftScope::default(),
                settings: &keyward_drift::DetectionSettings {
                    check_policies: policies,
                    ..Default::default()
                },
                ledgers: keyward_drift::detect::VercelLedgers::Read(&state),
                workload: None,
                native: None,
                now: chrono::Utc::now(),
            },
            &redactor,
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
        let secs = started.elapsed().as_secs_f64();
        let calls = detection.calls;
        let total = calls.list_secrets_pages + calls.describe_secret + calls.get_resource_policy;
        println!(
            "| drift detection, {count} secrets against moto, {label} | {secs:.2} s, {total} Secrets Manager calls ({} ListSecrets pages, {} DescribeSecret, {} GetResourcePolicy; {:.2} per 100 secrets), {} findings | | |",
            calls.list_secrets_pages,
            calls.describe_secret,
            calls.get_resource_policy,
            total as f64 * 100.0 / count as f64,
            detection.findings.len()
        );
    }
    // The naive detector: enumerate, then DescribeSecret each secret for its rotation,
    // dates and key.
    let started = Instant::now();
    let mut names = Vec::new();
    let mut pages = sm
        .list_secrets()
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                .values(&prefix)
                .build(),
        )
        .max_results(100)
        .into_paginator()
        .send();
    let mut list_calls = 0;
    while let Some(page) = pages.next().await {
        list_calls += 1;
        names.extend(
            page?
                .secret_list()
                .iter()
                .filter_map(|s| s.name().map(str::to_owned)),
        );
    }
    let described = in_flight(
        names
            .iter()
            .map(|name| sm.describe_secret().secret_id(name).send()),
        8,
    )
    .await?;
    let naive = started.elapsed().as_secs_f64();
    println!(
        "| naive drift detection (ListSecrets + DescribeSecret per secret, 8 in flight), {count} secrets | {naive:.2} s, {} Secrets Manager calls | | |",
        list_calls + described
    );
    Ok(())
}

/// `keyward posture --json` over an estate of `count` secrets: every tenth mapped to Vercel
/// with its ledger, a day of audit records (one `SecretRotated` per secret, spread over the
/// last 24 hours), one resource policy read per secret. Wall time and peak RSS of the CLI
/// process, best of three.
async fn posture_row(bin_dir: &std::path::Path, moto: &MotoServer, count: usize) -> Result<()> {
    use keyward_shared::audit::record::AuditRecord;
    use keyward_shared::events::{
        Actor, CorrelationId, DomainEvent, EventData, Outcome, SecretRef,
    };
    let estate = bench_estate(moto, count, 10).await?;
    let s3 = moto.s3();
    let audit = format!("{}-audit", estate.bucket);
    moto.create_bucket(&audit, BucketKind::Versioned).await?;
    let now = chrono::Utc::now();
    let mut objects: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (i, declared) in estate.manifest.secrets.iter().enumerate() {
        let name = declared.name.to_string();
        if let Some(mapping) = &declared.governance.vercel {
            let mut ledger = keyward_shared::vercel_ledger::Ledger {
                secret: name.clone(),
                ..Default::default()
            };
            ledger.entries = keyward_shared::vercel_ledger::mapped_slots(mapping)
                .into_iter()
                .map(|m| keyward_shared::vercel_ledger::LedgerEntry {
                    slot: m.slot,
                    record_id: format!("env_{i}"),
                    version_id: "bench-v1".into(),
                    updated_at: 1,
                    written_by: None,
                    env_type: "sensitive".into(),
                })
                .collect();
            objects.push((
                estate.bucket.clone(),
                keyward_shared::vercel_ledger::ledger_key(&name),
                serde_json::to_vec(&ledger)?,
            ));
        }
        let mut event = DomainEvent::new(
            CorrelationId::generate(),
            Actor::service("rotation"),
            Some(SecretRef {
                name: name.clone(),
                arn: None,
            }),
            Outcome::Success,
            EventData::SecretRotated {
                strategy: keyward_shared::governance::RotationStrategy::Random,
                version_id: format!("v{i}"),
                previous_version_id: None,
            },
        );
        event.time = now - chrono::Duration::seconds((i * 86_400 / count.max(1)) as i64);
        let key = format!(
            "{}{}.json",
            keyward_shared::audit::record_partition(&event.time),
            event.event_id
        );
        let record = AuditRecord::of(event);
        objects.push((audit.clone(), key, record.to_bytes()?));
    }
    let written = Instant::now();
    in_flight(
        objects.into_iter().map(|(bucket, key, body)| {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
        }),
        16,
    )
    .await?;
    eprintln!(
        "(writing ledgers and {count} audit records took {:.1} s; not part of the runs)",
        written.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    for (name, text) in &estate.files {
        std::fs::write(dir.path().join(name), text)?;
    }
    let public_key = dir.path().join("digest.pub.der");
    std::fs::write(
        &public_key,
        keyward_shared::audit::LocalKeySigner::generate()
            .and_then(|k| k.public_key_spki())
            .map_err(|e| anyhow!("{e}"))?,
    )?;
    let manifest_dir = dir.path().display().to_string();
    let key_path = public_key.display().to_string();
    let args = [
        "posture",
        "--manifest",
        &manifest_dir,
        "--org",
        &estate.org,
        "--state-bucket",
        &estate.bucket,
        "--audit-bucket",
        &audit,
        "--public-key",
        &key_path,
        "--json",
    ];
    let env = moto.function_env();
    let mut best: Option<(f64, i64)> = None;
    for _ in 0..3 {
        let run = timed_run(&bin_dir.join("keyward"), &args, &env)?;
        best = Some(match best {
            Some(b) if b.0 <= run.0 => b,
            _ => run,
        });
    }
    let (secs, rss_kib) = best.unwrap_or_default();
    println!(
        "| `keyward posture --json`, {count} secrets against moto ({} Vercel ledgers, {count} audit records over 24 h, one resource policy each), best of 3 | {secs:.2} s, peak RSS {:.1} MiB | | |",
        count.div_ceil(10),
        rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// Runs `program` to completion; returns (wall seconds, peak RSS in KiB) from `wait4`'s rusage,
/// which the kernel keeps for the child after it exits (reading /proc races a short run).
fn timed_run(
    program: &std::path::Path,
    args: &[&str],
    env: &[(String, String)],
) -> Result<(f64, i64)> {
    let started = Instant::now();
    let child = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("{} missing: run scripts/bench.sh", program.display()))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, and both out-pointers are valid for the call.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    anyhow::ensure!(waited > 0, "wait4 failed");
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} failed",
        program.display()
    );
    Ok((started.elapsed().as_secs_f64(), usage.ru_maxrss))
}

/// `keyward render` over a manifest of `count` secrets (every tenth projected to Kubernetes):
/// wall time and peak memory of the CLI process, best of three, and byte-identical output.
fn render_row(bin_dir: &std::path::Path, count: usize) -> Result<()> {
    let root = keyward_integration::repo_root().join("infra/config/manifest");
    let manifest = tempfile::tempdir()?;
    std::fs::write(
        manifest.path().join("org.yaml"),
        "version: 1\norg: acme\nenvironments: [dev, staging, prod]\n",
    )?;
    std::fs::copy(root.join("enums.yaml"), manifest.path().join("enums.yaml"))?;
    let mut yaml = String::from("version: 1\nsecrets:\n");
    let per_env = count.div_ceil(3);
    for n in 0..per_env {
        yaml.push_str(&format!(
            "  - service: svc{}\n    name: key-{n:05}\n    type: api-key\n    domain: platform\n    owner: team-platform\n    classification: confidential\n    rotation: {{strategy: random, days: 30}}\n",
            n % 100
        ));
        if n % 10 == 0 {
            yaml.push_str("    kubernetes: {namespace: platform, properties: [token]}\n");
        }
        yaml.push_str("    environments: [dev, staging, prod]\n");
    }
    std::fs::write(manifest.path().join("secrets.yaml"), yaml)?;
    let binary = bin_dir.join("keyward");
    let mut best = (f64::MAX, 0i64);
    let mut outputs = Vec::new();
    for _ in 0..3 {
        let out = tempfile::tempdir()?;
        let run = timed_run(
            &binary,
            &[
                "render",
                "--manifest",
                manifest.path().to_str().unwrap_or_default(),
                "--out",
                out.path().to_str().unwrap_or_default(),
            ],
            &[],
        )?;
        if run.0 < best.0 {
            best = run;
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut stack = vec![out.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(out.path())?.display().to_string();
                    files.push((relative, std::fs::read(&path)?));
                }
            }
        }
        files.sort();
        outputs.push(files);
    }
    let identical = outputs.windows(2).all(|w| w[0] == w[1]);
    println!(
        "| keyward render, {} secrets ({} files, byte-identical across runs: {identical}) | {:.2} s, peak RSS {:.1} MiB | | |",
        per_env * 3,
        outputs[0].len(),
        best.0,
        best.1 as f64 / 1024.0
    );
    Ok(())
}
