//! The store on sled 0.34: the embedded default backend of [`super::Store`] (one box, nothing
//! to install). One sled tree per record kind; writes that authorize an action are flushed
//! (fsync) before the call returns (see [`super::Store`] for which); sled's directory lock
//! makes one process at a time its user.
//!
//! This file opens the store and holds what every call uses (errors, reading one record or a
//! whole tree) and the session snapshots; `sled_db/accounts.rs` has users, devices and
//! credentials, `sled_db/tickets.rs` move tickets, `sled_db/lockouts.rs` bars and failure
//! counters, `sled_db/audit.rs` the audit log and a decision's batch of writes. Session
//! timelines on sled are in `store/timeline.rs`.

mod accounts;
mod audit;
mod lockouts;
mod tickets;

use super::records::{self, SessionSnapshot, TicketHash};
use super::{check_id, decode, encode, StoreError, SCHEMA_VERSION};
use serde::de::DeserializeOwned;
use sled::transaction::TransactionError;
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

pub(super) fn bar_key(session: &str, device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(session.len() + device.len() + 1);
    k.extend_from_slice(session.as_bytes());
    k.push(0);
    k.extend_from_slice(device.as_bytes());
    k
}

/// The store's page cache (sled's default is 1 GiB). sled counts it in bytes as written to
/// disk (in memory they take more), and it fills with the pages of every session snapshot,
/// timeline entry and audit record written until it is full: at 8 MiB it was full after about
/// 3 000 calls, and handoffd's heap grew 6.9 MB (RSS 8.3 MB) from the 1 000th to the 5 000th,
/// which `tests/bench-load` saw as memory growing under a steady load (issue #12 item 12).
/// handoffd reads back little and recently written (a session's snapshot when it ends, its
/// timeline's meta record on each append): 1 MiB is full within the first thousand calls
/// (`controller/tests/memory_flat.rs`).
pub const STORE_CACHE_BYTES: u64 = 1024 * 1024;

impl SledStore {
    /// Opens (creating if needed, mode 0700) the store directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        let path_ref = path.as_ref();
        let path = path_ref.display().to_string();
        let existed = path_ref.exists();
        // sled's page cache defaults to 1 GiB and grows with every write until then: bounded
        // small (see STORE_CACHE_BYTES), handoffd's memory stays flat however many calls pass.
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

    /// The store's directory, as given to [`super::Store::open`].
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

    pub(super) fn scan<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
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

    pub(super) fn tx_err(&self, tree: &'static str, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.io(tree, e),
        }
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
}

pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
