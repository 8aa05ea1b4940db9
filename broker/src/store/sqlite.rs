//! SQLite storage: one file, WAL journal, `synchronous=FULL`, every change one transaction.

use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::Mutex;

/// Migrations in order; `PRAGMA user_version` records how many were applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_revocations.sql"),
    include_str!("../../migrations/0003_grants_by_person.sql"),
];

pub struct Sqlite {
    conn: Mutex<Connection>,
}

fn e(err: rusqlite::Error) -> StoreError {
    StoreError::Database(err)
}

impl Sqlite {
    pub fn open(path: &str) -> Result<Sqlite> {
        let mut conn = Connection::open(path).map_err(e)?;
        // WAL + FULL: a committed transaction survives a crash or power loss; a torn one is rolled
        // back on the next open. busy_timeout covers a second process (e.g. `check`) reading.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(e)?;
        migrate(&mut conn)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut conn).map_err(e)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(e)?
        .try_into()
        .unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(e)?;
        tx.execute_batch(sql).map_err(e)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(e)?;
        tx.commit().map_err(e)?;
    }
    Ok(())
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn grant_row(r: &Row) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        id: r.get(0)?,
        gateway: r.get(1)?,
        server: r.get(2)?,
        client_id: r.get(3)?,
        subject: r.get(4)?,
        scope: r.get(5)?,
        status: GrantStatus::parse(&r.get::<_, String>(6)?),
        downstream: r.get(7)?,
        downstream_expires_at: u(r.get(8)?),
        version: r.get(9)?,
        created_at: u(r.get(10)?),
    })
}

fn refresh_row(r: &Row) -> rusqlite::Result<RefreshRow> {
    Ok(RefreshRow {
        token_hash: r.get(0)?,
        grant_id: r.get(1)?,
        client_id: r.get(2)?,
        status: TokenStatus::parse(&r.get::<_, String>(3)?),
        expires_at: u(r.get(4)?),
        created_at: u(r.get(5)?),
    })
}

fn pending_row(r: &Row) -> rusqlite::Result<PendingRow> {
    Ok(PendingRow {
        id_hash: r.get(0)?,
        gateway: r.get(1)?,
        data: r.get(2)?,
        csrf_hash: r.get(3)?,
        state_hash: r.get(4)?,
        secret: r.get(5)?,
        expires_at: u(r.get(6)?),
    })
}

const GRANT_COLS: &str = "id, gateway, server, client_id, subject, scope, status, downstream, downstream_expires_at, version, created_at";
const PENDING_COLS: &str = "id_hash, gateway, data, csrf_hash, state_hash, secret, expires_at";

impl Store for Sqlite {
    fn put_client(&self, c: &ClientRow) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO clients (client_id, gateway, metadata, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.client_id, c.gateway, c.metadata, c.secret_hash, i(c.created_at)],
            )
            .map(|_| ())
        })
    }

    fn count_clients(&self, gateway: &str) -> Result<u64> {
        self.with(|db| {
            db.query_row(
                "SELECT COUNT(*) FROM clients WHERE gateway = ?1",
                [gateway],
                |r| r.get::<_, i64>(0),
            )
            .map(u)
        })
    }

    fn sweep_unused_clients(&self, gateway: &str, created_before: u64) -> Result<usize> {
        self.with(|db| {
            db.execute(
                "DELETE FROM clients WHERE gateway = ?1 AND created_at < ?2 AND NOT EXISTS (SELECT 1 FROM grants WHERE grants.client_id = clients.client_id)",
                params![gateway, i(created_before)],
            )
        })
    }

    fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        self.with(|db| {
            db.query_row(
                "SELECT client_id, gateway, metadata, secret_hash, created_at FROM clients WHERE client_id = ?1",
                [client_id],
                |r| {
                    Ok(ClientRow {
                        client_id: r.get(0)?,
                        gateway: r.get(1)?,
                        metadata: r.get(2)?,
                        secret_hash: r.get(3)?,
                        created_at: u(r.get(4)?),
                    })
                },
            )
            .optional()
        })
    }

    fn put_pending(&self, p: &PendingRow) -> Result<()> {
        self.with(|db| {
            db.execute(
                &format!(
                    "INSERT INTO pending ({PENDING_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    p.id_hash,
                    p.gateway,
                    p.data,
                    p.csrf_hash,
                    p.state_hash,
                    p.secret,
                    i(p.expires_at)
                ],
            )
            .map(|_| ())
        })
    }

    fn pending(&self, id_hash: &str) -> Result<Option<PendingRow>> {
        self.with(|db| {
            db.query_row(
                &format!("SELECT {PENDING_COLS} FROM pending WHERE id_hash = ?1"),
                [id_hash],
                pending_row,
            )
            .optional()
        })
    }

    fn approve_pending(&self, id_hash: &str, state_hash: &str, secret: &[u8]) -> Result<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE pending SET state_hash = ?2, secret = ?3 WHERE id_hash = ?1 AND state_hash IS NULL",
                params![id_hash, state_hash, secret],
            )
            .map(|n| n == 1)
        })
    }

    fn take_pending_by_state(&self, state_hash: &str) -> Result<Option<PendingRow>> {
        self.with(|db| {
            let tx = db.transaction()?;
            let row = tx
                .query_row(
                    &format!("SELECT {PENDING_COLS} FROM pending WHERE state_hash = ?1"),
                    [state_hash],
                    pending_row,
                )
                .optional()?;
            if row.is_some() {
                tx.execute("DELETE FROM pending WHERE state_hash = ?1", [state_hash])?;
            }
            tx.commit()?;
            Ok(row)
        })
    }

    fn delete_pending(&self, id_hash: &str) -> Result<()> {
        self.with(|db| {
            db.execute("DELETE FROM pending WHERE id_hash = ?1", [id_hash])
                .map(|_| ())
        })
    }

    fn create_grant(&self, g: &GrantRow, c: &CodeRow) -> Result<()> {
        self.with(|db| {
            let tx = db.transaction()?;
            tx.execute(
                &format!("INSERT INTO grants ({GRANT_COLS}, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)"),
                params![g.id, g.gateway, g.server, g.client_id, g.subject, g.scope, g.status.as_str(), g.downstream, i(g.downstream_expires_at), g.version, i(g.created_at)],
            )?;
            tx.execute(
                "INSERT INTO codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, resource, expires_at, used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                params![c.code_hash, c.grant_id, c.client_id, c.redirect_uri, c.code_challenge, c.resource, i(c.expires_at)],
            )?;
            tx.commit()
        })
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        self.with(|db| {
            db.query_row(
                &format!("SELECT {GRANT_COLS} FROM grants WHERE id = ?1"),
                [id],
                grant_row,
            )
            .optional()
        })
    }

    fn update_downstream(
        &self,
        id: &str,
        version: i64,
        sealed: &[u8],
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE grants SET downstream = ?3, downstream_expires_at = ?4, version = version + 1, updated_at = ?5 WHERE id = ?1 AND version = ?2 AND status = 'active'",
                params![id, version, sealed, i(expires_at), i(now)],
            )
            .map(|n| n == 1)
        })
    }

    fn grants_of(&self, gateway: &str, subject: &str) -> Result<Vec<GrantListing>> {
        self.with(|db| {
            let mut st = db.prepare(
                "SELECT id, server, client_id, scope, status, created_at, last_used_at FROM grants \
                 WHERE gateway = ?1 AND subject = ?2 AND status = 'active' ORDER BY created_at DESC, id",
            )?;
            let rows = st.query_map(params![gateway, subject], |r| {
                Ok(GrantListing {
                    id: r.get(0)?,
                    server: r.get(1)?,
                    client_id: r.get(2)?,
                    scope: r.get(3)?,
                    status: GrantStatus::parse(&r.get::<_, String>(4)?),
                    created_at: u(r.get(5)?),
                    last_used_at: u(r.get(6)?),
                })
            })?;
            rows.collect()
        })
    }

    fn touch_grant(&self, id: &str, now: u64) -> Result<()> {
        self.with(|db| {
            db.execute(
                "UPDATE grants SET last_used_at = ?2 WHERE id = ?1 AND last_used_at < ?2",
                params![id, i(now)],
            )
            .map(|_| ())
        })
    }

    fn set_grant_status(&self, id: &str, status: GrantStatus, now: u64) -> Result<()> {
        self.with(|db| {
            db.execute(
                "UPDATE grants SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, status.as_str(), i(now)],
            )
            .map(|_| ())
        })
    }

    fn revoke_family(&self, grant_id: &str, now: u64, listed_until: u64) -> Result<()> {
        self.with(|db| {
            let tx = db.transaction()?;
            let changed = tx.execute(
                "UPDATE grants SET status = 'revoked', updated_at = ?2 WHERE id = ?1 AND status = 'active'",
                params![grant_id, i(now)],
            )?;
            if changed > 0 {
                tx.execute(
                    "INSERT INTO revocations (grant_id, until) VALUES (?1, ?2)",
                    params![grant_id, i(listed_until)],
                )?;
            }
            tx.execute("UPDATE refresh_tokens SET status = 'revoked' WHERE grant_id = ?1", [grant_id])?;
            tx.commit()
        })
    }

    fn code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        self.with(|db| {
            db.query_row(
                "SELECT code_hash, grant_id, client_id, redirect_uri, code_challenge, resource, expires_at, used FROM codes WHERE code_hash = ?1",
                [code_hash],
                |r| {
                    Ok(CodeRow {
                        code_hash: r.get(0)?,
                        grant_id: r.get(1)?,
                        client_id: r.get(2)?,
                        redirect_uri: r.get(3)?,
                        code_challenge: r.get(4)?,
                        resource: r.get(5)?,
                        expires_at: u(r.get(6)?),
                        used: r.get::<_, i64>(7)? != 0,
                    })
                },
            )
            .optional()
        })
    }

    fn redeem_code(&self, code_hash: &str, refresh: Option<&RefreshRow>) -> Result<bool> {
        self.with(|db| {
            let tx = db.transaction()?;
            let n = tx.execute("UPDATE codes SET used = 1 WHERE code_hash = ?1 AND used = 0", [code_hash])?;
            if n != 1 {
                return Ok(false);
            }
            if let Some(t) = refresh {
                tx.execute(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, status, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![t.token_hash, t.grant_id, t.client_id, t.status.as_str(), i(t.expires_at), i(t.created_at)],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRow>> {
        self.with(|db| {
            db.query_row(
                "SELECT token_hash, grant_id, client_id, status, expires_at, created_at FROM refresh_tokens WHERE token_hash = ?1",
                [token_hash],
                refresh_row,
            )
            .optional()
        })
    }

    fn rotate_refresh(&self, old_hash: &str, t: &RefreshRow) -> Result<bool> {
        self.with(|db| {
            let tx = db.transaction()?;
            let n = tx.execute(
                "UPDATE refresh_tokens SET status = 'rotated' WHERE token_hash = ?1 AND status = 'active'",
                [old_hash],
            )?;
            if n != 1 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, status, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.token_hash, t.grant_id, t.client_id, t.status.as_str(), i(t.expires_at), i(t.created_at)],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn put_key(&self, k: &KeyRow) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO signing_keys (kid, private_key, created_at) VALUES (?1, ?2, ?3)",
                params![k.kid, k.private_key, i(k.created_at)],
            )
            .map(|_| ())
        })
    }

    fn keys(&self) -> Result<Vec<KeyRow>> {
        self.with(|db| {
            let mut st = db.prepare(
                "SELECT kid, private_key, created_at FROM signing_keys ORDER BY created_at, kid",
            )?;
            let rows = st.query_map([], |r| {
                Ok(KeyRow {
                    kid: r.get(0)?,
                    private_key: r.get(1)?,
                    created_at: u(r.get(2)?),
                })
            })?;
            rows.collect()
        })
    }

    fn delete_key(&self, kid: &str) -> Result<()> {
        self.with(|db| {
            db.execute("DELETE FROM signing_keys WHERE kid = ?1", [kid])
                .map(|_| ())
        })
    }

    fn purge(&self, now: u64) -> Result<()> {
        self.with(|db| {
            let tx = db.transaction()?;
            tx.execute("DELETE FROM pending WHERE expires_at <= ?1", [i(now)])?;
            // Used codes are kept until expiry so a replay is still recognised (and revokes).
            tx.execute("DELETE FROM codes WHERE expires_at <= ?1", [i(now)])?;
            tx.execute(
                "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
                [i(now)],
            )?;
            tx.execute("DELETE FROM revocations WHERE until <= ?1", [i(now)])?;
            tx.commit()
        })
    }

    fn revocations_since(&self, since: u64, limit: usize) -> Result<(u64, Vec<(String, u64)>)> {
        self.with(|db| {
            let last: i64 =
                db.query_row("SELECT COALESCE(MAX(seq), 0) FROM revocations", [], |r| {
                    r.get(0)
                })?;
            // A cursor from before a database reset is ahead of us: start over.
            let since = if i(since) > last { 0 } else { i(since) };
            let mut stmt = db.prepare(
                "SELECT seq, grant_id, until FROM revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![since, i(limit as u64)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, u(r.get(2)?)))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let cursor = rows.last().map_or(since, |r| r.0);
            Ok((
                u(cursor),
                rows.into_iter().map(|(_, id, until)| (id, until)).collect(),
            ))
        })
    }

    fn ping(&self) -> Result<()> {
        self.with(|db| db.query_row("SELECT 1", [], |_| Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str) -> GrantRow {
        GrantRow {
            id: id.into(),
            gateway: "g".into(),
            server: "s".into(),
            client_id: "c".into(),
            subject: "u".into(),
            scope: "a".into(),
            status: GrantStatus::Active,
            downstream: vec![1],
            downstream_expires_at: 10,
            version: 0,
            created_at: 1,
        }
    }
    fn code(h: &str, g: &str) -> CodeRow {
        CodeRow {
            code_hash: h.into(),
            grant_id: g.into(),
            client_id: "c".into(),
            redirect_uri: "r".into(),
            code_challenge: "x".into(),
            resource: "res".into(),
            expires_at: 100,
            used: false,
        }
    }
    fn rt(h: &str, g: &str) -> RefreshRow {
        RefreshRow {
            token_hash: h.into(),
            grant_id: g.into(),
            client_id: "c".into(),
            status: TokenStatus::Active,
            expires_at: 100,
            created_at: 1,
        }
    }

    #[test]
    fn family_lifecycle() {
        let db = Sqlite::open(":memory:").unwrap();
        db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
        assert!(db.redeem_code("c1", Some(&rt("r1", "g1"))).unwrap());
        assert!(!db.redeem_code("c1", Some(&rt("r1b", "g1"))).unwrap());
        assert!(db.rotate_refresh("r1", &rt("r2", "g1")).unwrap());
        assert!(!db.rotate_refresh("r1", &rt("r3", "g1")).unwrap());
        assert_eq!(
            db.refresh("r1").unwrap().unwrap().status,
            TokenStatus::Rotated
        );
        assert!(db.update_downstream("g1", 0, &[2], 20, 5).unwrap());
        assert!(!db.update_downstream("g1", 0, &[3], 30, 5).unwrap());
        db.revoke_family("g1", 6, 400).unwrap();
        assert_eq!(
            db.grant("g1").unwrap().unwrap().status,
            GrantStatus::Revoked
        );
        assert_eq!(
            db.refresh("r2").unwrap().unwrap().status,
            TokenStatus::Revoked
        );
        assert!(!db.update_downstream("g1", 1, &[3], 30, 7).unwrap());
    }

    #[test]
    fn revocations_are_listed_once_until_they_expire() {
        let db = Sqlite::open(":memory:").unwrap();
        db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
        db.create_grant(&grant("g2"), &code("c2", "g2")).unwrap();
        assert_eq!(db.revocations_since(0, 10).unwrap(), (0, vec![]));
        db.revoke_family("g1", 5, 100).unwrap();
        db.revoke_family("g1", 6, 100).unwrap();
        db.revoke_family("g2", 7, 200).unwrap();
        let (cursor, rows) = db.revocations_since(0, 10).unwrap();
        assert_eq!(rows, vec![("g1".into(), 100), ("g2".into(), 200)]);
        assert_eq!(db.revocations_since(cursor, 10).unwrap(), (cursor, vec![]));
        let (c1, first) = db.revocations_since(0, 1).unwrap();
        assert_eq!(first, vec![("g1".to_string(), 100)]);
        assert_eq!(db.revocations_since(c1, 10).unwrap().1.len(), 1);
        // A cursor from before a database reset is ahead: everything is listed again.
        assert_eq!(db.revocations_since(cursor + 50, 10).unwrap().1.len(), 2);
        db.purge(150).unwrap();
        assert_eq!(
            db.revocations_since(0, 10).unwrap().1,
            vec![("g2".to_string(), 200)]
        );
    }

    #[test]
    fn unused_clients_are_swept() {
        let db = Sqlite::open(":memory:").unwrap();
        for (id, at) in [("c", 1), ("idle", 1), ("new", 50)] {
            db.put_client(&ClientRow {
                client_id: id.into(),
                gateway: "g".into(),
                metadata: "{}".into(),
                secret_hash: None,
                created_at: at,
            })
            .unwrap();
        }
        db.create_grant(&grant("g1"), &code("c1", "g1")).unwrap();
        assert_eq!(db.count_clients("g").unwrap(), 3);
        assert_eq!(db.sweep_unused_clients("other", 40).unwrap(), 0);
        assert_eq!(db.sweep_unused_clients("g", 40).unwrap(), 1);
        assert!(db.client("idle").unwrap().is_none());
        assert!(db.client("c").unwrap().is_some(), "it has a grant");
        assert!(db.client("new").unwrap().is_some(), "too young");
    }
}
