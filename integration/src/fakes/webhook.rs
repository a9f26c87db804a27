//! A fake Slack incoming webhook (api.slack.com/messaging/webhooks): `POST` a JSON message with
//! `text` and/or `blocks`; 200 `ok`; 400 `invalid_payload` (no text, no blocks, not JSON) or
//! `no_text`; 404 `no_service` (unknown path); 429 with `Retry-After` when rate limited.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::{FakeServer, serve};

#[derive(Default)]
struct Inbox {
    messages: Vec<Value>,
    throttle_next: u32,
}

#[derive(Clone)]
pub struct FakeWebhook {
    inbox: Arc<Mutex<Inbox>>,
}

pub struct RunningWebhook {
    pub fake: FakeWebhook,
    pub server: FakeServer,
}

pub const HOOK_PATH: &str = "/services/T0KEYWARD/B0ALERTS/fakefakefakefakefakefake";

impl RunningWebhook {
    pub fn url(&self) -> String {
        format!("{}{HOOK_PATH}", self.server.base_url())
    }
}

impl FakeWebhook {
    pub async fn start() -> std::io::Result<RunningWebhook> {
        let fake = FakeWebhook {
            inbox: Arc::default(),
        };
        let router = Router::new()
            .route("/services/{team}/{channel}/{token}", post(receive))
            .with_state(fake.clone());
        Ok(RunningWebhook {
            server: serve(router).await?,
            fake,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn messages(&self) -> Vec<Value> {
        self.lock().messages.clone()
    }

    pub fn throttle_next(&self, calls: u32) {
        self.lock().throttle_next = calls;
    }
}

async fn receive(
    State(fake): State<FakeWebhook>,
    Path((team, channel, token)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if format!("/services/{team}/{channel}/{token}") != HOOK_PATH {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    }
    let mut inbox = fake.lock();
    if inbox.throttle_next > 0 {
        inbox.throttle_next -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "rate_limited",
        )
            .into_response();
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    let has_text = message
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let has_blocks = message
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    if !has_text && !has_blocks {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    inbox.messages.push(message);
    (StatusCode::OK, "ok").into_response()
}
