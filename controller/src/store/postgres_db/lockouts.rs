//! Device bars and per-user failure counters (lockouts) on PostgreSQL: a failure is counted
//! under the user's transaction lock, so concurrent failures on any nodes all count.

use super::connection::{db_io, decode_row, text, PgStore};
use crate::store::records::{Bar, Failures};
use crate::store::{StoreError, UnixMs, Write};

impl PgStore {
    // ---- bars and lockouts

    pub fn put_bar(&self, bar: &Bar) -> Result<(), StoreError> {
        self.apply(&[Write::PutBar(bar.clone())])
    }

    pub fn bar(&self, session: &str, device: &str) -> Result<Option<UnixMs>, StoreError> {
        let (path, s, d) = (self.name.clone(), session.to_string(), device.to_string());
        let until: Option<i64> = self.run("bars", move |c| {
            let row = c
                .query_opt("SELECT until FROM bars WHERE session = $1 AND device = $2", &[&s, &d])
                .map_err(|e| db_io(&path, "bars", &e))?;
            Ok(row.map(|r| r.get(0)))
        })?;
        Ok(until.map(|u| UnixMs(u as u64)))
    }

    pub fn list_bars(&self) -> Result<Vec<Bar>, StoreError> {
        self.get_all("bars", "SELECT session || '/' || device, rec FROM bars ORDER BY session, device")
    }

    /// Records a failed check: read, `update`, write, under the user's transaction lock, so
    /// that concurrent failures on any nodes all count.
    pub fn record_failure(
        &self,
        user: &str,
        update: impl Fn(Option<Failures>) -> Failures + Send + 'static,
    ) -> Result<Failures, StoreError> {
        let (path, user) = (self.name.clone(), user.to_string());
        self.run("failures", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "failures", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('handoff-failures:' || $1, 0))", &[&user])
                .map_err(|e| io(&e))?;
            let prev = tx
                .query_opt("SELECT rec FROM failures WHERE user_name = $1", &[&user])
                .map_err(|e| io(&e))?
                .map(|row| decode_row::<Failures>(&path, "failures", format!("{user:?}"), row.get(0)))
                .transpose()?;
            let next = update(prev);
            tx.execute(
                "INSERT INTO failures (user_name, rec) VALUES ($1, $2)
                 ON CONFLICT (user_name) DO UPDATE SET rec = EXCLUDED.rec",
                &[&user, &text(&next)],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))?;
            Ok(next)
        })
    }

    pub fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        self.get_one("failures", "SELECT rec FROM failures WHERE user_name = $1", user.to_string())
    }

    pub fn clear_failures(&self, user: &str) -> Result<bool, StoreError> {
        self.delete("failures", "DELETE FROM failures WHERE user_name = $1", user.to_string())
    }
}
