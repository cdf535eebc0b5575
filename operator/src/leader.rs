//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the leader runs
//! the controllers. A replica that loses the lease exits, and its restart waits as a standby;
//! every reconcile is level-triggered, so nothing is lost.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info};

use crate::config::Config;
use crate::error::{Error, Result};

pub async fn acquire(
    client: &Client,
    config: &Config,
    identity: &str,
    ready: Arc<AtomicBool>,
) -> Result<()> {
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
    tokio::spawn(async move {
        loop {
            if channel.changed().await.is_err() || !*channel.borrow_and_update() {
                error!("lost leadership; exiting so that only one replica writes");
                std::process::exit(1);
            }
        }
    });
    // Keep the renewal task alive for the life of the process.
    tokio::spawn(async move {
        let _ = task.await;
    });
    Ok(())
}
