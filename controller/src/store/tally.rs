//! Counting what the store is asked, for the capacity model (issue #16 item 6): every call by
//! method, the records a call writes, and what the same calls cost on PostgreSQL
//! (transactions, statements, round trips) as `postgres_db/` makes them. Off unless a store is
//! made counting ([`super::Store::counting`]); `controller/tests/store_ops.rs` counts a
//! dual-leg call and a move with it.
//!
//! The PostgreSQL costs are a model of the SQL in `postgres_db/` (keep them together when the
//! SQL changes): a statement is prepared and then executed (two round trips: the `postgres`
//! crate prepares an SQL string before binding it), `BEGIN` and `COMMIT` are one round trip
//! each; a single statement outside a transaction is a transaction of its own (autocommit).

use super::{Store, Write};
use crate::timeline::Entry;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What store calls cost on PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgCost {
    /// Transactions: explicit ones, and single statements in autocommit.
    pub transactions: u64,
    /// Of those, the ones that write (each commit is a WAL flush; a read-only one is not).
    pub writing: u64,
    /// SQL statements (`BEGIN` and `COMMIT` not counted).
    pub statements: u64,
    /// Round trips between handoffd and the database.
    pub round_trips: u64,
}

impl PgCost {
    /// One statement in autocommit.
    const fn single(writes: bool) -> Self {
        PgCost { transactions: 1, writing: writes as u64, statements: 1, round_trips: 2 }
    }

    /// `BEGIN`, `statements`, `COMMIT`: a writing transaction.
    const fn transaction(statements: u64) -> Self {
        PgCost { transactions: 1, writing: 1, statements, round_trips: 2 * statements + 2 }
    }

    fn add(&mut self, o: PgCost) {
        self.transactions += o.transactions;
        self.writing += o.writing;
        self.statements += o.statements;
        self.round_trips += o.round_trips;
    }
}

/// What a counting store was asked so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls by [`super::Store`] method (the backend's name for it: `Store::audit` and
    /// `Store::apply` are both `apply_returning_seq`). A composite call (`locked_until`,
    /// `purge_ended_sessions`, …) counts as the calls it makes.
    pub calls: BTreeMap<&'static str, u64>,
    /// Records written, by kind: `snapshot`, `timeline entry`, `audit`, `ticket`, `bar`,
    /// `failures cleared`, `failure`, `ticket spent`.
    pub records: BTreeMap<&'static str, u64>,
    /// The same calls on PostgreSQL.
    pub pg: PgCost,
    /// Calls whose PostgreSQL cost is not modelled (administration, purges, timeline reads).
    pub unmodelled: u64,
}

impl Counts {
    pub fn calls(&self, method: &str) -> u64 {
        self.calls.get(method).copied().unwrap_or(0)
    }

    pub fn records(&self, kind: &str) -> u64 {
        self.records.get(kind).copied().unwrap_or(0)
    }

    /// Every call made.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// What was asked since `earlier` (a snapshot of the same store).
    pub fn since(&self, earlier: &Counts) -> Counts {
        let minus = |now: &BTreeMap<&'static str, u64>, then: &BTreeMap<&'static str, u64>| {
            now.iter()
                .map(|(k, v)| (*k, v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect::<BTreeMap<_, _>>()
        };
        Counts {
            calls: minus(&self.calls, &earlier.calls),
            records: minus(&self.records, &earlier.records),
            pg: PgCost {
                transactions: self.pg.transactions - earlier.pg.transactions,
                writing: self.pg.writing - earlier.pg.writing,
                statements: self.pg.statements - earlier.pg.statements,
                round_trips: self.pg.round_trips - earlier.pg.round_trips,
            },
            unmodelled: self.unmodelled - earlier.unmodelled,
        }
    }
}

/// The counters of a counting store (shared by its clones).
#[derive(Debug, Default)]
pub struct Tally(Mutex<Counts>);

impl Tally {
    pub fn counts(&self) -> Counts {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call of `method` (its PostgreSQL cost by [`cost_of`]).
    pub(super) fn call(&self, method: &'static str) {
        let mut c = self.lock();
        *c.calls.entry(method).or_default() += 1;
        match cost_of(method) {
            Some(cost) => c.pg.add(cost),
            None => c.unmodelled += 1,
        }
        let written = match method {
            "put_session" => Some("snapshot"),
            "put_ticket" => Some("ticket"),
            "put_bar" => Some("bar"),
            "record_failure" => Some("failure"),
            "clear_failures" => Some("failures cleared"),
            _ => None,
        };
        if let Some(kind) = written {
            *c.records.entry(kind).or_default() += 1;
        }
    }

    /// A decision's writes in one transaction (`postgres_db/writes.rs`: each write one
    /// statement; the first audit record also takes the audit lock and the last number).
    pub(super) fn batch(&self, writes: &[Write]) {
        let mut c = self.lock();
        *c.calls.entry("apply_returning_seq").or_default() += 1;
        let mut audit = false;
        for w in writes {
            let kind = match w {
                Write::PutTicket(_) => "ticket",
                Write::PutBar(_) => "bar",
                Write::ClearFailures(_) => "failures cleared",
                Write::Audit(_) => {
                    audit = true;
                    "audit"
                }
            };
            *c.records.entry(kind).or_default() += 1;
        }
        c.pg.add(PgCost::transaction(writes.len() as u64 + if audit { 2 } else { 0 }));
    }

    /// Timeline entries (`postgres_db/sessions.rs`: one transaction per run of one session's
    /// entries: its lock, its meta read, an insert per entry, the meta written back; an entry
    /// past [`crate::timeline::TIMELINE_MAX_ENTRIES`] would add two statements, not modelled).
    pub(super) fn timeline(&self, entries: &[(String, Entry)]) {
        let mut c = self.lock();
        *c.calls.entry("append_timeline").or_default() += 1;
        *c.records.entry("timeline entry").or_default() += entries.len() as u64;
        let mut i = 0;
        while i < entries.len() {
            let run = entries[i..].iter().take_while(|(s, _)| *s == entries[i].0).count();
            c.pg.add(PgCost::transaction(run as u64 + 3));
            i += run;
        }
    }

    /// A ticket presented (`postgres_db/tickets.rs`): the conditional `UPDATE` spends it; if it
    /// was spent already or unknown, a `SELECT` reads it (neither writes).
    pub(super) fn take(&self, spent_now: bool) {
        let mut c = self.lock();
        *c.calls.entry("take_ticket").or_default() += 1;
        if spent_now {
            *c.records.entry("ticket spent").or_default() += 1;
            c.pg.add(PgCost::single(true));
        } else {
            c.pg.add(PgCost::single(false));
            c.pg.add(PgCost::single(false));
        }
    }
}

impl Store {
    /// This store, counting every call from now on (it and its clones). A store already
    /// counting keeps its counts.
    pub fn counting(mut self) -> Store {
        self.tally.get_or_insert_with(Default::default);
        self
    }

    /// What a counting store was asked so far (`None`: not counting).
    pub fn counts(&self) -> Option<Counts> {
        self.tally.as_ref().map(|t| t.counts())
    }
}

/// The PostgreSQL cost of one call of `method`, for the calls that are one fixed piece of SQL.
fn cost_of(method: &str) -> Option<PgCost> {
    match method {
        "get_session" | "list_sessions" | "device" | "device_by_endpoint" | "device_by_number" | "list_devices"
        | "bar" | "failures" | "credential" | "get_user" | "list_users" | "list_tickets" | "list_bars"
        | "audit_since" | "audit_tail" | "timelines" => Some(PgCost::single(false)),
        "put_session" | "remove_session" | "clear_failures" => Some(PgCost::single(true)),
        // `apply` of one write.
        "put_ticket" | "put_bar" => Some(PgCost::transaction(1)),
        // Its lock, the read, the upsert.
        "record_failure" => Some(PgCost::transaction(3)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditAction, AuditRecord, Outcome, UnixMs};
    use crate::timeline::{Entry, Mark};

    fn entry(at: u64) -> Entry {
        Entry { at: UnixMs(at), mark: Mark::Note, text: "x".into() }
    }

    #[test]
    fn a_batch_a_timeline_and_a_replayed_ticket_cost_what_their_sql_makes() {
        let t = Tally::default();
        let audit = AuditRecord::new(UnixMs(1), "a", AuditAction::SessionEnd, Outcome::Done);
        t.batch(&[Write::ClearFailures("u".into()), Write::Audit(audit.clone()), Write::Audit(audit)]);
        let c = t.counts();
        // BEGIN, DELETE, lock, max(seq), 2 INSERT, COMMIT.
        assert_eq!(c.pg, PgCost { transactions: 1, writing: 1, statements: 5, round_trips: 12 });
        assert_eq!((c.records("audit"), c.records("failures cleared")), (2, 1));

        let t = Tally::default();
        t.timeline(&[("s1".into(), entry(1)), ("s1".into(), entry(2)), ("s2".into(), entry(3))]);
        // s1: lock, meta, 2 inserts, meta; s2: lock, meta, 1 insert, meta.
        assert_eq!(t.counts().pg, PgCost { transactions: 2, writing: 2, statements: 9, round_trips: 22 });

        let t = Tally::default();
        t.take(false);
        t.call("get_session");
        t.call("add_user");
        let c = t.counts();
        assert_eq!(c.pg, PgCost { transactions: 3, writing: 0, statements: 3, round_trips: 6 });
        assert_eq!((c.unmodelled, c.total_calls()), (1, 3));
        let later = {
            t.call("put_session");
            t.counts()
        };
        let d = later.since(&c);
        assert_eq!((d.calls("put_session"), d.records("snapshot"), d.pg.writing, d.total_calls()), (1, 1, 1, 1));
    }
}
