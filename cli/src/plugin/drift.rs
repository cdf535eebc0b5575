//! `drift`: what no longer matches what was approved, as plain functions over agents, the
//! policies in force and a clock (the seed's drift dashboard).
//!
//! Five kinds of drift are found: a governed agent whose spec hashes to other than its proof's
//! spec hash (changed since approval); a governed agent whose proof was signed under a policy
//! other than the one now in force in its namespace (or with no policy in force); a sandbox that
//! expires within the window (or has expired); an agent the operator invalidated, with its
//! denies; and a live Pod labelled for an agent that runs an image its spec's
//! `runtime.images` does not list (admitted before the spec changed, say: admission holds each
//! Pod to the spec of its time, by the rule [`runtime::unapproved_images`] applied here too).

use std::collections::BTreeMap;

use agentgov_api::agent::{AGENT_LABEL, AgentMode, GovernanceStatus};
use agentgov_api::conditions::READY;
use agentgov_api::effective::effective_hash;
use agentgov_api::hash::spec_hash;
use agentgov_api::policy_bundle::{DEFAULT_BUNDLE_NAME, PolicyBundle};
use agentgov_api::runtime;
use agentgov_api::{Agent, ClusterPolicyBundle};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::filter::expires_at;
use super::table::relative;

/// The kinds of drift, as `-o json` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum DriftKind {
    /// The spec hashes to other than the approved (proof's) spec hash.
    SpecChanged,
    /// The proof was signed under a policy that is no longer in force.
    PolicyChanged,
    /// A sandbox expiring within the window, or expired.
    SandboxExpiring,
    /// The operator holds the agent out of force (GOVERNED_INVALIDATED).
    Invalidated,
    /// A live Pod of the agent runs an image the agent's `spec.runtime.images` does not list.
    UnapprovedImages,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::SpecChanged => "SpecChanged",
            DriftKind::PolicyChanged => "PolicyChanged",
            DriftKind::SandboxExpiring => "SandboxExpiring",
            DriftKind::Invalidated => "Invalidated",
            DriftKind::UnapprovedImages => "UnapprovedImages",
        }
    }
}

/// One finding: an agent, what drifted, and a sentence saying how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub namespace: String,
    pub agent: String,
    pub kind: DriftKind,
    pub detail: String,
}

/// The policy in force for one bundle: its version label and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    pub version: String,
    pub hash: String,
}

/// The policy in force per (namespace, policy name), from the bundles' status (`activeHash`,
/// the last version that compiled); bundles with nothing in force are left out. With a cluster
/// floor in force, a namespace's policy is the effective one of both layers, under the names the
/// operator writes (the bundle's, and `ClusterPolicyBundle/<floor>+<bundle>`), and the floor
/// alone is under `("", "ClusterPolicyBundle/<floor>")` for namespaces without a bundle.
pub fn policies_in_force(
    bundles: &[PolicyBundle],
    floor: Option<&ClusterPolicyBundle>,
) -> BTreeMap<(String, String), InForce> {
    let floor = floor.and_then(|f| {
        let status = f.status.as_ref()?;
        Some((
            format!(
                "ClusterPolicyBundle/{}",
                f.metadata.name.clone().unwrap_or_default()
            ),
            InForce {
                version: status.active_version.clone().unwrap_or_default(),
                hash: status.active_hash.clone()?,
            },
        ))
    });
    let mut in_force = BTreeMap::new();
    if let Some((name, policy)) = &floor {
        in_force.insert((String::new(), name.clone()), policy.clone());
    }
    for bundle in bundles {
        let Some(status) = bundle.status.as_ref() else {
            continue;
        };
        let Some(hash) = status.active_hash.clone() else {
            continue;
        };
        let namespace = bundle.metadata.namespace.clone().unwrap_or_default();
        let name = bundle.metadata.name.clone().unwrap_or_default();
        let own = InForce {
            version: status.active_version.clone().unwrap_or_default(),
            hash,
        };
        let Some((floor_name, floor)) = &floor else {
            in_force.insert((namespace, name), own);
            continue;
        };
        let effective = InForce {
            version: format!("{}+{}", floor.version, own.version),
            hash: effective_hash(Some(&floor.hash), Some(&own.hash))
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        for key in [
            name.clone(),
            format!("{floor_name}+{name}"),
            floor_name.clone(),
        ] {
            in_force.insert((namespace.clone(), key), effective.clone());
        }
    }
    in_force
}

/// The policy in force that `bundle` names in `namespace` (see [`policies_in_force`]).
pub fn in_force_for<'a>(
    policies: &'a BTreeMap<(String, String), InForce>,
    namespace: &str,
    bundle: &str,
) -> Option<&'a InForce> {
    policies
        .get(&(namespace.to_string(), bundle.to_string()))
        .or_else(|| policies.get(&(String::new(), bundle.to_string())))
}

/// The name of the PolicyBundle `agent` is judged against: the one its last evaluation names,
/// else the default (the operator's `--bundle-name` is not known here).
pub fn bundle_of(agent: &Agent) -> &str {
    agent
        .status
        .as_ref()
        .and_then(|s| s.policy.as_ref())
        .map_or(DEFAULT_BUNDLE_NAME, |p| p.name.as_str())
}

/// Every finding for `agents`, sorted by namespace, agent and kind. `within` is how soon a
/// sandbox's expiry counts as drift.
pub fn findings(
    agents: &[Agent],
    policies: &BTreeMap<(String, String), InForce>,
    within: SignedDuration,
    now: Timestamp,
) -> Vec<Finding> {
    let mut found: Vec<Finding> = agents
        .iter()
        .flat_map(|agent| of_agent(agent, policies, within, now))
        .collect();
    sort(&mut found);
    found
}

/// Sorted by namespace, agent and kind, as [`findings`] returns them.
pub fn sort(found: &mut [Finding]) {
    found.sort_by(|a, b| (&a.namespace, &a.agent, a.kind).cmp(&(&b.namespace, &b.agent, b.kind)));
}

/// A finding for each live Pod among `pods` labelled for one of `agents` (by
/// [`AGENT_LABEL`], in the agent's namespace) that runs an image the agent's
/// `spec.runtime.images` does not list; agents that bind no images (no `spec.runtime`) have none.
/// Pods that have finished (Succeeded, Failed) run nothing and are left out.
pub fn image_findings(agents: &[Agent], pods: &[Pod]) -> Vec<Finding> {
    let by_name: BTreeMap<(&str, &str), &Agent> = agents
        .iter()
        .filter_map(|a| {
            Some((
                (
                    a.metadata.namespace.as_deref()?,
                    a.metadata.name.as_deref()?,
                ),
                a,
            ))
        })
        .collect();
    let mut found: Vec<Finding> = pods
        .iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|pod| {
            let namespace = pod.metadata.namespace.as_deref()?;
            let agent_name = pod.metadata.labels.as_ref()?.get(AGENT_LABEL)?;
            let agent = by_name.get(&(namespace, agent_name.as_str()))?;
            let unapproved =
                runtime::unapproved_images(agent.spec.runtime.as_ref(), pod_images(pod));
            (!unapproved.is_empty()).then(|| Finding {
                namespace: namespace.to_string(),
                agent: agent_name.clone(),
                kind: DriftKind::UnapprovedImages,
                detail: format!(
                    "pod {}: {}",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    unapproved.join("; ")
                ),
            })
        })
        .collect();
    sort(&mut found);
    found
}

/// A Pod's images with where each is (`spec.containers[0] (agent)`), as admission names them.
fn pod_images(pod: &Pod) -> Vec<(String, &str)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let containers = spec.containers.iter().enumerate().map(|(i, c)| {
        (
            format!("spec.containers[{i}] ({})", c.name),
            c.image.as_deref(),
        )
    });
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("spec.initContainers[{i}] ({})", c.name),
                c.image.as_deref(),
            )
        });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("spec.ephemeralContainers[{i}] ({})", c.name),
                c.image.as_deref(),
            )
        });
    containers
        .chain(init)
        .chain(ephemeral)
        .map(|(at, image)| (at, image.unwrap_or_default()))
        .collect()
}

/// The findings for one agent.
fn of_agent(
    agent: &Agent,
    policies: &BTreeMap<(String, String), InForce>,
    within: SignedDuration,
    now: Timestamp,
) -> Vec<Finding> {
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    let name = agent.metadata.name.clone().unwrap_or_default();
    let status = agent.status.as_ref();
    let governance = status.and_then(|s| s.governance_status);
    let mut found = Vec::new();
    let mut add = |kind: DriftKind, detail: String| {
        found.push(Finding {
            namespace: namespace.clone(),
            agent: name.clone(),
            kind,
            detail,
        });
    };
    if agent.spec.mode == AgentMode::Sandbox {
        let at = status.and_then(|s| s.expires_at.as_ref()).map(|t| t.0);
        if let Some(at) = at.or_else(|| expires_at(agent))
            && now.saturating_add(within).is_ok_and(|limit| at <= limit)
        {
            let when = if at > now { "expires" } else { "expired" };
            add(
                DriftKind::SandboxExpiring,
                format!("sandbox {when} {} (at {at})", relative(at, now)),
            );
        }
    }
    let proof = status.and_then(|s| s.proof.as_ref());
    let governed = governance.is_some_and(|g| g != GovernanceStatus::Sandbox);
    if let Some(proof) = proof.filter(|_| agent.spec.mode == AgentMode::Governed && governed) {
        match spec_hash(&agent.spec) {
            Ok(current) if current != proof.spec_hash => add(
                DriftKind::SpecChanged,
                format!(
                    "spec hash {} is not the approved {}",
                    short(&current),
                    short(&proof.spec_hash)
                ),
            ),
            Ok(_) => {}
            Err(e) => add(
                DriftKind::SpecChanged,
                format!("the spec cannot be hashed: {e}"),
            ),
        }
        let bundle = bundle_of(agent);
        match in_force_for(policies, &namespace, bundle) {
            Some(active) if active.hash == proof.policy_hash => {}
            Some(active) => add(
                DriftKind::PolicyChanged,
                format!(
                    "signed under policy {}, but {bundle} {} is in force",
                    short(&proof.policy_hash),
                    version_and_hash(active)
                ),
            ),
            None => add(
                DriftKind::PolicyChanged,
                format!(
                    "signed under policy {}, but no PolicyBundle {bundle} is in force in namespace {namespace}",
                    short(&proof.policy_hash)
                ),
            ),
        }
    }
    if governance == Some(GovernanceStatus::GovernedInvalidated) {
        add(DriftKind::Invalidated, why_invalidated(agent));
    }
    found
}

/// The denies of the last evaluation, else the Ready condition's message.
fn why_invalidated(agent: &Agent) -> String {
    let status = agent.status.as_ref();
    let denies = status.map(|s| s.denies.join("; ")).unwrap_or_default();
    if !denies.is_empty() {
        return denies;
    }
    status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no reason recorded".to_string())
}

fn version_and_hash(active: &InForce) -> String {
    if active.version.is_empty() {
        short(&active.hash).to_string()
    } else {
        format!("{} ({})", active.version, short(&active.hash))
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The findings as a table: NAMESPACE (with `-A`), AGENT, DRIFT, DETAIL.
pub fn table(found: &[Finding], all_namespaces: bool) -> String {
    let mut headers = vec!["NAMESPACE", "AGENT", "DRIFT", "DETAIL"];
    if !all_namespaces {
        headers.remove(0);
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|f| {
            let mut row = Vec::with_capacity(4);
            if all_namespaces {
                row.push(f.namespace.clone());
            }
            row.extend([
                f.agent.clone(),
                f.kind.as_str().to_string(),
                f.detail.clone(),
            ]);
            row
        })
        .collect();
    super::table::render(&headers, &rows)
}

/// The report for `-o json|yaml`: the findings and how many agents were checked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report<'a> {
    pub agents_checked: usize,
    pub drift: bool,
    pub items: &'a [Finding],
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
