//! The audit log on sled (keys: 8-byte big-endian sequence numbers): reading it in order,
//! pruning its oldest records, and a decision's writes in one transaction, audit numbers
//! committed in order.

use super::{bar_key, seq_of, SledStore};
use crate::store::records::AuditRecord;
use crate::store::{decode, encode, StoreError, UnixMs, Write};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

impl SledStore {
    /// Audit retention: drops the oldest audit records that are older than `keep_ms`, and past
    /// `max_records` the oldest ones whatever their age, but never a record younger than
    /// `floor_ms` (the longest lockout or bar: the decisions they rest on stay readable) and
    /// never the newest record (its sequence number carries on after a restart). Returns how
    /// many went. Not flushed.
    pub fn prune_audit(&self, now: UnixMs, keep_ms: u64, max_records: u64, floor_ms: u64) -> Result<usize, StoreError> {
        let tree = &self.inner.audit;
        let (Some(first), Some(last)) =
            (tree.first().map_err(|e| self.io("audit", e))?, tree.last().map_err(|e| self.io("audit", e))?)
        else {
            return Ok(0);
        };
        // Sequence numbers have no holes but the pruned start: the count is their span.
        let (Some(first), Some(last)) = (seq_of(&first.0), seq_of(&last.0)) else { return Ok(0) };
        let mut count = last.saturating_sub(first) + 1;
        let mut pruned = 0;
        for kv in tree.iter() {
            let (seq, record) = self.audit_entry(kv)?;
            let age = now.0.saturating_sub(record.at.0);
            if seq == last || age < floor_ms || (age < keep_ms && count <= max_records) {
                break;
            }
            tree.remove(seq.to_be_bytes()).map_err(|e| self.io("audit", e))?;
            count -= 1;
            pruned += 1;
        }
        Ok(pruned)
    }

    // ---- audit

    /// The records after sequence number `seq`, oldest first.
    pub fn audit_since(&self, seq: u64) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let Some(from) = seq.checked_add(1) else { return Ok(Vec::new()) };
        self.inner.audit.range(from.to_be_bytes()..).map(|kv| self.audit_entry(kv)).collect()
    }

    /// The last `n` records, oldest first.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let mut tail: Vec<_> =
            self.inner.audit.iter().rev().take(n).map(|kv| self.audit_entry(kv)).collect::<Result<_, _>>()?;
        tail.reverse();
        Ok(tail)
    }

    pub(in crate::store) fn audit_entry(
        &self,
        kv: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<(u64, AuditRecord), StoreError> {
        let (k, v) = kv.map_err(|e| self.io("audit", e))?;
        let seq = seq_of(&k).ok_or_else(|| self.corrupt("audit", &k, "key is not an 8-byte sequence number"))?;
        let record = decode(&v).map_err(|p| self.corrupt("audit", &k, p))?;
        Ok((seq, record))
    }

    // ---- batches

    /// Applies a decision's writes in one atomic transaction and flushes: either all of them
    /// are on disk when it returns `Ok`, or (after a crash) none.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.apply_returning_seq(writes).map(drop)
    }

    /// Returns the last audit sequence number written, if the batch had audit records.
    pub fn apply_returning_seq(&self, writes: &[Write]) -> Result<Option<u64>, StoreError> {
        for w in writes {
            if let Write::PutBar(b) = w {
                self.check("session id", &b.session)?;
                self.check("device id", &b.device)?;
            }
        }
        let i = &self.inner;
        // Held across the transaction and the flush: audit numbers are committed in order.
        let mut seq = i.audit_seq.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = *seq + 1;
        let last = (&i.tickets, &i.bars, &i.failures, &i.audit)
            .transaction(|(tickets, bars, failures, audit)| {
                let mut next = first;
                let mut last = None;
                for w in writes {
                    match w {
                        Write::PutTicket(t) => {
                            tickets.insert(&t.hash.0[..], encode(t))?;
                        }
                        Write::PutBar(b) => {
                            bars.insert(bar_key(&b.session, &b.device), encode(b))?;
                        }
                        Write::ClearFailures(user) => {
                            failures.remove(user.as_bytes())?;
                        }
                        Write::Audit(r) => {
                            audit.insert(&next.to_be_bytes()[..], encode(r))?;
                            last = Some(next);
                            next += 1;
                        }
                    }
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(last)
            })
            .map_err(|e| self.tx_err("batch", e))?;
        if let Some(last) = last {
            *seq = last;
        }
        self.flush()?;
        Ok(last)
    }
}
