//! A memo of the costly, deterministic parts of the seven checks, so that a Pod review of a
//! governed agent costs about the same whatever the agent: the spec hash (canonical JSON +
//! SHA-256) and the proof's signature verdict (Ed25519 or HMAC).
//!
//! What an answer is remembered under:
//! - the spec hash: the Agent object version, `(namespace/name, uid, resourceVersion)`. The API
//!   server gives every change of an object a new resourceVersion, and a re-created object a
//!   new uid; an object without either is never remembered.
//! - the signature verdict: the object version, and the key ring's generation (a new number on
//!   every reload: a revocation or a removed key is in force from the next review on), and the
//!   proof's contents: a keyed hash over every field of the proof, compared on each hit.
//! - the verdict of a policy newer than the proof's (while the operator has not re-signed the
//!   agent under it): the object version and the policy's hash.
//!
//! Nothing that depends on the clock (sandbox expiry), on which policy is in force (the policy-hash
//! comparison) or on the revoked list (checked before the verdict is looked at) is remembered:
//! [`check_agent_with`](agentgov_api::admission::check_agent_with) evaluates those on every
//! review. Sandbox agents never reach the memo (their checks have no costly part).
//!
//! Bounded: one entry per agent (a new version replaces the old one), entries of agents that
//! leave the cache are forgotten ([`CheckMemo::forget`], [`CheckMemo::retain`]), and beyond
//! `capacity` entries an arbitrary one is evicted (it costs one fresh check later).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use agentgov_api::Agent;
use agentgov_api::admission::{Derivations, Recompute};
use agentgov_api::agent::AgentSpec;
use agentgov_api::keyring::{KeyRing, VerifyFailure};
use agentgov_api::proof::{ProofBundle, ProofSubject};
use ahash::RandomState;
use hashbrown::{Equivalent, HashMap};

use crate::keys::KeySnapshot;

/// The default bound: far above the agents one webhook serves; ~0.5 KB an entry.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Hits and misses since start (a lookup that cannot be remembered counts as a miss).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug)]
struct Entry {
    uid: String,
    resource_version: String,
    spec_hash: Option<Result<Arc<str>, String>>,
    signature: Option<Signature>,
    recheck: Option<Recheck>,
}

/// The verdict of a policy newer than the proof's on this object version.
#[derive(Debug)]
struct Recheck {
    policy_hash: Arc<str>,
    verdict: Result<(), String>,
}

#[derive(Debug)]
struct Signature {
    generation: u64,
    proof: ProofDigest,
    verdict: Result<(), VerifyFailure>,
}

/// A keyed hash (aHash with the memo's random keys) over every field of a proof, each
/// delimited (no two proofs share an encoding). It guards against a proof that changed under
/// an unchanged object version, which the API server never serves; a forged collision would
/// need the memo's secret keys. A cryptographic digest cost a SHA-256 on every review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProofDigest(u64);

impl ProofDigest {
    fn of(proof: &ProofBundle, keys: &RandomState) -> Self {
        ProofDigest(keys.hash_one((
            (
                proof.version,
                proof.spec_hash.as_str(),
                proof.policy_hash.as_str(),
                proof.signature.as_str(),
                proof.algorithm.as_str(),
                proof.key_id.as_str(),
            ),
            proof.signed_at.as_str(),
            proof.agent_uid.as_str(),
            &proof.approvers,
            &proof.promotions,
            &proof.exceptions,
        )))
    }
}

impl Entry {
    fn is(&self, version: &Version<'_>) -> bool {
        self.uid == version.uid && self.resource_version == version.resource_version
    }
}

/// The identity of one Agent object version.
#[derive(Clone, Copy, Debug)]
struct Version<'a> {
    uid: &'a str,
    resource_version: &'a str,
}

/// Entries by agent. aHash (keyed at random, as kube's reflector store uses): SipHash was a
/// visible part of a review's cost.
type Entries = HashMap<AgentKey, Entry, RandomState>;

/// An agent's key in the memo.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AgentKey {
    namespace: String,
    name: String,
}

/// The same key borrowed, so that a review looks its agent up without building a key.
#[derive(Clone, Copy, Debug)]
struct AgentRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

// `AgentKey` and `AgentRef` hash alike, as `Equivalent` requires.
impl Hash for AgentKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl Hash for AgentRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.name.hash(state);
    }
}

impl AgentKey {
    fn as_ref(&self) -> AgentRef<'_> {
        AgentRef {
            namespace: &self.namespace,
            name: &self.name,
        }
    }
}

impl Equivalent<AgentKey> for AgentRef<'_> {
    fn equivalent(&self, key: &AgentKey) -> bool {
        self.namespace == key.namespace && self.name == key.name
    }
}

/// The memo. Shared by all reviews; cheap to read concurrently.
#[derive(Debug)]
pub struct CheckMemo {
    entries: RwLock<Entries>,
    capacity: usize,
    /// The keys of [`ProofDigest`], random for each memo.
    digest_keys: RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for CheckMemo {
    fn default() -> Self {
        CheckMemo::new(DEFAULT_CAPACITY)
    }
}

impl CheckMemo {
    pub fn new(capacity: usize) -> Self {
        CheckMemo {
            entries: RwLock::default(),
            capacity: capacity.max(1),
            digest_keys: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The derivations for one review of `agent` (the cached object named `namespace/name`)
    /// under the ring `keys`.
    pub fn for_agent<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        agent: &'a Agent,
        keys: &'a KeySnapshot,
    ) -> AgentDerivations<'a> {
        let version = match (
            agent.metadata.uid.as_deref(),
            agent.metadata.resource_version.as_deref(),
        ) {
            (Some(uid), Some(rv)) if !uid.is_empty() && !rv.is_empty() => Some(Version {
                uid,
                resource_version: rv,
            }),
            _ => None,
        };
        AgentDerivations {
            memo: self,
            key: AgentRef { namespace, name },
            agent,
            keys,
            version,
        }
    }

    /// Forget the agent `namespace/name` (it left the cache).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.write().remove(&AgentRef { namespace, name });
    }

    /// Keep only the agents for which `keep(namespace, name)` holds (after a re-list).
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.write()
            .retain(|key, _| keep(&key.namespace, &key.name));
    }

    /// How many agents have an entry.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> MemoStats {
        MemoStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Update the entry of `key` for `version`, replacing an entry of another version.
    fn update(&self, key: AgentRef<'_>, version: Version<'_>, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.write();
        if let Some(entry) = entries.get_mut(&key) {
            if !entry.is(&version) {
                *entry = Entry::new(version);
            }
            change(entry);
            return;
        }
        if entries.len() >= self.capacity
            && let Some(victim) = entries.keys().next().cloned()
        {
            entries.remove(&victim);
        }
        let mut entry = Entry::new(version);
        change(&mut entry);
        entries.insert(
            AgentKey {
                namespace: key.namespace.to_string(),
                name: key.name.to_string(),
            },
            entry,
        );
    }
}

impl Entry {
    fn new(version: Version<'_>) -> Self {
        Entry {
            uid: version.uid.to_string(),
            resource_version: version.resource_version.to_string(),
            spec_hash: None,
            signature: None,
            recheck: None,
        }
    }
}

/// [`Derivations`] for one review of one cached Agent object: answers from the memo when it
/// holds them for this object version (and ring generation), computes and remembers otherwise.
/// Anything it is asked about that is not this object's own spec or proof, or this review's
/// ring, is computed and not remembered.
#[derive(Debug)]
pub struct AgentDerivations<'a> {
    memo: &'a CheckMemo,
    key: AgentRef<'a>,
    agent: &'a Agent,
    keys: &'a KeySnapshot,
    version: Option<Version<'a>>,
}

impl AgentDerivations<'_> {
    /// The verdict of the policy `policy_hash` on this object version: remembered, or `judge`d
    /// and remembered (a new object version or another policy judges again).
    pub fn recheck(
        &self,
        policy_hash: &Arc<str>,
        judge: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(version) = self.version else {
            self.memo.count(false);
            return judge();
        };
        let known = self
            .memo
            .read()
            .get(&self.key)
            .filter(|entry| entry.is(&version))
            .and_then(|entry| entry.recheck.as_ref())
            .filter(|r| r.policy_hash == *policy_hash)
            .map(|r| r.verdict.clone());
        if let Some(verdict) = known {
            self.memo.count(true);
            return verdict;
        }
        self.memo.count(false);
        let verdict = judge();
        let remembered = verdict.clone();
        self.memo.update(self.key, version, |entry| {
            entry.recheck = Some(Recheck {
                policy_hash: Arc::clone(policy_hash),
                verdict: remembered,
            });
        });
        verdict
    }

    fn own_proof(&self, proof: &ProofBundle) -> bool {
        self.agent
            .status
            .as_ref()
            .and_then(|s| s.proof.as_ref())
            .is_some_and(|own| std::ptr::eq(own, proof))
    }
}

impl Derivations for AgentDerivations<'_> {
    fn spec_hash(&self, spec: &AgentSpec) -> Result<Arc<str>, String> {
        let Some(version) = self
            .version
            .filter(|_| std::ptr::eq(spec, &self.agent.spec))
        else {
            self.memo.count(false);
            return Recompute.spec_hash(spec);
        };
        let known = self
            .memo
            .read()
            .get(&self.key)
            .filter(|entry| entry.is(&version))
            .and_then(|entry| entry.spec_hash.clone());
        if let Some(hash) = known {
            self.memo.count(true);
            return hash;
        }
        self.memo.count(false);
        let hash = Recompute.spec_hash(spec);
        let remembered = hash.clone();
        self.memo.update(self.key, version, |entry| {
            entry.spec_hash = Some(remembered);
        });
        hash
    }

    fn verify(
        &self,
        keys: &KeyRing,
        subject: ProofSubject<'_>,
        proof: &ProofBundle,
    ) -> Result<(), VerifyFailure> {
        let ours = std::ptr::eq(keys, &self.keys.ring)
            && subject.namespace == self.key.namespace
            && subject.name == self.key.name
            && Some(subject.uid) == self.agent.metadata.uid.as_deref()
            && self.own_proof(proof);
        let Some(version) = self.version.filter(|_| ours) else {
            self.memo.count(false);
            return Recompute.verify(keys, subject, proof);
        };
        let generation = self.keys.generation;
        let digest = ProofDigest::of(proof, &self.memo.digest_keys);
        let known = self
            .memo
            .read()
            .get(&self.key)
            .filter(|entry| entry.is(&version))
            .and_then(|entry| entry.signature.as_ref())
            .filter(|sig| sig.generation == generation && sig.proof == digest)
            .map(|sig| sig.verdict);
        if let Some(verdict) = known {
            self.memo.count(true);
            return verdict;
        }
        self.memo.count(false);
        let verdict = Recompute.verify(keys, subject, proof);
        self.memo.update(self.key, version, |entry| {
            entry.signature = Some(Signature {
                generation,
                proof: digest,
                verdict,
            });
        });
        verdict
    }
}

#[cfg(test)]
#[path = "memo_tests.rs"]
mod tests;
