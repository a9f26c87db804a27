//! `local-stack`: runs every keyward function together on loopback against moto, plays the
//! scripted scenario and prints the timeline (event, rule, function, outcome).

use clap::Parser;
use keyward_integration::scenario;
use keyward_integration::stack::StackOptions;

#[derive(Parser)]
#[command(
    about = "Run keyward's functions together against moto and the fakes, and play the scenario"
)]
struct Args {
    /// Directory holding the function binaries (default: target/debug).
    #[arg(long)]
    bin_dir: Option<std::path::PathBuf>,
    /// Manifest file or directory (default: infra/config/manifest).
    #[arg(long)]
    manifest: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut options = StackOptions::defaults();
    if let Some(dir) = args.bin_dir {
        options.bin_dir = dir;
    }
    if let Some(manifest) = args.manifest {
        options.manifest = manifest;
    }
    println!(
        "keyward local stack: template {}, manifest {}",
        options.template.display(),
        options.manifest.display()
    );
    let (stack, report) = match scenario::run(&options, true).await {
        Ok(result) => result,
        Err(err) => {
            eprintln!("local stack failed: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("\ntimeline");
    stack.print_timeline();
    println!("\nchecks");
    for check in &report.checks {
        println!(
            "  [{}] {:<38} {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    println!("\nfunction logs: {}", options.log_dir.display());
    if report.passed() {
        println!(
            "local stack scenario: all {} checks passed",
            report.checks.len()
        );
        std::process::ExitCode::SUCCESS
    } else {
        println!("local stack scenario: FAILED");
        std::process::ExitCode::FAILURE
    }
}
