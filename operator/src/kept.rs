//! The objects the operator keeps for agents (NetworkPolicies, a managed agent's Deployment and
//! ConfigMap), cached as digests and written whole.
//!
//! A digest is the object's name, owners and a few labels, and a fingerprint of the fields the
//! operator sets (each kind's [`Kept::Shape`]): at thousands of agents whole objects would be
//! most of the operator's memory. The shape leaves out what the API server defaults, so a stored
//! object and the wanted one compare equal when they mean the same, and a change by anyone else
//! to a field of the shape shows (the object is put back on the watch event). It is replaced
//! whole (an unconditional update), so fields another writer added do not survive.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;

use agentgov_api::containment::{MANAGED_BY_LABEL, MANAGER};
use futures::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::cache::Synced;
use crate::error::Result;
use crate::written::{Fingerprint, fingerprint};

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
    /// The labels whose values the digest keeps.
    const LABELS: &'static [&'static str];
}

/// A kept object as the cache holds it.
pub struct Digest<K> {
    pub metadata: ObjectMeta,
    /// A fingerprint of the object's [`Kept::Shape`].
    pub shape: Fingerprint,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Digest<K> {
    fn clone(&self) -> Self {
        Digest {
            metadata: self.metadata.clone(),
            shape: self.shape,
            kind: PhantomData,
        }
    }
}

impl<K> Debug for Digest<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("metadata", &self.metadata)
            .field("shape", &self.shape)
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

fn shape_fingerprint(shape: &impl Serialize) -> Fingerprint {
    serde_json::to_vec(shape).map_or(0, |json| fingerprint(&json[..]))
}

impl<'de, K: Kept> Deserialize<'de> for Digest<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Raw::<K::Shape>::deserialize(deserializer)?;
        Ok(Digest {
            metadata: raw.metadata,
            shape: shape_fingerprint(&raw.shape),
            kind: PhantomData,
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
        let mut digest = serde_json::to_value(wanted)
            .and_then(serde_json::from_value::<Digest<K>>)
            .unwrap_or_else(|_| Digest {
                metadata: wanted.metadata().clone(),
                shape: 0,
                kind: PhantomData,
            });
        slim(&mut digest);
        digest
    }

    /// The value of one of [`Kept::LABELS`].
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .map(String::as_str)
    }

    /// Whether this (cached) object is the wanted one: same shape, kept labels and owners.
    pub fn matches(&self, wanted: &K) -> bool {
        let wanted = Digest::of(wanted);
        self.shape == wanted.shape
            && self.metadata.labels == wanted.metadata.labels
            && self.metadata.owner_references == wanted.metadata.owner_references
    }

    /// Whether the agent with this uid is the controlling owner.
    pub fn owned_by(&self, uid: &str) -> bool {
        self.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    }
}

/// Keep what the comparison needs: name, namespace, owners and the kind's labels.
pub fn slim<K: Kept>(digest: &mut Digest<K>) {
    let meta = &mut digest.metadata;
    let labels: BTreeMap<String, String> = meta
        .labels
        .take()
        .into_iter()
        .flatten()
        .filter(|(key, _)| K::LABELS.contains(&key.as_str()))
        .collect();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        owner_references: meta.owner_references.take(),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    };
}

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
    Store<Digest<K>>,
    Option<impl Stream<Item = Result<Digest<K>, watcher::Error>> + Send + 'static>,
    Synced,
) {
    if !on {
        let (store, synced) = crate::cache::empty();
        return (store, None, synced);
    }
    let api = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, stream, synced) = crate::cache::watched(
        api,
        watcher::Config::default().labels(&selector()),
        slim,
        |_| {},
    );
    (store, Some(stream), synced)
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
