//! Admission decisions as functions of (request, a [`View`] of the caches, the clock), each a
//! [`Decision`]. Requests come parsed by [`crate::review`]; this module reads them and never
//! answers or logs (see [`crate::admit`]).
//!
//! Fail closed: anything unexpected on a governed path is a deny with a decision code. Requests
//! outside agentgov's remit (DELETE, subresources other than `pods/ephemeralcontainers`, Pods
//! that neither carry nor carried the agent label, metadata-only Agent updates) pass with
//! [`Scope::Passthrough`](crate::decision::Scope::Passthrough): a quarantined agent and its workloads can always be deleted or scaled
//! down. Pod reviews are in [`pod`] (and the start of an agent outside Kubernetes, judged as a Pod
//! CREATE), Agent reviews in [`agent`], AgentPromotion reviews in [`promotion`], PolicyBundle
//! reviews in [`bundle`], agent-sandbox Sandbox reviews (judged as a Pod CREATE of their pod
//! template) in [`sandbox`].

use std::sync::Arc;

use agentgov_api::Agent;
use agentgov_api::agent::{AgentMode, RoleClass};
use agentgov_api::pod_security::PodSecurityLevel;
use agentgov_api::policy_bundle::PolicyData;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use kube::core::gvk::GroupVersionKind;

use crate::decision::Decision;
use crate::keys::KeySnapshot;
use crate::memo::CheckMemo;
use crate::policy::{ActivePolicy, PolicyIndex};

mod agent;
mod bundle;
mod pod;
mod promotion;
mod sandbox;

pub(crate) use agent::decide_agent;
pub(crate) use bundle::decide_bundle;
pub(crate) use pod::{Workload, decide_pod, decide_start};
pub(crate) use promotion::decide_promotion;
pub(crate) use sandbox::decide_sandbox;

/// What the decisions read: the caches and the key ring, at one moment.
pub trait View: Send + Sync {
    /// Whether the Agent and PolicyBundle caches have synced. Before that, every decision that
    /// needs them denies with `ADMISSION_DENY_UNAVAILABLE`.
    fn synced(&self) -> bool;
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<Agent>>;
    /// The PolicyBundles in force, by namespace and the cluster floor.
    fn policies(&self) -> &PolicyIndex;
    /// The promotion policy in force in `namespace` (its hash is the active policy hash).
    fn policy(&self, namespace: &str) -> Option<ActivePolicy> {
        self.policies().get(namespace)
    }
    /// The hash of the policy in force in `namespace`, without the engine.
    fn policy_hash(&self, namespace: &str) -> Option<Arc<str>> {
        self.policies().hash(namespace)
    }
    /// The Pod Security level an agent's Pods must meet under the policy in force in
    /// `namespace` (without one: the defaults, `restricted` for a sandbox, `baseline` else).
    fn pod_security_level(
        &self,
        namespace: &str,
        mode: AgentMode,
        role: RoleClass,
    ) -> PodSecurityLevel {
        self.policies().pod_security_level(namespace, mode, role)
    }
    /// The AgentExceptions of `namespace` in force now for the agent `name` with `labels` (by
    /// this process's clock): the policy's denies they waive do not refuse it. None by default.
    fn exceptions_for(
        &self,
        _namespace: &str,
        _name: &str,
        _labels: &std::collections::BTreeMap<String, String>,
    ) -> Vec<agentgov_api::exception::AppliedException> {
        Vec::new()
    }
    /// The cluster floor's data, when a floor is in force (the bounds of namespace bundles).
    fn floor_data(&self) -> Option<Arc<PolicyData>> {
        self.policies().floor_data()
    }
    /// The key ring in force and its generation.
    fn keys(&self) -> Arc<KeySnapshot>;
    /// Where spec hashes and signature verdicts of cached agents are remembered; `None`
    /// computes them on every review.
    fn memo(&self) -> Option<&CheckMemo> {
        None
    }
}

/// `Ok` when the request is about the kind `K` (group, version and kind); else the bad request
/// that says which kind this endpoint reviews.
fn expect_kind<K: kube::Resource<DynamicType = ()>>(
    gvk: &GroupVersionKind,
) -> Result<(), Decision> {
    let expected = crate::review::Gvk {
        group: K::group(&()),
        version: K::version(&()),
        kind: K::kind(&()),
    };
    if gvk.group == expected.group && gvk.version == expected.version && gvk.kind == expected.kind {
        return Ok(());
    }
    let got = crate::review::Gvk {
        group: gvk.group.as_str().into(),
        version: gvk.version.as_str().into(),
        kind: gvk.kind.as_str().into(),
    };
    Err(Decision::bad_request(format!(
        "this endpoint reviews {expected}, not {got}"
    )))
}

fn namespace_of(req: &AdmissionRequest<DynamicObject>) -> Option<&str> {
    crate::review::request_namespace(
        req.namespace.as_deref(),
        req.object
            .as_ref()
            .and_then(|o| o.metadata.namespace.as_deref()),
    )
}
