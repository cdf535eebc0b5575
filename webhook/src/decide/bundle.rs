//! PolicyBundle and ClusterPolicyBundle CREATE/UPDATE reviews: a bundle whose Rego does not
//! compile is refused at
//! `kubectl apply`, with the compiler's message naming the module and line. (The CRD schema
//! checks the data's shape; the operator and the webhook keep the last good version in force
//! should a broken one get in anyway, as the second line.) With `--require-signed-bundles`, an
//! unsigned or badly signed bundle is refused too, naming the key (the operator's own check is
//! the one that holds when the webhook is bypassed). A namespace's bundle that raises a limit
//! above the cluster floor's is refused, naming the bound (harmless if it got in: an agent must
//! pass both, so the floor's limit holds anyway).

use agentgov_api::admission::DecisionCode;
use agentgov_api::bundle_signature::verify_bundle;
use agentgov_api::effective::above_floor;
use agentgov_api::policy::PolicyEngine;
use agentgov_api::policy_bundle::PolicyData;
use agentgov_api::{ClusterPolicyBundle, PolicyBundle, PolicyBundleSpec};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::agent::on_blocking_pool;
use super::{Decision, expect_kind, namespace_of};

/// A PolicyBundle or ClusterPolicyBundle CREATE, or an UPDATE that changes its spec. A
/// namespace's bundle is checked against the cluster floor (`floor`, its data when one is in
/// force): a limit above the floor's is refused, naming the bound.
pub(crate) async fn decide_bundle(
    req: &AdmissionRequest<DynamicObject>,
    policy_slots: &Semaphore,
    bundle_keys: Option<&agentgov_runtime::keys::Keys>,
    floor: Option<&PolicyData>,
) -> Decision {
    if !matches!(req.operation, Operation::Create | Operation::Update)
        || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
    {
        return Decision::pass("only CREATE and UPDATE of a PolicyBundle's spec are reviewed");
    }
    let cluster = match (
        expect_kind::<PolicyBundle>(&req.kind),
        expect_kind::<ClusterPolicyBundle>(&req.kind),
    ) {
        (Ok(()), _) => false,
        (_, Ok(())) => true,
        (Err(bad), _) => return bad,
    };
    let Some(object) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let kind = if cluster {
        "ClusterPolicyBundle"
    } else {
        "PolicyBundle"
    };
    let spec_of = |object: &DynamicObject| -> Result<PolicyBundleSpec, String> {
        if cluster {
            let bundle: ClusterPolicyBundle =
                object.clone().try_parse().map_err(|e| e.to_string())?;
            Ok(bundle.spec.policy)
        } else {
            let bundle: PolicyBundle = object.clone().try_parse().map_err(|e| e.to_string())?;
            Ok(bundle.spec)
        }
    };
    let spec = match spec_of(object) {
        Ok(spec) => spec,
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyBundleInvalid,
                None,
                format!("the {kind} does not parse: {e}"),
            );
        }
    };
    let unchanged = req
        .old_object
        .as_ref()
        .and_then(|old| spec_of(old).ok())
        .is_some_and(|old| old == spec);
    if unchanged {
        return Decision::pass("metadata-only change");
    }
    let name = object.metadata.name.clone().unwrap_or_default();
    let id = match namespace_of(req) {
        Some(namespace) if !cluster => format!("{namespace}/{name}"),
        _ => name,
    };
    let version = spec.version.clone();
    if let Some(keys) = bundle_keys
        && let Err(e) = verify_bundle(&keys.current(), &spec)
    {
        return Decision::deny(
            DecisionCode::DenyBundleUnsigned,
            None,
            format!("{kind} {id} version {version} is refused: {e}"),
        );
    }
    if !cluster && let Some(floor) = floor {
        let above = above_floor(&spec.data, floor);
        if !above.is_empty() {
            let bounds: Vec<String> = above.iter().map(ToString::to_string).collect();
            return Decision::deny(
                DecisionCode::DenyBundleAboveFloor,
                None,
                format!(
                    "{kind} {id} version {version} is refused: a namespace may lower the cluster floor's limits, never raise them: {}",
                    bounds.join("; ")
                ),
            );
        }
    }
    on_blocking_pool(
        policy_slots,
        String::new(),
        move || match PolicyEngine::compile(&spec) {
            Ok(engine) => Decision::pass(format!(
                "{kind} {id} version {version} compiles (policy {})",
                engine.hash().get(..12).unwrap_or_default()
            )),
            Err(e) => Decision::deny(
                DecisionCode::DenyBundleInvalid,
                None,
                format!("{kind} {id} version {version} does not compile: {e}"),
            ),
        },
    )
    .await
}
