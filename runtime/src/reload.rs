//! Change detection for mounted files by polling their contents.
//!
//! Kubernetes updates a Secret volume by writing a new `..<timestamp>` directory and swapping the
//! `..data` symlink, so the file path never sees a write; watching the path misses it. Reading
//! the path (which follows the symlinks) every couple of seconds and comparing a digest of the
//! contents sees every change, whatever the mechanism, and costs a few small reads.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        Ok(self.changed(contents))
    }

    /// [`WatchedFiles::poll`] without a runtime, for the first read at start.
    pub fn poll_blocking(&mut self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let mut contents = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            contents.push(std::fs::read(path).map_err(|source| Error::ReadFile {
                path: path.clone(),
                source,
            })?);
        }
        Ok(self.changed(contents))
    }

    /// The first read, which must succeed: the contents in `paths` order.
    pub async fn first(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        self.last = None;
        self.poll()
            .await?
            .ok_or_else(|| Error::Config("internal: the first poll reported no change".into()))
    }

    fn changed(&mut self, contents: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
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
            return None;
        }
        self.last = Some(now);
        Some(contents)
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

/// Poll `files` every `every` and hand changed contents to `apply`. An `apply` error (a file
/// that does not parse, a key that does not match its certificate) keeps whatever was in force;
/// it is logged, `report(false)` is called, and the next change is tried again. A file that
/// cannot be read is logged (and reported) once until it can be read again. Each successful
/// apply calls `report(true)`.
pub fn spawn_poller<F, E>(
    what: &'static str,
    mut files: WatchedFiles,
    every: Duration,
    report: impl Fn(bool) + Send + 'static,
    mut apply: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Vec<Vec<u8>>) -> Result<(), E> + Send + 'static,
    E: Display,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
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
                            report(true);
                            tracing::info!(what, files = ?files.paths(), "reloaded");
                        }
                        Err(e) => {
                            report(false);
                            tracing::error!(what, error = %e, "reload failed; the previous version stays in force");
                        }
                    }
                }
                Err(e) => {
                    if !unreadable {
                        report(false);
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
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("agentgov-runtime-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn reports_first_then_only_changes() {
        let dir = temp_dir("reload");
        let a = dir.join("a");
        std::fs::write(&a, b"one").unwrap();
        let mut files = WatchedFiles::new(vec![a.clone()]);
        assert_eq!(files.poll().await.unwrap(), Some(vec![b"one".to_vec()]));
        assert_eq!(files.poll().await.unwrap(), None);
        assert_eq!(files.poll_blocking().unwrap(), None);
        std::fs::write(&a, b"two").unwrap();
        assert_eq!(files.poll_blocking().unwrap(), Some(vec![b"two".to_vec()]));
        std::fs::remove_file(&a).unwrap();
        assert!(matches!(
            files.poll().await,
            Err(Error::ReadFile { path, .. }) if path == a
        ));
        std::fs::write(&a, b"two").unwrap();
        assert_eq!(files.poll().await.unwrap(), None);
        assert_eq!(files.first().await.unwrap(), vec![b"two".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two files change as one: moving bytes from one to the other is a change.
    #[tokio::test]
    async fn files_are_judged_together() {
        let dir = temp_dir("pair");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"ab").unwrap();
        std::fs::write(&b, b"c").unwrap();
        let mut files = WatchedFiles::new(vec![a.clone(), b.clone()]);
        files.first().await.unwrap();
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"bc").unwrap();
        assert_eq!(
            files.poll().await.unwrap(),
            Some(vec![b"a".to_vec(), b"bc".to_vec()])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Replace a file at once, as a Secret volume does (a reader never sees it half written).
    fn put(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Waits until `done` holds (the poller runs on real time), at most ten seconds.
    async fn until(done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_poller_applies_changes_and_reports_failures_once() {
        let dir = temp_dir("poller");
        let file = dir.join("value");
        std::fs::write(&file, b"1").unwrap();
        let mut files = WatchedFiles::new(vec![file.clone()]);
        files.first().await.unwrap();
        let applied = Arc::new(Mutex::new(Vec::<String>::new()));
        let reports = Arc::new(Mutex::new(Vec::<bool>::new()));
        let task = {
            let (applied, reports) = (applied.clone(), reports.clone());
            spawn_poller(
                "value",
                files,
                Duration::from_millis(10),
                move |ok| reports.lock().unwrap().push(ok),
                move |contents| {
                    let text = String::from_utf8(contents[0].clone()).map_err(|e| e.to_string())?;
                    if text == "bad" {
                        return Err("does not parse".to_string());
                    }
                    applied.lock().unwrap().push(text);
                    Ok(())
                },
            )
        };
        let reported = |n: usize| reports.lock().unwrap().len() == n;
        put(&file, b"2");
        until(|| reported(1)).await;
        put(&file, b"bad");
        until(|| reported(2)).await;
        std::fs::remove_file(&file).unwrap();
        until(|| reported(3)).await;
        // However long it stays unreadable, that is one report.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(reported(3));
        put(&file, b"3");
        until(|| reported(4)).await;
        task.abort();
        assert_eq!(*applied.lock().unwrap(), ["2", "3"]);
        assert_eq!(*reports.lock().unwrap(), [true, false, false, true]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
