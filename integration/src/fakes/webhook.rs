//! A fake Slack incoming webhook (api.slack.com/messaging/webhooks): `POST` a JSON message with
//! `text` and/or `blocks`; 200 `ok`; 400 `invalid_payload` (no text, no blocks, not JSON) or
//! `no_text`; 404 `no_service` (unknown path); 429 with `Retry-After` when rate limited.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::kit::{self, Kit, Running};

/// The messages received.
type Inbox = Vec<Value>;

#[derive(Clone)]
pub struct FakeWebhook {
    kit: Kit<Inbox>,
}

pub type RunningWebhook = Running<FakeWebhook>;

pub const HOOK_PATH: &str = "/services/T0KEYWARD/B0ALERTS/fakefakefakefakefakefake";

impl RunningWebhook {
    pub fn url(&self) -> String {
        format!("{}{HOOK_PATH}", self.server.base_url())
    }
}

impl FakeWebhook {
    pub async fn start() -> std::io::Result<RunningWebhook> {
        let fake = FakeWebhook {
            kit: Kit::new(Vec::new()),
        };
        let routes = Router::new().route("/services/{team}/{channel}/{token}", post(receive));
        let kit = fake.kit.clone();
        kit::start(fake, &kit, routes).await
    }

    pub fn messages(&self) -> Vec<Value> {
        self.kit.lock().state.clone()
    }

    pub fn throttle_next(&self, calls: u32) {
        self.kit.lock().faults.throttle_next(calls, 1);
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
    let mut inbox = fake.kit.lock();
    if let Some(retry_after) = inbox.faults.take_throttle() {
        let response = (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response();
        return kit::with_retry_after(response, retry_after);
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
    inbox.state.push(message);
    (StatusCode::OK, "ok").into_response()
}
