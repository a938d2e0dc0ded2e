//! Node ownership on PostgreSQL: one lease per PBX node, taken, renewed and given up by one
//! statement each, by the database's clock.

use super::connection::{db_io, ms_i, PgStore};
use crate::store::{NodeLease, StoreError};

impl PgStore {
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
}
