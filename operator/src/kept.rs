//! The objects the operator keeps for agents (NetworkPolicies, a managed agent's Deployment and
//! ConfigMap), cached as digests and written whole.
//!
//! A digest is the object's name, owners and a few labels, and a fingerprint of the fields the
//! operator sets (each kind's [`Kept::Shape`]): at thousands of agents whole objects would be
//! most of the operator's memory. The cache ([`Cache`]) holds each by namespace and name, not in
//! a kube-runtime store. The shape leaves out what the API server defaults, so a stored
//! object and the wanted one compare equal when they mean the same, and a change by anyone else
//! to a field of the shape shows (the object is put back on the watch event). It is replaced
//! whole (an unconditional update), so fields another writer added do not survive.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::driver::Key;
use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::containment::{MANAGED_BY_LABEL, MANAGER};
use futures::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::cache::{ByName, Synced};
use crate::error::Result;
use crate::written::{Fingerprint, fingerprint};

/// What the name of every object the operator keeps for an agent starts with: the agent's
/// name follows.
const KEPT_PREFIX: &str = "agentgov-";

/// A kind the operator keeps for agents.
pub trait Kept:
    k8s_openapi::Resource<Scope = k8s_openapi::NamespaceResourceScope>
    + k8s_openapi::ListableResource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The fields the operator sets (unknown ones are ignored when it is read).
    type Shape: Serialize + DeserializeOwned;
    /// The labels whose values the digest keeps; the agent label among them (it says which
    /// agent to look at again when the object changes: see [`Digest::agent`]).
    const LABELS: &'static [&'static str];
}

/// A kept object as the watch shows it: name, namespace and resourceVersion, and what the
/// cache holds of it ([`Held`]).
pub struct Digest<K> {
    pub metadata: ObjectMeta,
    held: Held<K>,
}

/// What the cache holds of a kept object: the values of its kind's [`Kept::LABELS`], and
/// fingerprints of its shape and owners. (Whole label maps and owner references cost more than
/// the rest of a digest: a map of one label is a B-tree node of about 500 bytes.)
pub struct Held<K> {
    /// A fingerprint of the object's [`Kept::Shape`].
    shape: Fingerprint,
    /// A fingerprint of its owner references.
    owners: Fingerprint,
    /// The values of [`Kept::LABELS`], in that order.
    labels: Box<[Option<Box<str>>]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Digest<K> {
    fn clone(&self) -> Self {
        Digest {
            metadata: self.metadata.clone(),
            held: self.held.clone(),
        }
    }
}

impl<K> Clone for Held<K> {
    fn clone(&self) -> Self {
        Held {
            shape: self.shape,
            owners: self.owners,
            labels: self.labels.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> Debug for Digest<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("metadata", &self.metadata)
            .field("shape", &self.held.shape)
            .field("owners", &self.held.owners)
            .field("labels", &self.held.labels)
            .finish()
    }
}

#[derive(Deserialize)]
struct Raw<S> {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(flatten)]
    shape: S,
}

fn json_fingerprint(value: &impl Serialize) -> Fingerprint {
    serde_json::to_vec(value).map_or(0, |json| fingerprint(&json[..]))
}

fn owners_fingerprint(owners: Option<&Vec<OwnerReference>>) -> Fingerprint {
    json_fingerprint(&owners)
}

impl<'de, K: Kept> Deserialize<'de> for Digest<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Raw::<K::Shape> {
            metadata: mut meta,
            shape,
        } = Raw::deserialize(deserializer)?;
        let mut labels = meta.labels.take().unwrap_or_default();
        Ok(Digest {
            held: Held {
                shape: json_fingerprint(&shape),
                owners: owners_fingerprint(meta.owner_references.as_ref()),
                labels: K::LABELS
                    .iter()
                    .map(|key| labels.remove(*key).map(String::into_boxed_str))
                    .collect(),
                kind: PhantomData,
            },
            metadata: ObjectMeta {
                name: meta.name.take(),
                namespace: meta.namespace.take(),
                resource_version: meta.resource_version.take(),
                ..ObjectMeta::default()
            },
        })
    }
}

impl<K: Kept> k8s_openapi::Resource for Digest<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl<K: Kept> k8s_openapi::ListableResource for Digest<K> {
    const LIST_KIND: &'static str = K::LIST_KIND;
}

impl<K: Kept> k8s_openapi::Metadata for Digest<K> {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: Kept> Digest<K> {
    /// The digest of an object as the operator wants it.
    pub fn of(wanted: &K) -> Digest<K> {
        serde_json::to_value(wanted)
            .and_then(serde_json::from_value::<Digest<K>>)
            .unwrap_or_else(|_| Digest {
                metadata: ObjectMeta::default(),
                held: Held {
                    shape: 0,
                    owners: 0,
                    labels: Box::default(),
                    kind: PhantomData,
                },
            })
    }

    /// Whether it is one the operator keeps: named `agentgov-<agent>` for the agent its agent
    /// label names (`containment::network_policy_name`, `workload::workload_name`). Anyone may
    /// label an object as the operator's; the operator writes only those so named.
    pub fn kept_for_its_agent(&self) -> bool {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        self.held()
            .label(AGENT_LABEL)
            .is_some_and(|agent| name.strip_prefix(KEPT_PREFIX) == Some(agent))
    }

    /// What the cache holds of it.
    pub fn held(&self) -> &Held<K> {
        &self.held
    }

    /// The agent the object is kept for, by its agent label: a change by anyone has that agent
    /// looked at again. (The label, not the owner reference, which a digest keeps only as a
    /// fingerprint; a label someone else sets only makes another agent be looked at.)
    pub fn agent(&self) -> Option<Key> {
        let namespace = self.metadata.namespace.as_deref()?;
        Some(Key::new(namespace, self.held().label(AGENT_LABEL)?))
    }
}

impl<K: Kept> Held<K> {
    /// The value of one of [`Kept::LABELS`].
    pub fn label(&self, key: &str) -> Option<&str> {
        let at = K::LABELS.iter().position(|k| *k == key)?;
        self.labels.get(at)?.as_deref()
    }

    /// Whether this (cached) object is the wanted one: same shape, kept labels and owners.
    pub fn matches(&self, wanted: &K) -> bool {
        let wanted = Digest::of(wanted).held;
        self.shape == wanted.shape && self.labels == wanted.labels && self.owners == wanted.owners
    }

    /// Whether `owner` is its one owner (as the operator writes it).
    pub fn owned_by(&self, owner: &OwnerReference) -> bool {
        self.owners == owners_fingerprint(Some(&vec![owner.clone()]))
    }
}

/// The objects the operator keeps, as it caches them: by namespace and name, what it holds of
/// each ([`Held`]); and apart, the names of those labelled as the operator's that it does not
/// keep ([`Digest::kept_for_its_agent`]).
pub struct Cache<K> {
    held: ByName<Held<K>>,
    others: ByName<()>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            held: ByName::default(),
            others: ByName::default(),
        }
    }
}

impl<K: Kept> Cache<K> {
    /// What the cache holds of the object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Held<K>> {
        self.held.get(namespace, name)
    }

    /// The names of the objects in `namespace` labelled as the operator's that it does not keep.
    pub fn others(&self, namespace: &str) -> Vec<String> {
        let others = self.others.lock();
        others
            .get(namespace)
            .map(|names| names.keys().map(|name| name.to_string()).collect())
            .unwrap_or_default()
    }

    /// Keep the cache in step with the watch.
    pub fn observe(&self, event: &Event<Digest<K>>) {
        self.held
            .observe(event, |digest| Some(digest.held().clone()));
        self.others
            .observe(event, |digest| (!digest.kept_for_its_agent()).then_some(()));
    }
}

/// Nothing left to drop: a digest keeps only what it needs as it is read.
pub fn slim<K>(_: &mut Digest<K>) {}

/// The label selector of the objects the operator keeps.
fn selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// The cache of the `K`s the operator keeps (in `namespace`, or everywhere), and the stream of
/// their changes for the Agent controller; when `on` is false, an empty cache and no watch
/// (nor the RBAC it would need).
#[allow(clippy::type_complexity)]
pub fn cache<K: Kept>(
    client: &kube::Client,
    namespace: Option<&str>,
    on: bool,
) -> (
    Arc<Cache<K>>,
    Option<impl Stream<Item = Result<Digest<K>, watcher::Error>> + Send + 'static>,
    Synced,
) {
    let cache = Arc::new(Cache::default());
    if !on {
        return (cache, None, crate::cache::synced());
    }
    let api = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (stream, synced) =
        crate::cache::streamed(api, crate::cache::config().labels(&selector()), slim, {
            let cache = Arc::clone(&cache);
            move |event| cache.observe(event)
        });
    (cache, Some(stream), synced)
}

/// Replace the object whole (no resourceVersion: whatever is stored), or create it.
pub async fn write<K: Kept>(api: &Api<K>, wanted: &K, exists: bool) -> Result<()> {
    let name = wanted.metadata().name.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let written = if exists {
        api.replace(&name, &params, wanted).await
    } else {
        api.create(&params, wanted).await
    };
    match written {
        Ok(_) => Ok(()),
        // The cache was behind: it was deleted, or created meanwhile. Try the other way once.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
            let again = if e.code == 404 {
                api.create(&params, wanted).await
            } else {
                api.replace(&name, &params, wanted).await
            };
            again.map(drop).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete the object; gone already is fine.
pub async fn delete<K: Kept>(api: &Api<K>, name: &str) -> Result<()> {
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    fn digest(namespace: &str, name: &str, agent: &str) -> Digest<NetworkPolicy> {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": namespace,
                "name": name,
                "resourceVersion": "1",
                "labels": {AGENT_LABEL: agent, MANAGED_BY_LABEL: MANAGER},
            },
            "spec": {"podSelector": {}},
        }))
        .unwrap()
    }

    #[test]
    fn the_cache_follows_the_watch_and_a_relist_forgets_what_it_did_not_show() {
        let cache = Cache::<NetworkPolicy>::default();
        let agent_of = |namespace: &str, name: &str| {
            cache
                .get(namespace, name)
                .map(|held| held.label(AGENT_LABEL).map(str::to_owned))
        };
        cache.observe(&Event::Apply(digest("team-a", "one", "a1")));
        cache.observe(&Event::Apply(digest("team-a", "two", "a2")));
        cache.observe(&Event::Apply(digest("team-b", "one", "b1")));
        assert_eq!(agent_of("team-a", "two"), Some(Some("a2".into())));
        assert_eq!(agent_of("team-b", "one"), Some(Some("b1".into())));
        assert_eq!(agent_of("team-b", "two"), None);
        // Relabelled: the newer object replaces the older.
        cache.observe(&Event::Apply(digest("team-a", "two", "a3")));
        assert_eq!(agent_of("team-a", "two"), Some(Some("a3".into())));
        cache.observe(&Event::Delete(digest("team-b", "one", "b1")));
        assert_eq!(agent_of("team-b", "one"), None);
        assert!(
            !cache.held.lock().contains_key("team-b"),
            "an emptied namespace goes"
        );
        // The watch restarts and lists only one of them: the other was deleted meanwhile.
        cache.observe(&Event::Init);
        cache.observe(&Event::InitApply(digest("team-a", "one", "a1")));
        cache.observe(&Event::InitDone);
        assert_eq!(agent_of("team-a", "one"), Some(Some("a1".into())));
        assert_eq!(agent_of("team-a", "two"), None);
    }

    #[test]
    fn objects_labelled_as_the_operators_but_not_named_for_their_agent_are_told_apart() {
        let cache = Cache::<NetworkPolicy>::default();
        let own = digest("team", "agentgov-a1", "a1");
        assert!(own.kept_for_its_agent());
        assert_eq!(
            own.metadata.name.as_deref(),
            Some(agentgov_api::containment::network_policy_name("a1").as_str())
        );
        assert_eq!(
            agentgov_api::workload::workload_name("a1"),
            agentgov_api::containment::network_policy_name("a1")
        );
        cache.observe(&Event::Apply(own));
        // Named for another agent than its label says, or for none.
        cache.observe(&Event::Apply(digest("team", "agentgov-a2", "a1")));
        cache.observe(&Event::Apply(digest("team", "allow-all", "a1")));
        let mut others = cache.others("team");
        others.sort();
        assert_eq!(others, ["agentgov-a2", "allow-all"]);
        assert!(cache.get("team", "allow-all").is_some(), "held as ever");
        // Relabelled to match its name, or deleted: no longer another's.
        cache.observe(&Event::Apply(digest("team", "agentgov-a2", "a2")));
        cache.observe(&Event::Delete(digest("team", "allow-all", "a1")));
        assert!(cache.others("team").is_empty());
        assert!(cache.others("elsewhere").is_empty());
    }
}
