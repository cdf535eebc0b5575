//! Agents and AgentPromotions as the operator's caches hold them: compact.
//!
//! At 10,000 agents the two caches were most of the operator's memory: a governed Agent took
//! about 4.2 KB as kube's typed object (maps, options and a heap string per field) for 2.2 KB
//! of JSON, and its AgentPromotion 1.9 KB for 0.9 KB. A [`Compact`] keeps the object's
//! metadata (slimmed by the cache), the few fields that scans over every cached object read
//! ([`Compacted::Summary`]), and the rest as JSON compressed with LZ4, read again
//! ([`Compact::object`]) only when that one object is judged: microseconds beside the
//! millisecond a judgement takes.
//!
//! One object alone compresses to about 60 % (an agent's status repeats its hashes, little
//! else), but thousands of agents repeat each other: the same keys, conditions, messages,
//! policy hash, key id and approvers, specs from the same templates. So each kind learns a
//! dictionary once, from the first object with a judged status the cache sees, and compresses
//! every later object against it (`Learned`); objects compressed before it stay readable.
//!
//! Neither kind is in a kube-runtime store. The agent cache (`agents::Agents`) holds each agent
//! as a [`Stored`]: the watch's [`Compact`] with its metadata packed too (the cache's maps hold
//! its namespace and name). Nothing scans AgentPromotions, and an agent's judgement reads its
//! own, so the promotion index keeps each whole, metadata too, as one [`Packed`] blob by
//! namespace and agent (`context::PromotionIndex`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use agentgov_api::agent::AgentMode;
use agentgov_api::{Agent, AgentPromotion, GovernanceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};

/// A kind whose objects the caches keep compressed, against a dictionary the kind learns.
pub trait Learns: Serialize + DeserializeOwned {
    /// Whether this object, as JSON, makes a good dictionary for the kind: one the operator
    /// judged, so its status has the fields and messages most cached objects have.
    fn teaches(&self) -> bool;

    /// The kind's dictionary, once learned.
    fn learned() -> &'static Learned;
}

/// A kind the caches keep compact, and what of it scans over the whole cache read.
pub trait Compacted: Resource<DynamicType = ()> + Learns {
    type Summary: Clone + Debug + Send + Sync + 'static;

    fn summary(&self) -> Self::Summary;

    /// Take out of the cached metadata what the summary keeps, so that it is not held twice.
    fn lighten(_metadata: &mut ObjectMeta) {}

    /// Put back into the metadata what [`Compacted::lighten`] took out.
    fn restore(_summary: &Self::Summary, _metadata: &mut ObjectMeta) {}
}

/// A kind's compression dictionary: the JSON (as the cache compresses it: without metadata for
/// a [`Compact`], whole for a [`Packed`]) of the first object that [`Learns::teaches`], kept for
/// the life of the process.
pub type Learned = OnceLock<Box<[u8]>>;

/// The first byte of a compressed rest: how it was compressed.
const PLAIN: u8 = 0;
const WITH_DICTIONARY: u8 = 1;

/// `json` compressed, against `dictionary` when there is one: the way, the JSON's length (as
/// `lz4_flex`'s size-prepended blocks have it, so [`unpack`] reads it with them), then the block,
/// compressed straight into place after them.
fn pack(json: &[u8], dictionary: Option<&[u8]>) -> Result<Box<[u8]>, serde_json::Error> {
    const HEADER: usize = 1 + 4;
    let size = u32::try_from(json.len()).map_err(serde_json::Error::custom)?;
    let mut packed = vec![0; HEADER + lz4_flex::block::get_maximum_output_size(json.len())];
    let (head, block) = packed.split_at_mut(HEADER);
    head[1..].copy_from_slice(&size.to_le_bytes());
    let compressed = match dictionary {
        Some(d) => {
            head[0] = WITH_DICTIONARY;
            lz4_flex::block::compress_into_with_dict(json, block, d)
        }
        None => {
            head[0] = PLAIN;
            lz4_flex::block::compress_into(json, block)
        }
    }
    .map_err(serde_json::Error::custom)?;
    packed.truncate(HEADER + compressed);
    Ok(packed.into_boxed_slice())
}

/// The JSON [`pack`] compressed.
fn unpack(packed: &[u8], learned: &Learned) -> Result<Vec<u8>, serde_json::Error> {
    let unpacked = match packed.split_first() {
        Some((&PLAIN, compressed)) => lz4_flex::decompress_size_prepended(compressed),
        Some((&WITH_DICTIONARY, compressed)) => {
            // Packed against it, so it was learned before.
            let dictionary = learned.get().map_or(&[][..], |d| &d[..]);
            lz4_flex::block::decompress_size_prepended_with_dict(compressed, dictionary)
        }
        _ => return Err(serde_json::Error::custom("not a packed object")),
    };
    unpacked.map_err(serde_json::Error::custom)
}

/// `object` as JSON packed against its kind's dictionary, learning the dictionary from it when
/// the kind has none yet and it [`Learns::teaches`].
fn compress<K: Learns>(object: &K) -> Result<Box<[u8]>, serde_json::Error> {
    let json = serde_json::to_vec(object)?;
    let learned = K::learned();
    if learned.get().is_none() && object.teaches() {
        // Another thread may have learned one meanwhile; either serves.
        let _ = learned.set(json.clone().into_boxed_slice());
    }
    pack(&json, learned.get().map(|d| &d[..]))
}

/// A whole object, metadata too, as JSON compressed against its kind's dictionary: what a
/// cache keeps of a kind no kube-runtime store holds (AgentPromotions, in the promotion index,
/// which spares each the store's `ObjectMeta`, `Arc`, key and table slot). Shared, so a
/// reader takes it out from under the cache's lock by a reference count, not a copy.
pub struct Packed<K> {
    packed: Arc<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Learns> Packed<K> {
    pub fn of(object: &K) -> Result<Self, serde_json::Error> {
        Ok(Packed {
            packed: compress(object)?.into(),
            kind: PhantomData,
        })
    }

    /// The object again (it was written from the same type, so this fails only if the type
    /// changed its mind since, which it does not).
    pub fn object(&self) -> Result<K, serde_json::Error> {
        serde_json::from_slice(&unpack(&self.packed, K::learned())?)
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Packed {
            packed: Arc::clone(&self.packed),
            kind: PhantomData,
        }
    }
}

/// A cached object: its metadata, its [`Compacted::Summary`], and the rest as compressed JSON.
pub struct Compact<K: Compacted> {
    pub metadata: ObjectMeta,
    pub summary: K::Summary,
    /// The object without its metadata: JSON, LZ4-compressed ([`pack`]).
    rest: Box<[u8]>,
}

impl<K: Compacted> Compact<K> {
    /// The compact form of `object`.
    pub fn of(mut object: K) -> Result<Self, serde_json::Error> {
        let summary = object.summary();
        let mut metadata = std::mem::take(object.meta_mut());
        K::lighten(&mut metadata);
        Ok(Compact {
            metadata,
            summary,
            rest: compress(&object)?,
        })
    }

    /// The whole object again. It was read from the same JSON when it was cached, so this
    /// fails only if the kind's types changed their mind since, which they do not. (The
    /// operator reads agents back from their [`Stored`] form.)
    #[cfg(test)]
    pub fn object(&self) -> Result<K, serde_json::Error> {
        assemble(&self.rest, self.metadata.clone(), &self.summary)
    }

    /// What a cache of its own holds of it ([`Stored`]).
    pub fn stored(&self) -> Result<Stored<K>, serde_json::Error> {
        Ok(Stored {
            summary: self.summary.clone(),
            metadata: pack(
                &serde_json::to_vec(&self.metadata)?,
                metadata_dictionary().get().map(|d| &d[..]),
            )?,
            rest: self.rest.clone(),
        })
    }
}

/// The object of `metadata` and a packed `rest`, with what the summary kept put back.
fn assemble<K: Compacted>(
    rest: &[u8],
    mut metadata: ObjectMeta,
    summary: &K::Summary,
) -> Result<K, serde_json::Error> {
    let mut object: K = serde_json::from_slice(&unpack(rest, K::learned())?)?;
    K::restore(summary, &mut metadata);
    *object.meta_mut() = metadata;
    Ok(object)
}

/// A [`Compact`] object as a cache of its own holds it (the agent cache, `agents::Agents`): its
/// summary, and its metadata packed too. The cache's maps hold its namespace and name; a kube
/// `ObjectMeta` is 360 bytes before its strings, its packed JSON about a third of that.
pub struct Stored<K: Compacted> {
    pub summary: K::Summary,
    metadata: Box<[u8]>,
    rest: Box<[u8]>,
}

impl<K: Compacted> Stored<K> {
    /// The whole object again (see [`Compact::object`]).
    pub fn object(&self) -> Result<K, serde_json::Error> {
        let metadata = serde_json::from_slice(&unpack(&self.metadata, metadata_dictionary())?)?;
        assemble(&self.rest, metadata, &self.summary)
    }
}

/// What every cached object's metadata repeats (the keys, the shape of a uid and timestamp):
/// the dictionary its packed JSON is compressed against. Fixed, not learned.
fn metadata_dictionary() -> &'static Learned {
    static DICTIONARY: Learned = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        br#"{"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"name":"agent","namespace":"team","resourceVersion":"1","uid":"00000000-0000-0000-0000-000000000000"}"#
            .as_slice()
            .into()
    });
    &DICTIONARY
}

impl<K: Compacted> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Compact {
            metadata: self.metadata.clone(),
            summary: self.summary.clone(),
            rest: self.rest.clone(),
        }
    }
}

impl<K: Compacted> Debug for Compact<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compact")
            .field("metadata", &self.metadata)
            .field("summary", &self.summary)
            .field("rest_bytes", &self.rest.len())
            .finish()
    }
}

/// Read as the kind itself is (an object the kind's type refuses is refused here too), then
/// made compact.
impl<'de, K: Compacted> Deserialize<'de> for Compact<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Compact::of(K::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<K: Compacted> Resource for Compact<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What scans over every cached agent read: the revalidation summary, the namespace's
/// allocated budget, the agents-by-status gauge, the agents an AgentException selects.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSummary {
    pub mode: AgentMode,
    /// The declared monthly budget (0 when it declares none).
    pub monthly_budget_usd: f64,
    pub governance_status: Option<GovernanceStatus>,
    /// The hash of the policy of the last evaluation.
    pub policy_hash: Option<Box<str>>,
    /// Kept here rather than in the cached metadata.
    pub labels: Labels,
    /// Being deleted (a deletion timestamp set).
    pub deleting: bool,
}

/// Labels as the cache keeps them: one slice of boxed pairs, where a `BTreeMap<String, String>`
/// allocates a node of about 540 bytes for its first label. GitOps tools label every agent;
/// only an AgentException's selector reads them from the cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels(Option<Box<[Label]>>);

/// One label: key and value.
type Label = (Box<str>, Box<str>);

impl Labels {
    pub fn of(labels: Option<&BTreeMap<String, String>>) -> Self {
        Labels(labels.map(|labels| {
            labels
                .iter()
                .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
                .collect()
        }))
    }

    /// The labels as the object had them (none, or a map, empty or not).
    pub fn to_map(&self) -> Option<BTreeMap<String, String>> {
        self.0.as_ref().map(|pairs| {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        })
    }
}

impl AgentSummary {
    /// See [`holds_governance`].
    pub fn holds_governance(&self) -> bool {
        holds_governance(self.governance_status)
    }
}

/// The declared monthly budget (0 when the spec declares none).
pub fn monthly_budget_usd(spec: &agentgov_api::AgentSpec) -> f64 {
    spec.anatomy
        .economics
        .as_ref()
        .map_or(0.0, |e| e.monthly_budget_usd)
}

/// In a governed status (valid or restricted): its budget is allocated.
pub fn holds_governance(status: Option<GovernanceStatus>) -> bool {
    matches!(
        status,
        Some(GovernanceStatus::GovernedValid | GovernanceStatus::GovernedRestricted)
    )
}

impl Learns for Agent {
    fn teaches(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.proof.is_some())
    }

    fn learned() -> &'static Learned {
        static LEARNED: Learned = OnceLock::new();
        &LEARNED
    }
}

impl Compacted for Agent {
    type Summary = AgentSummary;

    fn summary(&self) -> AgentSummary {
        let status = self.status.as_ref();
        AgentSummary {
            mode: self.spec.mode,
            monthly_budget_usd: monthly_budget_usd(&self.spec),
            governance_status: status.and_then(|s| s.governance_status),
            policy_hash: status
                .and_then(|s| s.policy.as_ref())
                .map(|p| p.hash.as_str().into()),
            labels: Labels::of(self.metadata.labels.as_ref()),
            deleting: self.metadata.deletion_timestamp.is_some(),
        }
    }

    fn lighten(metadata: &mut ObjectMeta) {
        metadata.labels = None;
    }

    fn restore(summary: &AgentSummary, metadata: &mut ObjectMeta) {
        metadata.labels = summary.labels.to_map();
    }
}

impl Learns for AgentPromotion {
    fn teaches(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.outcome.is_some())
    }

    fn learned() -> &'static Learned {
        static LEARNED: Learned = OnceLock::new();
        &LEARNED
    }
}

/// An agent as the watch reads it.
pub type WatchedAgent = Compact<Agent>;
/// An agent as the agent cache holds it.
pub type CachedAgent = Stored<Agent>;
/// A cached AgentPromotion (in the promotion index).
pub type PackedPromotion = Packed<AgentPromotion>;

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentStatus, PolicyRef};

    use super::*;
    use crate::fixtures::{agent, governed_spec, promotion};

    /// The typed objects do not compare; their JSON does.
    fn json(object: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(object).unwrap()
    }

    #[test]
    fn an_agent_comes_back_whole_with_its_summary() {
        let mut governed = agent("filings", governed_spec());
        governed.metadata.uid = Some("uid-1".into());
        governed.metadata.resource_version = Some("42".into());
        let labels = BTreeMap::from([
            (
                "app.kubernetes.io/instance".to_string(),
                "desk-7".to_string(),
            ),
            ("team".to_string(), "ledger".to_string()),
        ]);
        governed.metadata.labels = Some(labels.clone());
        governed.status = Some(AgentStatus {
            governance_status: Some(GovernanceStatus::GovernedRestricted),
            policy: Some(PolicyRef {
                name: "default".into(),
                version: "v2".into(),
                hash: "abc".into(),
            }),
            warnings: vec!["a warning".into()],
            ..AgentStatus::default()
        });
        let cached = WatchedAgent::of(governed.clone()).unwrap();
        assert_eq!(json(&cached.object().unwrap()), json(&governed));
        // As the agent cache holds it, metadata packed too.
        let stored = cached.stored().unwrap();
        assert_eq!(json(&stored.object().unwrap()), json(&governed));
        assert_eq!(stored.summary, cached.summary);
        // The labels are kept once, in the summary.
        assert_eq!(
            cached.metadata,
            ObjectMeta {
                labels: None,
                ..governed.metadata.clone()
            }
        );
        assert_eq!(cached.summary.labels.to_map(), Some(labels.clone()));
        assert_eq!(
            cached.summary,
            AgentSummary {
                mode: AgentMode::Governed,
                monthly_budget_usd: governed
                    .spec
                    .anatomy
                    .economics
                    .as_ref()
                    .unwrap()
                    .monthly_budget_usd,
                governance_status: Some(GovernanceStatus::GovernedRestricted),
                policy_hash: Some("abc".into()),
                labels: Labels::of(Some(&labels)),
                deleting: false,
            }
        );
        assert!(cached.summary.holds_governance());
        // The metadata is kept once, outside the JSON.
        let rest = String::from_utf8(unpack(&cached.rest, Agent::learned()).unwrap()).unwrap();
        assert!(
            !rest.contains("uid-1") && !rest.contains("desk-7"),
            "{rest}"
        );
        // None and an empty map come back as they were.
        for labels in [None, Some(BTreeMap::new())] {
            let mut plain = governed.clone();
            plain.metadata.labels = labels.clone();
            let cached = WatchedAgent::of(plain).unwrap();
            assert_eq!(cached.object().unwrap().metadata.labels, labels);
        }
    }

    #[test]
    fn read_from_the_api_servers_json_as_the_kind_is() {
        let governed = agent("filings", governed_spec());
        let text = serde_json::to_string(&governed).unwrap();
        let cached: WatchedAgent = serde_json::from_str(&text).unwrap();
        assert_eq!(json(&cached.object().unwrap()), json(&governed));
        assert_eq!(cached.summary.governance_status, None);
        // What the Agent type refuses, the cache refuses too.
        let bad = text.replace("\"governed\"", "\"sometimes\"");
        assert!(serde_json::from_str::<Agent>(&bad).is_err());
        assert!(serde_json::from_str::<WatchedAgent>(&bad).is_err());
    }

    /// Hex digits that look random, the same for the same `seed`: hashes, uids and signatures
    /// that differ from agent to agent as real ones do (and do not compress).
    fn noise(seed: u64, len: usize) -> String {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from_digit((state % 16) as u32, 16).unwrap()
            })
            .collect()
    }

    /// A governed agent and its approval as the API server sends them, with the status the
    /// operator writes (a proof, conditions, the approval): the objects a 10,000-agent
    /// namespace holds. Agents of another `seed` differ in name, description, budget, uid,
    /// spec hash and signature; the policy is the same.
    fn governed_json(seed: u64) -> (String, String) {
        let name = format!("filings-{seed}");
        let policy_hash = "8f3c1b2a9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
        let hash = noise(seed, 64);
        let uid = noise(seed + 1, 36);
        let signature = noise(seed + 2, 88);
        let condition = |type_: &str, message: &str| {
            serde_json::json!({"type": type_, "status": "True", "reason": type_,
                "message": message, "lastTransitionTime": "2026-12-05T12:01:00Z",
                "observedGeneration": 1})
        };
        let mut spec = governed_spec();
        spec.description = format!("Checks the filings of desk {seed} against the ledger.");
        if let Some(economics) = spec.anatomy.economics.as_mut() {
            economics.monthly_budget_usd = 100.0 + seed as f64;
        }
        let mut agent = serde_json::to_value(agent(&name, spec)).unwrap();
        agent["metadata"]["resourceVersion"] = "100042".into();
        // As Argo CD labels what it applies.
        agent["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/instance": "desks"});
        agent["status"] = serde_json::json!({
            "governanceStatus": "GOVERNED_VALID",
            "proof": {"version": 2, "specHash": hash, "policyHash": policy_hash,
                "signature": signature,
                "algorithm": "Ed25519", "keyId": "k1", "signedAt": "2026-12-05T12:01:00Z",
                "agentUid": uid, "approvers": [{"username": "alice", "uid": "uid-alice"}],
                "promotions": [format!("{name}-by-alice")]},
            "policy": {"name": "default", "version": "v2", "hash": policy_hash},
            "approval": {"specHash": hash, "required": 1, "approvedBy": ["alice"]},
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", "signed by key k1 under policy default (v2)"),
                condition("Approved", "1 of 1 approvals"),
                condition("PolicyAllowed", "the policy allows this spec"),
            ],
        });
        let mut promotion = serde_json::to_value(promotion(
            &format!("{name}-by-alice"),
            &agent_of(&agent),
            "alice",
        ))
        .unwrap();
        promotion["metadata"]["resourceVersion"] = "100043".into();
        promotion["status"] = serde_json::json!({
            "outcome": "Approved", "policyHash": policy_hash,
            "proof": {"agentUid": uid, "keyId": "k1", "signedAt": "2026-12-05T12:01:00Z"},
            "decidedAt": "2026-12-05T12:01:00Z", "observedGeneration": 1,
            "conditions": [condition("Ready", "counted toward the agent's promotion")],
        });
        (agent.to_string(), promotion.to_string())
    }

    fn agent_of(value: &serde_json::Value) -> Agent {
        serde_json::from_value(value.clone()).unwrap()
    }

    /// Bytes this thread allocated, and did not free, while `f` ran: what its result holds.
    fn held_by<T>(f: impl FnOnce() -> T) -> (T, u64) {
        use tikv_jemalloc_ctl::thread::{allocatedp, deallocatedp};
        let (allocated, deallocated) = (allocatedp::read().unwrap(), deallocatedp::read().unwrap());
        let before = allocated.get() - deallocated.get();
        let result = f();
        (result, allocated.get() - deallocated.get() - before)
    }

    /// Per object, as `make` makes it.
    fn held_each<T>(make: impl Fn() -> T) -> u64 {
        const N: u64 = 200;
        let (held, bytes) = held_by(|| (0..N).map(|_| make()).collect::<Vec<_>>());
        drop(held);
        bytes / N
    }

    /// The JSON a [`Compact`] compresses: the object without its metadata.
    fn rest_of<K: Resource + Serialize + DeserializeOwned>(json: &str) -> Vec<u8> {
        let mut object: K = serde_json::from_str(json).unwrap();
        *object.meta_mut() = ObjectMeta::default();
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn later_objects_compress_against_the_first_judged_one() {
        let (first_agent, first_promotion) = governed_json(1);
        let (agent, promotion) = governed_json(2);
        for (first, later) in [
            (rest_of::<Agent>(&first_agent), rest_of::<Agent>(&agent)),
            (
                rest_of::<AgentPromotion>(&first_promotion),
                rest_of::<AgentPromotion>(&promotion),
            ),
        ] {
            let learned = Learned::new();
            let plain = pack(&later, None).unwrap();
            assert_eq!(unpack(&plain, &learned).unwrap(), later);
            learned.set(first.into_boxed_slice()).unwrap();
            let against = pack(&later, learned.get().map(|d| &d[..])).unwrap();
            assert_eq!(unpack(&against, &learned).unwrap(), later);
            // Packed before the dictionary was learned, still read after.
            assert_eq!(unpack(&plain, &learned).unwrap(), later);
            eprintln!(
                "{} bytes of JSON: {} packed alone, {} against the first",
                later.len(),
                plain.len(),
                against.len()
            );
            // What is left is mostly what differs: the hashes, the uid, the signature.
            assert!(
                against.len() * 2 < plain.len(),
                "{} against {}",
                against.len(),
                plain.len()
            );
        }
        assert!(unpack(&[7, 1, 2], &Learned::new()).is_err());
        assert!(unpack(&[], &Learned::new()).is_err());
    }

    #[test]
    fn the_caches_hold_governed_agents_and_approvals_in_less_memory() {
        // The kinds' dictionaries (learned by whichever test compacted a judged object first,
        // this one if none did).
        let (first_agent, first_promotion) = governed_json(1);
        WatchedAgent::of(serde_json::from_str(&first_agent).unwrap()).unwrap();
        PackedPromotion::of(&serde_json::from_str(&first_promotion).unwrap()).unwrap();
        let (agent, promotion) = governed_json(2);
        // Typed, as kube-runtime's store would hold them, an `Arc` each; compact, as the agent
        // cache and the promotion index do.
        let typed = held_each(|| Arc::new(serde_json::from_str::<Agent>(&agent).unwrap()))
            + held_each(|| Arc::new(serde_json::from_str::<AgentPromotion>(&promotion).unwrap()));
        let compact = held_each(|| {
            let watched = serde_json::from_str::<WatchedAgent>(&agent).unwrap();
            Arc::new(watched.stored().unwrap())
        }) + held_each(|| {
            PackedPromotion::of(&serde_json::from_str(&promotion).unwrap()).unwrap()
        });
        eprintln!(
            "an agent and its approval: {typed} bytes typed, {compact} bytes compact (JSON: {} bytes)",
            agent.len() + promotion.len()
        );
        // 13 % when measured (754 against 5,944 bytes with the agent's one label; 1,073 with the
        // agent's metadata a kube `ObjectMeta`, 1,504 with the promotion's metadata apart too,
        // 3,264 before the dictionaries). 50 % leaves room for a dictionary another test's
        // agent taught.
        assert!(
            compact * 2 <= typed,
            "{compact} bytes compact against {typed} typed"
        );
    }

    #[test]
    fn a_promotion_comes_back_whole_from_its_packed_form() {
        let mut p = promotion(
            "filings-by-alice",
            &agent("filings", governed_spec()),
            "alice",
        );
        p.metadata.uid = Some("uid-7".into());
        p.metadata.resource_version = Some("12".into());
        let packed = PackedPromotion::of(&p).unwrap();
        assert_eq!(json(&packed.object().unwrap()), json(&p));
    }
}
