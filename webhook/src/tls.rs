//! The admission server's TLS: rustls with TLS 1.2 and 1.3 only, client certificates verified
//! against the configured CA (`WebPkiClientVerifier`, chains accepted), and the whole
//! `ServerConfig` swapped through an `ArcSwap` when the certificate, key or client CA change.
//!
//! Swapping the config (rather than only a `ResolvesServerCert`) reloads the client CA too;
//! each new connection takes the config in force when it is accepted, and connections already
//! open keep theirs, so a rotation drops no request.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::config::ClientAuth;
use agentgov_runtime::reload::{self, WatchedFiles};

/// ALPN: HTTP/2 first, HTTP/1.1 for everything else. The API server takes HTTP/2 for a webhook
/// it reaches by URL and asks for HTTP/1.1 alone for one behind a Service.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// The files to watch, in the order [`build_from_contents`] expects.
    pub fn watched(&self) -> WatchedFiles {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        if self.client_auth != ClientAuth::None
            && let Some(ca) = &self.client_ca
        {
            paths.push(ca.clone());
        }
        WatchedFiles::new(paths)
    }

    /// Build a config from the contents [`WatchedFiles::poll`] returned for [`Self::watched`].
    pub fn build_from_contents(&self, contents: &[Vec<u8>]) -> Result<ServerConfig, Error> {
        match contents {
            [cert, key] => server_config(cert, key, None, self.client_auth),
            [cert, key, ca] => server_config(cert, key, Some(ca), self.client_auth),
            _ => Err(Error::Tls(
                "internal: unexpected number of TLS files".into(),
            )),
        }
    }
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{what}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

/// A rustls server config: TLS 1.3 and 1.2 (ring), the given client authentication, one
/// certificate chain, ALPN h2 and http/1.1.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = parse_certs(cert_pem, "serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Tls(format!("serving key: not a PEM private key: {e}")))?;
    let verifier = match client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let pem = client_ca_pem.ok_or_else(|| {
                Error::Tls(format!(
                    "--client-auth={} needs a client CA file",
                    client_auth.as_str()
                ))
            })?;
            let mut roots = RootCertStore::empty();
            for ca in parse_certs(pem, "client CA")? {
                roots
                    .add(ca)
                    .map_err(|e| Error::Tls(format!("client CA: {e}")))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if client_auth == ClientAuth::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| Error::Tls(format!("client verifier: {e}")))?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(format!("protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("serving certificate and key: {e}")))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The server config in force, replaced whole on reload.
#[derive(Debug)]
pub struct ReloadingTls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl ReloadingTls {
    /// Read and build the initial config (an error here stops the start), and return the
    /// watcher primed with what was read.
    pub async fn load(files: TlsFiles) -> Result<(Arc<Self>, WatchedFiles), Error> {
        let mut watched = files.watched();
        let contents = watched.first().await?;
        let config = files.build_from_contents(&contents)?;
        Ok((
            Arc::new(ReloadingTls {
                files,
                current: ArcSwap::from_pointee(config),
            }),
            watched,
        ))
    }

    /// An acceptor for one new connection, with the config in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Replace the config from freshly read contents; on error the old one stays.
    pub fn apply(&self, contents: &[Vec<u8>]) -> Result<(), Error> {
        let config = self.files.build_from_contents(contents)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// Keep checking the files; new connections get the new config.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        watched: WatchedFiles,
        interval: std::time::Duration,
        metrics: &crate::metrics::Metrics,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let results = metrics.certificate_reload.clone();
        reload::spawn_poller(
            "certificate",
            watched,
            interval,
            move |ok| crate::metrics::Metrics::reload(&results, ok),
            move |contents| this.apply(&contents),
        )
    }
}
