//! The operator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Api(#[from] agentgov_api::Error),
    #[error("cannot serialize status: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A cached object that no longer reads as its kind (see `compact`).
    #[error("cannot read a cached object again: {0}")]
    Cached(serde_json::Error),
    #[error("{0} has no namespace")]
    MissingNamespace(String),
    /// The key ring file, listening, serving (the shared runtime).
    #[error(transparent)]
    Runtime(#[from] agentgov_runtime::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short, bounded category for metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Api(e) => e.category(),
            Error::Serialize(_) => "serialize",
            Error::Cached(_) => "cached",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::Runtime(e) => e.category(),
            Error::Config(_) => "config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
