//! What every query shares: pool types, driver errors, row readers, column lists, inserts.

use crate::store::{
    GrantRow, GrantStatus, PendingRow, RefreshRow, Result, StoreError, TokenStatus,
};
use ::postgres::{NoTls, Row, Transaction};
use r2d2_postgres::PostgresConnectionManager;

pub(super) type Manager = PostgresConnectionManager<NoTls>;
pub(super) type Pool = r2d2::Pool<Manager>;
pub(super) type Conn = r2d2::PooledConnection<Manager>;

pub(super) fn pg(err: ::postgres::Error) -> StoreError {
    StoreError::Postgres(err)
}

pub(super) fn pool_err(err: r2d2::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

pub(super) fn u(v: i64) -> u64 {
    v.max(0) as u64
}
pub(super) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn get<'a, T: ::postgres::types::FromSql<'a>>(r: &'a Row, idx: usize) -> Result<T> {
    r.try_get(idx).map_err(pg)
}

pub(super) fn grant_row(r: &Row) -> Result<GrantRow> {
    Ok(GrantRow {
        id: get(r, 0)?,
        gateway: get(r, 1)?,
        server: get(r, 2)?,
        client_id: get(r, 3)?,
        subject: get(r, 4)?,
        scope: get(r, 5)?,
        status: GrantStatus::parse(get(r, 6)?),
        downstream: get(r, 7)?,
        downstream_expires_at: u(get(r, 8)?),
        version: get(r, 9)?,
        created_at: u(get(r, 10)?),
    })
}

pub(super) fn refresh_row(r: &Row) -> Result<RefreshRow> {
    Ok(RefreshRow {
        token_hash: get(r, 0)?,
        grant_id: get(r, 1)?,
        client_id: get(r, 2)?,
        status: TokenStatus::parse(get(r, 3)?),
        expires_at: u(get(r, 4)?),
        created_at: u(get(r, 5)?),
    })
}

pub(super) fn pending_row(r: &Row) -> Result<PendingRow> {
    Ok(PendingRow {
        id_hash: get(r, 0)?,
        gateway: get(r, 1)?,
        data: get(r, 2)?,
        csrf_hash: get(r, 3)?,
        state_hash: get(r, 4)?,
        secret: get(r, 5)?,
        expires_at: u(get(r, 6)?),
    })
}

pub(super) const GRANT_COLS: &str = "id, gateway, server, client_id, subject, scope, status, downstream, downstream_expires_at, version, created_at";
pub(super) const PENDING_COLS: &str =
    "id_hash, gateway, data, csrf_hash, state_hash, secret, expires_at";
pub(super) const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, status, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) fn insert_refresh(tx: &mut Transaction, t: &RefreshRow) -> Result<()> {
    tx.execute(
        INSERT_REFRESH,
        &[
            &t.token_hash,
            &t.grant_id,
            &t.client_id,
            &t.status.as_str(),
            &i(t.expires_at),
            &i(t.created_at),
        ],
    )
    .map(|_| ())
    .map_err(pg)
}
