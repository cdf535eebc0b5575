//! The seed's seven admission checks as one pure function over (agent, active policy hash,
//! key ring, now). Fail closed: anything unexpected is a deny with a decision code.
//!
//! [`check_agent`] is the reference. [`check_agent_with`] is the same checks, in the same order,
//! with the two costly deterministic steps (the spec hash and the signature verification)
//! obtained through [`Derivations`], so a caller can remember them between calls. Nothing that
//! depends on the clock, the policy in force or the revoked list goes through it.

use std::sync::Arc;

use jiff::Timestamp;

use crate::agent::{AgentMode, AgentSpec, AgentStatus};
use crate::expiry::{ExpiryPolicy, sandbox_expires_at};
use crate::hash::spec_hash;
use crate::keyring::{KeyRing, VerifyFailure};
use crate::proof::{ProofBundle, ProofSubject, verify};

/// The seven checks, in the seed's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdmissionCheck {
    ProofExists,
    SpecHashMatch,
    PolicyHashMatch,
    SignerNotRevoked,
    SignatureValid,
    SandboxNotExpired,
    SandboxContainment,
}

impl AdmissionCheck {
    pub const ALL: [AdmissionCheck; 7] = [
        AdmissionCheck::ProofExists,
        AdmissionCheck::SpecHashMatch,
        AdmissionCheck::PolicyHashMatch,
        AdmissionCheck::SignerNotRevoked,
        AdmissionCheck::SignatureValid,
        AdmissionCheck::SandboxNotExpired,
        AdmissionCheck::SandboxContainment,
    ];

    /// The decision code a failure of this check carries.
    pub fn deny_code(self) -> DecisionCode {
        match self {
            AdmissionCheck::ProofExists => DecisionCode::DenyProofMissing,
            AdmissionCheck::SpecHashMatch => DecisionCode::DenySpecHashMismatch,
            AdmissionCheck::PolicyHashMatch => DecisionCode::DenyPolicyHashMismatch,
            AdmissionCheck::SignerNotRevoked => DecisionCode::DenySignerRevoked,
            AdmissionCheck::SignatureValid => DecisionCode::DenySignatureInvalid,
            AdmissionCheck::SandboxNotExpired => DecisionCode::DenySandboxExpired,
            AdmissionCheck::SandboxContainment => DecisionCode::DenyContainmentViolation,
        }
    }
}

/// The seed's admission decision codes, plus codes for fail-closed cases the seed folds into
/// "any error denies" (an unknown agent, a webhook not ready, a request it cannot read, a policy
/// or authorization refusal), for the paths a tenant could use around the seven checks (an agent
/// label removed from a running Pod, a sandbox's life lengthened, the spec of an agent being
/// deleted changed), and for the one audited exception (a sandbox extended by someone holding the
/// verb `extend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionCode {
    Allow,
    /// Allowed: a sandbox's expiry moved later by someone holding the verb `extend`.
    AllowSandboxExtended,
    DenyProofMissing,
    DenySpecHashMismatch,
    DenyPolicyHashMismatch,
    DenySignerRevoked,
    DenySignatureInvalid,
    DenySandboxExpired,
    DenyContainmentViolation,
    DenyAgentNotFound,
    DenyUnavailable,
    DenyBadRequest,
    DenyPolicy,
    DenyUnauthorized,
    /// The agent label removed from (or emptied on) a Pod that carried it.
    DenyAgentLabelRemoved,
    /// A sandbox's expiry moved later without the verb `extend`.
    DenySandboxExtension,
    /// The spec of an agent being deleted changed.
    DenyAgentDeleting,
    /// A PolicyBundle that does not compile.
    DenyBundleInvalid,
    /// A PolicyBundle not signed, or not signed by a valid policy-signing key, while signed
    /// bundles are required.
    DenyBundleUnsigned,
    /// A Pod of an agent runs an image the agent's approved `spec.runtime.images` does not list.
    DenyRuntimeMismatch,
    /// A namespace's PolicyBundle sets a limit above the cluster floor's.
    DenyBundleAboveFloor,
}

impl DecisionCode {
    pub const ALL: [DecisionCode; 21] = [
        DecisionCode::Allow,
        DecisionCode::AllowSandboxExtended,
        DecisionCode::DenyProofMissing,
        DecisionCode::DenySpecHashMismatch,
        DecisionCode::DenyPolicyHashMismatch,
        DecisionCode::DenySignerRevoked,
        DecisionCode::DenySignatureInvalid,
        DecisionCode::DenySandboxExpired,
        DecisionCode::DenyContainmentViolation,
        DecisionCode::DenyAgentNotFound,
        DecisionCode::DenyUnavailable,
        DecisionCode::DenyBadRequest,
        DecisionCode::DenyPolicy,
        DecisionCode::DenyUnauthorized,
        DecisionCode::DenyAgentLabelRemoved,
        DecisionCode::DenySandboxExtension,
        DecisionCode::DenyAgentDeleting,
        DecisionCode::DenyBundleInvalid,
        DecisionCode::DenyBundleUnsigned,
        DecisionCode::DenyRuntimeMismatch,
        DecisionCode::DenyBundleAboveFloor,
    ];

    /// Whether the request is admitted.
    pub fn is_allow(self) -> bool {
        matches!(
            self,
            DecisionCode::Allow | DecisionCode::AllowSandboxExtended
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionCode::Allow => "ADMISSION_ALLOW",
            DecisionCode::AllowSandboxExtended => "ADMISSION_ALLOW_SANDBOX_EXTENDED",
            DecisionCode::DenyProofMissing => "ADMISSION_DENY_PROOF_MISSING",
            DecisionCode::DenySpecHashMismatch => "ADMISSION_DENY_SPEC_HASH_MISMATCH",
            DecisionCode::DenyPolicyHashMismatch => "ADMISSION_DENY_POLICY_HASH_MISMATCH",
            DecisionCode::DenySignerRevoked => "ADMISSION_DENY_SIGNER_REVOKED",
            DecisionCode::DenySignatureInvalid => "ADMISSION_DENY_SIGNATURE_INVALID",
            DecisionCode::DenySandboxExpired => "ADMISSION_DENY_SANDBOX_EXPIRED",
            DecisionCode::DenyContainmentViolation => "ADMISSION_DENY_CONTAINMENT_VIOLATION",
            DecisionCode::DenyAgentNotFound => "ADMISSION_DENY_AGENT_NOT_FOUND",
            DecisionCode::DenyUnavailable => "ADMISSION_DENY_UNAVAILABLE",
            DecisionCode::DenyBadRequest => "ADMISSION_DENY_BAD_REQUEST",
            DecisionCode::DenyPolicy => "ADMISSION_DENY_POLICY",
            DecisionCode::DenyUnauthorized => "ADMISSION_DENY_UNAUTHORIZED",
            DecisionCode::DenyAgentLabelRemoved => "ADMISSION_DENY_AGENT_LABEL_REMOVED",
            DecisionCode::DenySandboxExtension => "ADMISSION_DENY_SANDBOX_EXTENSION",
            DecisionCode::DenyAgentDeleting => "ADMISSION_DENY_AGENT_DELETING",
            DecisionCode::DenyBundleInvalid => "ADMISSION_DENY_BUNDLE_INVALID",
            DecisionCode::DenyBundleUnsigned => "ADMISSION_DENY_BUNDLE_UNSIGNED",
            DecisionCode::DenyBundleAboveFloor => "ADMISSION_DENY_BUNDLE_ABOVE_FLOOR",
            DecisionCode::DenyRuntimeMismatch => "ADMISSION_DENY_RUNTIME_MISMATCH",
        }
    }
}

/// A refusal: which check failed (if one of the seven), its code, and a reason for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub check: Option<AdmissionCheck>,
    pub code: DecisionCode,
    pub reason: String,
}

impl Denial {
    pub fn new(code: DecisionCode, reason: impl Into<String>) -> Self {
        Denial {
            check: None,
            code,
            reason: reason.into(),
        }
    }

    fn check(check: AdmissionCheck, reason: impl Into<String>) -> Self {
        Denial {
            check: Some(check),
            code: check.deny_code(),
            reason: reason.into(),
        }
    }
}

/// The agent as the webhook sees it.
#[derive(Clone, Copy, Debug)]
pub struct AgentView<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The Agent object's uid (a governed agent's proof is signed for it; empty on CREATE).
    pub uid: &'a str,
    pub spec: &'a AgentSpec,
    pub status: Option<&'a AgentStatus>,
    /// The API server's creationTimestamp (for an Agent being created: now).
    pub created: Timestamp,
}

impl<'a> AgentView<'a> {
    /// A stored Agent as a tool outside the webhook sees it (`agentgov-proof`, `kubectl
    /// agentgov verify`): its own namespace (else `namespace`), name and uid; created at its
    /// creationTimestamp (a manifest without one: `now`).
    pub fn of(agent: &'a crate::Agent, namespace: &'a str, now: Timestamp) -> Self {
        AgentView {
            namespace: agent.metadata.namespace.as_deref().unwrap_or(namespace),
            name: agent.metadata.name.as_deref().unwrap_or_default(),
            uid: agent.metadata.uid.as_deref().unwrap_or_default(),
            spec: &agent.spec,
            status: agent.status.as_ref(),
            created: agent
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0),
        }
    }
}

/// A second opinion on a governed agent whose proof was signed under another policy than the
/// one in force: a newer policy that the operator has not re-signed the agent under yet (it may
/// be down). `Ok(())` when the policy in force allows the agent too; `Err` with its deny
/// reasons otherwise.
pub trait PolicyRecheck {
    fn recheck(&self, agent: &AgentView<'_>) -> Result<(), String>;
}

/// What the checks are judged against.
#[derive(Clone, Copy)]
pub struct AdmissionContext<'a> {
    /// Hash of the PolicyBundle version in force for the agent's namespace, if any.
    pub active_policy_hash: Option<&'a str>,
    /// How a proof signed under another policy is judged: `None` refuses it (check 3 strictly);
    /// `Some` admits it when the policy in force allows the agent too.
    pub recheck: Option<&'a dyn PolicyRecheck>,
    pub keys: &'a KeyRing,
    /// The webhook's clock.
    pub now: Timestamp,
    pub expiry: &'a ExpiryPolicy,
}

impl std::fmt::Debug for AdmissionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionContext")
            .field("active_policy_hash", &self.active_policy_hash)
            .field("recheck", &self.recheck.is_some())
            .field("now", &self.now)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// The deterministic, costly steps of the checks of a governed agent. An implementation must
/// return exactly what [`Recompute`] returns for the same arguments; it may remember earlier
/// answers, as long as it tells apart everything the answer depends on (the spec for
/// `spec_hash`; the key ring, the subject and every field of the proof for `verify`).
pub trait Derivations {
    /// [`spec_hash`] of `spec`, its error as text.
    fn spec_hash(&self, spec: &AgentSpec) -> Result<Arc<str>, String>;
    /// [`verify`] of `proof` for `subject` with `keys`.
    fn verify(
        &self,
        keys: &KeyRing,
        subject: ProofSubject<'_>,
        proof: &ProofBundle,
    ) -> Result<(), VerifyFailure>;
}

/// Compute everything on every call (what [`check_agent`] uses).
#[derive(Clone, Copy, Debug, Default)]
pub struct Recompute;

impl Derivations for Recompute {
    fn spec_hash(&self, spec: &AgentSpec) -> Result<Arc<str>, String> {
        spec_hash(spec).map(Arc::from).map_err(|e| e.to_string())
    }

    fn verify(
        &self,
        keys: &KeyRing,
        subject: ProofSubject<'_>,
        proof: &ProofBundle,
    ) -> Result<(), VerifyFailure> {
        verify(keys, subject, proof)
    }
}

/// Run the seven checks. `Ok(())` admits; the first failing check denies.
pub fn check_agent(agent: &AgentView<'_>, ctx: &AdmissionContext<'_>) -> Result<(), Denial> {
    check_agent_with(agent, ctx, &Recompute)
}

/// [`check_agent`], with the spec hash and the signature verdict from `derived`. The order of
/// the checks, the policy-hash comparison, the revoked list and the clock are unchanged.
pub fn check_agent_with(
    agent: &AgentView<'_>,
    ctx: &AdmissionContext<'_>,
    derived: &dyn Derivations,
) -> Result<(), Denial> {
    match agent.spec.mode {
        AgentMode::Governed => check_governed(agent, ctx, derived),
        AgentMode::Sandbox => check_sandbox(agent, ctx),
    }
}

fn check_governed(
    agent: &AgentView<'_>,
    ctx: &AdmissionContext<'_>,
    derived: &dyn Derivations,
) -> Result<(), Denial> {
    let id = format!("{}/{}", agent.namespace, agent.name);
    // 1. Proof exists. An agent the operator holds out of force keeps its last proof as a
    // record of what was approved; the checks below say what no longer holds, and the last one
    // refuses it in any case.
    let status = agent.status;
    let state = status.and_then(|s| s.governance_status);
    let held_out = || {
        let denies = status.map(|s| s.denies.join("; ")).unwrap_or_default();
        let why = if denies.is_empty() {
            String::new()
        } else {
            format!(": {denies}")
        };
        Denial::check(
            AdmissionCheck::ProofExists,
            format!(
                "agent {id} has no proof bundle in force ({}){why}",
                state.map_or("not yet promoted", |g| g.as_str())
            ),
        )
    };
    let proof = match status.and_then(|s| s.proof.as_ref()) {
        None => return Err(held_out()),
        // A proof names who approved (payload version 2): one from before approvals existed
        // is no proof that an authorized identity asked for this spec.
        Some(proof) if proof.version < 2 || proof.approvers.is_empty() => {
            return Err(Denial::check(
                AdmissionCheck::ProofExists,
                format!(
                    "the proof of agent {id} names no approval (payload version {}): approve spec hash {} with an AgentPromotion",
                    proof.version,
                    short(&proof.spec_hash)
                ),
            ));
        }
        Some(proof) => proof,
    };
    // 2. Spec hash.
    let actual = derived.spec_hash(agent.spec).map_err(|e| {
        Denial::check(
            AdmissionCheck::SpecHashMatch,
            format!("cannot hash the spec of {id}: {e}"),
        )
    })?;
    if *actual != *proof.spec_hash {
        return Err(Denial::check(
            AdmissionCheck::SpecHashMatch,
            format!(
                "spec of {id} changed after signing (hash {} is not the signed {})",
                short(&actual),
                short(&proof.spec_hash)
            ),
        ));
    }
    // 3. Policy hash: the proof's policy is in force, or (with a recheck) the policy in force
    // allows the agent as well.
    match ctx.active_policy_hash {
        Some(active) if active == proof.policy_hash => {}
        Some(active) => {
            let signed = short(&proof.policy_hash);
            let active = short(active);
            match ctx.recheck.map(|r| r.recheck(agent)) {
                Some(Ok(())) => {}
                Some(Err(denies)) => {
                    return Err(Denial::check(
                        AdmissionCheck::PolicyHashMatch,
                        format!(
                            "{id} was signed against policy {signed}, and policy {active}, now in force, denies it: {denies}"
                        ),
                    ));
                }
                None => {
                    return Err(Denial::check(
                        AdmissionCheck::PolicyHashMatch,
                        format!(
                            "{id} was signed against policy {signed}, but policy {active} is in force"
                        ),
                    ));
                }
            }
        }
        None => {
            return Err(Denial::check(
                AdmissionCheck::PolicyHashMatch,
                format!("no policy is in force in namespace {}", agent.namespace),
            ));
        }
    }
    // 4. Signer not revoked.
    if ctx.keys.is_revoked(&proof.key_id) {
        return Err(Denial::check(
            AdmissionCheck::SignerNotRevoked,
            format!("signing key {} of {id} is revoked", proof.key_id),
        ));
    }
    // 5. Signature valid, for this very Agent object.
    if proof.agent_uid != agent.uid {
        return Err(Denial::check(
            AdmissionCheck::SignatureValid,
            format!(
                "proof of {id} was signed for another Agent object (uid {}, this one is {}): a re-created agent needs its own approval",
                short(&proof.agent_uid),
                short(agent.uid)
            ),
        ));
    }
    let subject = ProofSubject {
        namespace: agent.namespace,
        name: agent.name,
        uid: agent.uid,
    };
    derived
        .verify(ctx.keys, subject, proof)
        .map_err(|failure| {
            let why = match failure {
                VerifyFailure::Revoked => "its key is revoked",
                VerifyFailure::UnknownKey => "its key id is not in the key ring",
                VerifyFailure::AlgorithmMismatch => "its algorithm differs from the key's",
                VerifyFailure::BadSignature => "the signature does not verify",
            };
            let check = if failure == VerifyFailure::Revoked {
                AdmissionCheck::SignerNotRevoked
            } else {
                AdmissionCheck::SignatureValid
            };
            Denial::check(
                check,
                format!("proof of {id} (key {}) is invalid: {why}", proof.key_id),
            )
        })?;
    // 1, continued: a proof signed under AgentExceptions is in force only until the first of
    // them ends, by our clock (the operator re-judges the agent then; this holds while it is
    // down). An end that does not parse has ended.
    if let Some(ended) = proof.exceptions.iter().find(|e| {
        e.expires_at
            .parse::<Timestamp>()
            .map_or(true, |at| ctx.now >= at)
    }) {
        return Err(Denial::check(
            AdmissionCheck::ProofExists,
            format!(
                "the proof of {id} was signed under AgentException {}, which ended at {}: the waived rules ({}) apply again",
                ended.name,
                ended.expires_at,
                ended.rules.join(", ")
            ),
        ));
    }
    // 1, concluded: a proof that still verifies does not make an agent the operator holds out
    // of force (an approval withdrawn, an approver who lost `promote`) any less held out.
    if state.is_some_and(|g| g.is_governed_in_force()) {
        Ok(())
    } else {
        Err(held_out())
    }
}

fn check_sandbox(agent: &AgentView<'_>, ctx: &AdmissionContext<'_>) -> Result<(), Denial> {
    let id = format!("{}/{}", agent.namespace, agent.name);
    // 6. Not expired, by our clock.
    let expires_at = sandbox_expires_at(agent.created, agent.spec.sandbox.as_ref(), ctx.expiry);
    if ctx.now >= expires_at {
        return Err(Denial::check(
            AdmissionCheck::SandboxNotExpired,
            format!("sandbox {id} expired at {expires_at}; promote it or recreate it"),
        ));
    }
    // 7. Containment.
    let containment = agent.spec.anatomy.containment;
    let mut breaches = Vec::new();
    if containment.external_calls {
        breaches.push("externalCalls");
    }
    if containment.persistent_writes {
        breaches.push("persistentWrites");
    }
    if !breaches.is_empty() {
        return Err(Denial::check(
            AdmissionCheck::SandboxContainment,
            format!(
                "sandbox {id} must not allow {}; set them to false",
                breaches.join(" or ")
            ),
        ));
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
