//! The store, called off the async executor: the link loop's store writes (awaited, so they
//! land in order and before the commands of the same input go out), audit records (appended
//! and flushed on the blocking pool, not awaited), reads, and the bounded queue of timeline
//! entries with its writer.

// Clock, tokio and sockets are allowed here: runs store calls on the blocking pool (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::persist::{self, StoreWrite};
use crate::store::{AuditRecord, Store};
use tracing::{error, warn};

/// Makes `writes` on the blocking pool and waits for them; then appends the audit records
/// they call for and `audit`, in that order, without waiting.
pub async fn write(store: &Store, writes: Vec<StoreWrite>, audit: Vec<AuditRecord>) {
    let mut records = if writes.is_empty() {
        Vec::new()
    } else {
        let store = store.clone();
        match tokio::task::spawn_blocking(move || persist::apply(&store, writes)).await {
            Ok(records) => records,
            Err(e) => {
                error!("session snapshots not stored: {e}");
                Vec::new()
            }
        }
    };
    records.extend(audit);
    append_audit(store, records);
}

/// Appends audit records on the blocking pool (each is flushed); not awaited.
pub fn append_audit(store: &Store, records: Vec<AuditRecord>) {
    if records.is_empty() {
        return;
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for r in records {
            if let Err(e) = store.audit(&r) {
                error!("audit record not written: {e}");
            }
        }
    });
}

/// Runs `f` on the store on the blocking pool and waits for its answer (`None`: the task
/// failed).
pub async fn read<R: Send + 'static>(store: &Store, f: impl FnOnce(&Store) -> R + Send + 'static) -> Option<R> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => Some(r),
        Err(e) => {
            error!("reading the store: {e}");
            None
        }
    }
}

type Batch = Vec<(String, crate::timeline::Entry)>;

/// Batches of timeline entries the queue to the store holds at most.
const TIMELINE_QUEUE: usize = 1024;

/// Batches of timeline entries waiting for the store (written by [`write_timelines`] on the
/// blocking pool); bounded: past [`TIMELINE_QUEUE`] batches, entries are dropped and counted.
pub struct TimelineQueue {
    tx: Option<tokio::sync::mpsc::Sender<Batch>>,
    rx: Option<tokio::sync::mpsc::Receiver<Batch>>,
    lost: u64,
}

impl Default for TimelineQueue {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(TIMELINE_QUEUE);
        Self { tx: Some(tx), rx: Some(rx), lost: 0 }
    }
}

impl TimelineQueue {
    /// Queues a batch for the store; a full queue drops it, counted and logged.
    pub fn push(&mut self, batch: Batch) {
        let (Some(tx), false) = (&self.tx, batch.is_empty()) else { return };
        let n = batch.len() as u64;
        if tx.try_send(batch).is_err() {
            let before = self.lost;
            self.lost += n;
            if before == 0 || (before + n) / 1000 > before / 1000 {
                warn!("timeline queue to the store is full: {} timeline entries not stored so far", before + n);
            }
        }
    }

    /// Starts the writer (once).
    pub fn start_writer(&mut self, store: Store) -> Option<tokio::task::JoinHandle<()>> {
        self.rx.take().map(|rx| tokio::spawn(write_timelines(store, rx)))
    }

    /// No more entries: the writer stores what is queued and ends.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

/// Writes queued timeline entries to the store on the blocking pool, a batch at a time, until
/// the queue is closed.
async fn write_timelines(store: Store, mut rx: tokio::sync::mpsc::Receiver<Batch>) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.append_timeline(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("timeline not stored: {e}"),
            Err(e) => error!("timeline writer: {e}"),
        }
    }
}
