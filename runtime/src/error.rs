//! The runtime crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key ring {path}: {source}")]
    KeyRing {
        path: PathBuf,
        source: agentgov_api::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short, bounded category for metric labels and log fields.
    pub fn category(&self) -> &'static str {
        match self {
            Error::ReadFile { .. } => "read_file",
            Error::KeyRing { .. } => "keyring",
            Error::Bind { .. } => "bind",
            Error::Serve(_) => "io",
            Error::Config(_) => "config",
        }
    }
}
