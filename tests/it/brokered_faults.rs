//! Faults on the brokered path, provoked for real: the broker process killed and restarted, and
//! the downstream authorization server forgetting every grant (restarted behind a proxy that
//! keeps its issuer URL stable).

use scopegate_tests::brokered::Brokered;
use scopegate_tests::downstream::{self, Spec};
use scopegate_tests::mcp::Client;
use scopegate_tests::proxy::Proxy;
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::json;
use std::time::Duration;

#[test]
fn broker_down_fails_closed_then_recovers() {
    let mut s = Brokered::start("brokered_broker_down", 300, None, 1);
    // One client is already using its credential; another has a token but has not used it yet.
    let warm = s.authorize(SUPPORT, Some("tickets.read"));
    let mut warm_client = s.mcp(SUPPORT, &warm);
    assert_eq!(warm_client.call_tool("list_tickets", json!({})).status, 200);
    let cold = s.authorize(OPS, Some("admin.read"));

    s.stack.broker.kill9();
    s.ops.clear_seen();
    let r = Client::new(&s.envoy.url(OPS), Some(&cold.access_token)).initialize();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(
        s.ops.seen().is_empty(),
        "a request reached the upstream without a credential: {:?}",
        s.ops.seen()
    );
    let line = s
        .envoy
        .wait_access_log(|l| l["reason"] == "broker_unavailable");
    assert_eq!(line["decision"], "deny");
    // A credential already held stays usable until it nears expiry.
    assert_eq!(warm_client.call_tool("list_tickets", json!({})).status, 200);

    s.stack.broker.restart();
    let mut c = s.mcp(OPS, &cold);
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.tool_json()["authorization"]
        .as_str()
        .is_some_and(|a| a.starts_with("Bearer ")));
}

#[test]
fn a_revoked_downstream_grant_is_401_then_a_clean_reauthorization() {
    let proxy = Proxy::start();
    let mut s = Brokered::start("brokered_grant_revoked", 3, Some(&proxy), 1);
    let session = s.authorize(SUPPORT, None);
    let mut c = s.mcp(SUPPORT, &session);
    assert_eq!(c.call_tool("list_tickets", json!({})).status, 200);

    // The downstream server forgets every grant (restarted, in-memory), keeping its issuer URL.
    s.stack.authz.proc.kill();
    let spec = Spec {
        redirect_uris: vec![format!("{}/callback", s.public_url)],
        access_ttl: 3,
        issuer: Some(proxy.url.clone()),
    };
    let (authz, _) = downstream::start("brokered_grant_revoked_authz2", &spec);
    proxy.set_target(authz.port);
    s.stack.authz = authz;

    // Once the held downstream credential expires, the broker's refresh finds the grant gone.
    let r = scopegate_tests::procs::wait_for(
        "the dead grant to surface",
        Duration::from_secs(30),
        || {
            let r = c.call_tool("list_tickets", json!({}));
            (r.status != 200).then_some(r)
        },
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let h = r.header("www-authenticate").unwrap_or_default();
    assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
    assert!(h.contains("resource_metadata="), "{h}");
    let line = s.envoy.wait_access_log(|l| l["reason"] == "grant_revoked");
    assert_eq!(line["status"], 401);

    // The client authorizes again (same registration) and carries on.
    let again = s.authorize_client(&session.client_id, SUPPORT, None);
    let mut c = s.mcp(SUPPORT, &again);
    let r = c.call_tool("list_tickets", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
}
