//! Checks of the `broker:` section: listeners, lifetimes, key sources. Called by `validate`.

use crate::config::Document;
use std::net::SocketAddr;

/// Each problem as (field path, message).
pub fn check(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(b) = &doc.broker else {
        return out;
    };
    let mut err = |field: &str, msg: String| out.push((format!("broker.{field}"), msg));
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
    out
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
