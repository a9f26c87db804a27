//! A local AWS Lambda Runtime API, so the real function binaries run here exactly as in Lambda:
//! the binary long-polls `GET /2018-06-01/runtime/invocation/next`, handles the event and posts
//! `.../invocation/{id}/response` or `.../error` (or `/runtime/init/error` when it cannot start).
//! One invocation at a time per function, as in one Lambda sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::fakes::{FakeServer, serve};
use crate::process::Supervised;

/// What a failed invocation reported (the function's `Diagnostic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct InvokeError {
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

impl InvokeError {
    fn local(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.to_owned(),
            error_message: message.into(),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<u8>, InvokeError>>;

struct Pending {
    request_id: String,
    payload: Vec<u8>,
    deadline_ms: u128,
    reply: Reply,
}

struct ApiState {
    function_arn: String,
    queue: Mutex<mpsc::Receiver<Pending>>,
    inflight: Mutex<HashMap<String, Reply>>,
    init_error: Mutex<Option<InvokeError>>,
    /// When the process first asked for an event: the end of its init phase, what Lambda
    /// reports as `Init Duration`.
    first_poll: std::sync::OnceLock<Instant>,
}

async fn next(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    state.first_poll.get_or_init(Instant::now);
    let pending = state.queue.lock().await.recv().await;
    let Some(p) = pending else {
        return (StatusCode::GONE, HeaderMap::new(), Vec::new());
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        p.request_id.parse().expect("uuid header"),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        p.deadline_ms.to_string().parse().expect("number header"),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.parse().expect("arn header"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{}",
            std::time::UNIX_EPOCH
                .elapsed()
                .map(|d| d.as_secs())
                .unwrap_or(0),
            &p.request_id.replace('-', "")[..24]
        )
        .parse()
        .expect("trace header"),
    );
    headers.insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    state.inflight.lock().await.insert(p.request_id, p.reply);
    (StatusCode::OK, headers, p.payload)
}

async fn response(
    State(state): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    match state.inflight.lock().await.remove(&id) {
        Some(reply) => {
            let _ = reply.send(Ok(body.to_vec()));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn parse_error(headers: &HeaderMap, body: &[u8]) -> InvokeError {
    serde_json::from_slice::<InvokeError>(body).unwrap_or_else(|_| {
        let error_type = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Unhandled");
        InvokeError::local(error_type, String::from_utf8_lossy(body))
    })
}

async fn error(
    State(state): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match state.inflight.lock().await.remove(&id) {
        Some(reply) => {
            let _ = reply.send(Err(parse_error(&headers, &body)));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    *state.init_error.lock().await = Some(parse_error(&headers, &body));
    StatusCode::ACCEPTED
}

/// One function: its Runtime API server and its process.
pub struct LocalFunction {
    pub name: String,
    pub log_path: PathBuf,
    pub started_at: Instant,
    submit: mpsc::Sender<Pending>,
    state: Arc<ApiState>,
    process: std::sync::Mutex<Supervised>,
    invoke_lock: Mutex<()>,
    _server: FakeServer,
}

impl LocalFunction {
    /// Starts the Runtime API and the binary, with a Lambda-like environment (`env_clear`, then
    /// the runtime variables and `env`).
    pub async fn spawn(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        log_path: &Path,
    ) -> std::io::Result<Self> {
        Self::spawn_program(name, binary, &[], env, log_path).await
    }

    /// Like [`Self::spawn`] for an interpreter and its arguments (the Python baseline).
    pub async fn spawn_program(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_path: &Path,
    ) -> std::io::Result<Self> {
        let (submit, queue) = mpsc::channel(16);
        let function_arn = format!(
            "arn:aws:lambda:{}:123456789012:function:{name}",
            crate::moto::REGION
        );
        let state = Arc::new(ApiState {
            function_arn,
            queue: Mutex::new(queue),
            inflight: Mutex::default(),
            init_error: Mutex::default(),
            first_poll: std::sync::OnceLock::new(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let server = serve(router).await?;
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::File::create(log_path)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", server.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let started_at = Instant::now();
        let process = Supervised::spawn(name, command)?;
        Ok(Self {
            name: name.to_owned(),
            log_path: log_path.to_path_buf(),
            started_at,
            submit,
            state,
            process: std::sync::Mutex::new(process),
            invoke_lock: Mutex::new(()),
            _server: server,
        })
    }

    /// Invokes the function synchronously and returns its JSON response.
    pub async fn invoke(
        &self,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, InvokeError> {
        let bytes = self
            .invoke_raw(serde_json::to_vec(payload).unwrap_or_default(), timeout)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            InvokeError::local("InvalidResponse", format!("response is not JSON: {e}"))
        })
    }

    pub async fn invoke_raw(
        &self,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, InvokeError> {
        let _one_at_a_time = self.invoke_lock.lock().await;
        let (reply, mut answer) = oneshot::channel();
        let deadline_ms = (std::time::SystemTime::now() + timeout)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.submit
            .send(Pending {
                request_id: uuid::Uuid::new_v4().to_string(),
                payload,
                deadline_ms,
                reply,
            })
            .await
            .map_err(|_| InvokeError::local("RuntimeGone", "the runtime API stopped"))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                result = &mut answer => {
                    return result.unwrap_or_else(|_| Err(InvokeError::local("RuntimeGone", "no reply")));
                }
                _ = tokio::time::sleep(Duration::from_millis(25)) => {
                    if let Some(err) = self.state.init_error.lock().await.clone() {
                        return Err(InvokeError::local("InitError", err.to_string()));
                    }
                    let exited = self.process.lock().map(|mut p| p.try_wait()).unwrap_or(None);
                    if let Some(status) = exited {
                        return Err(InvokeError::local("ProcessExited", format!("{} exited with {status}; see {}", self.name, self.log_path.display())));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(InvokeError::local("Timeout", format!("no response within {timeout:?}")));
                    }
                }
            }
        }
    }

    /// Spawn to the first poll for an event (Lambda's `Init Duration`), once it has polled.
    pub fn init_duration(&self) -> Option<Duration> {
        self.state
            .first_poll
            .get()
            .map(|polled| polled.duration_since(self.started_at))
    }

    /// Peak resident memory of the function process so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.lock().ok()?.peak_rss_kib()
    }

    pub fn stop(&self) {
        if let Ok(mut p) = self.process.lock() {
            p.terminate();
        }
    }
}
