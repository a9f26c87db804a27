//! How a keyward process opens HTTP connections: `hyper-util`'s pooled client over `hyper-rustls`,
//! with the process's one TLS configuration (`crate::tls`). The SDK's transport and the
//! third-party client are both built here, so every connection a function makes trusts the same
//! roots and links one HTTP stack.
//!
//! HTTP/1.1 only, as AWS's regional endpoints and the third-party APIs all serve it; `hyper`
//! follows no redirect and reads no proxy variable, so a request goes where its URL says and
//! nowhere else.

use std::error::Error as StdError;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// A pooled client sending bodies of type `B`, over TLS or, for loopback tests and local
/// endpoints, plain TCP.
pub(crate) type PooledClient<B> =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<TcpConnector>, B>;

/// A client trusting what `tls` trusts, giving up on a connection not made within
/// `connect_timeout`.
pub(crate) fn pooled_client<B>(
    tls: &rustls::ClientConfig,
    connect_timeout: Option<Duration>,
) -> PooledClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut tcp = TcpConnector::new();
    // The TLS layer decides between http and https; the TCP layer must take both.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https)
}

/// An error and each of its sources, outermost first.
pub(crate) fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// Whether a failed call timed out, at any layer (the TCP connect timeout surfaces as an
/// `io::ErrorKind::TimedOut` under hyper's error).
pub(crate) fn timed_out(err: &(dyn StdError + 'static)) -> bool {
    causes(err).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
    })
}
