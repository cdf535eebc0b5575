//! The policy in force for a namespace: the cluster floor (the `ClusterPolicyBundle` named
//! `default`) and the namespace's own `PolicyBundle`, each optional. An agent passes only if
//! every layer allows; denies and warnings are merged, each with the bundle that produced it when
//! there are two. The hash proofs bind to is the hash of the effective policy: a layer's own hash
//! when it is alone (so a cluster without a floor hashes as it always did), else the canonical
//! hash of both layers' hashes. The operator and the webhook both judge through this type.

use std::sync::Arc;

use serde::Serialize;

use crate::agent::{AgentMode, RoleClass};
use crate::error::Error;
use crate::hash::{canonical_json, sha256_hex};
use crate::pod_security::PodSecurityLevel;
use crate::policy::{Actor, AgentInput, PolicyDecision, PolicyEngine, PolicyInput};
use crate::policy_bundle::{PolicyBundleSpec, PolicyData, RuntimeData};

/// Which bundle a layer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The cluster floor (`ClusterPolicyBundle`).
    Cluster,
    /// The namespace's `PolicyBundle`.
    Namespace,
}

impl Scope {
    /// The kind of the bundle, for messages.
    pub fn kind(self) -> &'static str {
        match self {
            Scope::Cluster => "ClusterPolicyBundle",
            Scope::Namespace => "PolicyBundle",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cluster => "cluster",
            Scope::Namespace => "namespace",
        }
    }
}

/// One compiled bundle in force.
#[derive(Clone, Debug)]
pub struct Layer {
    pub engine: PolicyEngine,
    pub data: Arc<PolicyData>,
    /// The bundle object's name.
    pub name: String,
    /// The version label of the version in force.
    pub version: String,
}

impl Layer {
    /// Compile a bundle spec into a layer named `name`.
    pub fn compile(name: &str, spec: &PolicyBundleSpec) -> Result<Self, Error> {
        Ok(Self::of(name, spec, PolicyEngine::compile(spec)?))
    }

    /// A layer of an engine already compiled from `spec`.
    pub fn of(name: &str, spec: &PolicyBundleSpec, engine: PolicyEngine) -> Self {
        Layer {
            engine,
            data: Arc::new(spec.data.clone()),
            name: name.to_string(),
            version: spec.version.clone(),
        }
    }

    pub fn hash(&self) -> &str {
        self.engine.hash()
    }
}

/// The floor and the namespace layer in force for a namespace (at least one of them).
#[derive(Clone, Debug)]
pub struct EffectivePolicy {
    floor: Option<Layer>,
    namespace: Option<Layer>,
    hash: Arc<str>,
    data: Arc<PolicyData>,
}

#[derive(Serialize)]
struct LayeredHashInput<'a> {
    cluster: &'a str,
    namespace: &'a str,
}

/// The hash of the effective policy of a floor and a namespace layer (either may be missing);
/// `None` when both are.
pub fn effective_hash(
    floor: Option<&str>,
    namespace: Option<&str>,
) -> Result<Option<String>, Error> {
    Ok(match (floor, namespace) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (Some(cluster), Some(namespace)) => Some(sha256_hex(&canonical_json(&LayeredHashInput {
            cluster,
            namespace,
        })?)),
    })
}

impl EffectivePolicy {
    /// The policy of a floor and a namespace layer; `None` when neither is in force.
    pub fn new(floor: Option<Layer>, namespace: Option<Layer>) -> Result<Option<Self>, Error> {
        let Some(hash) = effective_hash(
            floor.as_ref().map(Layer::hash),
            namespace.as_ref().map(Layer::hash),
        )?
        else {
            return Ok(None);
        };
        let data = match (&floor, &namespace) {
            (Some(floor), Some(ns)) => Arc::new(ns.data.within(&floor.data)),
            (Some(one), None) | (None, Some(one)) => Arc::clone(&one.data),
            (None, None) => return Ok(None),
        };
        Ok(Some(EffectivePolicy {
            floor,
            namespace,
            hash: hash.into(),
            data,
        }))
    }

    /// A namespace bundle alone (no floor): tests and tools.
    pub fn single(layer: Layer) -> Self {
        EffectivePolicy {
            hash: layer.engine.shared_hash(),
            data: Arc::clone(&layer.data),
            floor: None,
            namespace: Some(layer),
        }
    }

    /// Compile a namespace bundle spec alone (no floor): tests and tools.
    pub fn compile(spec: &PolicyBundleSpec) -> Result<Self, Error> {
        Ok(Self::single(Layer::compile(
            crate::policy_bundle::DEFAULT_BUNDLE_NAME,
            spec,
        )?))
    }

    /// The hash of the effective policy (what proofs bind to).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The hash, shared.
    pub fn shared_hash(&self) -> Arc<str> {
        Arc::clone(&self.hash)
    }

    /// The effective data: the namespace's within the floor's bounds (the stricter of each).
    pub fn data(&self) -> &PolicyData {
        &self.data
    }

    /// The layers in force, floor first.
    pub fn layers(&self) -> impl Iterator<Item = (Scope, &Layer)> {
        self.floor
            .iter()
            .map(|l| (Scope::Cluster, l))
            .chain(self.namespace.iter().map(|l| (Scope::Namespace, l)))
    }

    pub fn floor(&self) -> Option<&Layer> {
        self.floor.as_ref()
    }

    pub fn namespace_layer(&self) -> Option<&Layer> {
        self.namespace.as_ref()
    }

    /// Whether both a floor and a namespace bundle are in force.
    pub fn is_layered(&self) -> bool {
        self.floor.is_some() && self.namespace.is_some()
    }

    /// A name for the policy in proofs and status: the namespace bundle's name, the floor's as
    /// `ClusterPolicyBundle/<name>`, or both joined with `+`.
    pub fn name(&self) -> String {
        self.describe(|scope, layer| match scope {
            Scope::Cluster => format!("{}/{}", scope.kind(), layer.name),
            Scope::Namespace => layer.name.clone(),
        })
    }

    /// The version labels, joined the same way as [`EffectivePolicy::name`].
    pub fn version(&self) -> String {
        self.describe(|_, layer| layer.version.clone())
    }

    fn describe(&self, part: impl Fn(Scope, &Layer) -> String) -> String {
        self.layers()
            .map(|(scope, layer)| part(scope, layer))
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The Pod Security level an agent's Pods must meet: the strictest of the layers'.
    pub fn pod_security_level(&self, mode: AgentMode, role: RoleClass) -> PodSecurityLevel {
        self.layers()
            .map(|(_, layer)| layer.data.pod_security_level(mode, role))
            .max()
            .unwrap_or(PodSecurityLevel::Baseline)
    }

    /// Every layer's answer under its own enforcement action, merged: allowed only if each
    /// allows. With two layers each deny and warning names its bundle. An error of any layer is
    /// the error (a deny, for the callers: fail closed).
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Result<PolicyDecision, Error> {
        let layered = self.is_layered();
        let mut merged = PolicyDecision {
            allow: true,
            ..PolicyDecision::default()
        };
        for (scope, layer) in self.layers() {
            let decision = layer.engine.evaluate(input).map_err(|e| {
                if layered {
                    prefixed_error(e, scope, layer)
                } else {
                    e
                }
            })?;
            merge(&mut merged, decision, layered.then_some((scope, layer)));
        }
        Ok(merged)
    }

    /// The policy's answer on `agent` with `actor` asking: [`EffectivePolicy::evaluate`], with
    /// a failure as a deny under each layer's action ([`PolicyDecision::failed`]).
    pub fn judge(&self, agent: AgentInput<'_>, actor: &Actor) -> PolicyDecision {
        self.judge_input(&PolicyInput {
            agent,
            actor,
            namespace: None,
        })
    }

    /// [`EffectivePolicy::judge`] with a whole input document (the namespace's budget facts).
    pub fn judge_input(&self, input: &PolicyInput<'_>) -> PolicyDecision {
        let layered = self.is_layered();
        let mut merged = PolicyDecision {
            allow: true,
            ..PolicyDecision::default()
        };
        for (scope, layer) in self.layers() {
            let decision = layer
                .engine
                .evaluate(input)
                .unwrap_or_else(|e| PolicyDecision::failed(&e).under(layer.engine.action()));
            merge(&mut merged, decision, layered.then_some((scope, layer)));
        }
        merged
    }

    /// What the policy says of an agent's spec alone (all but the actor rule), as
    /// [`PolicyEngine::judge_spec`].
    pub fn judge_spec(&self, agent: AgentInput<'_>) -> PolicyDecision {
        self.judge_spec_input(agent, None)
    }

    /// [`EffectivePolicy::judge_spec`] with the namespace's budget facts.
    pub fn judge_spec_input(
        &self,
        agent: AgentInput<'_>,
        namespace: Option<&crate::policy::NamespaceInput>,
    ) -> PolicyDecision {
        let actor = Actor {
            authorized_to_promote: true,
            ..Actor::default()
        };
        self.judge_input(&PolicyInput {
            agent,
            actor: &actor,
            namespace,
        })
        .of_the_spec()
    }
}

fn prefixed_error(error: Error, scope: Scope, layer: &Layer) -> Error {
    let prefix = format!("{}/{}: ", scope.kind(), layer.name);
    match error {
        Error::PolicyEval(m) => Error::PolicyEval(prefix + &m),
        Error::PolicyResult(m) => Error::PolicyResult(prefix + &m),
        other => other,
    }
}

/// Add one layer's answer to the merged answer; `source` names the layer in each sentence.
fn merge(merged: &mut PolicyDecision, decision: PolicyDecision, source: Option<(Scope, &Layer)>) {
    let tag = |text: String| match source {
        Some((scope, layer)) => format!("[{}/{}] {text}", scope.kind(), layer.name),
        None => text,
    };
    merged.allow &= decision.allow;
    merged
        .denies
        .extend(decision.denies.into_iter().map(|mut d| {
            d.message = tag(d.message);
            d
        }));
    merged
        .warnings
        .extend(decision.warnings.into_iter().map(tag));
    merged.audit.extend(decision.audit.into_iter().map(|mut d| {
        d.message = tag(d.message);
        d
    }));
}

/// A limit a namespace bundle's data sets above the floor's: the path, its value and the bound.
#[derive(Clone, Debug, PartialEq)]
pub struct AboveFloor {
    pub field: &'static str,
    pub value: f64,
    pub bound: f64,
}

impl std::fmt::Display for AboveFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spec.data.{} is {} but the cluster floor (ClusterPolicyBundle) allows at most {}",
            self.field, self.value, self.bound
        )
    }
}

/// The limits a namespace bundle's data raises above the floor's (empty: within bounds). A
/// namespace may lower a limit, never raise one: the budget caps and the temperature limits,
/// and the number of approvals (which it may raise, never lower).
pub fn above_floor(namespace: &PolicyData, floor: &PolicyData) -> Vec<AboveFloor> {
    let mut found = Vec::new();
    let mut cap = |field: &'static str, value: f64, bound: f64| {
        if value > bound {
            found.push(AboveFloor {
                field,
                value,
                bound,
            });
        }
    };
    cap(
        "maxMonthlyBudgetUsd",
        namespace.max_monthly_budget_usd,
        floor.max_monthly_budget_usd,
    );
    if let Some(bound) = floor.max_namespace_monthly_budget_usd {
        cap(
            "maxNamespaceMonthlyBudgetUsd",
            namespace
                .max_namespace_monthly_budget_usd
                .unwrap_or(f64::INFINITY),
            bound,
        );
    }
    let (ns, fl) = (&namespace.temperature_limits, &floor.temperature_limits);
    cap("temperatureLimits.compliance", ns.compliance, fl.compliance);
    cap("temperatureLimits.analysis", ns.analysis, fl.analysis);
    cap("temperatureLimits.ideation", ns.ideation, fl.ideation);
    if let (Some(ns), Some(fl)) = (&namespace.approvals, &floor.approvals)
        && ns.required < fl.required
    {
        // Fewer approvals is looser: reported as the negated count, so the sentence still reads
        // as a bound (the floor asks for at least this many).
        found.push(AboveFloor {
            field: "approvals.required (fewer approvers than the floor)",
            value: f64::from(ns.required),
            bound: f64::from(fl.required),
        });
    }
    found
}

impl PolicyData {
    /// This (a namespace bundle's) data within the floor's bounds: the stricter value of each
    /// limit, the floor's where this sets none. Only what agentgov itself reads of the data
    /// (approvals, runtime, Pod Security, the budget caps): each layer's Rego sees its own data.
    pub fn within(&self, floor: &PolicyData) -> PolicyData {
        let min_opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (ns_t, fl_t) = (&self.temperature_limits, &floor.temperature_limits);
        PolicyData {
            max_monthly_budget_usd: self
                .max_monthly_budget_usd
                .min(floor.max_monthly_budget_usd),
            max_namespace_monthly_budget_usd: min_opt(
                self.max_namespace_monthly_budget_usd,
                floor.max_namespace_monthly_budget_usd,
            ),
            temperature_limits: crate::policy_bundle::TemperatureLimits {
                compliance: ns_t.compliance.min(fl_t.compliance),
                analysis: ns_t.analysis.min(fl_t.analysis),
                ideation: ns_t.ideation.min(fl_t.ideation),
            },
            promoter_roles: self
                .promoter_roles
                .iter()
                .filter(|r| floor.promoter_roles.contains(r))
                .cloned()
                .collect(),
            extra: self.extra.clone().or_else(|| floor.extra.clone()),
            // The level is the strictest of both layers ([`EffectivePolicy::pod_security_level`]).
            pod_security: self
                .pod_security
                .clone()
                .or_else(|| floor.pod_security.clone()),
            approvals: match (&self.approvals, &floor.approvals) {
                (Some(a), Some(b)) if b.required > a.required => Some(b.clone()),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
            runtime: match (&self.runtime, &floor.runtime) {
                (Some(ns), Some(fl)) => Some(ns.within(fl)),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
        }
    }
}

impl RuntimeData {
    /// This runtime data within the floor's: images required if either requires them; egress
    /// only to destinations both allow (the floor's when this lists none); this quarantine
    /// action, else the floor's.
    fn within(&self, floor: &RuntimeData) -> RuntimeData {
        let egress = if self.egress.is_empty() {
            floor.egress.clone()
        } else {
            self.egress
                .iter()
                .filter(|d| floor.egress.contains(d))
                .cloned()
                .collect()
        };
        RuntimeData {
            require_images: self.require_images || floor.require_images,
            egress,
            quarantine: self.quarantine.or(floor.quarantine),
        }
    }
}

#[cfg(test)]
#[path = "effective_tests.rs"]
mod tests;
