//! The plugin's errors: each one prints as one sentence after `error: `.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot build a client for the cluster: {0}")]
    Client(#[source] kube::Error),
    #[error("agent \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound { namespace: String, name: String },
    #[error("the API server refused to {action}: {message}")]
    Api { action: String, message: String },
    /// Refused because the name is taken (HTTP 409, `AlreadyExists`).
    #[error("the API server refused to {action}: {message}")]
    AlreadyExists { action: String, message: String },
    #[error("cannot reach the API server to {action}: {source}")]
    Unreachable {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an Agent manifest: {message}", path.display())]
    NotAnAgent { path: PathBuf, message: String },
    /// A `create` source (a template, workflow, transcript, CloudEvent or seed row) that cannot
    /// be read as one: `what` names the kind expected.
    #[error("{} is not {what}: {message}", path.display())]
    NotASource {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("{} is not an agentgov export: {message}", path.display())]
    NotAnExport { path: PathBuf, message: String },
    /// `drift --exit-code` found drift (the report is on stdout).
    #[error("drift found: {0}")]
    Drift(String),
    #[error("cannot load the key ring {}: {message}", path.display())]
    KeyRing { path: PathBuf, message: String },
    /// The proof did not verify: which part failed, as a sentence.
    #[error("{0}")]
    Unverified(String),
    #[error("cannot hash the spec of agent {agent}: {message}")]
    Hash { agent: String, message: String },
    /// `promote --wait` ended without the promotion: denied, superseded, or out of time.
    #[error("{0}")]
    NotPromoted(String),
    /// `diff` found differences (the diff is on stdout): exit 1, as `kubectl diff`.
    #[error("{0}")]
    Differs(String),
    #[error("cannot encode the output: {0}")]
    Encode(String),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("{0}")]
    Usage(String),
    /// A PolicyBundle that cannot be used (not found, not in force, not compiling): which, and why.
    #[error("cannot use the PolicyBundle {bundle}: {message}")]
    Bundle { bundle: String, message: String },
    /// `policy test` with failing tests, `policy eval` of a denied agent: the outcome, as a
    /// sentence (the details were printed).
    #[error("{0}")]
    PolicyOutcome(String),
}

impl Error {
    /// A failed API call: not found, refused (with the server's message) or unreachable.
    pub fn from_api(action: &str, namespace: &str, name: Option<&str>, error: kube::Error) -> Self {
        match (error, name) {
            (kube::Error::Api(status), Some(name)) if status.code == 404 => Error::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            (kube::Error::Api(status), _) if status.reason == "AlreadyExists" => {
                Error::AlreadyExists {
                    action: action.to_string(),
                    message: status.message,
                }
            }
            (kube::Error::Api(status), _) => Error::Api {
                action: action.to_string(),
                message: status.message,
            },
            (source, _) => Error::Unreachable {
                action: action.to_string(),
                source,
            },
        }
    }
}
