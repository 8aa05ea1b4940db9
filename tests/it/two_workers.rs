//! Two Envoy workers (two VMs) share one verification per token through shared data.

use scopegate_tests::mcp::Client;
use scopegate_tests::stack::{Stack, SUPPORT};
use serde_json::json;

#[test]
fn a_token_is_verified_once_per_envoy() {
    let s = Stack::start_workers("two_workers", 2, |_| {});
    let token = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let verified = || {
        s.envoy
            .stat("wasmcustom.scopegate.jwt.verified")
            .unwrap_or(0)
    };
    let before = verified();
    let mut first = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(first.initialize().status, 200);
    assert_eq!(verified(), before + 1);
    let url = s.envoy.url(SUPPORT);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&url, Some(&token));
                assert_eq!(c.initialize().status, 200);
                assert_eq!(c.call_tool("list_tickets", json!({})).status, 200);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(
        verified(),
        before + 1,
        "the signature was checked again on the other worker"
    );
    let elsewhere = s
        .envoy
        .stat("wasmcustom.scopegate.jwt.verified_elsewhere")
        .unwrap_or(0);
    assert!(
        elsewhere >= 1,
        "the second worker did not use the shared verification"
    );
    // A different token is verified on its own.
    let other = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    assert_eq!(Client::new(&url, Some(&other)).initialize().status, 200);
    assert_eq!(verified(), before + 2);
}
