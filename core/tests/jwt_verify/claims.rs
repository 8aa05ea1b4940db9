//! Claims: audience forms, scopes from `scope` or `scp`, identity and extras, reason codes.

use super::fixture::*;
use scopegate_core::jwt::TokenError;
use serde_json::json;

#[test]
fn audience_as_string_or_array() {
    let one = ed_payload(with(
        base_payload(),
        json!({"aud": "https://mcp.example.com/a"}),
    ));
    assert_eq!(check(&one).unwrap().aud, vec!["https://mcp.example.com/a"]);
    let many = ed_payload(with(
        base_payload(),
        json!({"aud": ["https://mcp.example.com/b", "https://mcp.example.com/a"]}),
    ));
    assert_eq!(
        check(&many).unwrap().aud,
        vec!["https://mcp.example.com/a", "https://mcp.example.com/b"]
    );
    assert!(check(&ed_payload(base_payload())).unwrap().aud.is_empty());
}

#[test]
fn scopes_from_scope_or_scp() {
    let scope = ed_payload(with(
        base_payload(),
        json!({"scope": "tickets.read  accounts.read tickets.read"}),
    ));
    assert_eq!(
        check(&scope).unwrap().scopes,
        vec!["tickets.read", "accounts.read"]
    );
    let scp = ed_payload(with(
        base_payload(),
        json!({"scp": ["tickets.write", "admin.read"]}),
    ));
    assert_eq!(
        check(&scp).unwrap().scopes,
        vec!["tickets.write", "admin.read"]
    );
    let scp_str = ed_payload(with(base_payload(), json!({"scp": "a b"})));
    assert_eq!(check(&scp_str).unwrap().scopes, vec!["a", "b"]);
    let both = ed_payload(with(base_payload(), json!({"scope": "a", "scp": ["b"]})));
    assert_eq!(check(&both).unwrap().scopes, vec!["a"]);
    assert!(check(&ed_payload(base_payload()))
        .unwrap()
        .scopes
        .is_empty());
}

#[test]
fn identity_claims_and_extras() {
    let token = ed_payload(with(
        base_payload(),
        json!({
            "azp": "azp-client", "jti": "t-1", "grant_id": "g-42", "nbf": NOW - 10,
            "email": "ada@example.com", "nonce": "n-1", "groups": ["ops"], "scope": "a"
        }),
    ));
    let got = check(&token).unwrap();
    assert_eq!(got.client_id.as_deref(), Some("azp-client"));
    assert_eq!(got.jti.as_deref(), Some("t-1"));
    assert_eq!(got.grant_id.as_deref(), Some("g-42"));
    assert_eq!(got.nbf, Some(NOW - 10));
    assert_eq!(got.extra["email"], json!("ada@example.com"));
    assert_eq!(got.extra["nonce"], json!("n-1"));
    assert_eq!(got.extra["groups"], json!(["ops"]));
    for modelled in [
        "iss", "sub", "exp", "iat", "nbf", "azp", "jti", "scope", "grant_id",
    ] {
        assert!(!got.extra.contains_key(modelled), "{modelled} leaked");
    }
    let both = ed_payload(with(
        base_payload(),
        json!({"client_id": "cid", "azp": "azp-client"}),
    ));
    assert_eq!(check(&both).unwrap().client_id.as_deref(), Some("cid"));
}

#[test]
fn reasons_are_distinct_snake_case_codes() {
    let all = [
        TokenError::Malformed,
        TokenError::UnsupportedAlgorithm,
        TokenError::UnknownKid("k".into()),
        TokenError::NoMatchingKey,
        TokenError::BadSignature,
        TokenError::MissingExp,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::WrongIssuer,
        TokenError::MissingIssuer,
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &all {
        let r = e.reason().as_str();
        assert!(
            r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{r}"
        );
        assert!(seen.insert(r), "duplicate {r}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(TokenError::Expired.reason(), "expired");
    assert_eq!(TokenError::UnknownKid("x".into()).reason(), "unknown_kid");
}
