//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the leader runs
//! the controllers. A replica that loses the lease exits, and its restart waits as a standby;
//! every reconcile is level-triggered, so nothing is lost. At shutdown the leader releases the
//! Lease, so a standby takes over at once instead of after the lease duration.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::error::{Error, Result};

/// The Lease, held.
pub struct Leadership {
    channel: tokio::sync::watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    watchdog: JoinHandle<()>,
}

impl Leadership {
    /// Give the Lease up (the manager releases it when its channel closes).
    pub async fn release(self) {
        self.watchdog.abort();
        let _ = self.watchdog.await;
        drop(self.channel);
        match self.task.await {
            Ok(Ok(_)) => info!("lease released"),
            Ok(Err(e)) => warn!(error = %e, "could not release the lease"),
            Err(e) => warn!(error = %e, "the lease task failed"),
        }
    }
}

/// Wait until this replica holds the Lease.
pub async fn acquire(
    client: &Client,
    config: &Config,
    identity: &str,
    ready: Arc<AtomicBool>,
) -> Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| Error::Config(format!("leader election: {e}")))?;
    let (mut channel, task) = manager.watch().await;
    // A standby is healthy and ready to take over.
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(lease = %config.lease_name, namespace = %config.lease_namespace, identity, "waiting for leadership");
    while !*channel.borrow_and_update() {
        if channel.changed().await.is_err() {
            return Err(Error::Config("leader election task ended".into()));
        }
    }
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    info!(identity, "became leader");
    let mut lost = channel.clone();
    let watchdog = tokio::spawn(async move {
        loop {
            if lost.changed().await.is_err() || !*lost.borrow_and_update() {
                error!("lost leadership; exiting so that only one replica writes");
                std::process::exit(1);
            }
        }
    });
    Ok(Leadership {
        channel,
        task,
        watchdog,
    })
}
