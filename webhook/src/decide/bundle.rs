//! PolicyBundle CREATE/UPDATE reviews: a bundle whose Rego does not compile is refused at
//! `kubectl apply`, with the compiler's message naming the module and line. (The CRD schema
//! checks the data's shape; the operator and the webhook keep the last good version in force
//! should a broken one get in anyway, as the second line.) With `--require-signed-bundles`, an
//! unsigned or badly signed bundle is refused too, naming the key (the operator's own check is
//! the one that holds when the webhook is bypassed).

use agentgov_api::PolicyBundle;
use agentgov_api::admission::DecisionCode;
use agentgov_api::bundle_signature::verify_bundle;
use agentgov_api::policy::PolicyEngine;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use tokio::sync::Semaphore;

use super::agent::on_blocking_pool;
use super::{Decision, expect_kind, namespace_of};

/// A PolicyBundle CREATE, or an UPDATE that changes its spec.
pub(crate) async fn decide_bundle(
    req: &AdmissionRequest<DynamicObject>,
    policy_slots: &Semaphore,
    bundle_keys: Option<&agentgov_runtime::keys::Keys>,
) -> Decision {
    if !matches!(req.operation, Operation::Create | Operation::Update)
        || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
    {
        return Decision::pass("only CREATE and UPDATE of a PolicyBundle's spec are reviewed");
    }
    if let Err(bad) = expect_kind::<PolicyBundle>(&req.kind) {
        return bad;
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let namespace = namespace_of(req).unwrap_or_default().to_string();
    let bundle: PolicyBundle = match object.clone().try_parse() {
        Ok(b) => b,
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyBundleInvalid,
                None,
                format!("the PolicyBundle does not parse: {e}"),
            );
        }
    };
    let unchanged = req
        .old_object
        .as_ref()
        .and_then(|old| old.clone().try_parse::<PolicyBundle>().ok())
        .is_some_and(|old| old.spec == bundle.spec);
    if unchanged {
        return Decision::pass("metadata-only change");
    }
    let name = object.metadata.name.clone().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let version = bundle.spec.version.clone();
    if let Some(keys) = bundle_keys
        && let Err(e) = verify_bundle(&keys.current(), &bundle.spec)
    {
        return Decision::deny(
            DecisionCode::DenyBundleUnsigned,
            None,
            format!("PolicyBundle {id} version {version} is refused: {e}"),
        );
    }
    on_blocking_pool(
        policy_slots,
        String::new(),
        move || match PolicyEngine::compile(&bundle.spec) {
            Ok(engine) => Decision::pass(format!(
                "PolicyBundle {id} version {version} compiles (policy {})",
                engine.hash().get(..12).unwrap_or_default()
            )),
            Err(e) => Decision::deny(
                DecisionCode::DenyBundleInvalid,
                None,
                format!("PolicyBundle {id} version {version} does not compile: {e}"),
            ),
        },
    )
    .await
}
