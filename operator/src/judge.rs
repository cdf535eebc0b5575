//! The operator's decision about one agent, as a plain function: given the agent, the policy in
//! force, the key ring and the clock, what should its status be? No I/O here; the controller
//! writes what this returns.

use std::time::Duration;

use agentgov_api::agent::{AgentMode, AgentSpec, AgentStatus, GovernanceStatus, PolicyRef};
use agentgov_api::conditions::{self, ConditionUpdate, EXPIRED, PROMOTED, READY};
use agentgov_api::expiry::{ExpiryPolicy, sandbox_expires_at};
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::KeyRing;
use agentgov_api::policy::{Actor, AgentInput, PolicyEngine, PolicyInput};
use agentgov_api::proof::{self, ProofSubject};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The compiled policy in force for a namespace.
#[derive(Clone, Debug)]
pub struct ActivePolicy {
    pub name: String,
    pub version: String,
    pub engine: PolicyEngine,
}

impl ActivePolicy {
    pub fn hash(&self) -> &str {
        self.engine.hash()
    }

    fn reference(&self) -> PolicyRef {
        PolicyRef {
            name: self.name.clone(),
            version: self.version.clone(),
            hash: self.hash().to_string(),
        }
    }
}

/// The agent as the operator sees it.
#[derive(Clone, Copy, Debug)]
pub struct AgentFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: Option<i64>,
    pub created: Timestamp,
    pub spec: &'a AgentSpec,
    pub status: Option<&'a AgentStatus>,
}

/// What happened, for logs, events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A sandbox, not expired.
    Sandbox,
    /// A sandbox past its expiry.
    Expired,
    /// Allowed again; the proof in status still holds for this spec, policy and key ring.
    Kept,
    /// Allowed and signed: GOVERNED_VALID.
    Promoted,
    /// Allowed with warnings and signed: GOVERNED_RESTRICTED.
    Restricted,
    /// A first promotion was denied: the agent stays in the sandbox tier.
    Denied,
    /// A governed agent failed: GOVERNED_INVALIDATED (quarantine).
    Invalidated,
    /// The operator could not sign (no usable key); nothing was changed but the Ready condition.
    SigningUnavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sandbox => "sandbox",
            Outcome::Expired => "expired",
            Outcome::Kept => "kept",
            Outcome::Promoted => "promoted",
            Outcome::Restricted => "restricted",
            Outcome::Denied => "denied",
            Outcome::Invalidated => "invalidated",
            Outcome::SigningUnavailable => "signing_unavailable",
        }
    }

    /// A policy evaluation ran (a promotion attempt in the seed's terms).
    pub fn evaluated(self) -> bool {
        matches!(
            self,
            Outcome::Promoted | Outcome::Restricted | Outcome::Denied | Outcome::Invalidated
        )
    }
}

/// The judgement: the status to write, what happened, and when to look again.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub status: AgentStatus,
    pub outcome: Outcome,
    pub requeue_after: Option<Duration>,
}

/// Everything the judgement depends on besides the agent.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    pub policy: Option<&'a ActivePolicy>,
    pub bundle_name: &'a str,
    pub keys: &'a KeyRing,
    pub actor: &'a Actor,
    pub expiry: &'a ExpiryPolicy,
    pub now: Timestamp,
}

impl Judge<'_> {
    pub fn judge(&self, agent: &AgentFacts<'_>) -> Judgement {
        match agent.spec.mode {
            AgentMode::Sandbox => self.sandbox(agent),
            AgentMode::Governed => self.governed(agent),
        }
    }

    /// A fresh status: only the conditions carry over (for their transition times), and only
    /// those the operator sets.
    fn base_status(&self, agent: &AgentFacts<'_>) -> AgentStatus {
        let mut conditions = agent
            .status
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| [READY, PROMOTED, EXPIRED].contains(&c.type_.as_str()));
        AgentStatus {
            observed_generation: agent.generation,
            conditions,
            ..AgentStatus::default()
        }
    }

    fn set(&self, status: &mut AgentStatus, type_: &str, ok: bool, reason: &str, msg: String) {
        conditions::upsert(
            &mut status.conditions,
            ConditionUpdate {
                type_,
                status: ok,
                reason,
                message: msg,
            },
            status.observed_generation,
            self.now,
        );
    }

    fn sandbox(&self, agent: &AgentFacts<'_>) -> Judgement {
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != PROMOTED);
        status.governance_status = Some(GovernanceStatus::Sandbox);
        let expires_at =
            sandbox_expires_at(agent.created, agent.spec.sandbox.as_ref(), self.expiry);
        status.expires_at = Some(Time(expires_at));
        if self.now >= expires_at {
            let msg = format!("sandbox expired at {expires_at}; promote it or recreate it");
            self.set(&mut status, EXPIRED, true, "Expired", msg.clone());
            self.set(&mut status, READY, false, "Expired", msg);
            return Judgement {
                status,
                outcome: Outcome::Expired,
                requeue_after: None,
            };
        }
        let msg = format!("sandbox until {expires_at}");
        self.set(&mut status, EXPIRED, false, "Active", msg.clone());
        self.set(&mut status, READY, true, "Sandbox", msg);
        let wait = self.now.duration_until(expires_at);
        Judgement {
            status,
            outcome: Outcome::Sandbox,
            // Wake up at expiry rather than poll; a second late so the clock has passed it.
            requeue_after: Some(
                Duration::try_from(wait).unwrap_or_default() + Duration::from_secs(1),
            ),
        }
    }

    fn governed(&self, agent: &AgentFacts<'_>) -> Judgement {
        let previous = agent.status.cloned().unwrap_or_default();
        let was_governed = previous
            .governance_status
            .is_some_and(|g| g != GovernanceStatus::Sandbox);
        let spec_hash = match spec_hash(agent.spec) {
            Ok(h) => h,
            Err(e) => {
                return self.refuse(agent, was_governed, vec![format!("cannot hash spec: {e}")]);
            }
        };
        let Some(policy) = self.policy else {
            return self.refuse(
                agent,
                was_governed,
                vec![format!(
                    "no PolicyBundle named {} is in force in namespace {}; ask a policy admin to apply one",
                    self.bundle_name, agent.namespace
                )],
            );
        };
        // The policy is asked every time: the status is a function of the spec, the policy in
        // force and the key ring, never of what the status itself claims (anyone who may write
        // the status subresource could have written it).
        let input = PolicyInput {
            agent: AgentInput {
                namespace: agent.namespace,
                name: agent.name,
                spec: agent.spec,
            },
            actor: self.actor,
        };
        let decision = match policy.engine.evaluate(&input) {
            Ok(d) => d,
            // Fail closed: an evaluation error is a deny, with the error as its reason.
            Err(e) => {
                let mut j = self.refuse(agent, was_governed, vec![e.to_string()]);
                j.status.policy = Some(policy.reference());
                return j;
            }
        };
        if !decision.allow {
            let mut j = self.refuse(agent, was_governed, decision.denies);
            j.status.policy = Some(policy.reference());
            j.status.warnings = decision.warnings;
            return j;
        }
        // A proof that still holds is kept (not signed again): same spec, same policy, key not
        // revoked, signature valid. Everything around it is written afresh.
        let kept = previous.proof.as_ref().filter(|p| {
            previous
                .governance_status
                .is_some_and(|g| g.is_governed_in_force())
                && p.spec_hash == spec_hash
                && p.policy_hash == policy.hash()
                && proof::verify(self.keys, subject(agent), p).is_ok()
        });
        let (proof, outcome) = match kept {
            Some(p) => (p.clone(), Outcome::Kept),
            None => match proof::sign(
                self.keys,
                subject(agent),
                &spec_hash,
                policy.hash(),
                self.now,
            ) {
                Ok(p) if decision.is_restricted() => (p, Outcome::Restricted),
                Ok(p) => (p, Outcome::Promoted),
                Err(e) => {
                    let mut status = previous;
                    self.set(
                        &mut status,
                        READY,
                        false,
                        "SigningUnavailable",
                        format!("the operator cannot sign: {e}"),
                    );
                    return Judgement {
                        status,
                        outcome: Outcome::SigningUnavailable,
                        requeue_after: Some(Duration::from_secs(30)),
                    };
                }
            },
        };
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != EXPIRED);
        status.governance_status = Some(if decision.is_restricted() {
            GovernanceStatus::GovernedRestricted
        } else {
            GovernanceStatus::GovernedValid
        });
        status.policy = Some(policy.reference());
        status.warnings = decision.warnings;
        let (reason, msg) = in_force_reason(&status.warnings, &proof.key_id);
        status.proof = Some(proof);
        self.set(&mut status, PROMOTED, true, reason, msg.clone());
        self.set(&mut status, READY, true, reason, msg);
        Judgement {
            status,
            outcome,
            requeue_after: None,
        }
    }

    /// Keep the agent out of the governed tier: a first request stays SANDBOX, a governed agent
    /// falls to GOVERNED_INVALIDATED. The proof is dropped either way.
    fn refuse(&self, agent: &AgentFacts<'_>, was_governed: bool, denies: Vec<String>) -> Judgement {
        let mut status = self.base_status(agent);
        status.conditions.retain(|c| c.type_ != EXPIRED);
        let (governance, outcome, reason) = if was_governed {
            (
                GovernanceStatus::GovernedInvalidated,
                Outcome::Invalidated,
                "Invalidated",
            )
        } else {
            (GovernanceStatus::Sandbox, Outcome::Denied, "PolicyDenied")
        };
        status.governance_status = Some(governance);
        let msg = denies.join("; ");
        status.denies = denies;
        self.set(&mut status, PROMOTED, false, reason, msg.clone());
        self.set(&mut status, READY, false, reason, msg);
        Judgement {
            status,
            outcome,
            requeue_after: None,
        }
    }
}

/// The reason and message of Promoted/Ready for an agent whose proof is in force.
fn in_force_reason(warnings: &[String], key_id: &str) -> (&'static str, String) {
    if warnings.is_empty() {
        ("Promoted", format!("signed by key {key_id}"))
    } else {
        (
            "Restricted",
            format!("promoted with restrictions: {}", warnings.join("; ")),
        )
    }
}

fn subject<'a>(agent: &AgentFacts<'a>) -> ProofSubject<'a> {
    ProofSubject {
        namespace: agent.namespace,
        name: agent.name,
    }
}
