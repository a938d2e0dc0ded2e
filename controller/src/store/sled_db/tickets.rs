//! Move tickets on sled: issued and spent (flushed), listed, and purged with the bars that
//! ended.

use super::{bar_key, SledStore};
use crate::store::records::{TicketHash, TicketRecord};
use crate::store::{decode, encode, StoreError, UnixMs};

impl SledStore {
    // ---- tickets

    /// Issues a ticket (flushed).
    pub fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
        self.inner.tickets.insert(t.hash.0, encode(t)).map_err(|e| self.io("tickets", e))?;
        self.flush()
    }

    /// Spends a ticket, atomically, and returns it as it was *before* this call (flushed).
    ///
    /// A ticket is spent by its first presentation, whatever the decision on it: of any number
    /// of concurrent calls for one hash, exactly one gets a record with `presented: None`; the
    /// others (and any later call) get `presented: Some(first presentation)` — a replay. An
    /// unknown hash (never issued, or purged) gives `None`.
    pub fn take_ticket(&self, hash: &TicketHash, now: UnixMs) -> Result<Option<TicketRecord>, StoreError> {
        let mut undecodable = None;
        let before = self
            .inner
            .tickets
            .fetch_and_update(hash.0, |old| {
                let old = old?;
                match decode::<TicketRecord>(old) {
                    Ok(mut t) if t.presented.is_none() => {
                        t.presented = Some(now);
                        Some(encode(&t))
                    }
                    Ok(_) => Some(old.to_vec()),
                    Err(p) => {
                        undecodable = Some(p);
                        Some(old.to_vec())
                    }
                }
            })
            .map_err(|e| self.io("tickets", e))?;
        if let Some(p) = undecodable {
            return Err(self.corrupt("tickets", &hash.0, p));
        }
        let Some(before) = before else { return Ok(None) };
        let record = decode(&before).map_err(|p| self.corrupt("tickets", &hash.0, p))?;
        self.flush()?;
        Ok(Some(record))
    }

    /// Every ticket kept (issued, spent or expired but not yet purged).
    pub fn list_tickets(&self) -> Result<Vec<TicketRecord>, StoreError> {
        self.scan(&self.inner.tickets, "tickets")
    }

    /// Drops tickets that expired more than `keep_ms` before `now` (kept that long so that a
    /// late replay is still recognized as one), and bars that ended. Returns how many of each
    /// went. Not flushed.
    pub fn purge_expired(&self, now: UnixMs, keep_ms: u64) -> Result<(usize, usize), StoreError> {
        let mut tickets = 0;
        for t in self.list_tickets()? {
            if t.expires.plus_ms(keep_ms) <= now {
                self.inner.tickets.remove(t.hash.0).map_err(|e| self.io("tickets", e))?;
                tickets += 1;
            }
        }
        let mut bars = 0;
        for b in self.list_bars()? {
            if b.until <= now {
                self.inner.bars.remove(bar_key(&b.session, &b.device)).map_err(|e| self.io("bars", e))?;
                bars += 1;
            }
        }
        Ok((tickets, bars))
    }
}
