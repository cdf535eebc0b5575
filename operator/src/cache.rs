//! Watched caches with a readiness signal many tasks can wait on.
//!
//! kube-runtime's `Store::wait_until_ready` wakes only the last task that polled it (it wraps a
//! oneshot receiver), so a second waiter, such as a readiness probe or a revalidation, can hang
//! forever beside the controller's own. We watch for the watcher's `InitDone` ourselves and
//! publish it on a `tokio::sync::watch` channel, which wakes every waiter.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Becomes true once the first full list has reached the store.
#[derive(Clone)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the watcher task is gone: the process is shutting down.
        let _ = rx.wait_for(|synced| *synced).await;
    }
}

/// Drop what the operator never reads from cached objects: managed fields and the
/// last-applied annotation are often the larger part of an object, and at 10,000 agents the
/// cache is most of the operator's memory.
pub fn slim<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// [`slim`], and labels and annotations too: the operator reads neither from the cached
/// metadata of Agents and AgentPromotions (an Agent's labels, which AgentExceptions select
/// by, are in its summary: `compact::Labels`), and a GitOps tool's labels and annotations are
/// on every one of thousands.
pub fn slim_unlabelled<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
}

/// Objects per page of the initial list (and of each re-list). kube's default of 500 full
/// objects per page leaves the allocator holding transient page memory between the cached
/// objects (the webhook's `AGENT_LIST_PAGE_SIZE` measured it).
pub const LIST_PAGE_SIZE: u32 = 50;

/// The watcher configuration of the operator's caches: pages of [`LIST_PAGE_SIZE`].
pub fn config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

/// A reflector over `api` (the objects `config` selects): the store, the stream of changed
/// objects for a controller (deleted ones too), and its readiness. `modify` shapes each object
/// before it is cached; `observe` sees every watch event once the store has applied it.
pub fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    modify: fn(&mut K),
    observe: impl Fn(&Event<K>) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Synced,
)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer: Writer<K> = Writer::default();
    let reader = writer.as_reader();
    let events = reflector::reflector(writer, watcher::watcher(api, config).modify(modify));
    let (stream, synced) = observed(events, observe);
    (reader, stream, synced)
}

/// A watch of `api` without a kube-runtime store, for a kind `observe` caches itself (it sees
/// every watch event, relists included): the stream of changed objects and its readiness.
pub fn streamed<K>(
    api: Api<K>,
    config: watcher::Config,
    modify: fn(&mut K),
    observe: impl Fn(&Event<K>) + Send + 'static,
) -> (
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Synced,
)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    observed(watcher::watcher(api, config).modify(modify), observe)
}

/// `events` shown to `observe`, readiness published at the first `InitDone`, retried with
/// backoff, as the objects they touch.
fn observed<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    observe: impl Fn(&Event<K>) + Send + 'static,
) -> (
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Synced,
)
where
    K: Send + 'static,
{
    let (tx, rx) = watch::channel(false);
    let stream = events
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(event);
                if matches!(event, Event::InitDone) {
                    tx.send_replace(true);
                }
            }
        })
        .default_backoff()
        .touched_objects();
    (stream, Synced(rx))
}

/// A store that stays empty, already synced: for a kind the operator is told not to watch.
pub fn empty<K>() -> (Store<K>, Synced)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::<K>::default();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);
    (writer.as_reader(), synced())
}

/// Already synced: for a cache that is not watched, and for tests that build a
/// [`crate::context::Context`] by hand.
pub fn synced() -> Synced {
    Synced(watch::channel(true).1)
}

/// Not synced until the sender says so: for tests of what waits for a cache.
#[cfg(test)]
pub fn unsynced() -> (watch::Sender<bool>, Synced) {
    let (tx, rx) = watch::channel(false);
    (tx, Synced(rx))
}

/// A cache the operator keeps itself (fed by [`streamed`]'s events, not a kube-runtime store):
/// what it holds, and what a (re)list in progress has shown, which replaces it when the list is
/// done, so objects deleted while the watch was down are forgotten. Changes go to both, so
/// readers see them during the list too.
pub struct Relisted<M> {
    live: Mutex<M>,
    relist: Mutex<Option<M>>,
}

impl<M: Default> Default for Relisted<M> {
    fn default() -> Self {
        Relisted {
            live: Mutex::default(),
            relist: Mutex::default(),
        }
    }
}

impl<M: Default> Relisted<M> {
    /// What the cache holds, to read.
    pub fn lock(&self) -> MutexGuard<'_, M> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply a change to what the cache holds and to the list in progress, if any.
    pub fn change(&self, mut change: impl FnMut(&mut M)) {
        if let Some(relist) = self
            .relist
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            change(relist);
        }
        change(&mut self.lock());
    }

    pub fn relist_started(&self) {
        *self.relist.lock().unwrap_or_else(PoisonError::into_inner) = Some(M::default());
    }

    pub fn relist_done(&self) {
        let fresh = self
            .relist
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(fresh) = fresh {
            *self.lock() = fresh;
        }
    }
}

/// Objects by namespace and name, as a cache the operator keeps itself holds them (each
/// namespace's name once, an emptied namespace dropped), in step with a watch through
/// [`ByName::observe`]. Not a kube-runtime store: at 10,000 objects a store's `Arc`, 360-byte
/// `ObjectMeta`, `ObjectRef` key (four strings) and table slot per object cost more than what
/// the operator reads of it.
pub struct ByName<V>(Relisted<Named<V>>);

/// Namespace → name → what is held.
pub type Named<V> = HashMap<Box<str>, HashMap<Box<str>, V>>;

impl<V> Default for ByName<V> {
    fn default() -> Self {
        ByName(Relisted::default())
    }
}

impl<V: Clone> ByName<V> {
    /// What is held of the object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<V> {
        self.0.lock().get(namespace)?.get(name).cloned()
    }

    /// Everything held, to read (briefly: the watch waits meanwhile).
    pub fn lock(&self) -> MutexGuard<'_, Named<V>> {
        self.0.lock()
    }

    /// Keep in step with one watch event: `held` is what to hold of an object applied (none:
    /// the object is not held, as if deleted).
    pub fn observe<K: kube::Resource>(&self, event: &Event<K>, held: impl Fn(&K) -> Option<V>) {
        let (object, held) = match event {
            Event::Apply(object) | Event::InitApply(object) => (object, held(object)),
            Event::Delete(object) => (object, None),
            Event::Init => return self.0.relist_started(),
            Event::InitDone => return self.0.relist_done(),
        };
        let namespace = object.meta().namespace.as_deref().unwrap_or_default();
        let Some(name) = object.meta().name.as_deref() else {
            return;
        };
        self.0.change(|objects| match held.clone() {
            Some(held) => {
                let names = match objects.get_mut(namespace) {
                    Some(names) => names,
                    None => objects.entry(namespace.into()).or_default(),
                };
                names.insert(name.into(), held);
            }
            None => {
                if let Some(names) = objects.get_mut(namespace) {
                    names.remove(name);
                    if names.is_empty() {
                        objects.remove(namespace);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Relisted;

    #[test]
    fn a_relist_replaces_what_is_held_once_done_and_changes_meanwhile_show_at_once() {
        let cache: Relisted<Vec<&str>> = Relisted::default();
        cache.change(|m| m.push("gone while the watch was down"));
        cache.relist_started();
        cache.change(|m| m.push("listed"));
        // Readers see the list's objects as they come, beside what was held.
        assert_eq!(*cache.lock(), ["gone while the watch was down", "listed"]);
        cache.relist_done();
        assert_eq!(*cache.lock(), ["listed"]);
        // After the list, changes go to what is held alone.
        cache.change(|m| m.push("applied"));
        cache.relist_done();
        assert_eq!(*cache.lock(), ["listed", "applied"]);
    }
}
