//! Signing keys: a rotation picked up from shared data or a fetch (and verified tokens
//! forgotten), the refresh lease, and a token naming an unknown `kid` refetching the keys once
//! (the fetch carrying the request's trace context).
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use super::{document, worker, SERVERS};
use crate::fake_host::{Fake, NOW};
use crate::http::Request;
use crate::worker::Worker;
use jwt_simple::prelude::*;
use proxy_wasm::types::Action;
use serde_json::{json, Value};
use std::rc::Rc;

/// Where every worker finds the first (only) JWKS source's document.
fn shared_key(w: &Worker) -> String {
    w.policy.jwks_sources[0].shared_key.clone()
}

fn signer(kid: &str) -> ES256KeyPair {
    ES256KeyPair::generate().with_key_id(kid)
}

fn jwks(keys: &[&ES256KeyPair]) -> Vec<u8> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(&k.public_key().to_jwk()).unwrap())
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

/// A token for `plain` with `tickets.read`, valid at the fake's clock.
fn token(key: &ES256KeyPair) -> String {
    let mut custom = serde_json::Map::new();
    custom.insert("scope".into(), json!("tickets.read"));
    custom.insert("client_id".into(), json!("agent"));
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(600))
        .with_issuer("https://idp.example.com")
        .with_subject("alice")
        .with_audience("https://mcp.example.com/plain/mcp");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.invalid_before = None;
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    key.sign(c).unwrap()
}

fn plain() -> Rc<Worker> {
    worker(&document(SERVERS, "", ""))
}

#[test]
fn keys_another_worker_stored_are_picked_up_and_a_rotation_changes_the_generation() {
    let w = plain();
    let mut h = Fake::default();
    let (a, b) = (signer("a"), signer("b"));
    assert!(!w.keys.borrow().all_loaded());
    assert!(!w.keys.borrow_mut().sync(&mut h, 0), "nothing stored yet");
    h.share(&shared_key(&w), &jwks(&[&a]));
    assert!(w.keys.borrow_mut().sync(&mut h, 0));
    assert!(w.keys.borrow().all_loaded());
    let first = w.keys.borrow().generation(0);
    assert!(!w.keys.borrow_mut().sync(&mut h, 0), "unchanged");
    h.share(&shared_key(&w), &jwks(&[&b]));
    assert!(w.keys.borrow_mut().sync(&mut h, 0));
    assert_ne!(w.keys.borrow().generation(0), first);
    let keys = w.keys.borrow().keys(0).unwrap();
    assert!(keys.contains_kid("b") && !keys.contains_kid("a"));
    // An unusable document is not taken: the keys in force stay.
    h.share(&shared_key(&w), b"{\"keys\": 5}");
    assert!(!w.keys.borrow_mut().sync(&mut h, 0));
    assert!(w.keys.borrow().keys(0).unwrap().contains_kid("b"));
}

#[test]
fn a_fetched_rotation_is_shared_and_forgets_verified_tokens_but_a_routine_refresh_does_not() {
    let w = plain();
    let mut h = Fake::default();
    let (a, b) = (signer("a"), signer("b"));
    let install = |w: &Worker, h: &mut Fake, doc: Vec<u8>| {
        h.call_status = Some(200);
        h.call_body = doc;
        let n = h.call_body.len();
        w.install_fetched_keys(h, 0, n);
    };
    install(&w, &mut h, jwks(&[&a]));
    assert_eq!(h.shared_value(&shared_key(&w)), Some(&jwks(&[&a])[..]));
    let claims = scopegate_core::jwt::verify(
        &token(&a),
        &w.keys.borrow().keys(0).unwrap(),
        &scopegate_core::jwt::VerifyOptions::new("https://idp.example.com", NOW),
    )
    .unwrap();
    w.tokens.borrow_mut().insert("tok", Rc::new(claims), NOW, 5);
    install(&w, &mut h, jwks(&[&a]));
    assert!(w.tokens.borrow().get("tok", NOW, 5).is_some(), "same keys");
    install(&w, &mut h, jwks(&[&b]));
    assert!(w.tokens.borrow().get("tok", NOW, 5).is_none(), "new keys");
    // A failed fetch keeps the keys in force.
    h.call_status = Some(500);
    w.install_fetched_keys(&mut h, 0, 0);
    assert!(w.keys.borrow().keys(0).unwrap().contains_kid("b"));
}

#[test]
fn one_worker_per_period_refreshes() {
    let w = plain();
    let other = plain();
    let mut h = Fake::default();
    let t = NOW * 1000;
    // No keys yet: retried every 500 ms.
    assert!(w.keys.borrow().claim_refresh(&mut h, 0, t));
    assert!(!other.keys.borrow().claim_refresh(&mut h, 0, t + 499));
    assert!(other.keys.borrow().claim_refresh(&mut h, 0, t + 500));
}

#[test]
fn an_unknown_kid_refetches_the_keys_once_and_the_request_goes_on_with_them() {
    let w = plain();
    let (a, b) = (signer("a"), signer("b"));
    let mut h = Fake::request("GET", "/plain/mcp", "plain", None);
    h.share(&shared_key(&w), &jwks(&[&a]));
    let rotated = token(&b);
    h.headers
        .push(("authorization".into(), format!("Bearer {rotated}")));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    h.headers.push(("traceparent".into(), traceparent.into()));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert_eq!(h.dispatched.len(), 1, "one JWKS fetch");
    assert_eq!(h.dispatched[0].0, "idp");
    // Made on this request's behalf: it carries the request's trace context.
    assert!(h.dispatched[0]
        .1
        .contains(&("traceparent".to_string(), traceparent.to_string())));
    assert!(h.replies.is_empty(), "waiting, not refused");

    h.call_status = Some(200);
    h.call_body = jwks(&[&a, &b]);
    let n = h.call_body.len();
    r.call_response(&mut h, 7, n);
    assert_eq!(h.resumed_ids, vec![1]);
    assert!(h.replies.is_empty());
    assert_eq!(h.header("x-scopegate-subject"), vec!["alice"]);
    assert!(h.header("authorization").is_empty());
    assert!(w.keys.borrow().keys(0).unwrap().contains_kid("b"));

    // Another unknown kid inside the refetch interval: refused, no second fetch.
    let mut h2 = Fake::request("GET", "/plain/mcp", "plain", None);
    h2.shared = h.shared.clone();
    let stranger = token(&signer("c"));
    h2.headers
        .push(("authorization".into(), format!("Bearer {stranger}")));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 2);
    assert!(matches!(r.request_headers(&mut h2, true), Action::Pause));
    assert!(h2.dispatched.is_empty(), "rate-limited");
    assert_eq!(h2.replies[0].0, 401);
    assert_eq!(h2.filter_state["scopegate_decision"], "deny");
}
