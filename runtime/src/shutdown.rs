//! Shutdown on SIGTERM (a Pod being stopped) or SIGINT (Ctrl-C), in the same order in both
//! binaries: readiness off first (`/readyz` 503, so endpoints drop the process), then whoever
//! waits on [`Shutdown::wait`] stops taking new work, and the work in flight gets a bounded time
//! to finish ([`Shutdown::bounded`], `--shutdown-grace`) before the process exits with 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::health::Readiness;

/// The process's one shutdown; clones share it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    started: Arc<watch::Sender<bool>>,
    readiness: Readiness,
}

impl Shutdown {
    /// A shutdown that starts only when [`Shutdown::start`] is called.
    pub fn new(readiness: Readiness) -> Self {
        Shutdown {
            started: Arc::new(watch::Sender::new(false)),
            readiness,
        }
    }

    /// A shutdown that starts on the first SIGTERM or SIGINT (listened for from this call on).
    pub fn on_signals(readiness: Readiness) -> Self {
        let shutdown = Self::new(readiness);
        let on_signal = shutdown.clone();
        let signal = signal();
        tokio::spawn(async move {
            let name = signal.await;
            on_signal.start(name);
        });
        shutdown
    }

    /// Start the shutdown (once; later calls change nothing): readiness off, then every
    /// [`Shutdown::wait`] resolves.
    pub fn start(&self, why: &str) {
        self.readiness.stop();
        let first = self
            .started
            .send_if_modified(|started| !std::mem::replace(started, true));
        if first {
            tracing::info!(
                signal = why,
                "shutting down: readiness off, finishing the work in flight"
            );
        }
    }

    pub fn started(&self) -> bool {
        *self.started.borrow()
    }

    /// Resolves once the shutdown has started (at once if it has).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut started = self.started.subscribe();
        async move {
            // The sender lives as long as any clone of this Shutdown; should all be gone, no
            // shutdown can start any more.
            if started.wait_for(|started| *started).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Run `work` to its end; once the shutdown has started, give it at most `grace` more.
    /// `None` when the grace ran out first (the work is dropped).
    pub async fn bounded<T>(&self, grace: Duration, work: impl Future<Output = T>) -> Option<T> {
        let deadline = {
            let wait = self.wait();
            async move {
                wait.await;
                tokio::time::sleep(grace).await;
            }
        };
        tokio::select! {
            done = work => Some(done),
            () = deadline => {
                tracing::warn!(grace = ?grace, "work still in flight after the shutdown grace; stopping anyway");
                None
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT with the name of the one that came. Listens from this call
/// on (call it inside the runtime), so a signal sent after it returns is never missed.
pub fn signal() -> impl Future<Output = &'static str> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| {
        let listener = signal(kind);
        async move {
            match listener {
                Ok(mut listener) => {
                    listener.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, signal = name, "cannot listen for the signal");
                    std::future::pending::<()>().await;
                }
            }
            name
        }
    };
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            name = terminate => name,
            name = interrupt => name,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn readiness_is_off_before_anyone_hears_of_the_shutdown() {
        let readiness = Readiness::new();
        readiness.set(true);
        let shutdown = Shutdown::new(readiness.clone());
        let heard = {
            let wait = shutdown.wait();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                wait.await;
                readiness.state()
            })
        };
        assert!(!shutdown.started());
        assert_eq!(readiness.state(), Ok(()));
        shutdown.start("test");
        shutdown.start("again");
        assert!(shutdown.started());
        assert_eq!(heard.await.unwrap(), Err("shutting down"));
        // Late waiters resolve at once.
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn work_in_flight_gets_the_grace_and_no_more() {
        let shutdown = Shutdown::new(Readiness::new());
        let grace = Duration::from_secs(5);
        // Before the shutdown, work runs as long as it takes.
        let long = shutdown.bounded(grace, async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "done"
        });
        assert_eq!(long.await, Some("done"));

        // Work that finishes within the grace finishes.
        let started = tokio::time::Instant::now();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.start("test");
        });
        let finishes = shutdown.bounded(grace, async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "drained"
        });
        assert_eq!(finishes.await, Some("drained"));
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        // Work that does not is dropped when the grace runs out.
        let started = tokio::time::Instant::now();
        let stuck = shutdown.bounded(grace, std::future::pending::<()>());
        assert_eq!(stuck.await, None);
        assert_eq!(started.elapsed(), grace);
    }

    /// A real SIGTERM starts it: this test process sends itself one. The listener is in place
    /// when `on_signals` returns, so the default action (exit) does not happen.
    #[tokio::test]
    async fn sigterm_starts_the_shutdown() {
        let readiness = Readiness::new();
        readiness.set(true);
        let shutdown = Shutdown::on_signals(readiness.clone());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), shutdown.wait())
            .await
            .unwrap();
        assert_eq!(readiness.state(), Err("shutting down"));
    }
}
