//! PostgreSQL storage, for several broker replicas on one database: pooled connections, versioned
//! migrations, and advisory locks so one replica at a time refreshes a grant downstream.

mod lock;
mod schema;
mod sql;

use super::*;
use ::postgres::types::ToSql;
use ::postgres::{NoTls, Row, Transaction};
use lock::{lock_key, AdvisoryLock, REVOCATIONS_LOCK};
use r2d2_postgres::PostgresConnectionManager;
use schema::migrate;
use sql::{
    get, grant_row, i, insert_refresh, pending_row, pg, pool_err, refresh_row, u, Conn, Pool,
    GRANT_COLS, PENDING_COLS,
};
use std::time::Duration;

/// How to reach the database; the password comes from env or a file, never the document.
pub struct Options {
    pub url: String,
    pub password: Option<String>,
    pub pool_size: u32,
    pub timeout: Duration,
}

pub struct Postgres {
    pool: Pool,
    /// Connections that hold a grant's refresh lock across the downstream call; apart from `pool`
    /// so lock holders never starve the queries they still have to make.
    locks: Pool,
}

impl Postgres {
    /// Connects, applies the migrations this broker knows (one replica at a time), builds the pools.
    pub fn open(o: &Options) -> Result<Postgres> {
        let mut cfg: ::postgres::Config = o
            .url
            .parse()
            .map_err(|e: ::postgres::Error| StoreError::Config(e.to_string()))?;
        if let Some(p) = &o.password {
            cfg.password(p);
        }
        cfg.connect_timeout(o.timeout);
        cfg.application_name("scopegate-broker");
        // The query pool is opened in full (a burst must not wait for connections to be made one
        // by one); the lock pool grows on demand.
        let build = |size: u32, idle: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(idle))
                .connection_timeout(o.timeout)
                .build(PostgresConnectionManager::new(cfg.clone(), NoTls))
                .map_err(pool_err)
        };
        let pool = build(o.pool_size, o.pool_size)?;
        migrate(&mut pool.get().map_err(pool_err)?)?;
        let locks = build(o.pool_size, 1)?;
        Ok(Postgres { pool, locks })
    }

    fn conn(&self) -> Result<Conn> {
        self.pool.get().map_err(pool_err)
    }

    fn tx<T>(&self, f: impl FnOnce(&mut Transaction) -> Result<Option<T>>) -> Result<Option<T>> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        let out = f(&mut tx)?;
        // `None` means "nothing changed": roll back whatever the closure began.
        if out.is_some() {
            tx.commit().map_err(pg)?;
        }
        Ok(out)
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.conn()?.execute(sql, params).map_err(pg)
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.conn()?.query(sql, params).map_err(pg)
    }

    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.conn()?.query_opt(sql, params).map_err(pg)? {
            Some(r) => f(&r).map(Some),
            None => Ok(None),
        }
    }
}

impl Store for Postgres {
    fn put_client(&self, c: &ClientRow) -> Result<()> {
        self.execute(
            "INSERT INTO clients (client_id, gateway, metadata, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&c.client_id, &c.gateway, &c.metadata, &c.secret_hash, &i(c.created_at)],
        )
        .map(|_| ())
    }

    fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        self.query_opt(
            "SELECT client_id, gateway, metadata, secret_hash, created_at FROM clients WHERE client_id = $1",
            &[&client_id],
            |r| {
                Ok(ClientRow {
                    client_id: get(r, 0)?,
                    gateway: get(r, 1)?,
                    metadata: get(r, 2)?,
                    secret_hash: get(r, 3)?,
                    created_at: u(get(r, 4)?),
                })
            },
        )
    }

    fn count_clients(&self, gateway: &str) -> Result<u64> {
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT COUNT(*) FROM clients WHERE gateway = $1",
                &[&gateway],
            )
            .map_err(pg)?
            .get(0);
        Ok(u(n))
    }

    fn sweep_unused_clients(&self, gateway: &str, created_before: u64) -> Result<usize> {
        self.execute(
            "DELETE FROM clients WHERE gateway = $1 AND created_at < $2 AND NOT EXISTS (SELECT 1 FROM grants WHERE grants.client_id = clients.client_id)",
            &[&gateway, &i(created_before)],
        )
        .map(|n| n as usize)
    }

    fn put_pending(&self, p: &PendingRow) -> Result<()> {
        self.execute(
            &format!("INSERT INTO pending ({PENDING_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &p.id_hash,
                &p.gateway,
                &p.data,
                &p.csrf_hash,
                &p.state_hash,
                &p.secret,
                &i(p.expires_at),
            ],
        )
        .map(|_| ())
    }

    fn pending(&self, id_hash: &str) -> Result<Option<PendingRow>> {
        self.query_opt(
            &format!("SELECT {PENDING_COLS} FROM pending WHERE id_hash = $1"),
            &[&id_hash],
            pending_row,
        )
    }

    fn approve_pending(&self, id_hash: &str, state_hash: &str, secret: &[u8]) -> Result<bool> {
        self.execute(
            "UPDATE pending SET state_hash = $2, secret = $3 WHERE id_hash = $1 AND state_hash IS NULL",
            &[&id_hash, &state_hash, &secret],
        )
        .map(|n| n == 1)
    }

    fn take_pending_by_state(&self, state_hash: &str) -> Result<Option<PendingRow>> {
        // One statement: of two replicas racing on one callback, exactly one gets the row.
        self.query_opt(
            &format!("DELETE FROM pending WHERE state_hash = $1 RETURNING {PENDING_COLS}"),
            &[&state_hash],
            pending_row,
        )
    }

    fn delete_pending(&self, id_hash: &str) -> Result<()> {
        self.execute("DELETE FROM pending WHERE id_hash = $1", &[&id_hash])
            .map(|_| ())
    }

    fn create_grant(&self, g: &GrantRow, c: &CodeRow) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                &format!("INSERT INTO grants ({GRANT_COLS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)"),
                &[&g.id, &g.gateway, &g.server, &g.client_id, &g.subject, &g.scope, &g.status.as_str(), &g.downstream, &i(g.downstream_expires_at), &g.version, &i(g.created_at)],
            ).map_err(pg)?;
            tx.execute(
                "INSERT INTO codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, resource, expires_at, used) VALUES ($1, $2, $3, $4, $5, $6, $7, false)",
                &[&c.code_hash, &c.grant_id, &c.client_id, &c.redirect_uri, &c.code_challenge, &c.resource, &i(c.expires_at)],
            ).map_err(pg)?;
            Ok(Some(()))
        })
        .map(|_| ())
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        self.query_opt(
            &format!("SELECT {GRANT_COLS} FROM grants WHERE id = $1"),
            &[&id],
            grant_row,
        )
    }

    fn update_downstream(
        &self,
        id: &str,
        version: i64,
        sealed: &[u8],
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        self.execute(
            "UPDATE grants SET downstream = $3, downstream_expires_at = $4, version = version + 1, updated_at = $5 WHERE id = $1 AND version = $2 AND status = 'active'",
            &[&id, &version, &sealed, &i(expires_at), &i(now)],
        )
        .map(|n| n == 1)
    }

    fn grants_of(&self, gateway: &str, subject: &str) -> Result<Vec<GrantListing>> {
        let rows = self.query(
            "SELECT id, server, client_id, scope, status, created_at, last_used_at FROM grants \
             WHERE gateway = $1 AND subject = $2 AND status = 'active' ORDER BY created_at DESC, id",
            &[&gateway, &subject],
        )?;
        Ok(rows
            .iter()
            .map(|r| GrantListing {
                id: r.get(0),
                server: r.get(1),
                client_id: r.get(2),
                scope: r.get(3),
                status: GrantStatus::parse(r.get::<_, &str>(4)),
                created_at: u(r.get(5)),
                last_used_at: u(r.get(6)),
            })
            .collect())
    }

    fn touch_grant(&self, id: &str, now: u64) -> Result<()> {
        self.execute(
            "UPDATE grants SET last_used_at = $2 WHERE id = $1 AND last_used_at < $2",
            &[&id, &i(now)],
        )
        .map(|_| ())
    }

    fn set_grant_status(&self, id: &str, status: GrantStatus, now: u64) -> Result<()> {
        self.execute(
            "UPDATE grants SET status = $2, updated_at = $3 WHERE id = $1",
            &[&id, &status.as_str(), &i(now)],
        )
        .map(|_| ())
    }

    fn revoke_family(&self, grant_id: &str, now: u64, listed_until: u64) -> Result<()> {
        self.tx(|tx| {
            let changed = tx
                .execute(
                    "UPDATE grants SET status = 'revoked', updated_at = $2 WHERE id = $1 AND status = 'active'",
                    &[&grant_id, &i(now)],
                )
                .map_err(pg)?;
            if changed > 0 {
                // Sequence numbers are handed out in commit order, so a poller never skips one.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REVOCATIONS_LOCK])
                    .map_err(pg)?;
                tx.execute(
                    "INSERT INTO revocations (grant_id, until) VALUES ($1, $2)",
                    &[&grant_id, &i(listed_until)],
                )
                .map_err(pg)?;
            }
            tx.execute(
                "UPDATE refresh_tokens SET status = 'revoked' WHERE grant_id = $1",
                &[&grant_id],
            )
            .map_err(pg)?;
            Ok(Some(()))
        })
        .map(|_| ())
    }

    fn revocations_since(&self, since: u64, limit: usize) -> Result<(u64, Vec<(String, u64)>)> {
        let mut conn = self.conn()?;
        let last: i64 = conn
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM revocations", &[])
            .map_err(pg)?
            .get(0);
        // A cursor from before a database reset is ahead of us: start over.
        let since = if i(since) > last { 0 } else { i(since) };
        let rows = conn
            .query(
                "SELECT seq, grant_id, until FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&since, &i(limit as u64)],
            )
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut cursor = since;
        for r in &rows {
            cursor = get(r, 0)?;
            out.push((get::<String>(r, 1)?, u(get(r, 2)?)));
        }
        Ok((u(cursor), out))
    }

    fn code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        self.query_opt(
            "SELECT code_hash, grant_id, client_id, redirect_uri, code_challenge, resource, expires_at, used FROM codes WHERE code_hash = $1",
            &[&code_hash],
            |r| {
                Ok(CodeRow {
                    code_hash: get(r, 0)?,
                    grant_id: get(r, 1)?,
                    client_id: get(r, 2)?,
                    redirect_uri: get(r, 3)?,
                    code_challenge: get(r, 4)?,
                    resource: get(r, 5)?,
                    expires_at: u(get(r, 6)?),
                    used: get(r, 7)?,
                })
            },
        )
    }

    fn redeem_code(&self, code_hash: &str, refresh: Option<&RefreshRow>) -> Result<bool> {
        self.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE codes SET used = true WHERE code_hash = $1 AND used = false",
                    &[&code_hash],
                )
                .map_err(pg)?;
            if n != 1 {
                return Ok(None);
            }
            if let Some(t) = refresh {
                insert_refresh(tx, t)?;
            }
            Ok(Some(()))
        })
        .map(|o| o.is_some())
    }

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRow>> {
        self.query_opt(
            "SELECT token_hash, grant_id, client_id, status, expires_at, created_at FROM refresh_tokens WHERE token_hash = $1",
            &[&token_hash],
            refresh_row,
        )
    }

    fn rotate_refresh(&self, old_hash: &str, t: &RefreshRow) -> Result<bool> {
        self.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE refresh_tokens SET status = 'rotated' WHERE token_hash = $1 AND status = 'active'",
                    &[&old_hash],
                )
                .map_err(pg)?;
            if n != 1 {
                return Ok(None);
            }
            insert_refresh(tx, t)?;
            Ok(Some(()))
        })
        .map(|o| o.is_some())
    }

    fn put_key(&self, k: &KeyRow) -> Result<()> {
        self.execute(
            "INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3)",
            &[&k.kid, &k.private_key, &i(k.created_at)],
        )
        .map(|_| ())
    }

    fn keys(&self) -> Result<Vec<KeyRow>> {
        self.conn()?
            .query(
                "SELECT kid, private_key, created_at FROM signing_keys ORDER BY created_at, kid",
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| {
                Ok(KeyRow {
                    kid: get(r, 0)?,
                    private_key: get(r, 1)?,
                    created_at: u(get(r, 2)?),
                })
            })
            .collect()
    }

    fn delete_key(&self, kid: &str) -> Result<()> {
        self.execute("DELETE FROM signing_keys WHERE kid = $1", &[&kid])
            .map(|_| ())
    }

    fn purge(&self, now: u64) -> Result<()> {
        let now = i(now);
        self.tx(|tx| {
            tx.execute("DELETE FROM pending WHERE expires_at <= $1", &[&now])
                .map_err(pg)?;
            // Used codes are kept until expiry so a replay is still recognised (and revokes).
            tx.execute("DELETE FROM codes WHERE expires_at <= $1", &[&now])
                .map_err(pg)?;
            tx.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", &[&now])
                .map_err(pg)?;
            tx.execute("DELETE FROM revocations WHERE until <= $1", &[&now])
                .map_err(pg)?;
            Ok(Some(()))
        })
        .map(|_| ())
    }

    fn ping(&self) -> Result<()> {
        self.conn()?
            .simple_query("SELECT 1")
            .map(|_| ())
            .map_err(pg)
    }

    fn try_lock_refresh(&self, grant_id: &str) -> Result<Option<Box<dyn RefreshLock>>> {
        let key = lock_key(grant_id);
        let mut conn = self.locks.get().map_err(pool_err)?;
        let got: bool = conn
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(pg)?
            .get(0);
        Ok(got.then(|| {
            Box::new(AdvisoryLock {
                conn: Some(conn),
                key,
            }) as Box<dyn RefreshLock>
        }))
    }
}
