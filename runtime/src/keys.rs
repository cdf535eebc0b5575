//! The key ring in force, read from a file (the mounted Secret) and swapped when it changes,
//! without a restart. The operator signs with it (a new active key signs the next proof;
//! revoking a key re-signs its agents); the webhook verifies with it (a revoked key takes effect
//! at the next poll; old and new keys overlap during rotation because the ring lists both).
//!
//! Every ring put in force gets a new generation, a number no other ring in this process has
//! had: the webhook remembers signature verdicts per generation, so a reload (a revocation, a
//! removed key) leaves no verdict of the previous ring in use. [`Keys::changes`] tells those who
//! must act on a new ring (the operator judges every agent again).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentgov_api::keyring::KeyRing;
use arc_swap::ArcSwap;
use tokio::sync::watch;

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

/// A snapshot is used where its ring is: `&snapshot` signs and verifies.
impl std::ops::Deref for KeySnapshot {
    type Target = KeyRing;

    fn deref(&self) -> &KeyRing {
        &self.ring
    }
}

#[derive(Debug)]
pub struct Keys {
    current: ArcSwap<KeySnapshot>,
    /// Bumped each time a new ring is put in force.
    changed: watch::Sender<u64>,
    /// The file, primed with what was read at start, until the reloader takes it.
    file: Mutex<Option<WatchedFiles>>,
}

impl Keys {
    /// A ring held in memory only (tests and tools): nothing to reload.
    pub fn new(ring: KeyRing) -> Arc<Self> {
        Arc::new(Self::with_file(ring, None))
    }

    fn with_file(ring: KeyRing, file: Option<WatchedFiles>) -> Self {
        Keys {
            current: ArcSwap::from_pointee(KeySnapshot::new(ring)),
            changed: watch::Sender::new(0),
            file: Mutex::new(file),
        }
    }

    /// Read the ring file once: a missing or broken file at start is an error (there is no
    /// previous ring to keep). [`Keys::spawn_reloader`] then keeps it current.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let mut file = WatchedFiles::new(vec![path.to_path_buf()]);
        let contents = file
            .poll_blocking()?
            .ok_or_else(|| Error::Config("internal: the first read reported no change".into()))?;
        let ring = parse(path, &contents)?;
        tracing::info!(path = %path.display(), ring = ?ring, "key ring loaded");
        Ok(Self::with_file(ring, Some(file)))
    }

    /// The ring in force and its generation.
    pub fn current(&self) -> Arc<KeySnapshot> {
        self.current.load_full()
    }

    /// Put `ring` in force under a new generation.
    pub fn store(&self, ring: KeyRing) {
        self.current.store(Arc::new(KeySnapshot::new(ring)));
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time a new ring is put in force.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Re-read the file every `every`; a new ring that parses is put in force, one that does
    /// not keeps the previous ring (logged; `report` is told each outcome, see
    /// [`crate::reload::spawn_poller`]). `None` when there is no file to watch (a ring made with
    /// [`Keys::new`], or a reloader already running).
    pub fn spawn_reloader(
        self: &Arc<Self>,
        every: Duration,
        report: impl Fn(bool) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let file = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let path: PathBuf = file.paths().first()?.clone();
        let this = Arc::clone(self);
        Some(crate::reload::spawn_poller(
            "keyring",
            file,
            every,
            report,
            move |contents| {
                let ring = parse(&path, &contents)?;
                tracing::info!(path = %path.display(), ring = ?ring, "key ring reloaded");
                this.store(ring);
                Ok::<(), Error>(())
            },
        ))
    }
}

fn parse(path: &Path, contents: &[Vec<u8>]) -> Result<KeyRing, Error> {
    let bytes = contents
        .first()
        .ok_or_else(|| Error::Config("internal: no key ring contents".into()))?;
    KeyRing::from_slice(bytes).map_err(|source| Error::KeyRing {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use agentgov_api::keyring::{KeyRingConfig, generate_ed25519};

    use super::*;

    fn ring_file(dir: &Path, ids: &[&str]) -> (PathBuf, KeyRingConfig) {
        let keys: Vec<_> = ids.iter().map(|id| generate_ed25519(id).unwrap()).collect();
        let config = KeyRingConfig {
            active_key_id: ids.last().map(|id| id.to_string()),
            keys,
            revoked: vec![],
        };
        let path = dir.join("keyring.json");
        let tmp = dir.join("keyring.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&config).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        (path, config)
    }

    #[test]
    fn a_missing_or_broken_ring_at_start_is_an_error() {
        let dir = std::env::temp_dir().join(format!("agentgov-keys-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        assert_eq!(Keys::load(&missing).unwrap_err().category(), "read_file");
        let broken = dir.join("broken.json");
        std::fs::write(&broken, b"{not a ring").unwrap();
        let err = Keys::load(&broken).unwrap_err();
        assert_eq!(err.category(), "keyring");
        assert!(err.to_string().contains("broken.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_new_ring_is_put_in_force_under_a_new_generation() {
        let dir = std::env::temp_dir().join(format!("agentgov-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, _) = ring_file(&dir, &["k1"]);
        let keys = Arc::new(Keys::load(&path).unwrap());
        let first = keys.current();
        assert_eq!(
            first.active_key_id(),
            Some("k1"),
            "a snapshot is used as its ring"
        );
        let mut changes = keys.changes();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let reloader = {
            let reports = reports.clone();
            keys.spawn_reloader(Duration::from_millis(10), move |ok| {
                reports.lock().unwrap().push(ok)
            })
            .unwrap()
        };
        assert!(
            keys.spawn_reloader(Duration::from_millis(10), |_| {})
                .is_none(),
            "one reloader"
        );

        // A rotation.
        ring_file(&dir, &["k1", "k2"]);
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .unwrap()
            .unwrap();
        let second = keys.current();
        assert_eq!(second.active_key_id(), Some("k2"));
        assert!(second.generation > first.generation);

        // A broken file keeps the ring in force.
        std::fs::write(dir.join("keyring.tmp"), b"[]").unwrap();
        std::fs::rename(dir.join("keyring.tmp"), &path).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while reports.lock().unwrap().len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no report");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reloader.abort();
        assert_eq!(*reports.lock().unwrap(), [true, false]);
        assert_eq!(keys.current().generation, second.generation);
        assert!(!changes.has_changed().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_in_memory_ring_has_nothing_to_reload() {
        let empty = || KeyRing::from_config(&KeyRingConfig::default()).unwrap();
        let keys = Keys::new(empty());
        let before = keys.current().generation;
        let changes = keys.changes();
        keys.store(empty());
        assert!(keys.current().generation > before);
        assert!(changes.has_changed().unwrap());
    }
}
