//! The store's session timelines: per session, its entries under `<session>\0<seq>` (tree
//! `timeline`) and what is kept under `<session>` (tree `timeline_meta`).
//!
//! A timeline is bounded: past [`TIMELINE_MAX_ENTRIES`] entries, the oldest entry after the
//! first [`TIMELINE_HEAD`] is dropped for each new one (the opening of the call stays, the
//! recent past stays) and counted in the meta record's [`Dropped`]. Appends are not flushed
//! (like session snapshots: sled writes them out within 500 ms; the daemon flushes when it
//! stops). Timelines go when their last entry is older than the retention given to
//! [`super::Store::purge_timelines`], oldest first past [`TIMELINE_MAX_SESSIONS`]. This file holds
//! the sled side and what both backends share; `postgres_db/sessions.rs` keeps the same records in
//! tables `timeline` and `timeline_meta`. The cases both pass are in `conformance.rs`.

use super::sled_db::{seq_of, SledStore};
use super::{decode, encode, AuditRecord, StoreError, UnixMs};
use crate::timeline::{Dropped, Entry, Timeline, TIMELINE_HEAD, TIMELINE_MAX_ENTRIES};
use serde::{Deserialize, Serialize};

/// Timelines kept at most; past it, housekeeping drops the ones whose last entry is oldest.
pub const TIMELINE_MAX_SESSIONS: usize = 10_000;

/// Audit records before the timeline's start and after its end that still belong to it
/// (a ticket issued a little before a leg's entry, an audit written just after the end).
pub(super) const AUDIT_MARGIN_MS: u64 = 60_000;

/// Audit records merged into one timeline at most.
pub(super) const AUDIT_MERGE_MAX: usize = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    /// The next entry's sequence number.
    pub(super) next: u64,
    /// Entries kept.
    pub(super) kept: u64,
    /// When the last entry happened (for retention).
    pub(super) last: UnixMs,
    pub(super) dropped: Dropped,
}

fn entry_key(session: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(session.len() + 9);
    k.extend_from_slice(session.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(session: &str) -> Vec<u8> {
    let mut k = session.as_bytes().to_vec();
    k.push(0);
    k
}

impl SledStore {
    /// Appends timeline entries, `(session, entry)` in the order they happened (not flushed).
    /// Entries of an invalid session id are refused with the id named; the rest are written.
    pub fn append_timeline(&self, entries: &[(String, Entry)]) -> Result<(), StoreError> {
        let mut first_err = None;
        let mut i = 0;
        while i < entries.len() {
            let session = &entries[i].0;
            let run = entries[i..].iter().take_while(|(s, _)| s == session).count();
            if let Err(e) = self.append_run(session, entries[i..i + run].iter().map(|(_, e)| e)) {
                first_err.get_or_insert(e);
            }
            i += run;
        }
        first_err.map_or(Ok(()), Err)
    }

    fn append_run<'a>(&self, session: &str, entries: impl Iterator<Item = &'a Entry>) -> Result<(), StoreError> {
        self.check("session id", session)?;
        let (tree, metas) = (&self.inner.timeline, &self.inner.timeline_meta);
        let mut meta: Meta = self.get(metas, "timeline_meta", session.as_bytes())?.unwrap_or_default();
        for e in entries {
            tree.insert(entry_key(session, meta.next), encode(e)).map_err(|e| self.io("timeline", e))?;
            meta.next += 1;
            meta.kept += 1;
            meta.last = meta.last.max(e.at);
            if meta.kept > TIMELINE_MAX_ENTRIES {
                // The oldest entry after the head goes.
                let victim = tree
                    .scan_prefix(prefix(session))
                    .nth(TIMELINE_HEAD as usize)
                    .transpose()
                    .map_err(|e| self.io("timeline", e))?;
                if let Some((k, v)) = victim {
                    if let Ok(old) = decode::<Entry>(&v) {
                        meta.dropped.add(&old);
                    } else {
                        meta.dropped.count += 1;
                    }
                    tree.remove(k).map_err(|e| self.io("timeline", e))?;
                    meta.kept -= 1;
                }
            }
        }
        metas.insert(session.as_bytes(), encode(&meta)).map(drop).map_err(|e| self.io("timeline_meta", e))
    }

    /// A session's timeline with its move records from the audit log merged in
    /// ([`Timeline::merge_audit`]); `None` if the store has no timeline for `id`.
    pub fn timeline(&self, id: &str) -> Result<Option<Timeline>, StoreError> {
        if self.check("session id", id).is_err() {
            return Ok(None);
        }
        let Some(meta) = self.get::<Meta>(&self.inner.timeline_meta, "timeline_meta", id.as_bytes())? else {
            return Ok(None);
        };
        let entries = self
            .inner
            .timeline
            .scan_prefix(prefix(id))
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.io("timeline", e))?;
                decode(&v).map_err(|p| self.corrupt("timeline", &k, p))
            })
            .collect::<Result<Vec<Entry>, _>>()?;
        let mut t = Timeline { session: id.to_string(), entries, dropped: meta.dropped, until: None };
        if let Some((from, to)) = t.span() {
            let audit = self.audit_between(
                UnixMs(from.0.saturating_sub(AUDIT_MARGIN_MS)),
                to.plus_ms(AUDIT_MARGIN_MS),
                AUDIT_MERGE_MAX,
            )?;
            t.merge_audit(&audit);
        }
        Ok(Some(t))
    }

    /// Sessions with a stored timeline, as (id, entries kept, last entry).
    pub fn timelines(&self) -> Result<Vec<(String, u64, UnixMs)>, StoreError> {
        self.inner
            .timeline_meta
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.io("timeline_meta", e))?;
                let m: Meta = decode(&v).map_err(|p| self.corrupt("timeline_meta", &k, p))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), m.kept, m.last))
            })
            .collect()
    }

    /// Drops the timelines whose last entry is more than `keep_ms` before `now`, then the
    /// oldest past [`TIMELINE_MAX_SESSIONS`]. Returns how many went. Not flushed.
    pub fn purge_timelines(&self, now: UnixMs, keep_ms: u64) -> Result<usize, StoreError> {
        let mut all = self.timelines()?;
        all.sort_by_key(|(_, _, last)| *last);
        let over = all.len().saturating_sub(TIMELINE_MAX_SESSIONS);
        let mut purged = 0;
        for (i, (id, _, last)) in all.iter().enumerate() {
            if i >= over && last.plus_ms(keep_ms) > now {
                break;
            }
            for kv in self.inner.timeline.scan_prefix(prefix(id)).keys() {
                let k = kv.map_err(|e| self.io("timeline", e))?;
                self.inner.timeline.remove(k).map_err(|e| self.io("timeline", e))?;
            }
            self.inner.timeline_meta.remove(id.as_bytes()).map_err(|e| self.io("timeline_meta", e))?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Audit records written between `from` and `to` (at most `max`), found by bisecting the
    /// sequence numbers on their time (records are appended in time order).
    fn audit_between(&self, from: UnixMs, to: UnixMs, max: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let tree = &self.inner.audit;
        let (Some(first), Some(last)) =
            (tree.first().map_err(|e| self.io("audit", e))?, tree.last().map_err(|e| self.io("audit", e))?)
        else {
            return Ok(Vec::new());
        };
        let (Some(mut lo), Some(mut hi)) = (seq_of(&first.0), seq_of(&last.0)) else {
            return Ok(Vec::new());
        };
        hi += 1;
        // The first sequence number whose record is at or after `from` (a hole counts as after).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let before = match tree.get(mid.to_be_bytes()).map_err(|e| self.io("audit", e))? {
                Some(v) => decode::<AuditRecord>(&v).map(|r| r.at < from).unwrap_or(false),
                None => false,
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for kv in tree.range(lo.to_be_bytes()..) {
            let (seq, r) = self.audit_entry(kv)?;
            let _ = seq;
            if r.at > to || out.len() >= max {
                break;
            }
            out.push(r);
        }
        Ok(out)
    }
}
