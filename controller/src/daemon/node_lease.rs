//! A cluster node's lease (`cluster.node`): only the handoffd holding it drives the node's
//! PBX; the others wait as standbys. The lease lives in the shared store, which is called on
//! the blocking pool.

// Clock, tokio and sockets are allowed here: lease timers and store calls on the blocking pool (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::config::Config;
use crate::store::Store;
use std::time::Duration;
use tracing::{error, info, warn};

/// Why the lease could not be checked.
#[derive(Debug, thiserror::Error)]
enum LeaseCheckError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the lease check failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// This handoffd's turn at driving a cluster node (`cluster.node`): a lease in the shared
/// store, taken before the PBX link is opened, renewed every third of `cluster.lease_ms`
/// while it is up, given back on a clean stop. The database's clock decides when a lease ran
/// out, so the controllers' clocks need not agree.
pub struct NodeTurn {
    pub node: String,
    /// Who this process is in the lease table: host, process id, start time.
    holder: String,
    lease_ms: u64,
}

impl NodeTurn {
    /// The turn this handoffd takes, if `cluster.node` names a node.
    pub fn of(cfg: &Config) -> Option<Self> {
        if cfg.cluster.node.is_empty() {
            return None;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Some(Self {
            node: cfg.cluster.node.clone(),
            holder: format!("{}/{}/{}", host.trim(), std::process::id(), started.as_millis() % 1_000_000),
            lease_ms: cfg.cluster.lease_ms,
        })
    }

    async fn hold(&self, store: &Store) -> Result<crate::store::NodeLease, LeaseCheckError> {
        let (store, node, holder, lease) = (store.clone(), self.node.clone(), self.holder.clone(), self.lease_ms);
        Ok(tokio::task::spawn_blocking(move || store.hold_node(&node, &holder, lease)).await??)
    }

    /// Waits until this handoffd holds the node; `false` if `shutdown` came first. Says once
    /// that it waits, and for whom.
    pub async fn wait_for_the_node(
        &self,
        store: &Store,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let mut said = String::new();
        loop {
            let what = match self.hold(store).await {
                Ok(crate::store::NodeLease::Held) => {
                    info!("node {}: this handoffd ({}) drives it, lease {} ms", self.node, self.holder, self.lease_ms);
                    return true;
                }
                Ok(crate::store::NodeLease::HeldBy { holder, remaining_ms }) => {
                    format!(
                        "standby: node {} is driven by {holder} (its lease ends in {remaining_ms} ms unless renewed)",
                        self.node
                    )
                }
                Err(e) => {
                    format!("node {}: the lease cannot be checked, no call is handled until it can: {e}", self.node)
                }
            };
            // one line per change of who holds it, not one per poll
            let key = what.split(" (").next().unwrap_or_default().to_string();
            if key != said {
                warn!("{what}");
                said = key;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.lease_ms / 5)) => {}
                _ = shutdown.as_mut() => return false,
            }
        }
    }

    /// Renews the lease every third of it; the receiver changes (to the new holder) when
    /// another handoffd took the node. A store that cannot be reached leaves the link up: no
    /// other controller can take the lease through it either, and the calls need one.
    pub fn keep(&self, store: Store) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<String>) {
        let (tx, rx) = tokio::sync::watch::channel(String::new());
        let turn = Self { node: self.node.clone(), holder: self.holder.clone(), lease_ms: self.lease_ms };
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(Duration::from_millis(turn.lease_ms / 3)).await;
                match turn.hold(&store).await {
                    Ok(crate::store::NodeLease::Held) => {
                        if failing {
                            info!("node {}: lease renewed again", turn.node);
                            failing = false;
                        }
                    }
                    Ok(crate::store::NodeLease::HeldBy { holder, .. }) => {
                        let _ = tx.send(holder);
                        return;
                    }
                    Err(e) => {
                        if !failing {
                            error!("node {}: the lease cannot be renewed, the link stays up: {e}", turn.node);
                            failing = true;
                        }
                    }
                }
            }
        });
        (task, rx)
    }

    /// Gives the lease back (a clean stop).
    pub async fn release(&self, store: &Store) {
        let (store, node, holder) = (store.clone(), self.node.clone(), self.holder.clone());
        match tokio::task::spawn_blocking(move || store.release_node(&node, &holder)).await {
            Ok(Ok(())) => info!("node {}: lease given up", self.node),
            Ok(Err(e)) => warn!("node {}: the lease was not given up (it runs out by itself): {e}", self.node),
            Err(_) => {}
        }
    }
}
