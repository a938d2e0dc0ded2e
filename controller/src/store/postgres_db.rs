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
//! - a decision's writes ([`super::Write`]) go in one transaction.
//!
//! Every call is synchronous and runs its SQL on a connection owned by a worker thread of this
//! store (the `postgres` client may not be driven from inside the async runtime; the caller
//! blocks as it does on sled's fsync). A broken connection is reopened on the next call; while
//! the database is down every call fails with [`super::StoreError::Io`] naming the table, so a move is
//! refused rather than decided without being recorded. The URL's password never appears in an
//! error or a log line ([`redact`]).
//!
//! # Files
//! - `connection.rs`: the worker thread and its connection (reopened when lost), errors
//!   ([`redact`]), and the helpers every query uses (one record, all records, decoding);
//! - `schema.rs`: the tables, their migrations and [`schema::PG_SCHEMA_VERSION`];
//! - `accounts.rs`: users, devices and credential hashes;
//! - `sessions.rs`: session snapshots and session timelines;
//! - `tickets.rs`: move tickets (issued, spent once, purged);
//! - `lockouts.rs`: device bars and per-user failure counters;
//! - `audit.rs`: reading and pruning the audit log;
//! - `writes.rs`: a decision's writes in one transaction, the whole-store import, and how
//!   each record is written as a row;
//! - `nodes.rs`: node ownership leases of a cluster.

mod accounts;
mod audit;
mod connection;
mod lockouts;
mod nodes;
mod schema;
mod sessions;
mod tickets;
mod writes;

pub use connection::{redact, PgStore};
