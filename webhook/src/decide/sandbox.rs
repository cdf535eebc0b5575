//! agent-sandbox `Sandbox` reviews (`agents.x-k8s.io`, kubernetes-sigs/agent-sandbox, the
//! emerging standard way of running an agent on Kubernetes). A Sandbox runs one Pod made from
//! its `spec.podTemplate`, so a Sandbox that names an agent is judged as a Pod CREATE of that
//! Pod for that agent ([`super::decide_start`]): the seven checks, the agent's Pod Security
//! level and containment, its approved images; the same codes. It is refused at `kubectl apply`,
//! before the agent-sandbox controller makes the Pod (which the Pod path judges again when the
//! template carries the label).
//!
//! The Pod judged is the one the controller makes: the template's spec with a
//! `persistentVolumeClaim` volume for each of `spec.volumeClaimTemplates` in place of a
//! template volume of the same name (its `MergeVolumeClaimVolumes`), so a sandbox that declares
//! no persistent writes cannot get a claim in through the templates.
//!
//! The agent is named by the agent label on the Sandbox or on its pod template: the controller
//! copies only the template's labels to the Pod, yet a label on the Sandbox alone still says
//! whose it is, and a template label alone must not slip through. Two different names are
//! refused, and so is a Sandbox labelled for an agent whose template lacks the label (its Pod
//! would escape the Pod checks, containment and quarantine, which select by the label). An UPDATE is judged again (as a CREATE of what the Sandbox becomes) when it changes
//! the pod template, the volume claim templates or a label; other updates (operatingMode,
//! shutdownTime, replicas, other labels) pass, so the Sandbox of an agent that is no longer
//! valid can always be suspended, scaled down or deleted. Taking the label off (the Sandbox
//! then names no agent, or its template loses it, which would strip it from the Pod) is
//! refused, as it is for Pods.

use std::borrow::Cow;
use std::fmt;

use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::expiry::ExpiryPolicy;
use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::gvk::GroupVersionKind;
use serde::Deserialize;
use serde_json::Value;

use super::{Decision, View, Workload, decide_start, namespace_of};
use crate::review::PodObject;

/// agent-sandbox's API group.
pub const GROUP: &str = "agents.x-k8s.io";
/// The kind reviewed.
pub const KIND: &str = "Sandbox";
/// The versions reviewed: v1alpha1 (agent-sandbox before v1) and v1beta1, whose
/// `spec.podTemplate` and `spec.volumeClaimTemplates` are the same.
pub const VERSIONS: [&str; 2] = ["v1alpha1", "v1beta1"];

/// `namespace/name` of the Sandbox in messages (`generateName*` before it has a name).
struct SandboxId<'a> {
    namespace: &'a str,
    name: Cow<'a, str>,
}

impl fmt::Display for SandboxId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a decision reads of one Sandbox object: its agent labels, and the parts of its spec
/// the Pod is made from (borrowed from the object).
#[derive(Debug, PartialEq)]
struct Read<'a> {
    /// The agent label on the Sandbox itself.
    sandbox_label: Option<&'a str>,
    /// The agent label on `spec.podTemplate.metadata`.
    template_label: Option<&'a str>,
    /// `spec.podTemplate`: the Pod's metadata and spec.
    template: Option<&'a Value>,
    /// `spec.volumeClaimTemplates`: each becomes a volume of the Pod.
    claims: Option<&'a Value>,
}

impl<'a> Read<'a> {
    /// Read `object`; `Err` with the reason when its template's agent label is not a string.
    fn of(object: &'a DynamicObject) -> Result<Self, String> {
        let spec = object.data.get("spec");
        let template = spec.and_then(|s| s.get("podTemplate"));
        Ok(Read {
            sandbox_label: object
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(AGENT_LABEL))
                .map(String::as_str),
            template_label: template_label(template)?,
            template,
            claims: spec.and_then(|s| s.get("volumeClaimTemplates")),
        })
    }

    /// The agent named; `Err` with both names when the two labels disagree.
    fn agent(&self) -> Result<Option<&'a str>, (&'a str, &'a str)> {
        match (self.sandbox_label, self.template_label) {
            (Some(on_sandbox), Some(on_template)) if on_sandbox != on_template => {
                Err((on_sandbox, on_template))
            }
            (on_sandbox, on_template) => Ok(on_sandbox.or(on_template)),
        }
    }

    /// Whether an UPDATE from `self` to `new` leaves alone all that decides the Sandbox's agent
    /// and its Pod (other labels, `operatingMode`, `shutdownTime` and replicas do not).
    fn same_as(&self, new: &Read<'_>) -> bool {
        self == new
    }
}

/// The agent label of a pod template, if it has one.
fn template_label(template: Option<&Value>) -> Result<Option<&str>, String> {
    let labels = template
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    let value = match labels {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(labels)) => labels.get(AGENT_LABEL),
        Some(_) => return Err("spec.podTemplate.metadata.labels is not a map".into()),
    };
    match value {
        None => Ok(None),
        Some(Value::String(agent)) => Ok(Some(agent)),
        Some(_) => Err(format!(
            "spec.podTemplate.metadata.labels.{AGENT_LABEL} is not a string"
        )),
    }
}

/// `Ok` for agent-sandbox's Sandbox in a version whose pod template is known; else the bad
/// request that says what this endpoint reviews.
fn expect_sandbox(gvk: &GroupVersionKind) -> Result<(), Decision> {
    if gvk.group == GROUP && gvk.kind == KIND && VERSIONS.contains(&gvk.version.as_str()) {
        return Ok(());
    }
    Err(Decision::bad_request(format!(
        "this endpoint reviews {GROUP} {KIND} ({}), not {}/{}/{}",
        VERSIONS.join(", "),
        gvk.group,
        gvk.version,
        gvk.kind
    )))
}

/// Which UPDATEs are judged: `Some` with the decision of one that is not (it changes nothing a
/// decision reads, or takes the agent label off).
fn update_scope(old: &Read<'_>, new: &Read<'_>) -> Option<Decision> {
    if old.same_as(new) {
        return Some(Decision::pass(
            "an update that leaves the agent labels, the pod template and the volume claim templates alone",
        ));
    }
    let removed = if new.sandbox_label.is_none() && new.template_label.is_none() {
        old.sandbox_label.or(old.template_label)
    } else if new.template_label.is_none() {
        // The controller copies the template's labels to the Pod: taking the label off the
        // template strips it from the agent's Pod, and leaves the next one unlabelled.
        old.template_label
    } else {
        None
    };
    removed.map(|agent| {
        Decision::deny(
            DecisionCode::DenyAgentLabelRemoved,
            Some(agent),
            format!(
                "label {AGENT_LABEL}={agent} may not be removed from a Sandbox or its pod template that carries it: an agent's Sandbox stays its agent's; delete the Sandbox instead"
            ),
        )
    })
}

/// The Pod the agent-sandbox controller makes of a Sandbox named `name`: its pod template, with
/// a `persistentVolumeClaim` volume for each volume claim template, replacing a template volume
/// of the same name. Borrowed when there are no claim templates.
fn pod_of<'a>(template: &'a Value, claims: Option<&Value>, name: &str) -> Cow<'a, Value> {
    let Some(claims) = claims.and_then(Value::as_array).filter(|c| !c.is_empty()) else {
        return Cow::Borrowed(template);
    };
    let claimed: Vec<Value> = claims
        .iter()
        .map(|claim| {
            let volume = claim
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            serde_json::json!({
                "name": volume,
                "persistentVolumeClaim": {"claimName": format!("{volume}-{name}")},
            })
        })
        .collect();
    let mut pod = template.clone();
    let volumes: Vec<Value> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| {
            let name = v.get("name");
            !claimed.iter().any(|c| c.get("name") == name)
        })
        .cloned()
        .chain(claimed.iter().cloned())
        .collect();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("volumes".into(), Value::Array(volumes));
    }
    Cow::Owned(pod)
}

/// A Sandbox review: admitted unless it names an agent whose Pod of this template would be
/// refused.
pub(crate) fn decide_sandbox(
    req: &AdmissionRequest<DynamicObject>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Decision {
    if req.operation == Operation::Delete {
        return Decision::pass("DELETE is never denied");
    }
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        return Decision::pass(format!("the {sub} subresource is not governed"));
    }
    if let Err(bad) = expect_sandbox(&req.kind) {
        return bad;
    }
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Decision::pass("only CREATE and UPDATE of Sandboxes are governed");
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::bad_request("the AdmissionReview has no object");
    };
    let Some(namespace) = namespace_of(req) else {
        return Decision::bad_request("the request has no namespace");
    };
    let name = object
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(Some(req.name.as_str()).filter(|n| !n.is_empty()));
    let id = SandboxId {
        namespace,
        name: match name {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!(
                "{}*",
                object.metadata.generate_name.as_deref().unwrap_or_default()
            )),
        },
    };
    let new = match Read::of(object) {
        Ok(new) => new,
        Err(reason) => return Decision::bad_request(format!("Sandbox {id}: {reason}")),
    };
    // An oldObject that cannot be read counts as a change (fail closed).
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref().and_then(|o| Read::of(o).ok())
        && let Some(decision) = update_scope(&old, &new)
    {
        return decision;
    }
    judge(&id, name.unwrap_or_default(), &new, view, expiry, now)
}

/// A Sandbox CREATE, or an UPDATE judged as one.
fn judge(
    id: &SandboxId<'_>,
    name: &str,
    sandbox: &Read<'_>,
    view: &dyn View,
    expiry: &ExpiryPolicy,
    now: Timestamp,
) -> Decision {
    let agent = match sandbox.agent() {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return Decision::pass(format!(
                "not an agent workload (no {AGENT_LABEL} label on the Sandbox or its pod template)"
            ));
        }
        Err((on_sandbox, on_template)) => {
            return Decision::deny(
                DecisionCode::DenyAgentNotFound,
                Some(on_sandbox),
                format!(
                    "Sandbox {id} names agent {on_sandbox} in metadata.labels and agent {on_template} in spec.podTemplate.metadata.labels: a Sandbox runs one agent; make the two labels agree"
                ),
            );
        }
    };
    let Some(template) = sandbox.template else {
        return Decision::deny(
            DecisionCode::DenyBadRequest,
            Some(agent),
            format!("Sandbox {id} of agent {agent} has no spec.podTemplate"),
        );
    };
    let made = pod_of(template, sandbox.claims, name);
    let pod = match PodObject::deserialize(&*made) {
        Ok(pod) => pod,
        Err(e) => {
            return Decision::deny(
                DecisionCode::DenyBadRequest,
                Some(agent),
                crate::review::truncate(
                    &format!("Sandbox {id}: spec.podTemplate is not a pod template: {e}"),
                    crate::review::MAX_REASON_CHARS,
                ),
            );
        }
    };
    let mut decision =
        decide_start(id.namespace, agent, Workload::Pod(&pod), view, expiry, now).decision;
    if !decision.allowed() {
        let claims = if matches!(made, Cow::Owned(_)) {
            ", with a persistentVolumeClaim volume for each of spec.volumeClaimTemplates"
        } else {
            ""
        };
        decision.reason = Cow::Owned(format!(
            "Sandbox {id}, judged as the Pod of its spec.podTemplate{claims}: {}",
            decision.reason
        ));
    } else if sandbox.template_label.is_none() {
        // agent-sandbox copies only the template's labels to the Pod: an agent's Pod without
        // the label escapes the Pod checks, the containment NetworkPolicy and quarantine, all
        // of which select it by that label. Refused, fail closed (a validating webhook cannot
        // add the label).
        return Decision::deny(
            DecisionCode::DenyContainmentViolation,
            Some(agent),
            format!(
                "Sandbox {id} names agent {agent} but its spec.podTemplate.metadata.labels lack {AGENT_LABEL}={agent}: agent-sandbox copies only the template's labels to its Pod, which would escape agentgov's Pod checks, containment and quarantine; label the pod template too"
            ),
        );
    }
    decision
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
