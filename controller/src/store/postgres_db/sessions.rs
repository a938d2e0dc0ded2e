//! Session snapshots and session timelines on PostgreSQL; a timeline keeps the same bounds as
//! on sled (`crate::store::timeline`) and is read with the session's audit records merged in.

use super::connection::{db_io, decode_row, ms, ms_i, text, PgStore};
use crate::store::records::{AuditRecord, SessionSnapshot};
use crate::store::timeline::{Meta, AUDIT_MARGIN_MS, AUDIT_MERGE_MAX, TIMELINE_MAX_SESSIONS};
use crate::store::{check_id, decode, StoreError, UnixMs};
use crate::timeline::{Entry, Timeline, TIMELINE_HEAD, TIMELINE_MAX_ENTRIES};

impl PgStore {
    // ---- sessions

    pub fn put_session(&self, s: &SessionSnapshot) -> Result<(), StoreError> {
        check_id(&self.name, "session id", &s.id)?;
        let (path, id, rec) = (self.name.clone(), s.id.clone(), text(s));
        self.run("sessions", move |c| {
            c.execute(
                "INSERT INTO sessions (id, rec) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET rec = EXCLUDED.rec",
                &[&id, &rec],
            )
            .map(drop)
            .map_err(|e| db_io(&path, "sessions", &e))
        })
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionSnapshot>, StoreError> {
        self.get_one("sessions", "SELECT rec FROM sessions WHERE id = $1", id.to_string())
    }

    pub fn list_sessions(&self) -> Result<Vec<SessionSnapshot>, StoreError> {
        self.get_all("sessions", "SELECT id, rec FROM sessions ORDER BY id")
    }

    pub fn remove_session(&self, id: &str) -> Result<bool, StoreError> {
        self.delete("sessions", "DELETE FROM sessions WHERE id = $1", id.to_string())
    }

    // ---- session timelines: the same bounds as on sled (`crate::store::timeline`)

    pub fn append_timeline(&self, entries: &[(String, Entry)]) -> Result<(), StoreError> {
        let mut first_err = None;
        let mut i = 0;
        while i < entries.len() {
            let session = entries[i].0.clone();
            let run: Vec<Entry> =
                entries[i..].iter().take_while(|(s, _)| *s == session).map(|(_, e)| e.clone()).collect();
            i += run.len();
            if let Err(e) = self.append_run(session, run) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn append_run(&self, session: String, entries: Vec<Entry>) -> Result<(), StoreError> {
        check_id(&self.name, "session id", &session)?;
        let path = self.name.clone();
        self.run("timeline", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "timeline", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('handoff-timeline:' || $1, 0))", &[&session])
                .map_err(|e| io(&e))?;
            let mut meta: Meta = match tx
                .query_opt("SELECT rec FROM timeline_meta WHERE session = $1", &[&session])
                .map_err(|e| io(&e))?
            {
                Some(row) => decode_row(&path, "timeline_meta", format!("{session:?}"), row.get(0))?,
                None => Meta::default(),
            };
            for e in &entries {
                let seq = ms_i(meta.next);
                tx.execute("INSERT INTO timeline (session, seq, rec) VALUES ($1, $2, $3)", &[&session, &seq, &text(e)])
                    .map_err(|e| io(&e))?;
                meta.next += 1;
                meta.kept += 1;
                meta.last = meta.last.max(e.at);
                if meta.kept > TIMELINE_MAX_ENTRIES {
                    // The oldest entry after the head goes.
                    let victim = tx
                        .query_opt(
                            "SELECT seq, rec FROM timeline WHERE session = $1 ORDER BY seq OFFSET $2 LIMIT 1",
                            &[&session, &ms_i(TIMELINE_HEAD)],
                        )
                        .map_err(|e| io(&e))?;
                    if let Some(row) = victim {
                        match decode::<Entry>(row.get::<_, String>(1).as_bytes()) {
                            Ok(old) => meta.dropped.add(&old),
                            Err(_) => meta.dropped.count += 1,
                        }
                        tx.execute(
                            "DELETE FROM timeline WHERE session = $1 AND seq = $2",
                            &[&session, &row.get::<_, i64>(0)],
                        )
                        .map_err(|e| io(&e))?;
                        meta.kept -= 1;
                    }
                }
            }
            tx.execute(
                "INSERT INTO timeline_meta (session, last, rec) VALUES ($1, $2, $3)
                 ON CONFLICT (session) DO UPDATE SET last = EXCLUDED.last, rec = EXCLUDED.rec",
                &[&session, &ms(meta.last), &text(&meta)],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })
    }

    pub fn timeline(&self, id: &str) -> Result<Option<Timeline>, StoreError> {
        if check_id(&self.name, "session id", id).is_err() {
            return Ok(None);
        }
        let (path, session) = (self.name.clone(), id.to_string());
        let found: Option<(String, Vec<String>)> = self.run("timeline", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "timeline", e);
            let Some(meta) =
                c.query_opt("SELECT rec FROM timeline_meta WHERE session = $1", &[&session]).map_err(|e| io(&e))?
            else {
                return Ok(None);
            };
            let rows =
                c.query("SELECT rec FROM timeline WHERE session = $1 ORDER BY seq", &[&session]).map_err(|e| io(&e))?;
            Ok(Some((meta.get(0), rows.iter().map(|r| r.get(0)).collect())))
        })?;
        let Some((meta, rows)) = found else { return Ok(None) };
        let meta: Meta = self.decode_text("timeline_meta", format!("{id:?}"), &meta)?;
        let entries = rows
            .iter()
            .map(|r| self.decode_text("timeline", format!("{id:?}"), r))
            .collect::<Result<Vec<Entry>, _>>()?;
        let mut t = Timeline { session: id.to_string(), entries, dropped: meta.dropped, until: None };
        if let Some((from, to)) = t.span() {
            let (path, lo, hi) =
                (self.name.clone(), ms(from).saturating_sub(ms_i(AUDIT_MARGIN_MS)), ms(to.plus_ms(AUDIT_MARGIN_MS)));
            let rows: Vec<String> = self.run("audit", move |c| {
                let rows = c
                    .query(
                        "SELECT rec FROM audit WHERE at BETWEEN $1 AND $2 ORDER BY seq LIMIT $3",
                        &[&lo, &hi, &(AUDIT_MERGE_MAX as i64)],
                    )
                    .map_err(|e| db_io(&path, "audit", &e))?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })?;
            let audit = rows
                .iter()
                .map(|r| self.decode_text("audit", "?".into(), r))
                .collect::<Result<Vec<AuditRecord>, _>>()?;
            t.merge_audit(&audit);
        }
        Ok(Some(t))
    }

    pub fn timelines(&self) -> Result<Vec<(String, u64, UnixMs)>, StoreError> {
        let path = self.name.clone();
        let rows: Vec<(String, String)> = self.run("timeline_meta", move |c| {
            let rows = c
                .query("SELECT session, rec FROM timeline_meta ORDER BY session", &[])
                .map_err(|e| db_io(&path, "timeline_meta", &e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        rows.into_iter()
            .map(|(id, rec)| {
                let m: Meta = self.decode_text("timeline_meta", format!("{id:?}"), &rec)?;
                Ok((id, m.kept, m.last))
            })
            .collect()
    }

    pub fn purge_timelines(&self, now: UnixMs, keep_ms: u64) -> Result<usize, StoreError> {
        let mut all = self.timelines()?;
        all.sort_by_key(|(_, _, last)| *last);
        let over = all.len().saturating_sub(TIMELINE_MAX_SESSIONS);
        let gone: Vec<String> = all
            .iter()
            .enumerate()
            .take_while(|(i, (_, _, last))| *i < over || last.plus_ms(keep_ms) <= now)
            .map(|(_, (id, _, _))| id.clone())
            .collect();
        let (path, n) = (self.name.clone(), gone.len());
        if n == 0 {
            return Ok(0);
        }
        self.run("timeline", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "timeline", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            tx.execute("DELETE FROM timeline WHERE session = ANY($1)", &[&gone]).map_err(|e| io(&e))?;
            tx.execute("DELETE FROM timeline_meta WHERE session = ANY($1)", &[&gone]).map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })?;
        Ok(n)
    }
}
