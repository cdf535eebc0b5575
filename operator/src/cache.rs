//! Watched caches with a readiness signal many tasks can wait on.
//!
//! kube-runtime's `Store::wait_until_ready` wakes only the last task that polled it (it wraps a
//! oneshot receiver), so a second waiter, such as a readiness probe or a revalidation, can hang
//! forever beside the controller's own. We watch for the watcher's `InitDone` ourselves and
//! publish it on a `tokio::sync::watch` channel, which wakes every waiter.

use std::fmt::Debug;

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

/// A reflector over `api`: the store, the stream of changed objects for a controller, and its
/// readiness.
pub fn watched<K>(
    api: Api<K>,
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
    let (tx, rx) = watch::channel(false);
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .inspect(move |event| {
            if matches!(event, Ok(Event::InitDone)) {
                tx.send_replace(true);
            }
        })
        .default_backoff()
        .applied_objects();
    (reader, stream, Synced(rx))
}

/// Already synced: for tests that build a [`crate::context::Context`] by hand.
#[cfg(test)]
pub fn synced_for_test() -> Synced {
    Synced(watch::channel(true).1)
}
