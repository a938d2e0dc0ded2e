//! The PostgreSQL store's connection: one worker thread owns it (the `postgres` client may not
//! be driven from inside the async runtime), reopens it when lost, and runs each call's SQL;
//! database errors as one line without the URL's password ([`redact`]); the helpers every
//! query uses (one record, all records, decoding, numbers as `bigint`).

use super::schema::migrate;
use crate::store::{decode, encode, StoreError, UnixMs};
use postgres::{Client, NoTls};
use serde::de::DeserializeOwned;
use std::sync::mpsc;
use std::sync::Mutex;

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
    pub(super) name: String,
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
pub(super) fn problem(e: &postgres::Error) -> String {
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

    pub(super) fn io(&self, tree: &'static str, problem: String) -> StoreError {
        StoreError::Io { path: self.name.clone(), tree, problem }
    }

    /// Runs `f` on the worker's connection (reconnecting first if it was lost) and waits.
    pub(super) fn run<T: Send + 'static>(
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

    // ---- helpers of the record files

    /// The record `sql` selects by `key`, if any.
    pub(super) fn get_one<T: DeserializeOwned + 'static>(
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
    pub(super) fn get_all<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        sql: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let path = self.name.clone();
        let rows: Vec<(String, String)> = self.run(tree, move |c| {
            let rows = c.query(sql, &[]).map_err(|e| db_io(&path, tree, &e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        rows.into_iter().map(|(k, rec)| self.decode_text(tree, format!("{k:?}"), &rec)).collect()
    }

    /// Runs one `DELETE` (or other statement) of `key`; whether it touched a row.
    pub(super) fn delete(&self, tree: &'static str, sql: &'static str, key: String) -> Result<bool, StoreError> {
        let path = self.name.clone();
        self.run(tree, move |c| c.execute(sql, &[&key]).map(|n| n > 0).map_err(|e| db_io(&path, tree, &e)))
    }

    pub(super) fn decode_text<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: String,
        rec: &str,
    ) -> Result<T, StoreError> {
        decode_row(&self.name, tree, key, rec)
    }
}

/// A row's record, or [`StoreError::Corrupt`] naming the table and key.
pub(super) fn decode_row<T: DeserializeOwned>(
    path: &str,
    tree: &'static str,
    key: String,
    rec: &str,
) -> Result<T, StoreError> {
    decode(rec.as_bytes()).map_err(|problem| StoreError::Corrupt {
        path: path.to_string(),
        tree,
        key,
        problem: problem.to_string(),
    })
}

pub(super) fn text<T: serde::Serialize>(record: &T) -> String {
    // encode() writes JSON: always UTF-8
    String::from_utf8(encode(record)).unwrap_or_default()
}

pub(super) fn db_io(path: &str, tree: &'static str, e: &postgres::Error) -> StoreError {
    StoreError::Io { path: path.to_string(), tree, problem: problem(e) }
}

/// A time as a `bigint` column.
pub(super) fn ms(t: UnixMs) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A count or duration as a `bigint` (saturating).
pub(super) fn ms_i(v: u64) -> i64 {
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
