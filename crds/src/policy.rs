//! The promotion policy engine: compile a PolicyBundle once, evaluate many inputs (regorus,
//! in-process). A bundle that does not compile is an error naming the module and line.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::agent::{AgentSpec, GovernanceStatus};
use crate::hash::policy_hash;
use crate::policy_bundle::{
    DEFAULT_ENTRYPOINT, EnforcementAction, PolicyBundleSpec, PolicyBundleStatus, PolicyData,
    RegoModule,
};

mod per_thread;

/// The promotion policy shipped with agentgov (`policies/promotion.rego`).
pub const PROMOTION_REGO: &str = include_str!("../../policies/promotion.rego");

/// Who asks for a promotion, as far as it is known and verified.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Seed roles the actor holds (for example `agent_admin`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// A SubjectAccessReview for the verb `promote` on agents.agentgov.dev allowed this actor.
    #[serde(default)]
    pub authorized_to_promote: bool,
}

impl Actor {
    /// An approver as the policy sees them: an AgentPromotion's requester (as the API server
    /// authenticated them), `authorized` when a SubjectAccessReview for `promote` allows them.
    pub fn approver(requester: &crate::promotion::Requester, authorized: bool) -> Self {
        Actor {
            username: requester.username.clone(),
            groups: requester.groups.clone(),
            roles: Vec::new(),
            authorized_to_promote: authorized,
        }
    }
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct AgentInput<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a AgentSpec,
}

/// What the policy knows of the agent's namespace, when a promotion is asked for: the budgets
/// already approved there (`input.namespace.allocatedMonthlyBudgetUsd`), for the namespace's
/// total (`data.agentgov.limits.maxNamespaceMonthlyBudgetUsd`).
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceInput {
    /// The sum of the monthly budgets of the namespace's other governed agents, in US dollars.
    pub allocated_monthly_budget_usd: f64,
}

/// The policy's input document.
#[derive(Serialize, Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    pub agent: AgentInput<'a>,
    pub actor: &'a Actor,
    /// Left out when the namespace's total is not to be checked: an agent already governed under
    /// its spec keeps its budget when the total shrinks (as a ResourceQuota keeps running Pods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a NamespaceInput>,
}

/// Every deny code agentgov knows, and so every value of the operator's
/// `promotion_denies_total{reason}` label: the shipped policy's eight (one per rule, see
/// `policies/promotion.rego`), then [`Deny::OTHER`] (a custom bundle's deny without a code, or
/// with a code not listed here), [`Deny::NO_POLICY`] and [`Deny::POLICY_ERROR`] (the operator's
/// denies when no policy is in force or it fails to evaluate).
pub const DENY_CODES: [&str; 11] = [
    "actor_unauthorized",
    "anatomy_incomplete",
    "containment",
    "capabilities",
    "temperature",
    "budget",
    "runtime",
    "namespace_budget",
    Deny::OTHER,
    Deny::NO_POLICY,
    Deny::POLICY_ERROR,
];

/// The code of the policy's actor rule (the one asking holds no promoter role). What the policy
/// says of a spec alone leaves it out ([`PolicyDecision::of_the_spec`]): approvers are judged
/// when they approve.
pub const ACTOR_RULE: &str = DENY_CODES[0];

/// A bounded metric label for any deny code: the code itself when it is one of [`DENY_CODES`],
/// else `"other"`, whatever a custom bundle returns.
pub fn metric_reason(code: &str) -> &'static str {
    DENY_CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or(Deny::OTHER)
}

/// One reason the policy denied: the rule's code (bounded; see [`DENY_CODES`]) and a sentence a
/// user can act on.
///
/// Read from `{"code": ..., "message": ...}` (a missing code is [`Deny::OTHER`]) or, for bundles
/// written before denies had codes, from a plain string: `{code: "other", message: <string>}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(from = "DenyShape")]
pub struct Deny {
    pub code: String,
    pub message: String,
}

impl Deny {
    /// A deny without a code the shipped policy gives (a custom bundle's, or none at all).
    pub const OTHER: &str = "other";
    /// No PolicyBundle is in force.
    pub const NO_POLICY: &str = "no_policy";
    /// The policy in force could not be evaluated (fail closed).
    pub const POLICY_ERROR: &str = "policy_error";

    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Deny {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The shapes a deny may have in a policy's answer.
#[derive(Deserialize)]
#[serde(untagged)]
enum DenyShape {
    Coded {
        #[serde(default = "other_code")]
        code: String,
        message: String,
    },
    Text(String),
}

fn other_code() -> String {
    Deny::OTHER.into()
}

impl From<DenyShape> for Deny {
    fn from(shape: DenyShape) -> Self {
        match shape {
            DenyShape::Coded { code, message } => Deny { code, message },
            DenyShape::Text(message) => Deny::new(Deny::OTHER, message),
        }
    }
}

/// The code of an audited warning in [`PolicyDecision::audit`] (warnings carry no code of their
/// own); with [`DENY_CODES`], the values of the audit metric's `code` label.
pub const AUDIT_WARNING: &str = "warning";

/// A bounded metric label for an audit finding's code: [`AUDIT_WARNING`], or the deny's
/// [`metric_reason`].
pub fn audit_metric_code(code: &str) -> &'static str {
    if code == AUDIT_WARNING {
        AUDIT_WARNING
    } else {
        metric_reason(code)
    }
}

/// The policy's answer.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDecision {
    pub allow: bool,
    #[serde(default)]
    pub denies: Vec<Deny>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Under an `audit` bundle: what the policy would have denied (each deny) and warned (code
    /// [`AUDIT_WARNING`]), for reports and metrics only; it changes no agent. Never read from
    /// the policy's own answer.
    #[serde(skip)]
    pub audit: Vec<Deny>,
}

impl PolicyDecision {
    /// The answer for a policy that could not judge: a deny (fail closed) with the code
    /// [`Deny::POLICY_ERROR`] and the error as its sentence.
    pub fn failed(error: &Error) -> Self {
        PolicyDecision {
            allow: false,
            denies: vec![Deny::new(Deny::POLICY_ERROR, error.to_string())],
            warnings: Vec::new(),
            audit: Vec::new(),
        }
    }

    /// The policy's answer under a bundle's enforcement action: the one place the action is
    /// applied (the operator's judgement and the webhook's review of an approval both come
    /// through [`PolicyEngine::judge`]).
    ///
    /// - `enforce`: unchanged.
    /// - `warn`: each deny becomes the warning `[warn] would deny (CODE): message`, after the
    ///   policy's own warnings.
    /// - `audit`: the denies and warnings move to [`PolicyDecision::audit`]; no warnings remain.
    ///
    /// Never relaxed: the actor rule's denies (who may promote) and a policy that could not
    /// judge ([`Deny::POLICY_ERROR`]: it cannot have checked the actor either) stay denies.
    pub fn under(self, action: EnforcementAction) -> Self {
        let kept = |d: &Deny| d.code == ACTOR_RULE || d.code == Deny::POLICY_ERROR;
        match action {
            EnforcementAction::Enforce => self,
            EnforcementAction::Warn => {
                let (denies, relaxed): (Vec<Deny>, Vec<Deny>) =
                    self.denies.into_iter().partition(kept);
                let mut warnings = self.warnings;
                warnings.extend(
                    relaxed
                        .into_iter()
                        .map(|d| format!("[warn] would deny ({}): {}", d.code, d.message)),
                );
                PolicyDecision {
                    allow: denies.is_empty(),
                    denies,
                    warnings,
                    audit: self.audit,
                }
            }
            EnforcementAction::Audit => {
                let (denies, relaxed): (Vec<Deny>, Vec<Deny>) =
                    self.denies.into_iter().partition(kept);
                let mut audit = self.audit;
                audit.extend(relaxed);
                audit.extend(
                    self.warnings
                        .into_iter()
                        .map(|w| Deny::new(AUDIT_WARNING, w)),
                );
                PolicyDecision {
                    allow: denies.is_empty(),
                    denies,
                    warnings: Vec::new(),
                    audit,
                }
            }
        }
    }

    /// What the policy says of the spec alone: its answer without the actor rule's denies,
    /// allowed when nothing else denies. An evaluation failure stays a deny.
    pub fn of_the_spec(&self) -> Self {
        let denies: Vec<Deny> = self
            .denies
            .iter()
            .filter(|d| d.code != ACTOR_RULE)
            .cloned()
            .collect();
        PolicyDecision {
            allow: denies.is_empty(),
            denies,
            warnings: self.warnings.clone(),
            audit: self.audit.clone(),
        }
    }

    /// The denies' codes, in the policy's order.
    pub fn codes(&self) -> Vec<String> {
        self.denies.iter().map(|d| d.code.clone()).collect()
    }

    /// Allowed with warnings: the seed's GOVERNED_RESTRICTED.
    pub fn is_restricted(&self) -> bool {
        self.allow && !self.warnings.is_empty()
    }

    /// The denies' sentences, in the policy's order.
    pub fn messages(&self) -> Vec<String> {
        self.denies.iter().map(|d| d.message.clone()).collect()
    }
}

/// Where a governed agent stands under a policy: the operator's rule, shared with the tools that
/// predict it (`kubectl agentgov policy preview`). The policy's refusal of the spec comes first;
/// then the approvals (enough distinct approvers the policy allows); then the warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Allowed and approved, no warnings: GOVERNED_VALID.
    Valid,
    /// Allowed and approved, with warnings: GOVERNED_RESTRICTED.
    Restricted,
    /// The policy denies the spec.
    Refused,
    /// The spec is allowed but fewer distinct approvers than required approve it.
    AwaitingApproval,
}

impl Standing {
    /// The standing of a governed agent whose spec the policy answers with `spec_verdict` (what
    /// it says of the spec alone, [`PolicyEngine::judge_spec`]), approved by `approvers` distinct
    /// identities the policy allows, where `required` are needed (at least one).
    pub fn of(spec_verdict: &PolicyDecision, approvers: usize, required: usize) -> Self {
        if !spec_verdict.denies.is_empty() {
            Standing::Refused
        } else if approvers < required.max(1) {
            Standing::AwaitingApproval
        } else if spec_verdict.warnings.is_empty() {
            Standing::Valid
        } else {
            Standing::Restricted
        }
    }

    /// The governance status this standing gives an agent that `was_governed` (in a governed
    /// status before) or not: a governed agent that fails is invalidated, a first request that
    /// fails stays a sandbox.
    pub fn governance_status(self, was_governed: bool) -> GovernanceStatus {
        match (self, was_governed) {
            (Standing::Valid, _) => GovernanceStatus::GovernedValid,
            (Standing::Restricted, _) => GovernanceStatus::GovernedRestricted,
            (_, true) => GovernanceStatus::GovernedInvalidated,
            (_, false) => GovernanceStatus::Sandbox,
        }
    }
}

/// A compiled bundle, cheap to clone and safe to share between threads.
///
/// Evaluation runs on regorus' Rego virtual machine (RVM), several times faster than its tree
/// interpreter; a bundle whose Rego the RVM compiler does not support falls back to the
/// interpreter, so any bundle that compiles can be evaluated.
///
/// A thread that keeps evaluating the bundle does so on its own copy of the program and data
/// ([`per_thread`]): shared, their reference counts are written from every core.
#[derive(Clone)]
pub struct PolicyEngine {
    compiled: Arc<regorus::CompiledPolicy>,
    program: Option<Arc<regorus::rvm::program::Program>>,
    data: regorus::Value,
    source: Arc<Source>,
    hash: Arc<str>,
    action: EnforcementAction,
}

/// What an engine is compiled from, kept so that a thread can compile its own copy.
struct Source {
    modules: Vec<RegoModule>,
    /// The whole data document, as JSON.
    data: String,
    entrypoint: String,
}

/// A bundle compiled: for regorus' interpreter, for its RVM (when the RVM compiler supports
/// the bundle's Rego), and its data document.
struct Compiled {
    policy: regorus::CompiledPolicy,
    program: Option<Arc<regorus::rvm::program::Program>>,
    data: regorus::Value,
}

impl Compiled {
    /// Errors name the module and line.
    fn of(source: &Source) -> Result<Self, Error> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        for module in &source.modules {
            engine
                .add_policy(module.name.clone(), module.rego.clone())
                .map_err(|e| Error::PolicyCompile(format!("{e}")))?;
        }
        let data = regorus::Value::from_json_str(&source.data)
            .map_err(|e| Error::PolicyCompile(format!("policy data: {e}")))?;
        engine
            .add_data(data.clone())
            .map_err(|e| Error::PolicyCompile(format!("policy data: {e}")))?;
        let entrypoint: regorus::Rc<str> = source.entrypoint.as_str().into();
        let policy = engine
            .compile_with_entrypoint(&entrypoint)
            .map_err(|e| Error::PolicyCompile(format!("{e}")))?;
        let program = regorus::languages::rego::compiler::Compiler::compile_from_policy(
            &policy,
            &[source.entrypoint.as_str()],
        )
        .ok();
        Ok(Compiled {
            policy,
            program,
            data,
        })
    }
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("hash", &self.hash)
            .field("action", &self.action)
            .finish()
    }
}

/// The data document as the policy sees it: `data.agentgov.limits`.
#[derive(Serialize)]
struct DataDocument<'a> {
    agentgov: LimitsDocument<'a>,
}

#[derive(Serialize)]
struct LimitsDocument<'a> {
    limits: &'a PolicyData,
}

/// The whole data document a bundle's policy sees (`{"agentgov": {"limits": <spec.data>}}`), as
/// JSON text: what [`PolicyEngine::compile`] loads, and what a test runner of the bundle's Rego
/// loads too.
pub fn data_document(data: &PolicyData) -> Result<String, Error> {
    serde_json::to_string(&DataDocument {
        agentgov: LimitsDocument { limits: data },
    })
    .map_err(|e| Error::PolicyCompile(format!("policy data: {e}")))
}

impl PolicyEngine {
    /// Compile a bundle. Errors name the module and line.
    pub fn compile(spec: &PolicyBundleSpec) -> Result<Self, Error> {
        Self::compile_data(spec, &data_document(&spec.data)?)
    }

    /// Compile a bundle's modules and entrypoint with a data document given as raw JSON (the
    /// whole `data`, for example `{"agentgov": {"limits": {...}}}`) instead of one built from the
    /// typed `spec.data`. For tests and tools that feed the policy data the schema would refuse
    /// (missing or wrong-typed limits); agentgov itself always uses [`PolicyEngine::compile`].
    /// The hash is still the spec's, so it does not describe this data.
    pub fn compile_with_raw_data(
        spec: &PolicyBundleSpec,
        data: &serde_json::Value,
    ) -> Result<Self, Error> {
        Self::compile_data(spec, &data.to_string())
    }

    fn compile_data(spec: &PolicyBundleSpec, data: &str) -> Result<Self, Error> {
        let hash = policy_hash(spec)?;
        let source = Arc::new(Source {
            modules: spec.modules.clone(),
            data: data.to_string(),
            entrypoint: spec.entrypoint.clone(),
        });
        let compiled = Compiled::of(&source)?;
        Ok(PolicyEngine {
            compiled: Arc::new(compiled.policy),
            program: compiled.program,
            data: compiled.data,
            source,
            hash: hash.into(),
            action: spec.enforcement_action,
        })
    }

    fn run(&self, input: regorus::Value) -> Result<regorus::Value, Error> {
        let Some(program) = &self.program else {
            return self.interpret(input);
        };
        let (program, data) = per_thread::program_and_data(&self.source, program, &self.data);
        let mut vm = regorus::rvm::vm::RegoVM::new();
        vm.load_program(program);
        vm.set_data(data)
            .map_err(|e| Error::PolicyEval(format!("{e}")))?;
        vm.set_input(input);
        vm.execute().map_err(|e| Error::PolicyEval(format!("{e}")))
    }

    fn interpret(&self, input: regorus::Value) -> Result<regorus::Value, Error> {
        self.compiled
            .eval_with_input(input)
            .map_err(|e| Error::PolicyEval(format!("{e}")))
    }

    /// Whether evaluation runs on the RVM (true) or the interpreter (false).
    pub fn uses_vm(&self) -> bool {
        self.program.is_some()
    }

    /// Evaluate with the tree interpreter, for checking the RVM against it.
    pub fn evaluate_interpreted(&self, input: &PolicyInput<'_>) -> Result<regorus::Value, Error> {
        let json = serde_json::to_string(input).map_err(|e| Error::PolicyEval(e.to_string()))?;
        let value =
            regorus::Value::from_json_str(&json).map_err(|e| Error::PolicyEval(e.to_string()))?;
        self.interpret(value)
    }

    /// Evaluate on the RVM (or the interpreter when the bundle needs it), raw.
    pub fn evaluate_raw(&self, input: &PolicyInput<'_>) -> Result<regorus::Value, Error> {
        let json = serde_json::to_string(input).map_err(|e| Error::PolicyEval(e.to_string()))?;
        let value =
            regorus::Value::from_json_str(&json).map_err(|e| Error::PolicyEval(e.to_string()))?;
        self.run(value)
    }

    /// The hash of the bundle this engine was compiled from.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The bundle's enforcement action, which [`PolicyEngine::judge`] applies.
    pub fn action(&self) -> EnforcementAction {
        self.action
    }

    /// The hash, shared (a reference count, not a copy).
    pub fn shared_hash(&self) -> Arc<str> {
        Arc::clone(&self.hash)
    }

    /// The policy's answer on `agent` with `actor` as the one asking: the policy call both the
    /// operator and the webhook make. Fails closed: an evaluation that fails, or that answers
    /// anything but a well-formed decision, is a deny ([`PolicyDecision::failed`]). The
    /// bundle's enforcement action is applied ([`PolicyEngine::evaluate`]).
    pub fn judge(&self, agent: AgentInput<'_>, actor: &Actor) -> PolicyDecision {
        self.evaluate(&PolicyInput {
            agent,
            actor,
            namespace: None,
        })
        .unwrap_or_else(|e| PolicyDecision::failed(&e).under(self.action))
    }

    /// What the policy says of an agent's spec alone (all but the actor rule, with an actor
    /// allowed to promote): the operator's answer for the spec, approved or not.
    pub fn judge_spec(&self, agent: AgentInput<'_>) -> PolicyDecision {
        let actor = Actor {
            authorized_to_promote: true,
            ..Actor::default()
        };
        self.judge(agent, &actor).of_the_spec()
    }

    /// Evaluate the policy under the bundle's enforcement action ([`PolicyDecision::under`]):
    /// the one policy call of the operator's judgement and of every webhook review, so both
    /// apply `warn` and `audit` alike. Anything but a well-formed decision is an error (and so a
    /// deny, in every mode).
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Result<PolicyDecision, Error> {
        let json = serde_json::to_string(input).map_err(|e| Error::PolicyEval(e.to_string()))?;
        Ok(self.evaluate_json(&json)?.under(self.action))
    }

    /// Evaluate an input document given as JSON text, of any shape (the shipped policy denies
    /// what is missing or wrong-typed): for tests and tools. Same checks as `evaluate`; the
    /// policy's own answer, before the enforcement action.
    pub fn evaluate_json(&self, input: &str) -> Result<PolicyDecision, Error> {
        let value =
            regorus::Value::from_json_str(input).map_err(|e| Error::PolicyEval(e.to_string()))?;
        let result = self.run(value)?;
        if result == regorus::Value::Undefined {
            return Err(Error::PolicyResult(
                "the entrypoint is undefined for this input".into(),
            ));
        }
        let text = result
            .to_json_str()
            .map_err(|e| Error::PolicyResult(e.to_string()))?;
        let decision: PolicyDecision =
            serde_json::from_str(&text).map_err(|e| Error::PolicyResult(format!("{e}: {text}")))?;
        if !decision.allow && decision.denies.is_empty() {
            // Fail closed, but say so: a deny with no reason is still a deny.
            return Ok(PolicyDecision {
                denies: vec![Deny::new(
                    Deny::OTHER,
                    "the policy denied without giving a reason",
                )],
                ..decision
            });
        }
        if decision.allow && !decision.denies.is_empty() {
            return Err(Error::PolicyResult(
                "the policy allowed and denied at once".into(),
            ));
        }
        Ok(decision)
    }
}

/// Which version of a bundle its status says is in force.
#[derive(Debug, PartialEq)]
pub enum ActiveSpec<'a> {
    /// No version has compiled yet (no status, or no `activeSpec` and `activeHash`).
    Unset,
    /// `status.activeSpec`, which hashes to `status.activeHash`.
    Trusted(&'a PolicyBundleSpec),
    /// `status.activeSpec` does not hash to `status.activeHash` (or cannot be hashed): not
    /// trusted, whoever wrote it. Why, as a sentence.
    Untrusted(String),
}

/// The active-policy rule: the operator records the last version of a bundle that compiled in
/// `status.activeSpec` and its hash in `status.activeHash`; that version is in force only if
/// it hashes to what the status claims. The operator judges agents against it, and the webhook
/// falls back on it when the bundle's spec does not compile.
pub fn active_spec(status: Option<&PolicyBundleStatus>) -> ActiveSpec<'_> {
    let Some(status) = status else {
        return ActiveSpec::Unset;
    };
    let (Some(claimed), Some(spec)) = (status.active_hash.as_deref(), status.active_spec.as_ref())
    else {
        return ActiveSpec::Unset;
    };
    match policy_hash(spec) {
        Ok(actual) if actual == claimed => ActiveSpec::Trusted(spec),
        Ok(actual) => ActiveSpec::Untrusted(format!(
            "status.activeHash {claimed} is not the hash of status.activeSpec ({actual})"
        )),
        Err(e) => ActiveSpec::Untrusted(format!("status.activeSpec cannot be hashed: {e}")),
    }
}

/// The bundle agentgov ships: `policies/promotion.rego` with the seed's limits.
pub fn default_bundle_spec() -> PolicyBundleSpec {
    PolicyBundleSpec {
        version: "1.0.0".into(),
        entrypoint: DEFAULT_ENTRYPOINT.into(),
        modules: vec![RegoModule {
            name: "promotion.rego".into(),
            rego: PROMOTION_REGO.into(),
        }],
        data: PolicyData::default(),
        enforcement_action: EnforcementAction::Enforce,
        signature: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsed by serde_json without `float_roundtrip`, this text comes out one float step high
    /// (0.9611757480989837); OPA compares the number as written.
    const LIMIT: &str = "0.9611757480989835";

    /// serde_json's `float_roundtrip`, pinned in Cargo.toml: a number parses to the float its
    /// text names, in the bundle's data as anywhere.
    #[test]
    fn policy_numbers_parse_to_the_float_they_name() {
        let parsed: f64 = serde_json::from_str(LIMIT).unwrap();
        assert_eq!(parsed.to_bits(), 0.961_175_748_098_983_5_f64.to_bits());
        let data: PolicyData = serde_json::from_str(&format!(
            r#"{{"temperatureLimits": {{"compliance": {LIMIT}, "analysis": 0.7, "ideation": 1}}}}"#
        ))
        .unwrap();
        assert_eq!(data.temperature_limits.compliance.to_string(), LIMIT);
    }

    /// End to end: a bundle read from JSON allows a temperature at its limit and denies the
    /// next float up.
    #[test]
    fn the_limit_is_the_number_written_in_the_bundle() {
        let mut bundle = default_bundle_spec();
        bundle.data = serde_json::from_str(&format!(
            r#"{{"temperatureLimits": {{"compliance": {LIMIT}, "analysis": 0.7, "ideation": 1}}}}"#
        ))
        .unwrap();
        let engine = PolicyEngine::compile(&bundle).unwrap();
        let limit: f64 = LIMIT.parse().unwrap();
        let decide = |temperature: f64| {
            let input = serde_json::json!({
                "agent": {"namespace": "ns", "name": "a", "spec": {
                    "version": "1", "roleClass": "compliance", "anatomy": {
                        "reasoning": {"model": "m", "temperature": temperature},
                        "inputs": ["i"], "actions": ["a"], "memory": {"kind": "session"},
                        "capabilities": ["c"], "economics": {"monthlyBudgetUsd": 1},
                    }}},
                "actor": {"username": "u", "authorizedToPromote": true},
            });
            engine.evaluate_json(&input.to_string()).unwrap()
        };
        assert!(decide(limit).allow, "{:?}", decide(limit));
        let above = decide(limit.next_up());
        assert!(!above.allow, "{above:?}");
        assert!(
            above.denies[0].message.contains("is above the limit"),
            "{above:?}"
        );
        assert_eq!(above.denies[0].code, "temperature");
    }

    #[test]
    fn the_standing_puts_the_spec_first_then_approvals_then_warnings() {
        let allowed = PolicyDecision {
            allow: true,
            ..PolicyDecision::default()
        };
        let warned = PolicyDecision {
            warnings: vec!["w".into()],
            ..allowed.clone()
        };
        let denied = PolicyDecision {
            allow: false,
            denies: vec![Deny::new("budget", "too much")],
            warnings: vec!["w".into()],
            audit: Vec::new(),
        };
        assert_eq!(Standing::of(&allowed, 1, 1), Standing::Valid);
        assert_eq!(Standing::of(&allowed, 0, 0), Standing::AwaitingApproval);
        assert_eq!(Standing::of(&warned, 2, 2), Standing::Restricted);
        assert_eq!(Standing::of(&warned, 1, 2), Standing::AwaitingApproval);
        assert_eq!(Standing::of(&denied, 3, 1), Standing::Refused);
        use GovernanceStatus::*;
        assert_eq!(Standing::Valid.governance_status(false), GovernedValid);
        assert_eq!(
            Standing::Restricted.governance_status(true),
            GovernedRestricted
        );
        assert_eq!(
            Standing::Refused.governance_status(true),
            GovernedInvalidated
        );
        assert_eq!(
            Standing::AwaitingApproval.governance_status(true),
            GovernedInvalidated
        );
        assert_eq!(Standing::Refused.governance_status(false), Sandbox);
    }

    #[test]
    fn metric_reasons_are_bounded() {
        for code in DENY_CODES {
            assert_eq!(metric_reason(code), code);
        }
        for code in [
            "",
            "Temperature",
            "temperature ",
            "a custom code",
            "no policy",
        ] {
            assert_eq!(metric_reason(code), "other", "{code:?}");
        }
    }

    #[test]
    fn a_deny_reads_from_an_object_or_a_plain_string() {
        let decision: PolicyDecision = serde_json::from_str(
            r#"{"allow": false, "denies": [
                {"code": "budget", "message": "too much"},
                "an old-style sentence",
                {"message": "no code"},
                {"code": "budget", "message": "extra keys are ignored", "rule": 6}
            ], "warnings": []}"#,
        )
        .unwrap();
        assert_eq!(
            decision.denies,
            vec![
                Deny::new("budget", "too much"),
                Deny::new("other", "an old-style sentence"),
                Deny::new("other", "no code"),
                Deny::new("budget", "extra keys are ignored"),
            ]
        );
        assert_eq!(
            decision.messages(),
            [
                "too much",
                "an old-style sentence",
                "no code",
                "extra keys are ignored"
            ]
        );
        for bad in [
            r#"{"allow": false, "denies": [{"code": "budget"}]}"#,
            r#"{"allow": false, "denies": [{"code": 1, "message": "m"}]}"#,
            r#"{"allow": false, "denies": [7]}"#,
        ] {
            assert!(
                serde_json::from_str::<PolicyDecision>(bad).is_err(),
                "{bad}"
            );
        }
    }

    fn agent_spec(temperature: f64) -> AgentSpec {
        serde_json::from_value(serde_json::json!({
            "version": "1", "roleClass": "compliance", "anatomy": {
                "reasoning": {"model": "m", "temperature": temperature},
                "inputs": ["i"], "actions": ["a"], "memory": {"kind": "session"},
                "capabilities": ["c"], "economics": {"monthlyBudgetUsd": 1},
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_policy_call_maps_allow_deny_and_failure() {
        let engine = PolicyEngine::compile(&default_bundle_spec()).unwrap();
        let cool = agent_spec(0.2);
        let hot = agent_spec(0.9);
        let input = |spec| AgentInput {
            namespace: "ns",
            name: "a",
            spec,
        };
        let promoter = Actor {
            username: "alice".into(),
            authorized_to_promote: true,
            ..Actor::default()
        };
        let stranger = Actor {
            username: "mallory".into(),
            ..Actor::default()
        };

        let allowed = engine.judge(input(&cool), &promoter);
        assert!(allowed.allow, "{allowed:?}");
        assert!(allowed.denies.is_empty());

        // The actor rule alone: the spec itself is fine.
        let by_stranger = engine.judge(input(&cool), &stranger);
        assert!(!by_stranger.allow);
        assert_eq!(by_stranger.codes(), [ACTOR_RULE]);
        let spec_only = by_stranger.of_the_spec();
        assert!(spec_only.allow, "{spec_only:?}");
        assert!(spec_only.denies.is_empty());

        // Another rule too: the spec is refused for that rule only.
        let hot_by_stranger = engine.judge(input(&hot), &stranger);
        let mut codes = hot_by_stranger.codes();
        codes.sort_unstable();
        assert_eq!(codes, [ACTOR_RULE, "temperature"]);
        let spec_only = hot_by_stranger.of_the_spec();
        assert!(!spec_only.allow);
        assert_eq!(spec_only.codes(), ["temperature"]);
        assert!(spec_only.messages()[0].contains("above the limit"));

        // A policy that cannot judge denies, with the code policy_error, and stays a deny for
        // the spec alone.
        let broken = PolicyEngine::compile(&bundle(
            "package custom\n\ndecision := {\"allow\": true, \"denies\": [\"x\"]}\n",
        ))
        .unwrap();
        let failed = broken.judge(input(&cool), &promoter);
        assert!(!failed.allow);
        assert_eq!(failed.codes(), [Deny::POLICY_ERROR]);
        assert!(
            failed.messages()[0].contains("allowed and denied at once"),
            "{failed:?}"
        );
        assert_eq!(failed.of_the_spec(), failed);
    }

    #[test]
    fn the_recorded_version_is_trusted_only_if_it_hashes_to_the_recorded_hash() {
        let spec = default_bundle_spec();
        let hash = policy_hash(&spec).unwrap();
        let status = |hash: Option<&str>, spec: Option<&PolicyBundleSpec>| PolicyBundleStatus {
            active_hash: hash.map(str::to_string),
            active_spec: spec.cloned(),
            ..PolicyBundleStatus::default()
        };
        assert_eq!(active_spec(None), ActiveSpec::Unset);
        assert_eq!(active_spec(Some(&status(None, None))), ActiveSpec::Unset);
        assert_eq!(
            active_spec(Some(&status(Some(&hash), None))),
            ActiveSpec::Unset
        );
        assert_eq!(
            active_spec(Some(&status(None, Some(&spec)))),
            ActiveSpec::Unset
        );
        let trusted = status(Some(&hash), Some(&spec));
        assert_eq!(active_spec(Some(&trusted)), ActiveSpec::Trusted(&spec));
        // A status whose hash is not its spec's (written by someone else, or edited).
        let forged = status(Some(&"0".repeat(64)), Some(&spec));
        let ActiveSpec::Untrusted(why) = active_spec(Some(&forged)) else {
            panic!("a forged status is trusted")
        };
        assert!(why.contains(&hash), "{why}");
        let mut edited = spec.clone();
        edited.data.max_monthly_budget_usd = 1.0e9;
        assert!(matches!(
            active_spec(Some(&status(Some(&hash), Some(&edited)))),
            ActiveSpec::Untrusted(_)
        ));
    }

    fn bundle(rego: &str) -> PolicyBundleSpec {
        PolicyBundleSpec {
            version: "1".into(),
            entrypoint: "data.custom.decision".into(),
            modules: vec![RegoModule {
                name: "custom.rego".into(),
                rego: rego.into(),
            }],
            data: PolicyData::default(),
            enforcement_action: EnforcementAction::Enforce,
            signature: None,
        }
    }

    /// A custom bundle written before denies had codes keeps working; its denies count as
    /// `other`. One that denies without a reason still denies, with a sentence saying so.
    #[test]
    fn custom_bundles_of_the_old_shape_still_deny() {
        let old = bundle(
            "package custom\n\ndecision := {\"allow\": false, \"denies\": [\"not on Fridays\"], \"warnings\": []}\n",
        );
        let decision = PolicyEngine::compile(&old)
            .unwrap()
            .evaluate_json("{}")
            .unwrap();
        assert!(!decision.allow);
        assert_eq!(decision.denies, vec![Deny::new("other", "not on Fridays")]);
        let silent = bundle("package custom\n\ndecision := {\"allow\": false}\n");
        let decision = PolicyEngine::compile(&silent)
            .unwrap()
            .evaluate_json("{}")
            .unwrap();
        assert_eq!(
            decision.denies,
            vec![Deny::new(
                "other",
                "the policy denied without giving a reason"
            )]
        );
    }

    /// A spec the shipped policy denies twice (temperature, budget) with an actor who may not
    /// promote, judged under each enforcement action.
    fn judged(action: EnforcementAction, authorized: bool) -> PolicyDecision {
        let mut spec = default_bundle_spec();
        spec.enforcement_action = action;
        let engine = PolicyEngine::compile(&spec).unwrap();
        let agent: AgentSpec = serde_json::from_value(serde_json::json!({
        "version": "1", "mode": "governed", "roleClass": "compliance", "anatomy": {
            "reasoning": {"model": "m", "temperature": 0.9},
            "inputs": ["i"], "actions": ["a"], "memory": {"kind": "session"},
            "capabilities": ["c"], "economics": {"monthlyBudgetUsd": 100000},
        }}))
        .unwrap();
        let actor = Actor {
            username: "u".into(),
            authorized_to_promote: authorized,
            ..Actor::default()
        };
        engine.judge(
            AgentInput {
                namespace: "ns",
                name: "a",
                spec: &agent,
            },
            &actor,
        )
    }

    #[test]
    fn warn_turns_each_deny_into_a_warning_naming_its_rule() {
        let enforced = judged(EnforcementAction::Enforce, true);
        assert!(!enforced.allow);
        assert!(enforced.audit.is_empty());
        let codes = enforced.codes();
        assert!(codes.contains(&"temperature".to_string()), "{codes:?}");
        assert!(codes.contains(&"budget".to_string()), "{codes:?}");
        let warned = judged(EnforcementAction::Warn, true);
        assert!(warned.allow, "{warned:?}");
        assert!(warned.is_restricted());
        assert!(warned.audit.is_empty());
        for deny in &enforced.denies {
            let line = format!("[warn] would deny ({}): {}", deny.code, deny.message);
            assert!(warned.warnings.contains(&line), "{line} in {warned:?}");
        }
        assert_eq!(
            Standing::of(&warned.of_the_spec(), 1, 1),
            Standing::Restricted
        );
    }

    #[test]
    fn audit_changes_nothing_but_carries_the_would_be_findings() {
        let enforced = judged(EnforcementAction::Enforce, true);
        let audited = judged(EnforcementAction::Audit, true);
        assert!(audited.allow, "{audited:?}");
        assert!(audited.denies.is_empty() && audited.warnings.is_empty());
        for deny in &enforced.denies {
            assert!(audited.audit.contains(deny), "{deny:?} in {audited:?}");
        }
        for warning in &enforced.warnings {
            assert!(
                audited
                    .audit
                    .contains(&Deny::new(AUDIT_WARNING, warning.clone()))
            );
        }
        let spec = audited.of_the_spec();
        assert_eq!(spec.audit, audited.audit);
        assert_eq!(Standing::of(&spec, 1, 1), Standing::Valid);
        for finding in &audited.audit {
            assert!(
                DENY_CODES.contains(&audit_metric_code(&finding.code))
                    || audit_metric_code(&finding.code) == AUDIT_WARNING
            );
        }
    }

    /// Who may promote is never relaxed, nor is a policy that could not judge.
    #[test]
    fn the_actor_rule_and_evaluation_failures_are_enforced_in_every_mode() {
        for action in [
            EnforcementAction::Enforce,
            EnforcementAction::Warn,
            EnforcementAction::Audit,
        ] {
            let d = judged(action, false);
            assert!(!d.allow, "{action:?}: {d:?}");
            assert!(d.codes().contains(&ACTOR_RULE.to_string()), "{d:?}");
            let failed = PolicyDecision::failed(&Error::PolicyEval("boom".into())).under(action);
            assert!(!failed.allow);
            assert_eq!(failed.codes(), vec![Deny::POLICY_ERROR.to_string()]);
        }
    }

    /// `enforce` is left out of the spec's JSON and of the hash: every bundle written before the
    /// field hashes as it did (the proof contract's committed vector pins the value too); `warn`
    /// and `audit` change the hash, so a proof's policy hash covers the action.
    #[test]
    fn the_action_is_hashed_only_when_not_enforce() {
        #[derive(Serialize)]
        struct Before<'a> {
            modules: &'a [RegoModule],
            data: &'a PolicyData,
            entrypoint: &'a str,
        }
        let spec = default_bundle_spec();
        let before = crate::hash::sha256_hex(
            &crate::hash::canonical_json(&Before {
                modules: &spec.modules,
                data: &spec.data,
                entrypoint: &spec.entrypoint,
            })
            .unwrap(),
        );
        assert_eq!(policy_hash(&spec).unwrap(), before);
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("enforcementAction").is_none(), "{json}");
        let parsed: PolicyBundleSpec = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.enforcement_action, EnforcementAction::Enforce);
        let mut hashes = vec![before];
        for action in [EnforcementAction::Warn, EnforcementAction::Audit] {
            let mut s = spec.clone();
            s.enforcement_action = action;
            assert_eq!(
                serde_json::to_value(&s).unwrap()["enforcementAction"],
                action.as_str()
            );
            hashes.push(policy_hash(&s).unwrap());
        }
        hashes.dedup();
        assert_eq!(hashes.len(), 3, "{hashes:?}");
    }
}
