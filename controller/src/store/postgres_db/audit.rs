//! The audit log on PostgreSQL: reading it in order and pruning its oldest records (appending
//! is a [`crate::store::Write::Audit`] in `writes.rs`).

use super::connection::{db_io, ms, ms_i, PgStore};
use super::schema::AUDIT_LOCK;
use crate::store::records::AuditRecord;
use crate::store::{StoreError, UnixMs};

impl PgStore {
    /// The same retention rule as on sled ([`crate::store::Store::prune_audit`]), in one transaction.
    pub fn prune_audit(&self, now: UnixMs, keep_ms: u64, max_records: u64, floor_ms: u64) -> Result<usize, StoreError> {
        let path = self.name.clone();
        self.run("audit", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "audit", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).map_err(|e| io(&e))?;
            let row = tx.query_one("SELECT count(*), max(seq) FROM audit", &[]).map_err(|e| io(&e))?;
            let (mut count, last): (i64, Option<i64>) = (row.get(0), row.get(1));
            let Some(last) = last else { return Ok(0) };
            let now = ms(now);
            // The oldest go while each is past keep_ms or the log is over max_records; never
            // the newest, never one younger than the floor. Read oldest first, in pages, up to
            // the first record that stays.
            let mut cut = None;
            let mut after = i64::MIN;
            'pages: loop {
                let page = tx
                    .query("SELECT seq, at FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1000", &[&after])
                    .map_err(|e| io(&e))?;
                if page.is_empty() {
                    break;
                }
                for row in &page {
                    let (seq, at): (i64, i64) = (row.get(0), row.get(1));
                    let age = now.saturating_sub(at);
                    if seq == last || age < ms_i(floor_ms) || (age < ms_i(keep_ms) && count as u64 <= max_records) {
                        break 'pages;
                    }
                    cut = Some(seq);
                    count -= 1;
                    after = seq;
                }
            }
            let pruned = match cut {
                Some(cut) => tx.execute("DELETE FROM audit WHERE seq <= $1", &[&cut]).map_err(|e| io(&e))?,
                None => 0,
            };
            tx.commit().map_err(|e| io(&e))?;
            Ok(pruned as usize)
        })
    }

    // ---- audit

    pub fn audit_since(&self, seq: u64) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let Ok(from) = i64::try_from(seq) else { return Ok(Vec::new()) };
        self.audit_rows("SELECT seq, rec FROM audit WHERE seq > $1 ORDER BY seq", from)
    }

    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let mut rows = self.audit_rows("SELECT seq, rec FROM audit ORDER BY seq DESC LIMIT $1", n)?;
        rows.reverse();
        Ok(rows)
    }

    fn audit_rows(&self, sql: &'static str, arg: i64) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let path = self.name.clone();
        let rows: Vec<(i64, String)> = self.run("audit", move |c| {
            let rows = c.query(sql, &[&arg]).map_err(|e| db_io(&path, "audit", &e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        rows.into_iter().map(|(seq, rec)| Ok((seq as u64, self.decode_text("audit", seq.to_string(), &rec)?))).collect()
    }
}
