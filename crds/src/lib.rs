//! The agentgov.dev API: CRD types, the proof-bundle contract (canonical hashing, signing, the
//! key ring), the seven admission checks and the promotion policy engine. Plain functions over
//! plain data; no cluster needed.
#![forbid(unsafe_code)]

pub mod admission;
pub mod agent;
pub mod conditions;
mod error;
pub mod expiry;
pub mod hash;
pub mod keyring;
pub mod pod_security;
pub mod policy;
pub mod policy_bundle;
pub mod proof;

pub use agent::{Agent, AgentSpec, AgentStatus, GovernanceStatus};
pub use error::Error;
pub use policy_bundle::{PolicyBundle, PolicyBundleSpec, PolicyBundleStatus};

/// The API group.
pub const GROUP: &str = "agentgov.dev";

/// Every generated file, by path from the repository root: the CRDs and the default
/// PolicyBundle example (which embeds `policies/promotion.rego`).
pub fn generated_files() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let bundle = PolicyBundle::new("default", policy::default_bundle_spec());
    let mut bundle = serde_yaml::to_value(&bundle)?;
    if let Some(map) = bundle.as_mapping_mut() {
        // A manifest for `kubectl apply`: no status, and the namespace comes from the command.
        map.remove("status");
    }
    Ok(vec![
        (
            "crds/agents.agentgov.dev.yaml",
            serde_yaml::to_string(&Agent::crd())?,
        ),
        (
            "crds/policybundles.agentgov.dev.yaml",
            serde_yaml::to_string(&PolicyBundle::crd())?,
        ),
        (
            "examples/policybundle-default.yaml",
            serde_yaml::to_string(&bundle)?,
        ),
    ])
}
