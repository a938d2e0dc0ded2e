//! The PostgreSQL schema: its tables by version ([`PG_SCHEMA_VERSION`]), the migration run at
//! open, and the transaction-lock keys.

use super::connection::problem;
use crate::store::StoreError;
use postgres::Client;

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
/// [`crate::store::SCHEMA_VERSION`]).
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Transaction-lock keys (`pg_advisory_xact_lock`): the audit sequence, and the schema set-up.
pub(super) const AUDIT_LOCK: i64 = 0x4841_4e44_0001;
const SCHEMA_LOCK: i64 = 0x4841_4e44_0002;

/// Creates the schema or brings it up to [`PG_SCHEMA_VERSION`], under a transaction lock (two
/// nodes starting together migrate once); a newer schema is refused.
pub(super) fn migrate(client: &mut Client, name: &str) -> Result<(), StoreError> {
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
