//! Change detection for mounted files by polling their contents.
//!
//! Kubernetes updates a Secret volume by writing a new `..<timestamp>` directory and swapping the
//! `..data` symlink, so the file path never sees a write; watching the path misses it. Reading
//! the path (which follows the symlinks) every couple of seconds and comparing a digest of the
//! contents sees every change, whatever the mechanism, and costs a few small reads.

use std::path::{Path, PathBuf};

use ring::digest;

use crate::Error;

/// A set of files judged together (a certificate and its key change as one).
#[derive(Debug)]
pub struct WatchedFiles {
    paths: Vec<PathBuf>,
    last: Option<digest::Digest>,
}

impl WatchedFiles {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        WatchedFiles { paths, last: None }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Read every file. `Ok(Some(contents))` (in `paths` order) when anything changed since the
    /// last call (the first call always reports); `Ok(None)` when nothing did. A read error is
    /// returned and leaves the last digest as it was, so the next poll tries again.
    pub async fn poll(&mut self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let mut contents = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            contents.push(read(path).await?);
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
        for c in &contents {
            ctx.update(&(c.len() as u64).to_be_bytes());
            ctx.update(c);
        }
        let now = ctx.finish();
        if self
            .last
            .as_ref()
            .is_some_and(|last| last.as_ref() == now.as_ref())
        {
            return Ok(None);
        }
        self.last = Some(now);
        Ok(Some(contents))
    }
}

pub async fn read(path: &Path) -> Result<Vec<u8>, Error> {
    tokio::fs::read(path)
        .await
        .map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })
}

/// Poll `files` every `interval` and hand changed contents to `apply`. An `apply` error (a file
/// that does not parse, a key that does not match its certificate) keeps whatever was in force
/// and is logged and counted; the next change is tried again. A file that cannot be read is
/// logged once until it can be read again.
pub fn spawn_poller<F>(
    what: &'static str,
    mut files: WatchedFiles,
    interval: std::time::Duration,
    results: prometheus_client::metrics::family::Family<
        crate::metrics::ResultLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    mut apply: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Vec<Vec<u8>>) -> Result<(), Error> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut unreadable = false;
        loop {
            tick.tick().await;
            match files.poll().await {
                Ok(None) => unreadable = false,
                Ok(Some(contents)) => {
                    unreadable = false;
                    match apply(contents) {
                        Ok(()) => {
                            crate::metrics::Metrics::reload(&results, true);
                            tracing::info!(what, files = ?files.paths(), "reloaded");
                        }
                        Err(e) => {
                            crate::metrics::Metrics::reload(&results, false);
                            tracing::error!(what, error = %e, "reload failed; the previous version stays in force");
                        }
                    }
                }
                Err(e) => {
                    if !unreadable {
                        crate::metrics::Metrics::reload(&results, false);
                        tracing::warn!(what, error = %e, "cannot read; the previous version stays in force");
                    }
                    unreadable = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_first_then_only_changes() {
        let dir = std::env::temp_dir().join(format!("agentgov-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, b"one").unwrap();
        let mut files = WatchedFiles::new(vec![a.clone()]);
        assert_eq!(files.poll().await.unwrap(), Some(vec![b"one".to_vec()]));
        assert_eq!(files.poll().await.unwrap(), None);
        std::fs::write(&a, b"two").unwrap();
        assert_eq!(files.poll().await.unwrap(), Some(vec![b"two".to_vec()]));
        std::fs::remove_file(&a).unwrap();
        assert!(files.poll().await.is_err());
        std::fs::write(&a, b"two").unwrap();
        assert_eq!(files.poll().await.unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
