//! The webhook's error type (start-up, TLS material, key ring, I/O). Admission itself never
//! returns an error: every failure there becomes a deny with a decision code.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading files, listening, serving (the shared runtime).
    #[error(transparent)]
    Runtime(#[from] agentgov_runtime::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Api(#[from] agentgov_api::Error),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short, bounded category for metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Runtime(e) => e.category(),
            Error::Tls(_) => "tls",
            Error::Api(e) => e.category(),
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
        }
    }
}
