//! The store on PostgreSQL: the cluster backend of [`super::Store`] (`store: {backend: postgres,
//! url: …}`), shared by every handoffd of a cluster.
//!
//! The records are the same typed records as on sled, in the same versioned JSON envelope,
//! one table per sled tree. What must be exact under concurrency between nodes is decided by
//! the database, never by a read-modify-write in handoffd:
//! - a ticket is spent by one conditional `UPDATE … WHERE presented IS NULL` (of any number of
//!   concurrent presenters, on any nodes, exactly one gets the unspent record);
//! - a user's failure counter is read and written under a per-user transaction lock
//!   (`pg_advisory_xact_lock`), so concurrent wrong PINs on two nodes both count;
//! - audit sequence numbers are taken under one transaction lock, so they are committed in
//!   order and without holes (a reader following the log never skips one);
//! - a decision's writes ([`Write`]) go in one transaction.
//!
//! Every call is synchronous and runs its SQL on a connection owned by a worker thread of this
//! store (the `postgres` client may not be driven from inside the async runtime; the caller
//! blocks as it does on sled's fsync). A broken connection is reopened on the next call; while
//! the database is down every call fails with [`StoreError::Io`] naming the table, so a move is
//! refused rather than decided without being recorded. The URL's password never appears in an
//! error or a log line ([`redact`]).

use super::records::{AuditRecord, Bar, CredentialHash, Device, Failures, SessionSnapshot, TicketHash, TicketRecord};
use super::timeline::{Meta, AUDIT_MARGIN_MS, AUDIT_MERGE_MAX, TIMELINE_MAX_SESSIONS};
use super::{check_id, decode, encode, is_e164, Dump, NodeLease, StoreError, UnixMs, User, Write};
use crate::timeline::{Entry, Timeline, TIMELINE_HEAD, TIMELINE_MAX_ENTRIES};
use postgres::{Client, NoTls};
use serde::de::DeserializeOwned;
use std::sync::mpsc;
use std::sync::Mutex;

/// The schema, by version: `MIGRATIONS[n]` takes a database from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE users (name text PRIMARY KEY, rec text NOT NULL);
    CREATE TABLE devices (
        id text PRIMARY KEY,
        user_name text NOT NULL REFERENCES users (name),
        endpoint text UNIQUE,
        number text UNIQUE,
        rec text NOT NULL);
    CREATE TABLE credentials (user_name text PRIMARY KEY REFERENCES users (name), rec text NOT NULL);
    CREATE TABLE sessions (id text PRIMARY KEY, rec text NOT NULL);
    CREATE TABLE tickets (hash bytea PRIMARY KEY, expires bigint NOT NULL, presented bigint, rec text NOT NULL);
    CREATE TABLE bars (session text NOT NULL, device text NOT NULL, until bigint NOT NULL, rec text NOT NULL,
        PRIMARY KEY (session, device));
    CREATE TABLE failures (user_name text PRIMARY KEY, rec text NOT NULL);
    CREATE TABLE audit (seq bigint PRIMARY KEY, at bigint NOT NULL, rec text NOT NULL);
",
    "
    CREATE TABLE node_leases (node text PRIMARY KEY, holder text NOT NULL, expires timestamptz NOT NULL);
",
    "
    CREATE TABLE timeline (session text NOT NULL, seq bigint NOT NULL, rec text NOT NULL, PRIMARY KEY (session, seq));
    CREATE TABLE timeline_meta (session text PRIMARY KEY, last bigint NOT NULL, rec text NOT NULL);
    CREATE INDEX audit_at ON audit (at);
",
];

/// The database schema version this handoff writes (its own numbering: sled's layout is
/// [`super::SCHEMA_VERSION`]).
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Transaction-lock keys (`pg_advisory_xact_lock`): the audit sequence, and the schema set-up.
const AUDIT_LOCK: i64 = 0x4841_4e44_0001;
const SCHEMA_LOCK: i64 = 0x4841_4e44_0002;

/// `url` without its password, for errors and logs: `scheme://user:password@…` loses
/// `:password`, a `password=…` pair (key-value form) shows `***`.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        if let Some(at) = rest.rfind('@') {
            let user = rest[..at].split(':').next().unwrap_or("");
            return format!("{}{user}{}", &url[..scheme_end], &rest[at..]);
        }
        return url.to_string();
    }
    url.split(' ').map(|kv| if kv.starts_with("password=") { "password=***" } else { kv }).collect::<Vec<_>>().join(" ")
}

type Job = Box<dyn FnOnce(&mut Option<Client>, &str) + Send>;

/// The PostgreSQL backend. Cheap to share behind an `Arc`; one connection, one worker thread.
pub struct PgStore {
    /// The redacted URL: what errors name as the store.
    name: String,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.name).finish_non_exhaustive()
    }
}

fn connect(url: &str) -> Result<Client, postgres::Error> {
    Client::connect(url, NoTls)
}

/// One line for a database error: its message and, for a server error, its detail.
fn problem(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {d}", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let s = e.to_string();
            match std::error::Error::source(e) {
                Some(src) if !s.contains(&src.to_string()) => format!("{s}: {src}"),
                _ => s,
            }
        }
    }
}

impl PgStore {
    /// Connects, creates or migrates the schema, and starts the worker. A wrong URL, a refused
    /// password or a schema from a newer handoff is an error naming the store.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let name = redact(url);
        let open_err = |problem: String| StoreError::Open { path: name.clone(), problem };
        let (tx, rx) = mpsc::channel::<Job>();
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let (url, worker_name) = (url.to_string(), name.clone());
        // The client is made, used and dropped on the worker thread only: the `postgres`
        // client runs a runtime of its own, which may not start on a thread of handoffd's.
        std::thread::Builder::new()
            .name("handoff-store-pg".into())
            .spawn(move || {
                let mut client = match connect(&url) {
                    Ok(mut c) => match migrate(&mut c, &worker_name) {
                        Ok(()) => Some(c),
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    },
                    Err(e) => {
                        let _ = opened_tx.send(Err(StoreError::Open { path: worker_name, problem: problem(&e) }));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(()));
                for job in rx {
                    job(&mut client, &url);
                }
            })
            .map_err(|e| open_err(format!("cannot start its worker thread: {e}")))?;
        opened_rx.recv().unwrap_or_else(|_| Err(open_err("its worker thread ended while connecting".into())))?;
        Ok(PgStore { name, jobs: Mutex::new(tx) })
    }

    /// The store's name in errors: the URL without its password.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn io(&self, tree: &'static str, problem: String) -> StoreError {
        StoreError::Io { path: self.name.clone(), tree, problem }
    }

    /// Runs `f` on the worker's connection (reconnecting first if it was lost) and waits.
    fn run<T: Send + 'static>(
        &self,
        tree: &'static str,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let name = self.name.clone();
        let job: Job = Box::new(move |slot, url| {
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = connect(url).ok();
            }
            let result = match slot.as_mut() {
                Some(client) => f(client),
                None => Err(StoreError::Io { path: name, tree, problem: "database unreachable".into() }),
            };
            if slot.as_ref().is_some_and(Client::is_closed) {
                *slot = None;
            }
            let _ = reply_tx.send(result);
        });
        let sent = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        if sent.is_err() {
            return Err(self.io(tree, "the store's worker thread is gone".into()));
        }
        reply_rx.recv().unwrap_or_else(|_| Err(self.io(tree, "the store's worker thread is gone".into())))
    }

    // ---- users

    pub fn add_user(&self, name: &str, now: UnixMs) -> Result<User, StoreError> {
        check_id(&self.name, "user name", name)?;
        let user = User { name: name.into(), created: now };
        let (path, rec, n) = (self.name.clone(), text(&user), name.to_string());
        self.run("users", move |c| {
            let rows = c
                .execute("INSERT INTO users (name, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&n, &rec])
                .map_err(|e| db_io(&path, "users", &e))?;
            if rows == 0 {
                return Err(StoreError::UserExists { path, user: n });
            }
            Ok(())
        })?;
        Ok(user)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get_one("users", "SELECT rec FROM users WHERE name = $1", name.to_string())
    }

    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.get_all("users", "SELECT name, rec FROM users ORDER BY name")
    }

    // ---- devices

    pub fn add_device(&self, device: &Device) -> Result<(), StoreError> {
        let path = self.name.clone();
        check_id(&path, "device id", &device.id)?;
        check_id(&path, "user name", &device.user)?;
        if device.name.is_empty() || device.name.len() > 128 || device.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                path,
                what: "device name",
                value: device.name.clone(),
                problem: "must be 1 to 128 bytes without control characters",
            });
        }
        if let Some(e) = &device.data_endpoint {
            check_id(&path, "endpoint", e)?;
        }
        if let Some(n) = &device.carrier_number {
            if !is_e164(n) {
                return Err(StoreError::Invalid {
                    path,
                    what: "number",
                    value: n.clone(),
                    problem: "not E.164 (+ and 2 to 15 digits)",
                });
            }
        }
        let d = device.clone();
        let rec = text(device);
        self.run("devices", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "devices", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            if tx.query_opt("SELECT 1 FROM users WHERE name = $1 FOR SHARE", &[&d.user]).map_err(|e| io(&e))?.is_none()
            {
                return Err(StoreError::NoSuchUser { path, user: d.user });
            }
            if tx.query_opt("SELECT 1 FROM devices WHERE id = $1", &[&d.id]).map_err(|e| io(&e))?.is_some() {
                return Err(StoreError::DeviceExists { path, device: d.id });
            }
            for (what, column, value) in
                [("endpoint", "endpoint", &d.data_endpoint), ("number", "number", &d.carrier_number)]
            {
                if let Some(value) = value {
                    let sql = format!("SELECT id FROM devices WHERE {column} = $1");
                    if let Some(row) = tx.query_opt(sql.as_str(), &[value]).map_err(|e| io(&e))? {
                        return Err(StoreError::Taken { path, what, value: value.clone(), device: row.get(0) });
                    }
                }
            }
            tx.execute(
                "INSERT INTO devices (id, user_name, endpoint, number, rec) VALUES ($1, $2, $3, $4, $5)",
                &[&d.id, &d.user, &d.data_endpoint, &d.carrier_number, &rec],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })
    }

    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE id = $1", id.to_string())
    }

    pub fn device_by_endpoint(&self, endpoint: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE endpoint = $1", endpoint.to_string())
    }

    pub fn device_by_number(&self, number: &str) -> Result<Option<Device>, StoreError> {
        self.get_one("devices", "SELECT rec FROM devices WHERE number = $1", number.to_string())
    }

    pub fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.get_all("devices", "SELECT id, rec FROM devices ORDER BY id")
    }

    pub fn remove_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let (path, id) = (self.name.clone(), id.to_string());
        let rec: Option<String> = self.run("devices", move |c| {
            let row = c
                .query_opt("DELETE FROM devices WHERE id = $1 RETURNING rec", &[&id])
                .map_err(|e| db_io(&path, "devices", &e))?;
            Ok(row.map(|r| r.get(0)))
        })?;
        rec.map(|r| self.decode_text("devices", id_key(&r), &r)).transpose()
    }

    // ---- credentials

    pub fn set_credential(&self, user: &str, hash: &CredentialHash) -> Result<(), StoreError> {
        let (path, user, rec) = (self.name.clone(), user.to_string(), text(hash));
        self.run("credentials", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "credentials", e);
            let mut tx = c.transaction().map_err(|e| io(&e))?;
            if tx.query_opt("SELECT 1 FROM users WHERE name = $1 FOR SHARE", &[&user]).map_err(|e| io(&e))?.is_none() {
                return Err(StoreError::NoSuchUser { path, user });
            }
            tx.execute(
                "INSERT INTO credentials (user_name, rec) VALUES ($1, $2)
                 ON CONFLICT (user_name) DO UPDATE SET rec = EXCLUDED.rec",
                &[&user, &rec],
            )
            .map_err(|e| io(&e))?;
            tx.commit().map_err(|e| io(&e))
        })
    }

    pub fn credential(&self, user: &str) -> Result<Option<CredentialHash>, StoreError> {
        self.get_one("credentials", "SELECT rec FROM credentials WHERE user_name = $1", user.to_string())
    }

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
        let (path, id) = (self.name.clone(), id.to_string());
        self.run("sessions", move |c| {
            c.execute("DELETE FROM sessions WHERE id = $1", &[&id])
                .map(|n| n > 0)
                .map_err(|e| db_io(&path, "sessions", &e))
        })
    }

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
                let mut t: TicketRecord = self.decode_text("tickets", super::records::hex(&hash), &rec)?;
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

    /// The same retention rule as on sled ([`super::Store::prune_audit`]), in one transaction.
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
            let prev =
                match tx.query_opt("SELECT rec FROM failures WHERE user_name = $1", &[&user]).map_err(|e| io(&e))? {
                    Some(row) => {
                        let rec: String = row.get(0);
                        Some(decode::<Failures>(rec.as_bytes()).map_err(|problem| StoreError::Corrupt {
                            path: path.clone(),
                            tree: "failures",
                            key: format!("{user:?}"),
                            problem: problem.to_string(),
                        })?)
                    }
                    None => None,
                };
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
        let (path, user) = (self.name.clone(), user.to_string());
        self.run("failures", move |c| {
            c.execute("DELETE FROM failures WHERE user_name = $1", &[&user])
                .map(|n| n > 0)
                .map_err(|e| db_io(&path, "failures", &e))
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
                        let presented = t.presented.map(ms);
                        tx.execute(
                            "INSERT INTO tickets (hash, expires, presented, rec) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (hash) DO UPDATE SET expires = EXCLUDED.expires,
                                presented = EXCLUDED.presented, rec = EXCLUDED.rec",
                            &[
                                &t.hash.0.to_vec(),
                                &ms(t.expires),
                                &presented,
                                &text(&TicketRecord { presented: None, ..t.clone() }),
                            ],
                        )
                        .map_err(|e| io(&e))?;
                    }
                    Write::PutBar(b) => {
                        tx.execute(
                            "INSERT INTO bars (session, device, until, rec) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (session, device) DO UPDATE SET until = EXCLUDED.until, rec = EXCLUDED.rec",
                            &[&b.session, &b.device, &ms(b.until), &text(b)],
                        )
                        .map_err(|e| io(&e))?;
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
                        tx.execute(
                            "INSERT INTO audit (seq, at, rec) VALUES ($1, $2, $3)",
                            &[&seq, &ms(r.at), &text(r)],
                        )
                        .map_err(|e| io(&e))?;
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

    // ---- session timelines: the same bounds as on sled (`super::timeline`)

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
                Some(row) => decode(row.get::<_, String>(0).as_bytes()).map_err(|problem| StoreError::Corrupt {
                    path: path.clone(),
                    tree: "timeline_meta",
                    key: format!("{session:?}"),
                    problem: problem.to_string(),
                })?,
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
                tx.execute(
                    "INSERT INTO tickets (hash, expires, presented, rec) VALUES ($1, $2, $3, $4)",
                    &[
                        &t.hash.0.to_vec(),
                        &ms(t.expires),
                        &t.presented.map(ms),
                        &text(&TicketRecord { presented: None, ..t.clone() }),
                    ],
                )
                .map_err(|e| io(&e))?;
            }
            for b in &d.bars {
                tx.execute(
                    "INSERT INTO bars (session, device, until, rec) VALUES ($1, $2, $3, $4)",
                    &[&b.session, &b.device, &ms(b.until), &text(b)],
                )
                .map_err(|e| io(&e))?;
            }
            for (user, f) in &d.failures {
                tx.execute("INSERT INTO failures (user_name, rec) VALUES ($1, $2)", &[user, &text(f)])
                    .map_err(|e| io(&e))?;
            }
            for (seq, r) in &d.audit {
                let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
                tx.execute("INSERT INTO audit (seq, at, rec) VALUES ($1, $2, $3)", &[&seq, &ms(r.at), &text(r)])
                    .map_err(|e| io(&e))?;
            }
            tx.commit().map_err(|e| io(&e))
        })
    }

    // ---- node ownership

    /// One statement decides: the row is (re)written only if free, ours, or run out.
    pub fn hold_node(&self, node: &str, holder: &str, lease_ms: u64) -> Result<NodeLease, StoreError> {
        let (path, node, holder, lease) = (self.name.clone(), node.to_string(), holder.to_string(), ms_i(lease_ms));
        self.run("node_leases", move |c| {
            let io = |e: &postgres::Error| db_io(&path, "node_leases", e);
            let won = c
                .query_opt(
                    "INSERT INTO node_leases (node, holder, expires)
                         VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (node) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
                         WHERE node_leases.holder = EXCLUDED.holder OR node_leases.expires < now()
                     RETURNING holder",
                    &[&node, &holder, &lease],
                )
                .map_err(|e| io(&e))?;
            if won.is_some() {
                return Ok(NodeLease::Held);
            }
            let row = c
                .query_opt(
                    "SELECT holder, greatest(0, (extract(epoch FROM expires - now()) * 1000))::bigint
                     FROM node_leases WHERE node = $1",
                    &[&node],
                )
                .map_err(|e| io(&e))?;
            Ok(match row {
                Some(r) => NodeLease::HeldBy { holder: r.get(0), remaining_ms: r.get::<_, i64>(1).max(0) as u64 },
                // released between the two statements: the next call takes it
                None => NodeLease::HeldBy { holder: "nobody".into(), remaining_ms: 0 },
            })
        })
    }

    pub fn release_node(&self, node: &str, holder: &str) -> Result<(), StoreError> {
        let (path, node, holder) = (self.name.clone(), node.to_string(), holder.to_string());
        self.run("node_leases", move |c| {
            c.execute("DELETE FROM node_leases WHERE node = $1 AND holder = $2", &[&node, &holder])
                .map(drop)
                .map_err(|e| db_io(&path, "node_leases", &e))
        })
    }

    // ---- helpers

    fn get_one<T: DeserializeOwned + 'static>(
        &self,
        tree: &'static str,
        sql: &'static str,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let path = self.name.clone();
        let k = key.clone();
        let rec: Option<String> = self.run(tree, move |c| {
            let row = c.query_opt(sql, &[&k]).map_err(|e| db_io(&path, tree, &e))?;
            Ok(row.map(|r| r.get(0)))
        })?;
        rec.map(|r| self.decode_text(tree, format!("{key:?}"), &r)).transpose()
    }

    /// `sql` selects (key as text, rec).
    fn get_all<T: DeserializeOwned>(&self, tree: &'static str, sql: &'static str) -> Result<Vec<T>, StoreError> {
        let path = self.name.clone();
        let rows: Vec<(String, String)> = self.run(tree, move |c| {
            let rows = c.query(sql, &[]).map_err(|e| db_io(&path, tree, &e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        rows.into_iter().map(|(k, rec)| self.decode_text(tree, format!("{k:?}"), &rec)).collect()
    }

    fn decode_text<T: DeserializeOwned>(&self, tree: &'static str, key: String, rec: &str) -> Result<T, StoreError> {
        decode(rec.as_bytes()).map_err(|p| StoreError::Corrupt {
            path: self.name.clone(),
            tree,
            key,
            problem: p.to_string(),
        })
    }
}

/// Creates the schema or brings it up to [`PG_SCHEMA_VERSION`], under a transaction lock (two
/// nodes starting together migrate once); a newer schema is refused.
fn migrate(client: &mut Client, name: &str) -> Result<(), StoreError> {
    let io = |e: postgres::Error| StoreError::Io { path: name.to_string(), tree: "meta", problem: problem(&e) };
    let mut tx = client.transaction().map_err(io)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).map_err(io)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS handoff_meta (key text PRIMARY KEY, value bigint NOT NULL)")
        .map_err(io)?;
    let found: i64 = tx
        .query_opt("SELECT value FROM handoff_meta WHERE key = 'schema'", &[])
        .map_err(io)?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if found > i64::from(PG_SCHEMA_VERSION) {
        return Err(StoreError::NewerSchema { path: name.to_string(), found: found as u32, ours: PG_SCHEMA_VERSION });
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.batch_execute(sql).map_err(io)?;
    }
    tx.execute(
        "INSERT INTO handoff_meta (key, value) VALUES ('schema', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&i64::from(PG_SCHEMA_VERSION)],
    )
    .map_err(io)?;
    tx.commit().map_err(io)
}

fn text<T: serde::Serialize>(record: &T) -> String {
    // encode() writes JSON: always UTF-8
    String::from_utf8(encode(record)).unwrap_or_default()
}

fn db_io(path: &str, tree: &'static str, e: &postgres::Error) -> StoreError {
    StoreError::Io { path: path.to_string(), tree, problem: problem(e) }
}

fn id_key(rec: &str) -> String {
    decode::<Device>(rec.as_bytes()).map(|d| format!("{:?}", d.id)).unwrap_or_else(|_| "?".into())
}

fn ms(t: UnixMs) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn ms_i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn the_password_never_leaves_the_url() {
        assert_eq!(redact("postgres://handoff:s3cret@db:5432/handoff"), "postgres://handoff@db:5432/handoff");
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact("host=db user=u password=s3cret dbname=x"), "host=db user=u password=*** dbname=x");
        assert!(!redact("postgres://a:b:c@h/d").contains('b'));
    }
}
