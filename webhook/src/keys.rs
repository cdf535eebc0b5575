//! The key ring in force, read from a file and swapped on change. A revoked key takes effect at
//! the next poll; old and new keys overlap during rotation because the ring lists both.

use std::path::PathBuf;
use std::sync::Arc;

use agentgov_api::keyring::KeyRing;
use arc_swap::ArcSwap;

use crate::Error;
use crate::reload::WatchedFiles;

#[derive(Debug)]
pub struct Keys {
    current: ArcSwap<KeyRing>,
}

impl Keys {
    pub fn new(ring: KeyRing) -> Arc<Self> {
        Arc::new(Keys {
            current: ArcSwap::from_pointee(ring),
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

    pub fn current(&self) -> Arc<KeyRing> {
        self.current.load_full()
    }

    pub fn store(&self, ring: KeyRing) {
        self.current.store(Arc::new(ring));
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
