//! Move tickets on PostgreSQL: issued, spent by one conditional `UPDATE` (exactly one presenter
//! on any node gets the unspent record), listed and purged.

use super::connection::{db_io, ms, ms_i, PgStore};
use crate::store::records::{TicketHash, TicketRecord};
use crate::store::{StoreError, UnixMs, Write};

impl PgStore {
    // ---- tickets

    pub fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
        self.apply(&[Write::PutTicket(t.clone())])
    }

    /// Spends a ticket: one conditional UPDATE; exactly one presenter, on any node, gets the
    /// record with `presented: None`.
    pub fn take_ticket(&self, hash: &TicketHash, now: UnixMs) -> Result<Option<TicketRecord>, StoreError> {
        let (path, key) = (self.name.clone(), hash.0.to_vec());
        let at = ms(now);
        let found: Option<(String, Option<i64>)> = self.run("tickets", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "tickets", e);
            if let Some(row) = c
                .query_opt(
                    "UPDATE tickets SET presented = $2 WHERE hash = $1 AND presented IS NULL RETURNING rec",
                    &[&key, &at],
                )
                .map_err(|e| io(&e))?
            {
                return Ok(Some((row.get(0), None)));
            }
            let row = c.query_opt("SELECT rec, presented FROM tickets WHERE hash = $1", &[&key]).map_err(|e| io(&e))?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })?;
        let Some((rec, presented)) = found else { return Ok(None) };
        let mut t: TicketRecord = self.decode_text("tickets", hash.short_id(), &rec)?;
        t.presented = presented.map(|p| UnixMs(p as u64));
        Ok(Some(t))
    }

    pub fn list_tickets(&self) -> Result<Vec<TicketRecord>, StoreError> {
        let path = self.name.clone();
        let rows: Vec<(Vec<u8>, String, Option<i64>)> = self.run("tickets", move |c| {
            let rows = c
                .query("SELECT hash, rec, presented FROM tickets ORDER BY hash", &[])
                .map_err(|e| db_io(&path, "tickets", &e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })?;
        rows.into_iter()
            .map(|(hash, rec, presented)| {
                let mut t: TicketRecord = self.decode_text("tickets", crate::store::records::hex(&hash), &rec)?;
                t.presented = presented.map(|p| UnixMs(p as u64));
                Ok(t)
            })
            .collect()
    }

    pub fn purge_expired(&self, now: UnixMs, keep_ms: u64) -> Result<(usize, usize), StoreError> {
        let path = self.name.clone();
        let (tickets_before, bars_before) = (ms(now).saturating_sub(ms_i(keep_ms)), ms(now));
        self.run("tickets", move |c| {
            let t = c
                .execute("DELETE FROM tickets WHERE expires <= $1", &[&tickets_before])
                .map_err(|e| db_io(&path, "tickets", &e))?;
            let b = c
                .execute("DELETE FROM bars WHERE until <= $1", &[&bars_before])
                .map_err(|e| db_io(&path, "bars", &e))?;
            Ok((t as usize, b as usize))
        })
    }
}
