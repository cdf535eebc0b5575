//! The API server client both binaries use: kube's own layers (base URI, credentials, extra
//! headers, and the retry of 429, 503 and 504 it does by default) over HTTP/2.
//!
//! kube's `Client::try_default` speaks HTTP/1.1 only, so every watch and every request in
//! flight has a TCP and TLS connection of its own, and the pool keeps each idle for 90 seconds:
//! the operator, with 32 status writes and 64 reconciles in flight, held 78 to 109 connections
//! to the API server in a revalidation of 10,000 agents, each with its buffers on both ends
//! (BENCHMARKS.md, "One HTTP/2 connection to the API server"). client-go
//! multiplexes everything over one HTTP/2 connection; so does this client when the API server
//! offers HTTP/2 (ALPN), which every kube-apiserver does. Behind something that speaks only
//! HTTP/1.1 it falls back to that, with at most [`MAX_IDLE`] connections kept idle.
//!
//! kube's upgrade calls (exec, attach, port-forward) need HTTP/1.1; neither binary makes them.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use tower::{BoxError, ServiceBuilder};

use crate::Error;

/// HTTP/1.1 connections kept idle once a burst is over (HTTP/2 needs one).
const MAX_IDLE: usize = 8;

/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// With one connection carrying every watch, a connection that died without a word (a
/// restarted load balancer, a lost route) must be found in seconds, not at the read timeout
/// (kube's is almost five minutes): a ping after this long without a frame, as client-go's
/// `ReadIdleTimeout`...
const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// ...answered within this long, or the connection is closed and everything on it retried
/// (client-go's `PingTimeout`).
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// What the API server may send on the connection that no stream has read yet. Each stream's
/// own window (hyper's 2 MB) bounds what one holds; this one is wide enough that a few streams
/// whose reader lags (a watch behind a busy consumer) never stall the rest. Go's HTTP/2 client,
/// and so client-go, allows 1 GB.
const CONNECTION_WINDOW: u32 = 64 << 20;

/// A client for the cluster `KUBECONFIG` or the Pod's service account points at.
pub async fn client() -> Result<kube::Client, Error> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(format!("cluster configuration: {e}")))?;
    from_config(config)
}

/// A client for `config`'s cluster, with `config`'s credentials, timeouts and headers.
pub fn from_config(config: kube::Config) -> Result<kube::Client, Error> {
    let tls = config
        .rustls_client_config()
        .map_err(|e| Error::Config(format!("TLS to the API server: {e}")))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            name.clone()
                .try_into()
                .map_err(|e| Error::Config(format!("tls-server-name {name}: {e}")))?,
        )),
        None => https,
    };
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_all_versions().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_AFTER_IDLE)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .build(connector);
    let auth = config
        .auth_layer()
        .map_err(|e| Error::Config(format!("credentials: {e}")))?;
    let headers = config
        .extra_headers_layer()
        .map_err(|e| Error::Config(format!("extra headers: {e}")))?;
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(auth)
        .layer(headers)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, Version};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// Connections a [`server`] accepted, and of them those still open.
    #[derive(Default)]
    struct Connections {
        accepted: usize,
        open: usize,
    }

    /// A TLS server on loopback that offers `alpn` and answers `/version` as an API server does,
    /// recording the HTTP version of each request and its connections; and a kube config that
    /// trusts it.
    async fn server(
        alpn: &[&[u8]],
    ) -> (
        kube::Config,
        Arc<Mutex<Vec<Version>>>,
        Arc<Mutex<Connections>>,
    ) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(Connections::default()));
        let (seen, accepted) = (versions.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                {
                    let mut connections = accepted.lock().unwrap();
                    connections.accepted += 1;
                    connections.open += 1;
                }
                let (acceptor, seen, closed) = (acceptor.clone(), seen.clone(), accepted.clone());
                tokio::spawn(async move {
                    let tls = acceptor.accept(tcp).await.unwrap();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        seen.lock().unwrap().push(request.version());
                        let body = r#"{"major":"1","minor":"37","gitVersion":"v1.37.2","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#;
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                    closed.lock().unwrap().open -= 1;
                });
            }
        });
        let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
        config.root_cert = Some(vec![cert.cert.der().to_vec()]);
        (config, versions, connections)
    }

    /// Requests at once, as the operator's reconciles make them.
    async fn ask_together(client: &kube::Client, n: usize) {
        let asks = (0..n).map(|_| client.apiserver_version());
        for answer in futures::future::join_all(asks).await {
            assert_eq!(answer.unwrap().git_version, "v1.37.2");
        }
    }

    /// Wait (at most 10 s) until no more than `n` connections are open.
    async fn open_at_most(connections: &Mutex<Connections>, n: usize) {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while connections.lock().unwrap().open > n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "{} open", connections.lock().unwrap().open);
    }

    #[tokio::test]
    async fn everything_goes_over_one_http2_connection_when_the_server_offers_it() {
        let (config, versions, connections) = server(&[b"h2", b"http/1.1"]).await;
        let client = super::from_config(config).unwrap();
        // Until a first answer settles the protocol (ALPN), each request connects of its own;
        // then one connection is kept and the others close.
        ask_together(&client, 16).await;
        open_at_most(&connections, 1).await;
        let accepted = connections.lock().unwrap().accepted;
        ask_together(&client, 16).await;
        ask_together(&client, 16).await;
        assert_eq!(*versions.lock().unwrap(), vec![Version::HTTP_2; 48]);
        let connections = connections.lock().unwrap();
        assert_eq!((connections.accepted, connections.open), (accepted, 1));
    }

    #[tokio::test]
    async fn a_server_without_http2_is_spoken_to_over_http1() {
        let (config, versions, connections) = server(&[b"http/1.1"]).await;
        let client = super::from_config(config).unwrap();
        ask_together(&client, 16).await;
        assert_eq!(*versions.lock().unwrap(), vec![Version::HTTP_11; 16]);
        // A connection per request in flight, as HTTP/1.1 needs; of them, MAX_IDLE are kept.
        assert!(connections.lock().unwrap().accepted > super::MAX_IDLE);
        open_at_most(&connections, super::MAX_IDLE).await;
    }
}
