//! Fake third-party HTTP servers, built from the providers' public API documentation (paths,
//! fields, status codes, error bodies, rate-limit headers) and served on loopback.
//!
//! Each later function adds its own here (Vercel, Auth0, Loki, GitHub, Jira, Argo CD, the GitHub
//! OIDC issuer), built on [`kit`]: the state, request log, fault switches and server every fake
//! shares.

pub mod argocd;
pub mod auth0;
pub mod github;
pub mod jira;
pub mod kit;
pub mod loki;
pub mod oidc;
pub mod vercel;
pub mod webhook;

use std::net::SocketAddr;

/// A running fake: its base URL, and the task serving it (stopped on drop).
pub struct FakeServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves an axum router on 127.0.0.1 at a free port.
pub async fn serve(router: axum::Router) -> std::io::Result<FakeServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            eprintln!("fake server on {addr} stopped: {err}");
        }
    });
    Ok(FakeServer { addr, task })
}
