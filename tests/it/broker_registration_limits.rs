//! Registration limits per gateway, against the real broker: a rate per minute and a cap on live
//! clients, each answered 429 `temporarily_unavailable` with `Retry-After` once reached. (The
//! sweep of clients never used is a store unit test: its shortest period is an hour.)

use scopegate_tests::broker::BrokerStack;
use serde_json::{json, Value};

fn register(issuer: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, r.json().unwrap_or(Value::Null))
}

#[test]
fn registrations_are_limited_per_gateway() {
    let s = BrokerStack::start("broker_registration_limits", 300, None, |doc| {
        doc["gateways"][0]["clients"]["registration"] = json!({"per_minute": 3});
        doc["gateways"][1]["clients"] = json!({"registration": {"max_clients": 2}});
    });
    // A rate: the fourth registration in a minute waits (unless the minute turned meanwhile, in
    // which case the next three are the window).
    let statuses: Vec<u16> = (0..7).map(|_| register(&s.issuer).0).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let (status, retry, body) = register(&s.issuer);
    if status == 429 {
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
    }
    // A cap on live clients, counted per gateway: `other` has its own.
    assert_eq!(register(&s.other_issuer).0, 201);
    assert_eq!(register(&s.other_issuer).0, 201);
    let (status, retry, body) = register(&s.other_issuer);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(retry.is_some());
}
