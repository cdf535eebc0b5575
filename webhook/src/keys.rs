//! The key ring in force, read from a file and swapped on change. A revoked key takes effect at
//! the next poll; old and new keys overlap during rotation because the ring lists both.
//!
//! Every ring put in force gets a new generation, a number no other ring in this process has
//! had: signature verdicts are remembered per generation ([`crate::memo`]), so a reload (a
//! revocation, a removed key) leaves no verdict of the previous ring in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentgov_api::keyring::KeyRing;
use arc_swap::ArcSwap;

use crate::Error;
use crate::reload::WatchedFiles;

/// A key ring and its generation, swapped together so they always belong to each other.
#[derive(Debug)]
pub struct KeySnapshot {
    pub generation: u64,
    pub ring: KeyRing,
}

impl KeySnapshot {
    /// `ring` under a generation never handed out before in this process.
    pub fn new(ring: KeyRing) -> Self {
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        KeySnapshot {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            ring,
        }
    }
}

#[derive(Debug)]
pub struct Keys {
    current: ArcSwap<KeySnapshot>,
}

impl Keys {
    pub fn new(ring: KeyRing) -> Arc<Self> {
        Arc::new(Keys {
            current: ArcSwap::from_pointee(KeySnapshot::new(ring)),
        })
    }

    /// Read the ring file once (an error here stops the start) and return the primed watcher.
    pub async fn load(path: PathBuf) -> Result<(Arc<Self>, WatchedFiles), Error> {
        let mut watched = WatchedFiles::new(vec![path]);
        let contents = watched
            .poll()
            .await?
            .ok_or_else(|| Error::Config("internal: first poll reported no change".into()))?;
        let ring = parse(&contents)?;
        if ring.active_key_id().is_some() {
            tracing::warn!(
                "the key ring holds a signing key; the webhook needs only the verification ring (`keygen public`)"
            );
        }
        Ok((Keys::new(ring), watched))
    }

    /// The ring in force and its generation.
    pub fn current(&self) -> Arc<KeySnapshot> {
        self.current.load_full()
    }

    /// Put `ring` in force under a new generation.
    pub fn store(&self, ring: KeyRing) {
        self.current.store(Arc::new(KeySnapshot::new(ring)));
    }

    pub fn spawn_reloader(
        self: &Arc<Self>,
        watched: WatchedFiles,
        interval: std::time::Duration,
        metrics: &crate::metrics::Metrics,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        crate::reload::spawn_poller(
            "keyring",
            watched,
            interval,
            metrics.keyring_reload.clone(),
            move |contents| {
                let ring = parse(&contents)?;
                tracing::info!(ring = ?ring, "key ring loaded");
                this.store(ring);
                Ok(())
            },
        )
    }
}

fn parse(contents: &[Vec<u8>]) -> Result<KeyRing, Error> {
    let bytes = contents
        .first()
        .ok_or_else(|| Error::Config("internal: no key ring contents".into()))?;
    Ok(KeyRing::from_slice(bytes)?)
}
