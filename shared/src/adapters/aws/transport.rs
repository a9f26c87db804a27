//! The SDK's HTTP transport: every AWS call of a keyward process goes over a `hyper` client
//! trusting the process's one root store (`crate::tls`).
//!
//! Why not the SDK's default HTTPS client: it loads the system trust store when the first client
//! is built (PEM-decoding every certificate under the OS's certificate paths, most of a bare
//! function's init), and it cannot be handed a TLS configuration. Here the SDK and the
//! third-party client share one configuration whose anchors cost nothing to load, and one
//! connection stack (`crate::adapters::connect`).
//!
//! What the SDK expects of a connector, kept here: redirects are returned to it, never followed
//! (S3 answers a wrong region with a redirect the SDK must see; `hyper` follows none); the
//! connect and read timeouts of its `HttpConnectorSettings` apply; failures are classified the
//! way its retry strategy reads them (timeouts and I/O retry, malformed requests do not).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;

use crate::adapters::connect::{PooledClient, causes, pooled_client, timed_out};
use crate::tls::{TlsError, TrustRoots};

/// The SDK's HTTP client for this process: the process's trust roots, built once.
pub fn sdk_http_client() -> Result<SharedHttpClient, TlsError> {
    Ok(SdkTransport::new(crate::tls::process_client_config()?).into_shared())
}

/// An SDK HTTP client trusting `roots` rather than the process's: for tests and tools that
/// talk to a server with its own CA.
pub fn sdk_http_client_trusting(roots: &TrustRoots) -> Result<SharedHttpClient, TlsError> {
    Ok(SdkTransport::new(Arc::new(roots.client_config()?)).into_shared())
}

/// The timeouts a connector is built for: the SDK asks for a connector per operation, and
/// operations with the same settings share one client and so one connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectorTimeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

#[derive(Debug, Clone)]
struct SdkTransport {
    tls: Arc<rustls::ClientConfig>,
    /// One client per distinct timeouts; in practice one per process.
    clients: Arc<Mutex<Vec<TimedClient>>>,
}

/// A client and the timeouts it was built for.
#[derive(Debug)]
struct TimedClient {
    timeouts: ConnectorTimeouts,
    client: PooledClient<SdkBody>,
}

impl SdkTransport {
    fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls,
            clients: Arc::default(),
        }
    }

    fn into_shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }

    fn client_for(&self, timeouts: ConnectorTimeouts) -> PooledClient<SdkBody> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = clients.iter().find(|known| known.timeouts == timeouts) {
            return known.client.clone();
        }
        let client = pooled_client(&self.tls, timeouts.connect);
        clients.push(TimedClient {
            timeouts,
            client: client.clone(),
        });
        client
    }
}

impl HttpClient for SdkTransport {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let timeouts = ConnectorTimeouts {
            connect: settings.connect_timeout(),
            read: settings.read_timeout(),
        };
        SharedHttpConnector::new(Connector {
            client: self.client_for(timeouts),
            read_timeout: timeouts.read,
        })
    }
}

#[derive(Debug)]
struct Connector {
    client: PooledClient<SdkBody>,
    /// From sending the request to the answer's head, as the SDK's own connector counts it.
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let answer = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, answer).await.map_err(|_| {
                    ConnectorError::timeout(
                        format!("no answer within the read timeout of {limit:?}").into(),
                    )
                })?,
                None => answer.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Which retry class a failed call falls in, as the SDK's own connector classifies the same
/// `hyper` errors: a timeout, a connection that could not be made or broke, a request that was
/// wrong.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let hyper_error = causes(&err).find_map(|cause| cause.downcast_ref::<hyper::Error>());
    let has_io_cause = causes(&err).any(|cause| cause.is::<std::io::Error>());
    if timed_out(&err) {
        return ConnectorError::timeout(err.into());
    }
    match hyper_error {
        Some(e) if e.is_user() => ConnectorError::user(err.into()),
        Some(e) if e.is_incomplete_message() => {
            ConnectorError::other(err.into(), Some(ErrorKind::TransientError))
        }
        Some(e) if e.is_closed() || e.is_canceled() => ConnectorError::io(err.into()),
        _ if err.is_connect() || has_io_cause => ConnectorError::io(err.into()),
        _ => ConnectorError::other(err.into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    }

    fn connector(settings: HttpConnectorSettings) -> SharedHttpConnector {
        let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
        sdk_http_client_trusting(&TrustRoots::BuiltIn)
            .unwrap()
            .http_connector(&settings, &components)
    }

    fn request(method: &str, uri: &str, body: SdkBody) -> HttpRequest {
        let mut request = HttpRequest::new(body);
        request.set_method(method).unwrap();
        request.set_uri(uri).unwrap();
        request
    }

    #[tokio::test]
    async fn a_request_and_its_answer_cross_unchanged() {
        let base = serve(Router::new().route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let target = headers["x-amz-target"].to_str().unwrap().to_owned();
                (
                    StatusCode::CREATED,
                    [("x-amzn-requestid", "r-1")],
                    format!("{target}:{body}"),
                )
            }),
        ))
        .await;
        let mut sent = request(
            "POST",
            &format!("{base}/echo?a=1"),
            SdkBody::from("{\"SecretId\":\"x\"}"),
        );
        sent.headers_mut()
            .insert("x-amz-target", "secretsmanager.DescribeSecret");
        let response = connector(HttpConnectorSettings::default())
            .call(sent)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
        assert_eq!(
            response.body().bytes(),
            None,
            "the answer streams, as the SDK's own client hands it over"
        );
        let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_eq!(
            &body[..],
            b"secretsmanager.DescribeSecret:{\"SecretId\":\"x\"}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_returned_to_the_sdk_not_followed() {
        let base = serve(
            Router::new()
                .route(
                    "/bucket",
                    get(|| async {
                        (
                            StatusCode::MOVED_PERMANENTLY,
                            [
                                ("location", "/elsewhere"),
                                ("x-amz-bucket-region", "eu-west-1"),
                            ],
                        )
                    }),
                )
                .route("/elsewhere", get(|| async { "followed" })),
        )
        .await;
        let response = connector(HttpConnectorSettings::default())
            .call(request("GET", &format!("{base}/bucket"), SdkBody::empty()))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 301);
        assert_eq!(
            response.headers().get("x-amz-bucket-region"),
            Some("eu-west-1")
        );
    }

    #[tokio::test]
    async fn failures_fall_in_the_classes_the_sdk_retries_by() {
        // Nothing listens on a port just released: the connection is refused, an I/O error.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = connector(HttpConnectorSettings::default())
            .call(request(
                "GET",
                &format!("http://{closed}/"),
                SdkBody::empty(),
            ))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err:?}");

        // An answer slower than the read timeout is a timeout.
        let base = serve(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        ))
        .await;
        let settings = HttpConnectorSettings::builder()
            .read_timeout(Duration::from_millis(100))
            .build();
        let err = connector(settings)
            .call(request("GET", &format!("{base}/slow"), SdkBody::empty()))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[test]
    fn operations_with_the_same_timeouts_share_one_client() {
        let transport = SdkTransport::new(Arc::new(TrustRoots::BuiltIn.client_config().unwrap()));
        let short = ConnectorTimeouts {
            connect: Some(Duration::from_secs(1)),
            read: None,
        };
        let long = ConnectorTimeouts {
            connect: Some(Duration::from_secs(9)),
            read: None,
        };
        transport.client_for(short);
        transport.client_for(short);
        transport.client_for(long);
        assert_eq!(transport.clients.lock().unwrap().len(), 2);
    }
}
