//! The webhook's error type (start-up, TLS material, key ring, I/O). Admission itself never
//! returns an error: every failure there becomes a deny with a decision code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Api(#[from] agentgov_api::Error),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, bounded category for metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::ReadFile { .. } => "read_file",
            Error::Tls(_) => "tls",
            Error::Api(e) => e.category(),
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
            Error::Bind { .. } => "bind",
            Error::Io(_) => "io",
        }
    }
}
