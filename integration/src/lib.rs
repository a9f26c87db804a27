//! keyward's local world: real services on loopback for tests and the local stack.
//!
//! - [`process`]: child processes that die with the test or stack that started them;
//! - [`moto`]: a moto server (AWS APIs) from the project's virtualenv;
//! - [`postgres`]: a throwaway PostgreSQL cluster (initdb into a temp dir, a free port);
//! - [`runtime_api`]: a local Lambda Runtime API that runs the real function binaries;
//! - [`router`]: the EventBridge rules of `infra/template.yaml`, matched with quamina;
//! - [`tls`]: throwaway certificate authorities for TLS tests;
//! - [`fakes`]: home of the fake third-party HTTP servers (Vercel, GitHub, Loki, ...);
//! - [`logs`]: capturing what code under test logs;
//! - [`declared`]: a moto account seeded exactly as the manifest declares it;
//! - [`detection_quality`]: the shipped anomaly rules scored on the public CloudTrail corpus;
//! - [`support`]: small pieces tests, fakes and the harness share.

pub mod declared;
pub mod detection_quality;
pub mod fakes;
pub mod logs;
pub mod moto;
pub mod postgres;
pub mod process;
pub mod router;
pub mod runtime_api;
pub mod samples;
pub mod scenario;
pub mod stack;
pub mod support;
pub mod tls;

use std::net::TcpListener;
use std::path::PathBuf;

/// The repository root (integration/..).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// The project virtualenv holding moto, cfn-lint and friends (`scripts/lib.sh` creates it).
pub fn venv_dir() -> PathBuf {
    std::env::var_os("KEYWARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// Where build outputs live (`CARGO_TARGET_DIR` or `<repo>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A free TCP port on 127.0.0.1. The port is released before returning, so callers that bind it
/// later retry on the rare collision.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
