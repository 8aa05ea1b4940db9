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
    for (field, addr) in [
        ("listen", &b.listen),
        ("internal_listen", &b.internal_listen),
    ] {
        if let Some(a) = addr {
            if a.parse::<SocketAddr>().is_err() {
                err(
                    field,
                    format!("`{a}` is not an address:port (e.g. 127.0.0.1:8080)"),
                );
            }
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
}
