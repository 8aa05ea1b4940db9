//! Downstream refresh through the broker's token exchange: done when the downstream token has
//! expired, once for many concurrent exchanges (single-flight), counted in `/internal/stats`.

use scopegate_tests::broker::BrokerStack;
use scopegate_tests::oauth::first_grant;
use scopegate_tests::proxy::Proxy;
use scopegate_tests::stack::SUPPORT;
use serde_json::Value;
use std::time::Duration;

const CB: &str = "http://127.0.0.1:1/client/cb";

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).unwrap(),
    )
    .unwrap()
}

#[test]
fn expired_downstream_token_is_refreshed_once_for_concurrent_exchanges() {
    let proxy = Proxy::start();
    let s = BrokerStack::start("broker_refresh", 4, Some(&proxy), |_| {});
    let resource = s.resource(SUPPORT);
    let (_, t) = first_grant(&s.issuer, CB, &resource);
    let access = t["access_token"].as_str().unwrap().to_string();

    let (status, first) = s.broker.exchange(&access, &resource);
    assert_eq!(status, 200, "{first}");
    let first_token = first["access_token"].as_str().unwrap().to_string();
    // Wait out the downstream token's life (the test asserts what happens after, not when).
    std::thread::sleep(Duration::from_secs(
        first["expires_in"].as_u64().unwrap() + 1,
    ));

    let before = s.broker.stats()["downstream_refreshes"].as_u64().unwrap();
    let downstream_before = proxy.refreshes();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let internal = s.broker.internal.clone();
            let (access, resource) = (access.clone(), resource.clone());
            std::thread::spawn(move || {
                scopegate_tests::broker::exchange(&internal, &access, &resource)
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let tokens: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|(_, b)| b["access_token"].as_str().unwrap())
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "every concurrent exchange gets the one refreshed token"
    );
    let new_token = *tokens.iter().next().unwrap();
    assert_ne!(new_token, first_token);
    assert!(
        payload(new_token)["exp"].as_u64().unwrap()
            > payload(&first_token)["exp"].as_u64().unwrap()
    );
    assert_eq!(
        s.broker.stats()["downstream_refreshes"].as_u64().unwrap() - before,
        1
    );
    assert_eq!(
        proxy.refreshes() - downstream_before,
        1,
        "the downstream server saw one refresh"
    );
    assert!(s.broker.stats()["token_exchanges"].as_u64().unwrap() >= 9);
}
