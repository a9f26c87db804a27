use std::process::ExitCode;

use clap::Parser;
use keyward_cli::load_sdk_config;
use keyward_cli::{AuditCommand, Cli, Command, RequestCommand, read_public_key};
use keyward_shared::adapters::aws::{KmsDigestSigner, S3AuditBucket, s3_client};
use keyward_shared::audit::{DigestSigner, Freshness, VerifyOptions, verify};
use keyward_shared::config::{ProcessEnv, flag};
use keyward_shared::manifest::Manifest;
use keyward_shared::ports::InMemoryMarkerStore;

/// Exit codes per command: `audit verify` and `evidence verify` 0 valid, 1 failed
/// verification, 2 could not run; `evidence` 0 written, 1 written over a trail that failed
/// verification, 2 could not run; `posture` 0, or 1 when a source could not be read;
/// `plan` 0 no changes, 2 changes, 1 error (as `terraform plan -detailed-exitcode`); the others
/// 0 success, 1 problems found or an error.
#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors: `audit verify` documents 2 ("could not run"); elsewhere 1, because for
    // `plan` and `drift` 2 means "changes found".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let audit = matches!(
                std::env::args().nth(1).as_deref(),
                Some("audit" | "evidence")
            );
            let code = match (e.use_stderr(), audit) {
                (false, _) => 0,
                (true, true) => 2,
                (true, false) => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let (error_code, result) = match cli.command {
        Command::Audit(AuditCommand::Verify(args)) => (2, audit_verify(args).await),
        Command::Plan(args) => (1, plan(args, false).await),
        Command::Drift(args) => (1, plan(args, true).await),
        Command::Posture(args) => (1, keyward_cli::posture::run(args).await),
        Command::Evidence(args) => match args.command {
            Some(keyward_cli::evidence::EvidenceCommand::Verify(verify)) => {
                (2, keyward_cli::evidence::verify_dir(verify))
            }
            None => (2, keyward_cli::evidence::build(args.build).await),
        },
        other => (1, local(other)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("keyward: {message}");
            ExitCode::from(error_code)
        }
    }
}

fn load(dir: &std::path::Path) -> Result<Manifest, String> {
    Manifest::load(dir).map_err(|e| e.to_string())
}

/// Commands that need no AWS access.
fn local(command: Command) -> Result<u8, String> {
    match command {
        Command::Validate(args) => {
            let manifest = load(&args.manifest)?;
            println!(
                "valid: {} secret(s) in {} environment(s) of {}",
                manifest.secrets.len(),
                manifest.environments.len(),
                manifest.org
            );
            Ok(0)
        }
        Command::Request(request) => {
            let RequestCommand::New(mut request) = *request;
            if let Ok(manifest) = Manifest::load(&request.manifest) {
                keyward_cli::requests::prompt_missing(&mut request, &manifest)
                    .map_err(|e| e.to_string())?;
            }
            let (path, document) =
                keyward_cli::requests::write_request(&request).map_err(|e| e.to_string())?;
            if request.dry_run {
                print!("{document}");
            } else {
                println!("wrote {}", path.display());
            }
            Ok(0)
        }
        Command::Render(args) => {
            let manifest = load(&args.manifest.manifest)?;
            let files =
                keyward_shared::projections::render(&manifest).map_err(|e| e.to_string())?;
            let problems =
                keyward_cli::render_to(&args.out, &files, args.check).map_err(|e| e.to_string())?;
            if problems.is_empty() {
                if !args.check {
                    println!(
                        "rendered {} file(s) into {}",
                        files.len(),
                        args.out.display()
                    );
                }
                Ok(0)
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("keyward: the projections are out of date: run `keyward render`");
                Ok(1)
            }
        }
        Command::Workflows(args) => {
            let manifest = load(&args.manifest.manifest)?;
            let text = keyward_cli::workflows::request_workflow(&manifest);
            if args.check {
                let current = std::fs::read_to_string(&args.out).unwrap_or_default();
                if current != text {
                    eprintln!(
                        "keyward: {} does not match enums.yaml: run `keyward workflows`",
                        args.out.display()
                    );
                    return Ok(1);
                }
                Ok(0)
            } else {
                std::fs::write(&args.out, text)
                    .map_err(|e| format!("{}: {e}", args.out.display()))?;
                println!("wrote {}", args.out.display());
                Ok(0)
            }
        }
        Command::Audit(_)
        | Command::Plan(_)
        | Command::Drift(_)
        | Command::Posture(_)
        | Command::Evidence(_) => {
            unreachable!("handled with AWS access")
        }
    }
}

/// `plan` (the changes infrastructure code makes) or, with `drift`, every finding.
async fn plan(args: keyward_cli::PlanArgs, drift: bool) -> Result<u8, String> {
    let manifest = load(&args.manifest.manifest)?;
    if !manifest.environments.iter().any(|e| e.as_str() == args.env) {
        return Err(format!(
            "`{}` is not one of the manifest's environments",
            args.env
        ));
    }
    let sdk = load_sdk_config().await?;
    let account =
        keyward_drift::account::AwsAccount::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let detection = keyward_drift::detect(
        &account,
        keyward_drift::DetectionRequest {
            manifest: &manifest,
            estate: keyward_drift::Estate {
                org: manifest.org.as_str(),
                environment: &args.env,
            },
            scope: &keyward_drift::DriftScope {
                service: args.service.clone(),
                secret: None,
            },
            settings: &keyward_drift::DetectionSettings::default(),
            // Vercel parity needs the deployed sync's ledgers: the deployed detector checks it.
            ledgers: keyward_drift::detect::VercelLedgers::<InMemoryMarkerStore>::NotChecked,
            // The workloads are the deployed detector's to read (it holds the Argo CD token).
            workload: None,
            native: None,
            now: chrono::Utc::now(),
        },
        &keyward_shared::redact::Redactor::new(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let findings = detection.findings;
    if drift {
        for f in &findings {
            let evidence: Vec<String> =
                f.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<9} {:<30} {} ({})",
                format!("{:?}", f.severity),
                f.kind.slug(),
                f.secret,
                evidence.join(", ")
            );
        }
        println!(
            "{} finding(s) in {} ({} secret(s) listed, {} declared; Vercel parity is checked by the deployed detector)",
            findings.len(),
            args.env,
            detection.secrets_listed,
            detection.declared
        );
        return Ok(if findings.is_empty() { 0 } else { 2 });
    }
    let plan = keyward_cli::plan::plan_from(&args.env, &findings);
    if args.markdown {
        print!("{}", keyward_cli::plan::markdown(&plan));
    } else {
        print!("{}", keyward_cli::plan::text(&plan));
    }
    Ok(plan.exit_code())
}

async fn audit_verify(args: keyward_cli::VerifyArgs) -> Result<u8, String> {
    let sdk = load_sdk_config().await?;
    let path_style =
        flag(&ProcessEnv, "KEYWARD_S3_FORCE_PATH_STYLE", false).map_err(|e| e.to_string())?;
    let public_key = match (&args.public_key, &args.kms_key_id) {
        (Some(path), _) => read_public_key(path).map_err(|e| e.to_string())?,
        (None, Some(key_id)) => KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), key_id)
            .public_key_der()
            .await
            .map_err(|e| e.to_string())?,
        (None, None) => return Err("give --public-key or --kms-key-id".into()),
    };
    let bucket = S3AuditBucket::new(s3_client(&sdk, path_style), &args.bucket);
    let options = VerifyOptions {
        from: args.from,
        to: args.to,
        lookback: chrono::Duration::hours(args.lookback_hours),
        freshness: (args.max_digest_age_hours > 0).then(|| Freshness {
            now: chrono::Utc::now(),
            max_age: chrono::Duration::hours(args.max_digest_age_hours),
        }),
    };
    let report = verify(&bucket, &args.bucket, &public_key, &options)
        .await
        .map_err(|e| e.to_string())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        for object in report.failures() {
            println!(
                "{:?} {:?} {}: {}",
                object.kind, object.status, object.key, object.detail
            );
        }
        println!("{}", report.summary());
    }
    Ok(if report.ok() { 0 } else { 1 })
}
