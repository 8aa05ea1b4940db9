//! The whole product through Envoy: broker-issued tokens, the filter's exchange for the brokered
//! downstream credential, its caching, and failing closed when the broker is away.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::json;
use std::sync::OnceLock;

fn stack() -> &'static Brokered {
    static S: OnceLock<Brokered> = OnceLock::new();
    S.get_or_init(|| Brokered::start("brokered", 300, None, 1))
}

#[test]
fn the_upstream_gets_the_downstream_credential_never_the_client_token() {
    let s = stack();
    let session = s.authorize(SUPPORT, None);
    assert_eq!(
        session.scope, "tickets.read accounts.read",
        "no scope asked = the server's subset"
    );
    let mut c = s.mcp(SUPPORT, &session);
    let r = c.call_tool("get_account", json!({"account_id": "acme"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.tool_json();
    let auth = seen["authorization"]
        .as_str()
        .expect("a credential reached the server");
    assert!(auth.starts_with("Bearer "), "{auth}");
    assert_ne!(
        auth,
        format!("Bearer {}", session.access_token),
        "the client's token was passed through"
    );
    // It is the downstream authorization server's token for the downstream API.
    let downstream = auth.trim_start_matches("Bearer ");
    let payload = downstream.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], json!(s.stack.downstream_issuer));
    assert_eq!(claims["aud"], json!(scopegate_tests::downstream::API));
    assert_eq!(
        seen["scopegate_scopes"],
        json!("tickets.read accounts.read")
    );
    assert_eq!(seen["scopegate_client_id"], json!(session.client_id));
    for req in s.support.seen() {
        assert!(
            !req.to_string().contains(&session.access_token),
            "the server saw the client token: {req}"
        );
    }
}

#[test]
fn a_token_for_one_server_is_refused_by_the_other() {
    let s = stack();
    let session = s.authorize(SUPPORT, Some("tickets.read"));
    let r = Client::new(&s.envoy.url(OPS), Some(&session.access_token)).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

#[test]
fn step_up_from_403_to_a_wider_grant() {
    let s = stack();
    let narrow = s.authorize(OPS, Some("admin.read"));
    let mut c = s.mcp(OPS, &narrow);
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let h = r.header("www-authenticate").unwrap();
    assert!(h.contains("scope=\"tickets.write admin.read\""), "{h}");
    // The client re-authorizes with the scope the challenge named.
    let wide = s.authorize_client(&narrow.client_id, OPS, Some("tickets.write admin.read"));
    let mut c = s.mcp(OPS, &wide);
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.tool_json()["scopegate_scopes"],
        json!("tickets.write admin.read")
    );
}
