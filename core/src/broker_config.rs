//! Checks of the `broker:` section: listeners, lifetimes, key sources. Called by `validate`.

use crate::config::{BrokerDoc, Document};
use std::net::SocketAddr;

/// Each problem as (field path, message).
pub fn check(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(b) = &doc.broker else {
        return out;
    };
    let mut err = |field: &str, msg: String| out.push((format!("broker.{field}"), msg));
    check_service(b, &mut err);
    check_database(b, &mut err);
    out
}

/// Listeners, keys and token lifetimes.
fn check_service(b: &BrokerDoc, err: &mut impl FnMut(&str, String)) {
    if let Some(a) = &b.listen {
        if a.parse::<SocketAddr>().is_err() {
            err(
                "listen",
                format!("`{a}` is not an address:port (e.g. 127.0.0.1:8080)"),
            );
        }
    }
    if let Some(a) = &b.internal_listen {
        if let Err(e) = internal_listen(a, b.internal_mesh_authorized) {
            err("internal_listen", e);
        }
    }
    if b.encryption_key_env.is_some() && b.encryption_key_file.is_some() {
        err(
            "encryption_key_env",
            "set encryption_key_env or encryption_key_file, not both".into(),
        );
    }
    if b.access_token_ttl_s == 0 || b.access_token_ttl_s > 86_400 {
        err(
            "access_token_ttl_s",
            "must be between 1 and 86400 seconds".into(),
        );
    }
    if b.refresh_token_ttl_s < b.access_token_ttl_s || b.refresh_token_ttl_s > 366 * 86_400 {
        err(
            "refresh_token_ttl_s",
            "must be at least access_token_ttl_s and at most a year".into(),
        );
    }
    if b.signing_key_rotation_s < 60 {
        err(
            "signing_key_rotation_s",
            "must be at least 60 seconds".into(),
        );
    }
    if b.downstream_refresh_margin_s > 3600 {
        err(
            "downstream_refresh_margin_s",
            "must be at most 3600 seconds".into(),
        );
    }
    if b.cimd_timeout_ms == 0 || b.cimd_timeout_ms > 30_000 {
        err("cimd_timeout_ms", "must be between 1 and 30000".into());
    }
}

/// The database, its credentials and pool, and what replicas sharing it need.
fn check_database(b: &BrokerDoc, err: &mut impl FnMut(&str, String)) {
    let db = database(b.database.as_deref());
    if let Database::Invalid(e) = &db {
        err("database", e.clone());
    }
    let postgres = matches!(db, Database::Postgres(_));
    for (field, set) in [
        ("database_password_env", b.database_password_env.is_some()),
        ("database_password_file", b.database_password_file.is_some()),
    ] {
        if set && !postgres {
            err(field, "only for a postgres:// database".into());
        }
    }
    if b.database_password_env.is_some() && b.database_password_file.is_some() {
        err(
            "database_password_env",
            "set database_password_env or database_password_file, not both".into(),
        );
    }
    if b.database_pool_size == 0 || b.database_pool_size > 200 {
        err("database_pool_size", "must be between 1 and 200".into());
    }
    if b.database_timeout_ms == 0 || b.database_timeout_ms > 60_000 {
        err("database_timeout_ms", "must be between 1 and 60000".into());
    }
    if b.refresh_lock_timeout_ms == 0 || b.refresh_lock_timeout_ms > 120_000 {
        err(
            "refresh_lock_timeout_ms",
            "must be between 1 and 120000".into(),
        );
    }
    // Replicas reload signing keys every 30 s, and a new key is published rotation/10 before it
    // signs: shorter, and one replica could sign with a key another does not publish yet.
    if postgres && b.signing_key_rotation_s < MIN_REPLICA_ROTATION_S {
        err(
            "signing_key_rotation_s",
            format!("must be at least {MIN_REPLICA_ROTATION_S} seconds with a postgres database (replicas reload keys every 30 s)"),
        );
    }
}

/// The shortest key rotation replicas on one database can follow (see `check`).
pub const MIN_REPLICA_ROTATION_S: u64 = 300;

/// The SQLite file used when `broker.database` is absent.
pub const DEFAULT_SQLITE: &str = "scopegate-broker.sqlite";

/// Which store `broker.database` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file path (`sqlite:PATH`, or a plain path as before).
    Sqlite(String),
    /// A `postgres://` (or `postgresql://`) URL without a password.
    Postgres(String),
    Invalid(String),
}

pub fn database(value: Option<&str>) -> Database {
    let Some(v) = value else {
        return Database::Sqlite(DEFAULT_SQLITE.into());
    };
    if let Some(rest) = v
        .strip_prefix("postgres://")
        .or_else(|| v.strip_prefix("postgresql://"))
    {
        return match postgres_authority(rest) {
            // The document is config, often in version control: the password comes from env or a file.
            Err(PostgresUrlError::Password) => Database::Invalid(
                "the password must not be in the document: name it with database_password_env or database_password_file".into(),
            ),
            Err(PostgresUrlError::NoHost) => Database::Invalid(format!("`{}` has no host", redact(v))),
            Err(PostgresUrlError::Malformed(e)) => Database::Invalid(format!("not a postgres URL: {e}")),
            Ok(()) => Database::Postgres(v.to_string()),
        };
    }
    let path = v.strip_prefix("sqlite:").unwrap_or(v);
    if path.is_empty() || v.contains("://") && !v.starts_with("sqlite:") {
        return Database::Invalid(format!(
            "`{v}` is neither a SQLite path (sqlite:PATH) nor postgres://user@host:port/dbname"
        ));
    }
    Database::Sqlite(path.to_string())
}

enum PostgresUrlError {
    Password,
    NoHost,
    Malformed(&'static str),
}

/// Checks the authority of a `postgres://` URL (what follows the scheme) the way a URL parser
/// reads a non-special scheme's: `[user[:password]@]host[:port]`, the host opaque or `[IPv6]`.
/// Written here rather than with the `url` crate because the filter runs this check too, and
/// `url` brings IDNA's Unicode tables into the `.wasm` (BENCHMARKS.md, "The module"); the driver
/// parses the whole URL again when the broker connects.
fn postgres_authority(rest: &str) -> Result<(), PostgresUrlError> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(i) => (
            authority.get(..i).unwrap_or(""),
            authority.get(i + 1..).unwrap_or(""),
        ),
        None => ("", authority),
    };
    if userinfo
        .split_once(':')
        .is_some_and(|(_, pw)| !pw.is_empty())
    {
        return Err(PostgresUrlError::Password);
    }
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port
            .find(']')
            .ok_or(PostgresUrlError::Malformed("invalid IPv6 address"))?;
        let inner = host_port.get(1..end).unwrap_or("");
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(PostgresUrlError::Malformed("invalid IPv6 address"));
        }
        let port = host_port.get(end + 1..).unwrap_or("");
        if !port.is_empty() && !port.starts_with(':') {
            return Err(PostgresUrlError::Malformed("invalid IPv6 address"));
        }
        (host_port.get(..=end).unwrap_or(""), port.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(PostgresUrlError::NoHost);
    }
    let forbidden = |c: char| {
        c.is_ascii_control() || matches!(c, ' ' | '#' | '<' | '>' | '[' | '\\' | ']' | '^' | '|')
    };
    if !host.starts_with('[') && host.contains(forbidden) {
        return Err(PostgresUrlError::Malformed("invalid domain character"));
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        if !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(PostgresUrlError::Malformed("invalid port number"));
        }
    }
    Ok(())
}

/// The URL without anything after the scheme's user part, for messages.
fn redact(v: &str) -> &str {
    v.split('@').next_back().unwrap_or(v)
}

/// Where the internal listener (token exchange, revocations, JWKS) is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalListen {
    /// A Unix domain socket: only processes that can open the file reach it.
    Unix(String),
    Tcp(SocketAddr),
}

/// The internal listener hands out downstream credentials for any valid client token, so it must
/// be private by construction: a Unix socket (`unix:/run/scopegate/internal.sock`), a loopback
/// address (the pod or host only), or any address when `mesh_authorized` says a mesh enforces
/// mutual TLS and an authorization policy naming the Envoy that may call it.
pub fn internal_listen(addr: &str, mesh_authorized: bool) -> Result<InternalListen, String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        if !path.starts_with('/') || path.len() > 100 {
            return Err(format!(
                "`{addr}`: a Unix socket path must be absolute and at most 100 bytes"
            ));
        }
        return Ok(InternalListen::Unix(path.to_string()));
    }
    let sa: SocketAddr = addr.parse().map_err(|_| {
        format!("`{addr}` is not an address:port (e.g. 127.0.0.1:8081) or unix:/path")
    })?;
    if !sa.ip().is_loopback() && !mesh_authorized {
        return Err(format!(
            "`{addr}` is reachable from other hosts: the internal listener exchanges client tokens for downstream credentials; use unix:/path or a loopback address, or set broker.internal_mesh_authorized when a mesh enforces mTLS and an authorization policy on it"
        ));
    }
    Ok(InternalListen::Tcp(sa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_section_errors_are_named() {
        let doc = Document::parse(
            "gateways: []\nbroker:\n  listen: nowhere\n  access_token_ttl_s: 0\n  encryption_key_env: K\n  encryption_key_file: /k\n",
        )
        .unwrap();
        let fields: Vec<String> = check(&doc).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "broker.listen",
                "broker.encryption_key_env",
                "broker.access_token_ttl_s"
            ]
        );
        let ok = Document::parse("gateways: []\nbroker:\n  listen: 127.0.0.1:0\n").unwrap();
        assert!(check(&ok).is_empty());
    }

    #[test]
    fn database_is_chosen_by_its_url() {
        assert_eq!(database(None), Database::Sqlite(DEFAULT_SQLITE.into()));
        assert_eq!(
            database(Some("/var/lib/sg.sqlite")),
            Database::Sqlite("/var/lib/sg.sqlite".into())
        );
        assert_eq!(
            database(Some("sqlite:sg.db")),
            Database::Sqlite("sg.db".into())
        );
        assert_eq!(
            database(Some("postgres://sg@db:5432/scopegate")),
            Database::Postgres("postgres://sg@db:5432/scopegate".into())
        );
        assert!(matches!(
            database(Some("postgresql://sg@db/scopegate")),
            Database::Postgres(_)
        ));
        assert!(matches!(
            database(Some("mysql://db/x")),
            Database::Invalid(_)
        ));
        assert!(matches!(database(Some("sqlite:")), Database::Invalid(_)));
        for ok in [
            "postgres://db/x",
            "postgres://sg@[::1]:5432/x",
            "postgres://sg:@db.internal:5432/x?sslmode=require",
            "postgresql://xn--bcher-kva.example/x",
        ] {
            assert!(matches!(database(Some(ok)), Database::Postgres(_)), "{ok}");
        }
        for (bad, why) in [
            ("postgres:///x", "no host"),
            ("postgres://sg@/x", "no host"),
            ("postgres://db:54x2/x", "invalid port"),
            ("postgres://db:99999/x", "invalid port"),
            ("postgres://[::g]/x", "IPv6"),
            ("postgres://d b/x", "domain character"),
        ] {
            let Database::Invalid(e) = database(Some(bad)) else {
                panic!("{bad} accepted");
            };
            assert!(e.contains(why), "{bad}: {e}");
        }
        let Database::Invalid(e) = database(Some("postgres://sg:hunter2@db/scopegate")) else {
            panic!("a password in the URL is refused");
        };
        assert!(
            e.contains("database_password_env") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn database_settings_are_named() {
        let doc = Document::parse(
            "gateways: []\nbroker:\n  database: postgres://sg:pw@db/x\n  database_password_env: A\n  database_password_file: /f\n  database_pool_size: 0\n  refresh_lock_timeout_ms: 0\n",
        )
        .unwrap();
        let fields: Vec<String> = check(&doc).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "broker.database",
                "broker.database_password_env",
                "broker.database_password_file",
                "broker.database_password_env",
                "broker.database_pool_size",
                "broker.refresh_lock_timeout_ms"
            ]
        );
        let ok = Document::parse(
            "gateways: []\nbroker:\n  database: postgres://sg@127.0.0.1:5432/x\n  database_password_file: /run/secrets/pg\n",
        )
        .unwrap();
        assert!(check(&ok).is_empty(), "{:?}", check(&ok));
        let fast = Document::parse(
            "gateways: []\nbroker:\n  database: postgres://sg@db/x\n  signing_key_rotation_s: 120\n",
        )
        .unwrap();
        assert_eq!(check(&fast)[0].0, "broker.signing_key_rotation_s");
        let sqlite_pw = Document::parse(
            "gateways: []\nbroker:\n  database: sg.db\n  database_password_env: A\n",
        )
        .unwrap();
        assert_eq!(check(&sqlite_pw)[0].0, "broker.database_password_env");
    }

    #[test]
    fn internal_listener_is_private() {
        assert_eq!(
            internal_listen("unix:/run/sg/internal.sock", false),
            Ok(InternalListen::Unix("/run/sg/internal.sock".into()))
        );
        assert!(internal_listen("127.0.0.1:8081", false).is_ok());
        assert!(internal_listen("[::1]:8081", false).is_ok());
        assert!(internal_listen("unix:relative.sock", false).is_err());
        let e = internal_listen("0.0.0.0:8081", false).unwrap_err();
        assert!(e.contains("reachable from other hosts"), "{e}");
        assert!(internal_listen("10.0.0.5:8081", false).is_err());
        assert!(internal_listen("0.0.0.0:8081", true).is_ok());
        let doc =
            Document::parse("gateways: []\nbroker:\n  internal_listen: 0.0.0.0:8081\n").unwrap();
        assert_eq!(check(&doc)[0].0, "broker.internal_listen");
    }
}
