//! The downstream credential cache: one exchange per credential lifetime, shared by two Envoy
//! workers. Alone in its test binary so the broker's counters see only this test's traffic.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::OPS;
use serde_json::json;

#[test]
fn two_workers_share_one_exchange_per_credential_lifetime() {
    let s = Brokered::start("brokered_cache", 300, None, 2);
    let session = s.authorize(OPS, Some("admin.read"));
    let before = s.broker_stat("token_exchanges");
    assert_eq!(before, 0, "nothing exchanged yet");
    // The first call fetches the credential...
    let mut first = s.mcp(OPS, &session);
    assert_eq!(first.call_tool("admin_report", json!({})).status, 200);
    assert_eq!(s.broker_stat("token_exchanges"), 1);
    // ...then many connections at once, spread over both workers, reuse it.
    let url = s.envoy.url(OPS);
    let token = session.access_token.clone();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&url, Some(&token));
                assert_eq!(c.initialize().status, 200);
                for _ in 0..62 {
                    let r = c.call_tool("admin_report", json!({}));
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(
        s.broker_stat("token_exchanges"),
        1,
        "about 1,000 requests (16 connections x (initialize + 62 tool calls)) over 2 workers should reuse the one credential"
    );
    // Both workers took connections (kernel-balanced; 16 connections all on one worker would be
    // a 1-in-30,000 event), so the second worker's requests found the first one's credential.
    let port = s.envoy.port;
    for worker in ["worker_0", "worker_1"] {
        let n = s
            .envoy
            .stat(&format!(
                "listener.127.0.0.1_{port}.{worker}.downstream_cx_total"
            ))
            .unwrap_or(0);
        assert!(n > 0, "{worker} served no connection");
    }
}
