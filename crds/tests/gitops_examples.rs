//! The GitOps example commits an AgentPromotion beside its Agent: the approval must name the
//! hash of the committed spec (what `proof spec-hash` prints), or the agent would never be
//! promoted after a sync.

use std::path::PathBuf;

use agentgov_api::hash::spec_hash;
use agentgov_api::{Agent, AgentPromotion};

fn read(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/gitops/agents")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_committed_approval_names_the_committed_spec() {
    let agent: Agent = serde_yaml::from_str(&read("invoice-auditor.yaml")).unwrap();
    let approval: AgentPromotion =
        serde_yaml::from_str(&read("invoice-auditor-approval.yaml")).unwrap();
    assert_eq!(approval.spec.agent, agent.metadata.name.clone().unwrap());
    assert_eq!(
        approval.spec.spec_hash,
        spec_hash(&agent.spec).unwrap(),
        "recompute it: cargo run -p agentgov-api --bin proof -- spec-hash examples/gitops/agents/invoice-auditor.yaml"
    );
    assert!(
        approval.spec.requested_by.is_none(),
        "requestedBy is the API server's to stamp"
    );
}

#[test]
fn the_kustomization_lists_every_manifest_of_the_folder() {
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read("kustomization.yaml")).unwrap();
    let mut listed: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/gitops/agents");
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    listed.sort();
    present.sort();
    assert_eq!(listed, present);
}
