//! PolicyBundle manifests (files) and the version of a live bundle that is in force.

use agentgov_api::policy::{ActiveSpec, active_spec};
use agentgov_api::{PolicyBundle, PolicyBundleSpec};

/// Whether a YAML or JSON document is a PolicyBundle manifest (`kind: PolicyBundle`).
pub fn is_bundle(document: &serde_yaml::Value) -> bool {
    document.get("kind").and_then(serde_yaml::Value::as_str) == Some("PolicyBundle")
}

/// A PolicyBundle manifest (YAML or JSON, one document), or why it is not one.
pub fn parse(text: &str) -> Result<PolicyBundle, String> {
    let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if !is_bundle(&document) {
        return Err("its kind is not PolicyBundle".into());
    }
    serde_yaml::from_value(document).map_err(|e| e.to_string())
}

/// The version of a live bundle in force: the last one the operator compiled, if its status
/// hashes to what it claims (the operator's and the webhook's rule), else why none is.
pub fn in_force(bundle: &PolicyBundle) -> Result<PolicyBundleSpec, String> {
    match active_spec(bundle.status.as_ref()) {
        ActiveSpec::Trusted(spec) => Ok(spec.clone()),
        ActiveSpec::Unset => {
            Err("no version of it has compiled yet (status.activeSpec is empty)".into())
        }
        ActiveSpec::Untrusted(why) => Err(format!("its status is not trusted: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use agentgov_api::PolicyBundleStatus;
    use agentgov_api::hash::policy_hash;
    use agentgov_api::policy::default_bundle_spec;

    use super::*;

    #[test]
    fn the_shipped_manifest_parses_and_other_kinds_do_not() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/policybundle-default.yaml"
        ))
        .unwrap();
        let bundle = parse(&text).unwrap();
        assert_eq!(bundle.spec, default_bundle_spec());
        let json = serde_json::to_string(&bundle).unwrap();
        assert_eq!(parse(&json).unwrap().spec, bundle.spec);
        let agent = "apiVersion: agentgov.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\n";
        assert_eq!(parse(agent).unwrap_err(), "its kind is not PolicyBundle");
        assert!(parse(": not yaml [").is_err());
    }

    #[test]
    fn only_a_status_that_hashes_to_its_claim_is_in_force() {
        let spec = default_bundle_spec();
        let mut bundle = PolicyBundle::new("default", spec.clone());
        assert!(in_force(&bundle).unwrap_err().contains("no version"));
        bundle.status = Some(PolicyBundleStatus {
            active_hash: Some(policy_hash(&spec).unwrap()),
            active_spec: Some(spec.clone()),
            ..PolicyBundleStatus::default()
        });
        assert_eq!(in_force(&bundle).unwrap(), spec);
        if let Some(status) = bundle.status.as_mut() {
            status.active_hash = Some("0".repeat(64));
        }
        assert!(in_force(&bundle).unwrap_err().contains("not trusted"));
    }
}
