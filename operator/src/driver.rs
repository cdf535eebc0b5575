//! The Agent controller's loop, in place of kube-runtime's `Controller`.
//!
//! kube-runtime's scheduler (a `DelayQueue` slab, a map of scheduled requests and a set of
//! pending ones, each keyed by a `ReconcileRequest` of about 120 bytes) grows to the most
//! agents ever queued at once, which is all of them at start and at every change of a policy in
//! force, and never gives that capacity back: about 600 bytes an agent for the life of the
//! process. This loop keeps the same promises in ordered maps that shrink as they drain:
//! a request for an agent being reconciled waits for that reconcile to end; an agent asked for
//! twice is reconciled once, at the earlier time; at most `concurrency` reconciles run at once,
//! each a task of its own; nothing runs before the cache is synced; a shutdown starts nothing
//! new and lets the reconciles in flight finish (the caller bounds how long).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::error;

use crate::cache::Synced;

/// An agent as the loop queues it: namespace and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    namespace: Box<str>,
    name: Box<str>,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What to do after a reconcile: look again after a while, or only when something changes.
/// (kube-runtime's `Action`, whose wait cannot be read back.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action(Option<Duration>);

impl Action {
    pub const fn requeue(after: Duration) -> Self {
        Action(Some(after))
    }

    pub const fn await_change() -> Self {
        Action(None)
    }

    pub const fn requeue_after(&self) -> Option<Duration> {
        self.0
    }
}

/// A reconcile that panicked is tried again after this long (kube-runtime's would have ended
/// the controller).
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// The agents waiting for their time, each once, at the earliest time asked for.
#[derive(Default)]
struct Queue {
    at: BTreeMap<Key, Instant>,
    by_time: BTreeSet<(Instant, Key)>,
}

impl Queue {
    fn schedule(&mut self, key: Key, when: Instant) {
        match self.at.get_mut(&key) {
            Some(at) if *at <= when => {}
            Some(at) => {
                let earlier = std::mem::replace(at, when);
                self.by_time.remove(&(earlier, key.clone()));
                self.by_time.insert((when, key));
            }
            None => {
                self.at.insert(key.clone(), when);
                self.by_time.insert((when, key));
            }
        }
    }

    /// The first agent due by `now` that is not `busy` (being reconciled), taken off the queue.
    fn take_due(&mut self, now: Instant, busy: &HashSet<Key>) -> Option<Key> {
        let due = self
            .by_time
            .iter()
            .take_while(|(when, _)| *when <= now)
            .find(|(_, key)| !busy.contains(key))?
            .clone();
        self.by_time.remove(&due);
        self.at.remove(&due.1);
        Some(due.1)
    }

    /// When the first agent that is not `busy` comes due.
    fn next_due(&self, busy: &HashSet<Key>) -> Option<Instant> {
        self.by_time
            .iter()
            .find(|(_, key)| !busy.contains(key))
            .map(|(when, _)| *when)
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// The reconciles in flight: their tasks, and which agent each is for.
struct Running<T> {
    tasks: JoinSet<T>,
    keys: HashMap<Id, Key>,
    busy: HashSet<Key>,
}

impl<T: Send + 'static> Running<T> {
    fn new() -> Self {
        Running {
            tasks: JoinSet::new(),
            keys: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    fn start(&mut self, key: Key, task: impl Future<Output = T> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.busy.insert(key.clone());
        self.keys.insert(id, key);
    }

    /// The next reconcile to end: its agent, and its result (`None`: it panicked).
    async fn next(&mut self) -> Option<(Key, Option<T>)> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok((id, result)) => (id, Some(result)),
            Err(e) => {
                if e.is_panic() {
                    error!(error = %e, "a reconcile panicked");
                }
                (e.id(), None)
            }
        };
        let key = self.keys.remove(&id)?;
        self.busy.remove(&key);
        Some((key, result))
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// How the driver finds an object by key (in the cache it reads).
pub type Lookup<K> = Box<dyn Fn(&Key) -> Option<Arc<K>> + Send + Sync>;

/// The loop over one kind of object: how to find one by key, when the cache is synced, and how
/// many reconciles may run at once (0: no bound).
pub struct Driver<K, C> {
    pub get: Lookup<K>,
    pub synced: Synced,
    pub concurrency: usize,
    pub ctx: Arc<C>,
}

impl<K, C> Driver<K, C>
where
    K: Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Reconcile the objects `triggers` names, and again as each reconcile (or `error_policy`,
    /// when it fails) asks, until `shutdown`; then wait for the reconciles in flight.
    pub async fn run<E, Fut>(
        self,
        triggers: impl Stream<Item = Key> + Send,
        shutdown: impl Future<Output = ()> + Send,
        reconcile: impl Fn(Arc<K>, Arc<C>) -> Fut,
        error_policy: impl Fn(&Key, &E, Arc<C>) -> Action + Send + Sync + 'static,
    ) where
        E: Display + Send + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let error_policy = Arc::new(error_policy);
        let limit = if self.concurrency == 0 {
            usize::MAX
        } else {
            self.concurrency
        };
        let mut queue = Queue::default();
        let mut running = Running::new();
        let mut triggers = std::pin::pin!(triggers.fuse());
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut synced = std::pin::pin!(self.synced.wait().fuse());
        let mut ready = false;
        loop {
            let now = Instant::now();
            while ready && running.len() < limit {
                let Some(key) = queue.take_due(now, &running.busy) else {
                    break;
                };
                let Some(object) = (self.get)(&key) else {
                    // Gone since it was asked for.
                    continue;
                };
                let ctx = Arc::clone(&self.ctx);
                let error_policy = Arc::clone(&error_policy);
                let reconciled = reconcile(object, Arc::clone(&ctx));
                let failed = key.clone();
                running.start(key, async move {
                    match reconciled.await {
                        Ok(action) => action,
                        Err(e) => error_policy(&failed, &e, ctx),
                    }
                });
            }
            let next_due = if ready && running.len() < limit {
                queue.next_due(&running.busy)
            } else {
                None
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = &mut synced, if !ready => ready = true,
                Some((key, action)) = running.next(), if running.len() > 0 => {
                    let after = match action {
                        Some(action) => action.requeue_after(),
                        None => Some(AFTER_PANIC),
                    };
                    if let Some(after) = after {
                        queue.schedule(key, Instant::now() + after);
                    }
                }
                Some(key) = triggers.next() => queue.schedule(key, Instant::now()),
                () = sleep_until(next_due), if next_due.is_some() => {}
            }
        }
        tracing::debug!(
            queued = queue.len(),
            running = running.len(),
            "stopping: waiting for the reconciles in flight"
        );
        while running.next().await.is_some() {}
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
