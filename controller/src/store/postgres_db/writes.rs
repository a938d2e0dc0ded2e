//! Writes of several tables in one transaction on PostgreSQL: a decision's [`Write`]s (audit
//! numbers taken under one lock, in order, without holes), the whole-store import, and the
//! ticket, bar and audit rows both write.

use super::connection::{db_io, ms, text, PgStore};
use super::schema::AUDIT_LOCK;
use crate::store::records::{AuditRecord, Bar, TicketRecord};
use crate::store::{check_id, Dump, StoreError, Write};
use postgres::Transaction;

impl PgStore {
    // ---- batches

    /// A decision's writes in one transaction; returns the last audit sequence number written.
    pub fn apply_returning_seq(&self, writes: &[Write]) -> Result<Option<u64>, StoreError> {
        for w in writes {
            if let Write::PutBar(b) = w {
                check_id(&self.name, "session id", &b.session)?;
                check_id(&self.name, "device id", &b.device)?;
            }
        }
        let (path, writes) = (self.name.clone(), writes.to_vec());
        self.run("batch", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "batch", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            let mut next = None;
            let mut last = None;
            for w in &writes {
                match w {
                    Write::PutTicket(t) => {
                        insert_ticket(&mut tx, t, Existing::Replace).map_err(|e| io(&e))?;
                    }
                    Write::PutBar(b) => {
                        insert_bar(&mut tx, b, Existing::Replace).map_err(|e| io(&e))?;
                    }
                    Write::ClearFailures(user) => {
                        tx.execute("DELETE FROM failures WHERE user_name = $1", &[user]).map_err(|e| io(&e))?;
                    }
                    Write::Audit(r) => {
                        let seq = match next {
                            Some(s) => s,
                            None => {
                                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).map_err(|e| io(&e))?;
                                let row =
                                    tx.query_one("SELECT coalesce(max(seq), 0) FROM audit", &[]).map_err(|e| io(&e))?;
                                row.get::<_, i64>(0) + 1
                            }
                        };
                        insert_audit(&mut tx, seq, r).map_err(|e| io(&e))?;
                        last = Some(seq as u64);
                        next = Some(seq + 1);
                    }
                }
            }
            tx.commit().map_err(|e| io(&e))?;
            Ok(last)
        })
    }

    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.apply_returning_seq(writes).map(drop)
    }

    // ---- whole-store copies

    /// Writes a dump into empty tables, in one transaction, keeping audit numbers.
    pub fn import(&self, dump: &Dump) -> Result<(), StoreError> {
        let (path, d) = (self.name.clone(), dump.clone());
        self.run("import", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "import", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            let row = tx
                .query_one("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM audit)", &[])
                .map_err(|e| io(&e))?;
            if row.get::<_, i64>(0) > 0 {
                return Err(StoreError::Invalid {
                    path,
                    what: "import target",
                    value: "the database".into(),
                    problem: "already holds users or audit records; import into an empty one",
                });
            }
            for u in &d.users {
                tx.execute("INSERT INTO users (name, rec) VALUES ($1, $2)", &[&u.name, &text(u)])
                    .map_err(|e| io(&e))?;
            }
            for dev in &d.devices {
                tx.execute(
                    "INSERT INTO devices (id, user_name, endpoint, number, rec) VALUES ($1, $2, $3, $4, $5)",
                    &[&dev.id, &dev.user, &dev.data_endpoint, &dev.carrier_number, &text(dev)],
                )
                .map_err(|e| io(&e))?;
            }
            for (user, hash) in &d.credentials {
                tx.execute("INSERT INTO credentials (user_name, rec) VALUES ($1, $2)", &[user, &text(hash)])
                    .map_err(|e| io(&e))?;
            }
            for s in &d.sessions {
                tx.execute("INSERT INTO sessions (id, rec) VALUES ($1, $2)", &[&s.id, &text(s)]).map_err(|e| io(&e))?;
            }
            for t in &d.tickets {
                insert_ticket(&mut tx, t, Existing::Refuse).map_err(|e| io(&e))?;
            }
            for b in &d.bars {
                insert_bar(&mut tx, b, Existing::Refuse).map_err(|e| io(&e))?;
            }
            for (user, f) in &d.failures {
                tx.execute("INSERT INTO failures (user_name, rec) VALUES ($1, $2)", &[user, &text(f)])
                    .map_err(|e| io(&e))?;
            }
            for (seq, r) in &d.audit {
                let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
                insert_audit(&mut tx, seq, r).map_err(|e| io(&e))?;
            }
            tx.commit().map_err(|e| io(&e))
        })
    }
}

/// What writing a row does to a row of the same key: replace it (a decision's writes), or fail
/// (the import, into empty tables).
#[derive(Clone, Copy)]
enum Existing {
    Replace,
    Refuse,
}

/// A ticket's row; whether it was presented is a column of its own (the record says `None`).
fn insert_ticket(tx: &mut Transaction<'_>, t: &TicketRecord, existing: Existing) -> Result<u64, postgres::Error> {
    let sql = match existing {
        Existing::Replace => {
            "INSERT INTO tickets (hash, expires, presented, rec) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET expires = EXCLUDED.expires,
                presented = EXCLUDED.presented, rec = EXCLUDED.rec"
        }
        Existing::Refuse => "INSERT INTO tickets (hash, expires, presented, rec) VALUES ($1, $2, $3, $4)",
    };
    let rec = text(&TicketRecord { presented: None, ..t.clone() });
    tx.execute(sql, &[&t.hash.0.to_vec(), &ms(t.expires), &t.presented.map(ms), &rec])
}

fn insert_bar(tx: &mut Transaction<'_>, b: &Bar, existing: Existing) -> Result<u64, postgres::Error> {
    let sql = match existing {
        Existing::Replace => {
            "INSERT INTO bars (session, device, until, rec) VALUES ($1, $2, $3, $4)
             ON CONFLICT (session, device) DO UPDATE SET until = EXCLUDED.until, rec = EXCLUDED.rec"
        }
        Existing::Refuse => "INSERT INTO bars (session, device, until, rec) VALUES ($1, $2, $3, $4)",
    };
    tx.execute(sql, &[&b.session, &b.device, &ms(b.until), &text(b)])
}

fn insert_audit(tx: &mut Transaction<'_>, seq: i64, r: &AuditRecord) -> Result<u64, postgres::Error> {
    tx.execute("INSERT INTO audit (seq, at, rec) VALUES ($1, $2, $3)", &[&seq, &ms(r.at), &text(r)])
}
