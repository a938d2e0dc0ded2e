//! Housekeeping: what ran out leaves the store at the start and then every hour (expired
//! tickets, ended bars, old ended sessions, audit records and timelines past retention), so
//! that a store that runs for months keeps only what a late replay or move needs. The store
//! is called on the blocking pool.

// Clock, tokio and sockets are allowed here: an hourly timer and store calls on the blocking pool (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::config::Config;
use crate::store::{Store, UnixMs};
use std::time::Duration;
use tracing::{info, warn};

/// Runs the housekeeping once (waiting for it) and starts its hourly task.
pub async fn start(store: &Store, cfg: &Config) {
    let retention = AuditRetention::of(cfg);
    let first = store.clone();
    let _ = tokio::task::spawn_blocking(move || housekeeping(&first, retention)).await;
    let store = store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        every.tick().await;
        loop {
            every.tick().await;
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || housekeeping(&store, retention)).await;
        }
    });
}

/// How often expired tickets, ended bars and old ended sessions are dropped from the store.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// How long expired tickets and ended sessions are kept: a replay or a move of an ended call
/// within this time is refused by name ("ticket already used", "session has ended").
pub const KEEP_ENDED_MS: u64 = 3_600_000;

/// How long the audit log keeps its records (`store.audit_keep_days`, `store.audit_max_records`),
/// and the floor below which nothing goes: the longest lockout or bar.
#[derive(Debug, Clone, Copy)]
struct AuditRetention {
    keep_ms: u64,
    max_records: u64,
    floor_ms: u64,
}

impl AuditRetention {
    fn of(cfg: &Config) -> Self {
        let floor_s = u64::from(cfg.moves.lockout_s.max(cfg.moves.bar_s).max(cfg.moves.failure_window_s));
        Self {
            keep_ms: u64::from(cfg.store.audit_keep_days) * 86_400_000,
            max_records: cfg.store.audit_max_records,
            floor_ms: floor_s * 1000,
        }
    }
}

/// One round: each purge logs what it dropped, or why it could not.
fn housekeeping(store: &Store, retention: AuditRetention) {
    let now = UnixMs::now();
    match store.purge_timelines(now, retention.keep_ms) {
        Ok(n) if n > 0 => info!("purged {n} session timeline(s) past store.audit_keep_days"),
        Ok(_) => {}
        Err(e) => warn!("purging session timelines: {e}"),
    }
    match store.prune_audit(now, retention.keep_ms, retention.max_records, retention.floor_ms) {
        Ok(n) if n > 0 => info!("pruned {n} audit record(s) past store.audit_keep_days or store.audit_max_records"),
        Ok(_) => {}
        Err(e) => warn!("pruning the audit log: {e}"),
    }
    match store.purge_expired(now, KEEP_ENDED_MS) {
        Ok((t, b)) if t + b > 0 => info!("purged {t} expired ticket(s) and {b} ended bar(s)"),
        Ok(_) => {}
        Err(e) => warn!("purging expired tickets: {e}"),
    }
    match store.purge_ended_sessions(now, KEEP_ENDED_MS) {
        Ok(n) if n > 0 => info!("purged {n} session record(s) ended over an hour ago"),
        Ok(_) => {}
        Err(e) => warn!("purging ended sessions: {e}"),
    }
}
