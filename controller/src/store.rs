//! The store: handoff's durable state, a small typed layer over sled 0.34 (one box) or
//! PostgreSQL (a cluster).
//!
//! It holds users, their devices, credential hashes, session snapshots, move tickets,
//! per-session device bars, per-user failure counters and lockouts, and an append-only audit
//! log, and each session's timeline (bounded: [`crate::timeline::TIMELINE_MAX_ENTRIES`]).
//! Records are the plain serde types of [`records`], each kept as JSON inside a versioned
//! envelope `{"v":1,"r":{..}}`; a record of an unknown version is an error that names its tree
//! and key, never a silent skip. Nothing outside this module names a sled type, so the
//! database underneath can be replaced.
//!
//! # Durability
//! A write that authorizes an action is on disk (`flush`, i.e. fsync) before the call returns,
//! so the caller may act on it at once: [`Store::put_ticket`], [`Store::take_ticket`],
//! [`Store::put_bar`], [`Store::record_failure`], [`Store::clear_failures`], [`Store::audit`],
//! [`Store::apply`], and the administrative writes ([`Store::add_user`], [`Store::add_device`],
//! [`Store::remove_device`], [`Store::set_credential`]). Session snapshots
//! ([`Store::put_session`], [`Store::remove_session`]) and the purges are *not* flushed: they
//! change often, the PBX is their source of truth, and sled writes them out within its
//! background flush period (500 ms); call [`Store::flush`] where that matters.
//!
//! # Blocking
//! Every call may block on the disk (a flush is an fsync). From async code, call the store from
//! `tokio::task::spawn_blocking` (the credential [`crate::credentials::Verifier`] does).
//!
//! # Exclusive access
//! sled locks the store directory: one process at a time. A second opener gets
//! [`StoreError::InUse`] ("store PATH is in use (is handoffd running?)").
//!
//! # Files
//! - `store.rs` (this file): [`Store`], the one interface, calling whichever backend it has;
//!   [`StoreError`], the record envelope, a decision's writes ([`Write`]) and whole-store
//!   copies ([`Dump`]);
//! - `store/records.rs`: the records, plain serde data;
//! - `store/sled_db.rs` + `store/sled_db/`: the sled backend (`accounts.rs`, `tickets.rs`,
//!   `lockouts.rs`, `audit.rs`); `store/timeline.rs`: session timelines on sled and the bounds
//!   both backends keep;
//! - `store/postgres_db.rs` + `store/postgres_db/`: the PostgreSQL backend (`connection.rs`,
//!   `schema.rs`, `accounts.rs`, `sessions.rs`, `tickets.rs`, `lockouts.rs`, `audit.rs`,
//!   `writes.rs`, `nodes.rs`: each one's concern in `postgres_db.rs`);
//! - `store/tally.rs`: a store's calls counted, and their cost on PostgreSQL (capacity model);
//! - `store/conformance.rs`: the cases every backend passes; `store/config_devices.rs`:
//!   `handoffd.yaml` against the store's devices; `store/tests.rs`: the unit tests on sled.

pub mod config_devices;
pub mod conformance;
mod postgres_db;
pub mod records;
mod sled_db;
pub mod tally;
mod timeline;

pub use postgres_db::redact as redact_url;
use postgres_db::PgStore;
use sled_db::SledStore;
pub use sled_db::STORE_CACHE_BYTES;

pub use records::{
    AuditAction, AuditRecord, Bar, CredentialHash, Device, Failures, LegPath, Outcome, SessionSnapshot, SessionState,
    TicketHash, TicketRecord, UnixMs, User,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The version written in every record's envelope; reading another one is an error.
pub const RECORD_VERSION: u32 = 1;

/// The store's layout version, kept under `meta/schema`.
pub const SCHEMA_VERSION: u32 = 1;

/// A store error: one line naming the store, and the tree and key or value concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another process (handoffd, or another handoffctl) holds the store's lock.
    #[error("store {path} is in use (is handoffd running?)")]
    InUse { path: String },
    /// The database could not be opened or recovered.
    #[error("store {path}: cannot open: {problem}")]
    Open { path: String, problem: String },
    /// The store was written by a newer handoff.
    #[error("store {path}: schema version {found} is newer than this handoff's ({ours})")]
    NewerSchema { path: String, found: u32, ours: u32 },
    /// A read, write or flush failed.
    #[error("store {path}: {tree}: {problem}")]
    Io { path: String, tree: &'static str, problem: String },
    /// A stored record could not be decoded.
    #[error("store {path}: {tree} key {key}: {problem}")]
    Corrupt { path: String, tree: &'static str, key: String, problem: String },
    /// The caller gave a value the store does not accept (an empty name, a bad number).
    #[error("store {path}: invalid {what} {value:?}: {problem}")]
    Invalid { path: String, what: &'static str, value: String, problem: &'static str },
    /// `add_user` of a name that exists.
    #[error("store {path}: user {user} already exists")]
    UserExists { path: String, user: String },
    /// The user named does not exist.
    #[error("store {path}: no user {user}")]
    NoSuchUser { path: String, user: String },
    /// `add_device` of an id that exists.
    #[error("store {path}: device {device} already exists")]
    DeviceExists { path: String, device: String },
    /// `add_device` with an endpoint or number another device has.
    #[error("store {path}: {what} {value} already belongs to device {device}")]
    Taken { path: String, what: &'static str, value: String, device: String },
}

/// One write of a batch given to [`Store::apply`]: what a move decision asks to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Issue a ticket.
    PutTicket(TicketRecord),
    /// Bar a device from a session.
    PutBar(Bar),
    /// Forget a user's failures and lockout.
    ClearFailures(String),
    /// Append to the audit log.
    Audit(AuditRecord),
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    r: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    v: u32,
    r: serde_json::Value,
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, numbers, options, vectors) cannot fail.
    serde_json::to_vec(&EnvelopeOut { v: RECORD_VERSION, r: record }).unwrap_or_default()
}

/// Why stored bytes are not a record this handoff reads (the `problem` of [`StoreError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("not a record envelope: {0}")]
    NotAnEnvelope(serde_json::Error),
    #[error("record version {0} unknown (this handoff reads {RECORD_VERSION})")]
    UnknownVersion(u32),
    #[error("bad record: {0}")]
    Bad(serde_json::Error),
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    let env: EnvelopeIn = serde_json::from_slice(bytes).map_err(RecordError::NotAnEnvelope)?;
    if env.v != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(env.v));
    }
    serde_json::from_value(env.r).map_err(RecordError::Bad)
}
/// An identifier (user, device, session, endpoint): 1 to 128 bytes, no whitespace or control.
fn check_id(path: &str, what: &'static str, value: &str) -> Result<(), StoreError> {
    let problem = if value.is_empty() {
        Some("empty")
    } else if value.len() > 128 {
        Some("longer than 128 bytes")
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or a control character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(StoreError::Invalid { path: path.into(), what, value: value.into(), problem }),
        None => Ok(()),
    }
}

/// Is `s` an E.164 number: `+`, then 2 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// Everything a store holds, as [`Store::export`] reads it and [`Store::import`] writes it
/// (`handoffctl store migrate`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub users: Vec<User>,
    pub devices: Vec<Device>,
    pub credentials: Vec<(String, CredentialHash)>,
    pub sessions: Vec<SessionSnapshot>,
    pub tickets: Vec<TicketRecord>,
    pub bars: Vec<Bar>,
    pub failures: Vec<(String, Failures)>,
    /// With their sequence numbers, which an import keeps.
    pub audit: Vec<(u64, AuditRecord)>,
}

impl Dump {
    /// The records in key order (byte order of names and ids), whatever order a backend lists
    /// them in (a database's collation may sort text differently).
    pub fn canonical(mut self) -> Self {
        self.users.sort_by(|a, b| a.name.cmp(&b.name));
        self.devices.sort_by(|a, b| a.id.cmp(&b.id));
        self.credentials.sort_by(|a, b| a.0.cmp(&b.0));
        self.sessions.sort_by(|a, b| a.id.cmp(&b.id));
        self.tickets.sort_by_key(|t| t.hash);
        self.bars.sort_by(|a, b| (&a.session, &a.device).cmp(&(&b.session, &b.device)));
        self.failures.sort_by(|a, b| a.0.cmp(&b.0));
        self.audit.sort_by_key(|(seq, _)| *seq);
        self
    }

    /// One line of counts, for the operator.
    pub fn summary(&self) -> String {
        format!(
            "{} user(s), {} device(s), {} credential(s), {} session(s), {} ticket(s), {} bar(s), {} failure record(s), {} audit record(s)",
            self.users.len(),
            self.devices.len(),
            self.credentials.len(),
            self.sessions.len(),
            self.tickets.len(),
            self.bars.len(),
            self.failures.len(),
            self.audit.len()
        )
    }
}

/// Who drives a PBX node, as [`Store::hold_node`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeLease {
    /// This holder drives the node until the lease runs out (unless renewed).
    Held,
    /// Another handoffd drives it; its lease ends in `remaining_ms` unless renewed.
    HeldBy { holder: String, remaining_ms: u64 },
}

/// The store. Cheap to clone; clones share one database (on PostgreSQL, one connection).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Counts the calls of a counting store ([`Store::counting`]).
    tally: Option<Arc<tally::Tally>>,
}

#[derive(Clone, Debug)]
enum Backend {
    Sled(SledStore),
    Postgres(Arc<PgStore>),
}

/// Calls the same method on whichever backend the store has (counted on a counting store).
macro_rules! on_backend {
    ($self:ident, $b:ident => $b2:ident . $method:ident ( $($arg:expr),* )) => {{
        $self.tally.iter().for_each(|t| t.call(stringify!($method)));
        on_backend!(@uncounted $self, $b => $b2.$method($($arg),*))
    }};
    (@uncounted $self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sled($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed, mode 0700) the sled store directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Sled(SledStore::open(path)?), tally: None })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`),
    /// creating or migrating handoff's tables.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Postgres(Arc::new(PgStore::open(url)?)), tally: None })
    }

    /// Opens the store a configuration names (`store.backend`).
    pub fn open_configured(cfg: &crate::config::StoreConfig) -> Result<Store, StoreError> {
        match cfg.backend {
            crate::config::StoreBackend::Sled => Store::open(&cfg.path),
            crate::config::StoreBackend::Postgres => Store::open_postgres(&cfg.url),
        }
    }

    /// What errors name as the store: the sled directory, or the database URL without its
    /// password.
    pub fn path(&self) -> &str {
        match &self.backend {
            Backend::Sled(s) => s.path(),
            Backend::Postgres(p) => p.name(),
        }
    }

    /// Which backend holds the records: "sled" or "postgres".
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Sled(_) => "sled",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Writes everything out and fsyncs (sled). On PostgreSQL every write is committed when it
    /// returns: nothing to do.
    pub fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.flush(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// The sled backend, for the unit tests that corrupt its trees.
    #[cfg(test)]
    fn sled(&self) -> &SledStore {
        match &self.backend {
            Backend::Sled(s) => s,
            Backend::Postgres(_) => panic!("not a sled store"),
        }
    }

    // ---- users

    /// Adds a user (durable).
    pub fn add_user(&self, name: &str, now: UnixMs) -> Result<User, StoreError> {
        on_backend!(self, b => b.add_user(name, now))
    }
    pub fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        on_backend!(self, b => b.get_user(name))
    }
    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        on_backend!(self, b => b.list_users())
    }

    // ---- devices

    /// Registers a device of an existing user (durable). Its id, endpoint and number must be
    /// free; the number must be E.164.
    pub fn add_device(&self, device: &Device) -> Result<(), StoreError> {
        on_backend!(self, b => b.add_device(device))
    }
    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        on_backend!(self, b => b.device(id))
    }
    /// The device whose app registers as this PJSIP endpoint.
    pub fn device_by_endpoint(&self, endpoint: &str) -> Result<Option<Device>, StoreError> {
        on_backend!(self, b => b.device_by_endpoint(endpoint))
    }
    /// The device with this E.164 number.
    pub fn device_by_number(&self, number: &str) -> Result<Option<Device>, StoreError> {
        on_backend!(self, b => b.device_by_number(number))
    }
    /// Every device, by id.
    pub fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        on_backend!(self, b => b.list_devices())
    }
    /// A user's devices, by id.
    pub fn devices_of(&self, user: &str) -> Result<Vec<Device>, StoreError> {
        Ok(self.list_devices()?.into_iter().filter(|d| d.user == user).collect())
    }
    /// Unregisters a device (durable); returns it, or `None` if there was none.
    pub fn remove_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        on_backend!(self, b => b.remove_device(id))
    }

    // ---- credentials

    /// Sets (or replaces) an existing user's credential hash (durable).
    pub fn set_credential(&self, user: &str, hash: &CredentialHash) -> Result<(), StoreError> {
        on_backend!(self, b => b.set_credential(user, hash))
    }
    pub fn credential(&self, user: &str) -> Result<Option<CredentialHash>, StoreError> {
        on_backend!(self, b => b.credential(user))
    }

    // ---- sessions

    /// Writes a session snapshot (on sled not flushed: see the module doc).
    pub fn put_session(&self, s: &SessionSnapshot) -> Result<(), StoreError> {
        on_backend!(self, b => b.put_session(s))
    }
    pub fn get_session(&self, id: &str) -> Result<Option<SessionSnapshot>, StoreError> {
        on_backend!(self, b => b.get_session(id))
    }
    pub fn list_sessions(&self) -> Result<Vec<SessionSnapshot>, StoreError> {
        on_backend!(self, b => b.list_sessions())
    }
    /// Forgets a session; returns whether there was one.
    pub fn remove_session(&self, id: &str) -> Result<bool, StoreError> {
        on_backend!(self, b => b.remove_session(id))
    }

    // ---- tickets

    /// Issues a ticket (durable).
    pub fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
        on_backend!(self, b => b.put_ticket(t))
    }
    /// Spends a ticket, atomically, and returns it as it was *before* this call (durable).
    ///
    /// A ticket is spent by its first presentation, whatever the decision on it: of any number
    /// of concurrent calls for one hash (on PostgreSQL: from any number of handoffd), exactly
    /// one gets a record with `presented: None`; the others (and any later call) get
    /// `presented: Some(first presentation)` — a replay. An unknown hash gives `None`.
    pub fn take_ticket(&self, hash: &TicketHash, now: UnixMs) -> Result<Option<TicketRecord>, StoreError> {
        let before = on_backend!(@uncounted self, b => b.take_ticket(hash, now));
        self.tally.iter().for_each(|t| t.take(matches!(&before, Ok(Some(r)) if r.presented.is_none())));
        before
    }
    /// Every ticket kept (issued, spent or expired but not yet purged).
    pub fn list_tickets(&self) -> Result<Vec<TicketRecord>, StoreError> {
        on_backend!(self, b => b.list_tickets())
    }
    /// Drops tickets that expired more than `keep_ms` before `now` (kept that long so that a
    /// late replay is still recognized as one), and bars that ended. Returns how many of each
    /// went.
    pub fn purge_expired(&self, now: UnixMs, keep_ms: u64) -> Result<(usize, usize), StoreError> {
        on_backend!(self, b => b.purge_expired(now, keep_ms))
    }
    /// Drops the records of sessions that ended more than `keep_ms` before `now` (kept that
    /// long so that a late move of an ended call is refused as one). Returns how many went.
    pub fn purge_ended_sessions(&self, now: UnixMs, keep_ms: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for s in self.list_sessions()? {
            if s.state == SessionState::Ended && s.updated.plus_ms(keep_ms) <= now {
                self.remove_session(&s.id)?;
                purged += 1;
            }
        }
        Ok(purged)
    }
    /// Audit retention: drops the oldest audit records that are older than `keep_ms`, and past
    /// `max_records` the oldest ones whatever their age, but never a record younger than
    /// `floor_ms` (the longest lockout or bar: the decisions they rest on stay readable) and
    /// never the newest record (its sequence number carries on after a restart). Returns how
    /// many went.
    pub fn prune_audit(&self, now: UnixMs, keep_ms: u64, max_records: u64, floor_ms: u64) -> Result<usize, StoreError> {
        on_backend!(self, b => b.prune_audit(now, keep_ms, max_records, floor_ms))
    }

    // ---- bars and lockouts

    /// Bars `device` from `session` until `until` (durable). A later bar replaces an earlier one.
    pub fn put_bar(&self, bar: &Bar) -> Result<(), StoreError> {
        on_backend!(self, b => b.put_bar(bar))
    }
    /// Until when `device` is barred from `session`, if a bar is recorded (it may have ended:
    /// compare with now).
    pub fn bar(&self, session: &str, device: &str) -> Result<Option<UnixMs>, StoreError> {
        on_backend!(self, b => b.bar(session, device))
    }
    pub fn list_bars(&self) -> Result<Vec<Bar>, StoreError> {
        on_backend!(self, b => b.list_bars())
    }
    /// Records a failed credential check (durable): `update` turns the user's previous
    /// failures into the new ones (the lockout policy, [`crate::moves::LockoutPolicy::on_failure`]),
    /// atomically with respect to concurrent failures (on PostgreSQL: on any node). Returns
    /// the new record.
    pub fn record_failure(
        &self,
        user: &str,
        update: impl Fn(Option<Failures>) -> Failures + Send + 'static,
    ) -> Result<Failures, StoreError> {
        on_backend!(self, b => b.record_failure(user, update))
    }
    pub fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        on_backend!(self, b => b.failures(user))
    }
    /// The end of the user's lockout in force at `now`, if any.
    pub fn locked_until(&self, user: &str, now: UnixMs) -> Result<Option<UnixMs>, StoreError> {
        Ok(self.failures(user)?.and_then(|f| f.locked_at(now)))
    }
    /// Forgets a user's failures and lockout (durable); returns whether there were any.
    pub fn clear_failures(&self, user: &str) -> Result<bool, StoreError> {
        on_backend!(self, b => b.clear_failures(user))
    }

    // ---- audit

    /// Appends an audit record (durable); returns its sequence number.
    pub fn audit(&self, record: &AuditRecord) -> Result<u64, StoreError> {
        let writes = [Write::Audit(record.clone())];
        self.tally.iter().for_each(|t| t.batch(&writes));
        let seq = on_backend!(@uncounted self, b => b.apply_returning_seq(&writes))?;
        Ok(seq.unwrap_or(0))
    }
    /// The records after sequence number `seq`, oldest first.
    pub fn audit_since(&self, seq: u64) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        on_backend!(self, b => b.audit_since(seq))
    }
    /// The last `n` records, oldest first.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        on_backend!(self, b => b.audit_tail(n))
    }

    // ---- session timelines (bounded: [`crate::timeline::TIMELINE_MAX_ENTRIES`] per session)

    /// Appends timeline entries, `(session, entry)` in the order they happened (on sled not
    /// flushed). Entries of an invalid session id are refused with the id named; the rest are
    /// written.
    pub fn append_timeline(&self, entries: &[(String, crate::timeline::Entry)]) -> Result<(), StoreError> {
        self.tally.iter().for_each(|t| t.timeline(entries));
        on_backend!(@uncounted self, b => b.append_timeline(entries))
    }
    /// A session's timeline with its move records from the audit log merged in
    /// ([`crate::timeline::Timeline::merge_audit`]); `None` if the store has none for `id`.
    pub fn timeline(&self, id: &str) -> Result<Option<crate::timeline::Timeline>, StoreError> {
        on_backend!(self, b => b.timeline(id))
    }
    /// [`Store::timeline`] as drawn at `now`: a running session's open lanes reach to `now`.
    pub fn timeline_at(&self, id: &str, now: UnixMs) -> Result<Option<crate::timeline::Timeline>, StoreError> {
        let Some(mut t) = self.timeline(id)? else { return Ok(None) };
        if self.get_session(id)?.is_some_and(|s| s.state != SessionState::Ended) {
            t.until = Some(now);
        }
        Ok(Some(t))
    }
    /// Sessions with a stored timeline, as (id, entries kept, last entry).
    pub fn timelines(&self) -> Result<Vec<(String, u64, UnixMs)>, StoreError> {
        on_backend!(self, b => b.timelines())
    }
    /// Drops the timelines whose last entry is more than `keep_ms` before `now`, then the
    /// oldest past [`timeline::TIMELINE_MAX_SESSIONS`]. Returns how many went.
    pub fn purge_timelines(&self, now: UnixMs, keep_ms: u64) -> Result<usize, StoreError> {
        on_backend!(self, b => b.purge_timelines(now, keep_ms))
    }

    // ---- whole-store copies

    /// Reads every record (a store that handoffd is not using).
    pub fn export(&self) -> Result<Dump, StoreError> {
        let users = self.list_users()?;
        let mut credentials = Vec::new();
        let mut failures = Vec::new();
        for u in &users {
            if let Some(c) = self.credential(&u.name)? {
                credentials.push((u.name.clone(), c));
            }
            if let Some(f) = self.failures(&u.name)? {
                failures.push((u.name.clone(), f));
            }
        }
        Ok(Dump {
            devices: self.list_devices()?,
            sessions: self.list_sessions()?,
            tickets: self.list_tickets()?,
            bars: self.list_bars()?,
            audit: self.audit_since(0)?,
            users,
            credentials,
            failures,
        })
    }

    /// Writes every record of `dump` into this store, which must hold no user and no audit
    /// record yet (nothing is merged); audit sequence numbers are kept. On PostgreSQL it is one
    /// transaction: all or nothing.
    pub fn import(&self, dump: &Dump) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Err(StoreError::Invalid {
                path: self.path().to_string(),
                what: "import target",
                value: "sled".into(),
                problem: "a store is imported into PostgreSQL (backend: postgres)",
            }),
            Backend::Postgres(p) => p.import(dump),
        }
    }

    // ---- node ownership (a cluster on PostgreSQL)

    /// Takes or renews the lease of PBX node `node` for `holder`, for `lease_ms` by the
    /// database's clock: held when nobody holds it, when `holder` already does, or when the
    /// holder's lease ran out. Exactly one holder at a time, whatever the race. On sled (one box,
    /// one process by the store's own lock) the node is always held.
    pub fn hold_node(&self, node: &str, holder: &str, lease_ms: u64) -> Result<NodeLease, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(NodeLease::Held),
            Backend::Postgres(p) => p.hold_node(node, holder, lease_ms),
        }
    }

    /// Gives the lease of `node` up if `holder` has it (a clean stop: a standby takes over at
    /// once instead of when the lease runs out).
    pub fn release_node(&self, node: &str, holder: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(p) => p.release_node(node, holder),
        }
    }

    // ---- batches

    /// Applies a decision's writes in one atomic transaction, durably: either all of them are
    /// recorded when it returns `Ok`, or (after a crash) none.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.tally.iter().for_each(|t| t.batch(writes));
        on_backend!(@uncounted self, b => b.apply_returning_seq(writes)).map(drop)
    }
}

#[cfg(test)]
mod tests;
