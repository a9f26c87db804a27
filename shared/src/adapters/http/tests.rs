use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use axum::routing::any;

use super::*;

/// A loopback server that answers each request from a script: (status, headers, body) per call,
/// repeating the last entry. Records the Authorization header it saw.
/// One scripted reply: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, &'static str);

#[derive(Clone)]
struct Script {
    replies: Arc<Vec<Reply>>,
    calls: Arc<AtomicU32>,
    saw_auth: Arc<std::sync::Mutex<Vec<String>>>,
    saw_user_agent: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn reply(State(script): State<Script>, headers: AxumHeaders) -> impl IntoResponse {
    let n = script.calls.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(auth) = headers.get("authorization") {
        script
            .saw_auth
            .lock()
            .unwrap()
            .push(auth.to_str().unwrap().to_owned());
    }
    if let Some(agent) = headers.get("user-agent") {
        script
            .saw_user_agent
            .lock()
            .unwrap()
            .push(agent.to_str().unwrap().to_owned());
    }
    let (status, hdrs, body) = script.replies[n.min(script.replies.len() - 1)].clone();
    let mut out = AxumHeaders::new();
    for (k, v) in hdrs {
        out.insert(k, v.parse().unwrap());
    }
    (AxumStatus::from_u16(status).unwrap(), out, body)
}

async fn serve(replies: Vec<Reply>) -> (String, Script) {
    let script = Script {
        replies: Arc::new(replies),
        calls: Arc::new(AtomicU32::new(0)),
        saw_auth: Arc::default(),
        saw_user_agent: Arc::default(),
    };
    let app = Router::new()
        .route("/{*path}", any(reply))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), script)
}

fn client() -> HttpClient {
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_server_wait: Duration::from_secs(2),
    };
    HttpClient::new(
        "keyward-test",
        Duration::from_secs(5),
        policy,
        Redactor::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn retries_429_then_succeeds_honouring_retry_after() {
    let (base, script) = serve(vec![
        (
            429,
            vec![("retry-after", "1".into())],
            r#"{"error":{"code":"rate_limited"}}"#,
        ),
        (200, vec![], r#"{"ok":true}"#),
    ])
    .await;
    let started = std::time::Instant::now();
    let response = client()
        .send(HttpRequest::new(
            Method::POST,
            format!("{base}/v10/projects/p/env"),
        ))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(script.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried_on_5xx() {
    let (base, script) = serve(vec![(503, vec![], "unavailable")]).await;
    let err = client()
        .send(HttpRequest::new(Method::POST, format!("{base}/rotate")))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idempotent_requests_retry_5xx_up_to_the_limit() {
    let (base, script) = serve(vec![(502, vec![], "bad gateway")]).await;
    let err = client()
        .send(HttpRequest::new(Method::GET, format!("{base}/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Status { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(script.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_wait_longer_than_the_policy_is_reported_not_slept() {
    let (base, _) = serve(vec![(429, vec![("retry-after", "3600".into())], "")]).await;
    let err = client()
        .send(HttpRequest::new(Method::GET, format!("{base}/x")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::WaitTooLong { wait, .. } if wait == Duration::from_secs(3600)),
        "{err}"
    );
}

#[tokio::test]
async fn client_errors_are_returned_at_once() {
    let (base, script) = serve(vec![(
        400,
        vec![],
        r#"{"error":{"code":"ENV_CONFLICT","message":"exists"}}"#,
    )])
    .await;
    let err = client()
        .send(HttpRequest::new(Method::GET, format!("{base}/x")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ENV_CONFLICT"), "{err}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tokens_never_reach_errors_but_do_reach_the_server() {
    let token = "vercel_tok_4f9a8b7c6d5e";
    // The server echoes the token back in its error body, as some APIs do.
    let (base, script) = serve(vec![(
        401,
        vec![],
        "invalid token vercel_tok_4f9a8b7c6d5e for user",
    )])
    .await;
    let err = client()
        .send(
            HttpRequest::new(Method::GET, format!("{base}/v9/projects?token={token}"))
                .bearer(SecretString::from(token)),
        )
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(token), "token leaked: {text}");
    assert!(text.contains("401"));
    assert_eq!(
        script.saw_auth.lock().unwrap().as_slice(),
        [format!("Bearer {token}")]
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = client()
        .send(HttpRequest::new(
            Method::POST,
            format!("http://127.0.0.1:{port}/x"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Transport { attempts: 3, .. }),
        "{err}"
    );
}

#[test]
fn parses_every_form_of_server_wait() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("7"));
    assert_eq!(
        server_requested_wait(&headers, now),
        Some(Duration::from_secs(7))
    );
    headers.insert(
        "retry-after",
        HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(30))).unwrap(),
    );
    assert_eq!(
        server_requested_wait(&headers, now),
        Some(Duration::from_secs(30))
    );
    headers.insert(
        "retry-after",
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(server_requested_wait(&headers, now), Some(Duration::ZERO));
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-reset", HeaderValue::from_static("1700000042"));
    assert_eq!(
        server_requested_wait(&headers, now),
        Some(Duration::from_secs(42))
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
    assert_eq!(server_requested_wait(&headers, now), None);
}

/// The client (and the trust store behind it) is built on the first request, once for every
/// clone; a user agent that is not a header value is refused when the client is made.
#[tokio::test]
async fn the_client_is_built_on_first_use_and_shared_by_clones() {
    let (base, script) = serve(vec![(200, vec![], "{}")]).await;
    let http = client();
    let clone = http.clone();
    assert!(http.client.get().is_none() && clone.client.get().is_none());
    clone
        .send(HttpRequest::new(Method::GET, format!("{base}/x")))
        .await
        .unwrap();
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
    assert!(http.client.get().is_some(), "built once, for both");

    let err = HttpClient::new(
        "keyward\nsmuggled: header",
        Duration::from_secs(1),
        RetryPolicy::default(),
        Redactor::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a valid user agent"), "{err}");
}

/// A redirect would carry the bearer token to a URL no one configured: it is an error naming its
/// status, and the place it points to is never asked.
#[tokio::test]
async fn a_redirect_is_an_error_not_followed() {
    let (base, script) = serve(vec![(
        302,
        vec![("location", "http://127.0.0.1:9/collect".into())],
        "",
    )])
    .await;
    let err = client()
        .send(
            HttpRequest::new(Method::GET, format!("{base}/v9/projects"))
                .bearer(SecretString::from("tok_redirect_1234")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FOUND), "{err}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_user_agent_goes_with_every_request() {
    let (base, script) = serve(vec![(200, vec![], "{}")]).await;
    client()
        .send(HttpRequest::new(Method::GET, format!("{base}/x")))
        .await
        .unwrap();
    assert_eq!(
        script.saw_user_agent.lock().unwrap().as_slice(),
        ["keyward-test".to_owned()]
    );
}

/// A server that answers nothing within the client's timeout may still have acted: an
/// idempotent request is tried again, one that is not is reported after its one attempt.
#[tokio::test]
async fn a_timeout_is_retried_only_for_idempotent_requests() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/{*path}",
        any(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let impatient = HttpClient::new(
        "keyward-test",
        Duration::from_millis(150),
        RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_server_wait: Duration::from_secs(1),
        },
        Redactor::new(),
    )
    .unwrap();

    let err = impatient
        .send(HttpRequest::new(Method::GET, format!("http://{addr}/slow")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::Transport { attempts: 2, message, .. } if message.as_str().contains("no complete answer")),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let err = impatient
        .send(HttpRequest::new(
            Method::POST,
            format!("http://{addr}/slow"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Transport { attempts: 1, .. }),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_url_that_is_not_one_is_refused_before_anything_is_sent() {
    let err = client()
        .send(HttpRequest::new(Method::GET, "https://api.example.com/a b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::InvalidRequest(reason) if reason.contains("not a valid URL")),
        "{err}"
    );
}
