//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the leader runs
//! the controllers. A replica that loses the lease exits, and its restart waits as a standby;
//! every reconcile is level-triggered, so nothing is lost.
//!
//! At shutdown the leader releases the Lease. kube-lease-manager's standby sleeps until the
//! lease it saw would expire (up to the lease duration) and would not notice, so a standby here
//! also reads the Lease every [`STANDBY_POLL`] and, once nobody holds it, tries for it at once:
//! a graceful shutdown hands over in about a second; a leader that dies without releasing is
//! replaced when its lease expires.

use std::time::Duration;

use agentgov_runtime::health::Readiness;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::error::{Error, Result};

/// How long a lease lasts without renewal, in seconds (a dead leader is replaced after this).
const LEASE_SECONDS: u64 = 15;
/// The leader renews this many seconds before its lease would expire.
const RENEW_GRACE_SECONDS: u64 = 5;
/// How often a standby reads the Lease to see whether it has been released.
pub const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The Lease, held.
pub struct Leadership {
    channel: watch::Receiver<bool>,
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

/// Wait until this replica holds the Lease. While it waits it is a ready standby.
pub async fn acquire(
    client: &Client,
    config: &Config,
    identity: &str,
    readiness: &Readiness,
) -> Result<Leadership> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
    // A standby is healthy and ready to take over.
    readiness.set(true);
    info!(lease = %config.lease_name, namespace = %config.lease_namespace, identity, "waiting for leadership");
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(RENEW_GRACE_SECONDS)
            .build()
            .await
            .map_err(|e| Error::Config(format!("leader election: {e}")))?;
        let (mut channel, task) = manager.watch().await;
        let leading = tokio::select! {
            held = held(&mut channel) => {
                held?;
                true
            }
            () = released(&leases, &config.lease_name) => false,
        };
        if leading {
            readiness.set(false);
            info!(identity, "became leader");
            return Ok(Leadership {
                watchdog: tokio::spawn(exit_on_loss(channel.clone())),
                channel,
                task,
            });
        }
        // Nobody holds the Lease now: a new manager reads it afresh and takes it at once (this
        // one would sleep until the lease it saw expires).
        drop(channel);
        let _ = task.await;
        debug!(identity, "the lease was released; trying for it");
    }
}

/// Resolves once the manager says this replica holds the Lease.
async fn held(channel: &mut watch::Receiver<bool>) -> Result<()> {
    while !*channel.borrow_and_update() {
        if channel.changed().await.is_err() {
            return Err(Error::Config("leader election task ended".into()));
        }
    }
    Ok(())
}

/// Resolves once nobody holds the Lease (a leader released it at shutdown). Looks first after
/// one [`STANDBY_POLL`], so that a manager that has just been built can take a free lease itself.
async fn released(leases: &Api<Lease>, name: &str) {
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + STANDBY_POLL, STANDBY_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match leases.get_opt(name).await {
            Ok(Some(lease)) => {
                let holder = lease.spec.and_then(|s| s.holder_identity);
                if holder.is_none_or(|h| h.is_empty()) {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => debug!(error = %e, "cannot read the lease"),
        }
    }
}

/// Exit the process when leadership is lost, so that only one replica writes.
async fn exit_on_loss(mut lost: watch::Receiver<bool>) {
    loop {
        if lost.changed().await.is_err() || !*lost.borrow_and_update() {
            error!("lost leadership; exiting so that only one replica writes");
            std::process::exit(1);
        }
    }
}
