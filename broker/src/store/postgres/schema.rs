//! The schema's versioned migrations, applied by one replica at a time.

use super::lock::MIGRATION_LOCK;
use super::sql::{i, pg, Conn};
use crate::clock::{Clock, SystemClock};
use crate::store::{Result, StoreError};

/// Migrations in order; `schema_migrations` records the versions applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_grants_by_person.sql"),
];

pub(super) fn migrate(conn: &mut Conn) -> Result<()> {
    let mut tx = conn.transaction().map_err(pg)?;
    // Replicas starting together: the first migrates, the others wait and find nothing to do.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .map_err(pg)?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(pg)?
        .get(0);
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).map_err(pg)?;
        let version = i32::try_from(n + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &i(SystemClock.now())],
        )
        .map_err(pg)?;
    }
    tx.commit().map_err(pg)
}
