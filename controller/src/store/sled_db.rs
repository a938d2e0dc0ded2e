//! The store on sled 0.34: the embedded default backend of [`super::Store`] (one box, nothing
//! to install). One sled tree per record kind; writes that authorize an action are flushed
//! (fsync) before the call returns (see [`super::Store`] for which); sled's directory lock
//! makes one process at a time its user.

use super::records::{
    self, AuditRecord, Bar, CredentialHash, Device, Failures, SessionSnapshot, TicketHash, TicketRecord,
};
use super::{check_id, decode, encode, is_e164, StoreError, UnixMs, User, Write, SCHEMA_VERSION};
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The store on sled. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct SledStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) path: String,
    pub(super) db: sled::Db,
    pub(super) users: sled::Tree,
    pub(super) devices: sled::Tree,
    pub(super) by_endpoint: sled::Tree,
    pub(super) by_number: sled::Tree,
    pub(super) credentials: sled::Tree,
    pub(super) sessions: sled::Tree,
    pub(super) tickets: sled::Tree,
    pub(super) bars: sled::Tree,
    pub(super) failures: sled::Tree,
    pub(super) audit: sled::Tree,
    /// Session timelines: `<session>\0<seq>` → entry, and `<session>` → what is kept
    /// ([`super::timeline`]).
    pub(super) timeline: sled::Tree,
    pub(super) timeline_meta: sled::Tree,
    /// The last audit sequence number handed out; held while an audit write runs so that
    /// numbers are committed in order.
    pub(super) audit_seq: Mutex<u64>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

fn bar_key(session: &str, device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(session.len() + device.len() + 1);
    k.extend_from_slice(session.as_bytes());
    k.push(0);
    k.extend_from_slice(device.as_bytes());
    k
}

/// The store's page cache (sled's default is 1 GiB).
pub const STORE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

impl SledStore {
    /// Opens (creating if needed, mode 0700) the store directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        let path_ref = path.as_ref();
        let path = path_ref.display().to_string();
        let existed = path_ref.exists();
        // sled's page cache defaults to 1 GiB and grows with every write until then: handoffd's
        // store is small, so its memory stays flat however many sessions pass through.
        let config = sled::Config::new().path(path_ref).cache_capacity(STORE_CACHE_BYTES);
        // sled 0.34 may panic on some damaged logs instead of returning an error; the store
        // must answer with an error, whatever is on disk.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                let problem = e.to_string();
                // sled 0.34 reports its failed `try_lock_exclusive` on `<path>/db` this way.
                if problem.contains("could not acquire lock") {
                    return Err(StoreError::InUse { path });
                }
                return Err(StoreError::Open { path, problem });
            }
            Err(_) => return Err(StoreError::Open { path, problem: "the database panicked while recovering".into() }),
        };
        if !existed {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path_ref, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| StoreError::Open { path: path.clone(), problem: format!("chmod 0700: {e}") })?;
            }
        }
        let tree = |name: &'static str| {
            db.open_tree(name).map_err(|e| StoreError::Io { path: path.clone(), tree: name, problem: e.to_string() })
        };
        let meta = tree("meta")?;
        let schema = meta.get("schema").map_err(|e| StoreError::Io {
            path: path.clone(),
            tree: "meta",
            problem: e.to_string(),
        })?;
        match schema {
            Some(v) => {
                let found: u32 = decode(&v).map_err(|problem| StoreError::Corrupt {
                    path: path.clone(),
                    tree: "meta",
                    key: "schema".into(),
                    problem: problem.to_string(),
                })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema { path, found, ours: SCHEMA_VERSION });
                }
            }
            None => {
                meta.insert("schema", encode(&SCHEMA_VERSION)).map_err(|e| StoreError::Io {
                    path: path.clone(),
                    tree: "meta",
                    problem: e.to_string(),
                })?;
            }
        }
        let audit = tree("audit")?;
        let last_seq = match audit.last() {
            Ok(Some((k, _))) => seq_of(&k).ok_or_else(|| StoreError::Corrupt {
                path: path.clone(),
                tree: "audit",
                key: records::hex(&k),
                problem: "key is not an 8-byte sequence number".into(),
            })?,
            Ok(None) => 0,
            Err(e) => return Err(StoreError::Io { path, tree: "audit", problem: e.to_string() }),
        };
        let inner = Inner {
            users: tree("users")?,
            devices: tree("devices")?,
            by_endpoint: tree("devices_by_endpoint")?,
            by_number: tree("devices_by_number")?,
            credentials: tree("credentials")?,
            sessions: tree("sessions")?,
            tickets: tree("tickets")?,
            bars: tree("bars")?,
            failures: tree("failures")?,
            audit,
            timeline: tree("timeline")?,
            timeline_meta: tree("timeline_meta")?,
            audit_seq: Mutex::new(last_seq),
            db,
            path,
        };
        let store = SledStore { inner: Arc::new(inner) };
        store.flush()?;
        Ok(store)
    }

    #[cfg(test)]
    pub(super) fn users_tree(&self) -> &sled::Tree {
        &self.inner.users
    }

    #[cfg(test)]
    pub(super) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// The store's directory, as given to [`Store::open`].
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Writes everything out and fsyncs.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush().map(drop).map_err(|e| self.io("flush", e))
    }

    pub(super) fn io(&self, tree: &'static str, e: sled::Error) -> StoreError {
        StoreError::Io { path: self.inner.path.clone(), tree, problem: e.to_string() }
    }

    pub(super) fn corrupt(&self, tree: &'static str, key: &[u8], problem: impl std::fmt::Display) -> StoreError {
        let key = match tree {
            "audit" => seq_of(key).map(|s| s.to_string()).unwrap_or_else(|| records::hex(key)),
            "tickets" => match <[u8; 32]>::try_from(key) {
                Ok(h) => TicketHash(h).short_id(),
                Err(_) => records::hex(key),
            },
            _ => format!("{:?}", String::from_utf8_lossy(key)),
        };
        StoreError::Corrupt { path: self.inner.path.clone(), tree, key, problem: problem.to_string() }
    }

    pub(super) fn get<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(|e| self.io(name, e))? {
            Some(v) => decode(&v).map(Some).map_err(|p| self.corrupt(name, key, p)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, tree: &sled::Tree, name: &'static str) -> Result<Vec<T>, StoreError> {
        tree.iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.io(name, e))?;
                decode(&v).map_err(|p| self.corrupt(name, &k, p))
            })
            .collect()
    }

    pub(super) fn check(&self, what: &'static str, value: &str) -> Result<(), StoreError> {
        check_id(&self.inner.path, what, value)
    }

    fn tx_err(&self, tree: &'static str, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.io(tree, e),
        }
    }

    // ---- users

    /// Adds a user (flushed).
    pub fn add_user(&self, name: &str, now: UnixMs) -> Result<User, StoreError> {
        self.check("user name", name)?;
        let user = User { name: name.into(), created: now };
        let swapped = self
            .inner
            .users
            .compare_and_swap(name, None as Option<&[u8]>, Some(encode(&user)))
            .map_err(|e| self.io("users", e))?;
        if swapped.is_err() {
            return Err(StoreError::UserExists { path: self.inner.path.clone(), user: name.into() });
        }
        self.flush()?;
        Ok(user)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get(&self.inner.users, "users", name.as_bytes())
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.scan(&self.inner.users, "users")
    }

    fn require_user(&self, name: &str) -> Result<(), StoreError> {
        match self.get_user(name)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchUser { path: self.inner.path.clone(), user: name.into() }),
        }
    }

    // ---- devices

    /// Registers a device of an existing user (flushed). Its id, endpoint and number must be
    /// free; the number must be E.164.
    pub fn add_device(&self, device: &Device) -> Result<(), StoreError> {
        let path = &self.inner.path;
        self.check("device id", &device.id)?;
        self.check("user name", &device.user)?;
        if device.name.is_empty() || device.name.len() > 128 || device.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                path: path.clone(),
                what: "device name",
                value: device.name.clone(),
                problem: "must be 1 to 128 bytes without control characters",
            });
        }
        if let Some(e) = &device.data_endpoint {
            self.check("endpoint", e)?;
        }
        if let Some(n) = &device.carrier_number {
            if !is_e164(n) {
                return Err(StoreError::Invalid {
                    path: path.clone(),
                    what: "number",
                    value: n.clone(),
                    problem: "not E.164 (+ and 2 to 15 digits)",
                });
            }
        }
        let i = &self.inner;
        let bytes = encode(device);
        (&i.users, &i.devices, &i.by_endpoint, &i.by_number)
            .transaction(|(users, devices, by_endpoint, by_number)| {
                let abort = |e| Err(ConflictableTransactionError::Abort(e));
                if users.get(device.user.as_bytes())?.is_none() {
                    return abort(StoreError::NoSuchUser { path: path.clone(), user: device.user.clone() });
                }
                if devices.get(device.id.as_bytes())?.is_some() {
                    return abort(StoreError::DeviceExists { path: path.clone(), device: device.id.clone() });
                }
                for (what, value, index) in
                    [("endpoint", &device.data_endpoint, by_endpoint), ("number", &device.carrier_number, by_number)]
                {
                    if let Some(value) = value {
                        if let Some(owner) = index.get(value.as_bytes())? {
                            return abort(StoreError::Taken {
                                path: path.clone(),
                                what,
                                value: value.clone(),
                                device: String::from_utf8_lossy(&owner).into_owned(),
                            });
                        }
                        index.insert(value.as_bytes(), device.id.as_bytes())?;
                    }
                }
                devices.insert(device.id.as_bytes(), bytes.clone())?;
                Ok(())
            })
            .map_err(|e| self.tx_err("devices", e))?;
        self.flush()
    }

    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.get(&self.inner.devices, "devices", id.as_bytes())
    }

    /// The device whose app registers as this PJSIP endpoint.
    pub fn device_by_endpoint(&self, endpoint: &str) -> Result<Option<Device>, StoreError> {
        self.device_by_index(&self.inner.by_endpoint, "devices_by_endpoint", endpoint)
    }

    /// The device with this E.164 number.
    pub fn device_by_number(&self, number: &str) -> Result<Option<Device>, StoreError> {
        self.device_by_index(&self.inner.by_number, "devices_by_number", number)
    }

    fn device_by_index(&self, index: &sled::Tree, name: &'static str, key: &str) -> Result<Option<Device>, StoreError> {
        match index.get(key).map_err(|e| self.io(name, e))? {
            Some(id) => self.get(&self.inner.devices, "devices", &id),
            None => Ok(None),
        }
    }

    /// Every device, by id.
    pub fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.scan(&self.inner.devices, "devices")
    }

    /// Unregisters a device (flushed); returns it, or `None` if there was none.
    pub fn remove_device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let i = &self.inner;
        let path = &i.path;
        let removed = (&i.devices, &i.by_endpoint, &i.by_number)
            .transaction(|(devices, by_endpoint, by_number)| {
                let Some(bytes) = devices.remove(id.as_bytes())? else { return Ok(None) };
                let device: Device = decode(&bytes).map_err(|problem| {
                    ConflictableTransactionError::Abort(StoreError::Corrupt {
                        path: path.clone(),
                        tree: "devices",
                        key: format!("{id:?}"),
                        problem: problem.to_string(),
                    })
                })?;
                if let Some(e) = &device.data_endpoint {
                    by_endpoint.remove(e.as_bytes())?;
                }
                if let Some(n) = &device.carrier_number {
                    by_number.remove(n.as_bytes())?;
                }
                Ok(Some(device))
            })
            .map_err(|e| self.tx_err("devices", e))?;
        self.flush()?;
        Ok(removed)
    }

    // ---- credentials

    /// Sets (or replaces) an existing user's credential hash (flushed).
    pub fn set_credential(&self, user: &str, hash: &CredentialHash) -> Result<(), StoreError> {
        self.require_user(user)?;
        self.inner.credentials.insert(user, encode(hash)).map_err(|e| self.io("credentials", e))?;
        self.flush()
    }

    pub fn credential(&self, user: &str) -> Result<Option<CredentialHash>, StoreError> {
        self.get(&self.inner.credentials, "credentials", user.as_bytes())
    }

    // ---- sessions

    /// Writes a session snapshot (not flushed: see the module doc).
    pub fn put_session(&self, s: &SessionSnapshot) -> Result<(), StoreError> {
        self.check("session id", &s.id)?;
        self.inner.sessions.insert(s.id.as_bytes(), encode(s)).map(drop).map_err(|e| self.io("sessions", e))
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionSnapshot>, StoreError> {
        self.get(&self.inner.sessions, "sessions", id.as_bytes())
    }

    pub fn list_sessions(&self) -> Result<Vec<SessionSnapshot>, StoreError> {
        self.scan(&self.inner.sessions, "sessions")
    }

    /// Forgets a session (not flushed); returns whether there was one.
    pub fn remove_session(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.sessions.remove(id).map(|o| o.is_some()).map_err(|e| self.io("sessions", e))
    }

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

    /// Audit retention: drops the oldest audit records that are older than `keep_ms`, and past
    /// `max_records` the oldest ones whatever their age, but never a record younger than
    /// `floor_ms` (the longest lockout or bar: the decisions they rest on stay readable) and
    /// never the newest record (its sequence number carries on after a restart). Returns how
    /// many went. Not flushed.
    pub fn prune_audit(&self, now: UnixMs, keep_ms: u64, max_records: u64, floor_ms: u64) -> Result<usize, StoreError> {
        let tree = &self.inner.audit;
        let (Some(first), Some(last)) =
            (tree.first().map_err(|e| self.io("audit", e))?, tree.last().map_err(|e| self.io("audit", e))?)
        else {
            return Ok(0);
        };
        // Sequence numbers have no holes but the pruned start: the count is their span.
        let (Some(first), Some(last)) = (seq_of(&first.0), seq_of(&last.0)) else { return Ok(0) };
        let mut count = last.saturating_sub(first) + 1;
        let mut pruned = 0;
        for kv in tree.iter() {
            let (seq, record) = self.audit_entry(kv)?;
            let age = now.0.saturating_sub(record.at.0);
            if seq == last || age < floor_ms || (age < keep_ms && count <= max_records) {
                break;
            }
            tree.remove(seq.to_be_bytes()).map_err(|e| self.io("audit", e))?;
            count -= 1;
            pruned += 1;
        }
        Ok(pruned)
    }

    // ---- bars and lockouts

    /// Bars `device` from `session` until `until` (flushed). A later bar replaces an earlier one.
    pub fn put_bar(&self, bar: &Bar) -> Result<(), StoreError> {
        self.apply(&[Write::PutBar(bar.clone())])
    }

    /// Until when `device` is barred from `session`, if a bar is recorded (it may have ended:
    /// compare with now).
    pub fn bar(&self, session: &str, device: &str) -> Result<Option<UnixMs>, StoreError> {
        let bar: Option<Bar> = self.get(&self.inner.bars, "bars", &bar_key(session, device))?;
        Ok(bar.map(|b| b.until))
    }

    pub fn list_bars(&self) -> Result<Vec<Bar>, StoreError> {
        self.scan(&self.inner.bars, "bars")
    }

    /// Records a failed credential check (flushed): `update` turns the user's previous
    /// failures into the new ones (the lockout policy, [`crate::moves::LockoutPolicy::on_failure`]),
    /// atomically with respect to concurrent failures. Returns the new record.
    pub fn record_failure(
        &self,
        user: &str,
        update: impl Fn(Option<Failures>) -> Failures + Send + 'static,
    ) -> Result<Failures, StoreError> {
        let mut undecodable = None;
        let after = self
            .inner
            .failures
            .update_and_fetch(user, |old| match old.map(decode::<Failures>).transpose() {
                Ok(prev) => Some(encode(&update(prev))),
                Err(p) => {
                    undecodable = Some(p);
                    old.map(<[u8]>::to_vec)
                }
            })
            .map_err(|e| self.io("failures", e))?;
        if let Some(p) = undecodable {
            return Err(self.corrupt("failures", user.as_bytes(), p));
        }
        self.flush()?;
        match after {
            Some(bytes) => decode(&bytes).map_err(|p| self.corrupt("failures", user.as_bytes(), p)),
            None => Ok(Failures::default()),
        }
    }

    pub fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        self.get(&self.inner.failures, "failures", user.as_bytes())
    }

    /// Forgets a user's failures and lockout (flushed); returns whether there were any.
    pub fn clear_failures(&self, user: &str) -> Result<bool, StoreError> {
        let had = self.inner.failures.remove(user).map_err(|e| self.io("failures", e))?.is_some();
        if had {
            self.flush()?;
        }
        Ok(had)
    }

    // ---- audit

    /// The records after sequence number `seq`, oldest first.
    pub fn audit_since(&self, seq: u64) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let Some(from) = seq.checked_add(1) else { return Ok(Vec::new()) };
        self.inner.audit.range(from.to_be_bytes()..).map(|kv| self.audit_entry(kv)).collect()
    }

    /// The last `n` records, oldest first.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
        let mut tail: Vec<_> =
            self.inner.audit.iter().rev().take(n).map(|kv| self.audit_entry(kv)).collect::<Result<_, _>>()?;
        tail.reverse();
        Ok(tail)
    }

    pub(super) fn audit_entry(
        &self,
        kv: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<(u64, AuditRecord), StoreError> {
        let (k, v) = kv.map_err(|e| self.io("audit", e))?;
        let seq = seq_of(&k).ok_or_else(|| self.corrupt("audit", &k, "key is not an 8-byte sequence number"))?;
        let record = decode(&v).map_err(|p| self.corrupt("audit", &k, p))?;
        Ok((seq, record))
    }

    // ---- batches

    /// Applies a decision's writes in one atomic transaction and flushes: either all of them
    /// are on disk when it returns `Ok`, or (after a crash) none.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.apply_returning_seq(writes).map(drop)
    }

    /// Returns the last audit sequence number written, if the batch had audit records.
    pub fn apply_returning_seq(&self, writes: &[Write]) -> Result<Option<u64>, StoreError> {
        for w in writes {
            if let Write::PutBar(b) = w {
                self.check("session id", &b.session)?;
                self.check("device id", &b.device)?;
            }
        }
        let i = &self.inner;
        // Held across the transaction and the flush: audit numbers are committed in order.
        let mut seq = i.audit_seq.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = *seq + 1;
        let last = (&i.tickets, &i.bars, &i.failures, &i.audit)
            .transaction(|(tickets, bars, failures, audit)| {
                let mut next = first;
                let mut last = None;
                for w in writes {
                    match w {
                        Write::PutTicket(t) => {
                            tickets.insert(&t.hash.0[..], encode(t))?;
                        }
                        Write::PutBar(b) => {
                            bars.insert(bar_key(&b.session, &b.device), encode(b))?;
                        }
                        Write::ClearFailures(user) => {
                            failures.remove(user.as_bytes())?;
                        }
                        Write::Audit(r) => {
                            audit.insert(&next.to_be_bytes()[..], encode(r))?;
                            last = Some(next);
                            next += 1;
                        }
                    }
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(last)
            })
            .map_err(|e| self.tx_err("batch", e))?;
        if let Some(last) = last {
            *seq = last;
        }
        self.flush()?;
        Ok(last)
    }
}

pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
