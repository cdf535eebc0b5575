//! The signing key ring, read from a file (the mounted Secret) and reloaded when it changes,
//! without a restart: a new active key signs the next proof; revoking a key re-signs its agents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentgov_api::keyring::KeyRing;
use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{error, info};

use crate::error::{Error, Result};

pub struct KeyRingSource {
    path: PathBuf,
    current: ArcSwap<KeyRing>,
    last_bytes: std::sync::Mutex<Vec<u8>>,
}

impl KeyRingSource {
    /// Load the ring once; a missing or broken file at start is an error (nothing to keep).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read(path)?;
        let ring = parse(path, &bytes)?;
        info!(path = %path.display(), active_key = ?ring.active_key_id(), "key ring loaded");
        Ok(KeyRingSource {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(ring),
            last_bytes: std::sync::Mutex::new(bytes),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.current.load_full()
    }

    /// Re-read the file; `Ok(true)` when a new ring is in force. A broken file keeps the old ring.
    pub fn reload(&self) -> Result<bool> {
        let bytes = read(&self.path)?;
        let mut last = self
            .last_bytes
            .lock()
            .map_err(|_| Error::Config("key ring lock poisoned".into()))?;
        if *last == bytes {
            return Ok(false);
        }
        let ring = parse(&self.path, &bytes)?;
        info!(path = %self.path.display(), active_key = ?ring.active_key_id(), "key ring reloaded");
        self.current.store(Arc::new(ring));
        *last = bytes;
        Ok(true)
    }

    /// Poll the file; send on `changed` whenever a new ring is in force.
    pub async fn watch(self: Arc<Self>, every: std::time::Duration, changed: watch::Sender<u64>) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match self.reload() {
                Ok(true) => {
                    changed.send_modify(|n| *n += 1);
                }
                Ok(false) => {}
                Err(e) => {
                    error!(error = %e, "key ring reload failed; the previous ring stays in force")
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::KeyRing {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<KeyRing> {
    KeyRing::from_slice(bytes).map_err(|e| Error::KeyRing {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
