//! The agentgov.dev API: CRD types, the proof-bundle contract (canonical hashing, signing, the
//! key ring), the seven admission checks and the promotion policy engine. Plain functions over
//! plain data; no cluster needed.
#![forbid(unsafe_code)]

pub mod admission;
pub mod agent;
pub mod bundle_signature;
pub mod conditions;
pub mod containment;
pub mod crd_formats;
pub mod effective;
mod error;
pub mod exception;
pub mod expiry;
pub mod guards;
pub mod hash;
pub mod keyring;
pub mod pod_security;
pub mod policy;
pub mod policy_bundle;
pub mod promotion;
pub mod proof;
pub mod revision;
pub mod runtime;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod workload;

pub use agent::{Agent, AgentSpec, AgentStatus, GovernanceStatus};
pub use error::Error;
pub use exception::{AgentException, AgentExceptionSpec, AgentExceptionStatus};
pub use policy_bundle::{
    ClusterPolicyBundle, ClusterPolicyBundleSpec, PolicyBundle, PolicyBundleSpec,
    PolicyBundleStatus,
};
pub use promotion::{AgentPromotion, AgentPromotionSpec, AgentPromotionStatus};
pub use template::{
    AgentTemplate, AgentTemplateSpec, ClusterAgentTemplate, ClusterAgentTemplateSpec,
};

/// The API group.
pub const GROUP: &str = "agentgov.dev";

/// Every generated file, by path from the repository root: the CRDs (and their copies in the
/// chart), the admission guards' copy in the chart, and the default PolicyBundle example (which
/// embeds `policies/promotion.rego`) with its copy in the GitOps example. `crdgen` writes them and `crdgen --check` fails on drift.
pub fn generated_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    let bundle = PolicyBundle::new("default", policy::default_bundle_spec());
    let mut bundle = serde_yaml::to_value(&bundle)?;
    if let Some(map) = bundle.as_mapping_mut() {
        // A manifest for `kubectl apply`: no status, and the namespace comes from the command.
        map.remove("status");
    }
    let mut files = Vec::new();
    for crd in crd_formats::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let yaml = serde_yaml::to_string(&crd)?;
        files.push((format!("crds/{name}.yaml"), yaml.clone()));
        files.push((format!("charts/agentgov/crds/{name}.yaml"), yaml));
    }
    files.push((
        "charts/agentgov/files/admission-policies.yaml".into(),
        guards::GUARDS_YAML.to_string(),
    ));
    let bundle = serde_yaml::to_string(&bundle)?;
    files.push(("examples/policybundle-default.yaml".into(), bundle.clone()));
    // The GitOps example's copy: kustomize reads only files at or below its directory.
    files.push(("examples/gitops/agents/policybundle.yaml".into(), bundle));
    Ok(files)
}
