//! Revocations polled from the broker: the lease, the feed merged into shared data (retried when
//! another worker wins the compare-and-swap), and the cached credentials of revoked grants dropped.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use super::{document, worker, BROKERED, SERVERS};
use crate::credentials::Credentials;
use crate::fake_host::{Fake, NOW};
use crate::worker::Worker;
use scopegate_core::exchange::{cache_key, Credential};
use scopegate_core::revocation::RevokedSet;

const SHARED_KEY: &str = "scopegate.revocations";
const LEASE_KEY: &str = "scopegate.revocations.poll_due";

fn brokered() -> std::rc::Rc<Worker> {
    worker(&document(
        SERVERS,
        r#""broker": {"cluster": "broker", "revocation_poll_s": 2}"#,
        BROKERED,
    ))
}

fn page(cursor: u64, grants: &[&str]) -> Vec<u8> {
    let revoked: Vec<_> = grants
        .iter()
        .map(|g| serde_json::json!({"grant_id": g, "until": NOW + 600}))
        .collect();
    serde_json::json!({"cursor": cursor, "revoked": revoked})
        .to_string()
        .into_bytes()
}

fn tick(w: &Worker, h: &mut Fake, now_ms: u64) -> Option<u32> {
    w.revocations
        .borrow_mut()
        .tick(h, &w.policy, &mut w.credentials.borrow_mut(), now_ms)
}

fn answer(w: &Worker, h: &mut Fake, status: u16, body: Vec<u8>) {
    h.call_status = Some(status);
    h.call_body = body;
    let n = h.call_body.len();
    w.revocations
        .borrow_mut()
        .on_response(h, &w.policy, &mut w.credentials.borrow_mut(), n);
}

#[test]
fn one_worker_per_period_polls_from_its_cursor() {
    let w = brokered();
    let mut h = Fake::default();
    let now_ms = NOW * 1000;
    assert_eq!(tick(&w, &mut h, now_ms), Some(7));
    let (cluster, headers, _) = &h.dispatched[0];
    assert_eq!(cluster, "broker");
    assert!(headers.contains(&(":path".into(), "/internal/revocations?since=0".into())));
    // The lease is taken for the period: neither this worker nor another polls again yet.
    assert_eq!(tick(&w, &mut h, now_ms + 1000), None);
    assert_eq!(tick(&brokered(), &mut h, now_ms + 1999), None);
    assert_eq!(h.dispatched.len(), 1);
    answer(&w, &mut h, 200, page(42, &["g1"]));
    assert_eq!(tick(&w, &mut h, now_ms + 2000), Some(8));
    assert!(h.dispatched[1]
        .1
        .contains(&(":path".into(), "/internal/revocations?since=42".into())));
}

#[test]
fn a_gateway_that_is_not_brokered_never_polls() {
    let w = worker(&document(SERVERS, r#""broker": {"cluster": "broker"}"#, ""));
    let mut h = Fake::default();
    assert_eq!(tick(&w, &mut h, NOW * 1000), None);
    assert!(h.dispatched.is_empty());
    assert!(h.shared_value(LEASE_KEY).is_none());
}

#[test]
fn the_feed_is_applied_and_shared_with_every_worker() {
    let w = brokered();
    let mut h = Fake::default();
    answer(&w, &mut h, 200, page(3, &["g1", "g2"]));
    assert!(w.revocations.borrow().is_revoked("g1"));
    assert!(w.revocations.borrow().is_revoked("g2"));
    assert!(!w.revocations.borrow().is_revoked("g3"));
    let shared = RevokedSet::decode(h.shared_value(SHARED_KEY).unwrap()).unwrap();
    assert_eq!(shared.cursor, 3);
    assert!(shared.contains("g1") && shared.contains("g2"));
    // Another worker takes it on its tick.
    let other = brokered();
    assert!(!other.revocations.borrow().is_revoked("g1"));
    tick(&other, &mut h, NOW * 1000);
    assert!(other.revocations.borrow().is_revoked("g1"));
}

#[test]
fn a_failed_poll_changes_nothing() {
    let w = brokered();
    let mut h = Fake::default();
    answer(&w, &mut h, 503, page(3, &["g1"]));
    answer(&w, &mut h, 200, b"not json".to_vec());
    h.call_status = None;
    w.revocations
        .borrow_mut()
        .on_response(&mut h, &w.policy, &mut w.credentials.borrow_mut(), 0);
    assert!(!w.revocations.borrow().is_revoked("g1"));
    assert!(h.shared_value(SHARED_KEY).is_none());
}

#[test]
fn a_lost_compare_and_swap_is_retried_on_the_other_workers_set() {
    let w = brokered();
    let mut h = Fake::default();
    let set = |grants: &[&str]| {
        let mut set = RevokedSet::default();
        let p = scopegate_core::revocation::parse_page(&page(5, grants)).unwrap();
        set.apply(&p, NOW);
        set.encode().into_bytes()
    };
    h.share(SHARED_KEY, &set(&["old"]));
    // Between this worker's read and its write, another worker stores its own poll's answer.
    h.races = vec![(SHARED_KEY.into(), set(&["old", "theirs"]))];
    answer(&w, &mut h, 200, page(6, &["mine"]));
    assert_eq!(
        h.times("set_shared_data"),
        2,
        "the first write lost its CAS"
    );
    let shared = RevokedSet::decode(h.shared_value(SHARED_KEY).unwrap()).unwrap();
    assert!(
        shared.contains("old") && shared.contains("theirs") && shared.contains("mine"),
        "nothing is lost"
    );
    assert!(w.revocations.borrow().is_revoked("theirs"));
    assert!(w.revocations.borrow().is_revoked("mine"));
}

#[test]
fn credentials_of_a_revoked_grant_are_dropped_here_and_for_every_worker() {
    let w = brokered();
    let mut h = Fake::default();
    let credential = Credential {
        access_token: "down".into(),
        reuse_until: NOW + 300,
    };
    let revoked = cache_key("g1", "support");
    let kept = cache_key("g2", "support");
    {
        let mut creds = w.credentials.borrow_mut();
        creds.insert(&mut h, &revoked, &credential);
        creds.insert(&mut h, &kept, &credential);
        assert!(creds.get(&mut h, &revoked, NOW).is_some());
    }
    answer(&w, &mut h, 200, page(1, &["g1"]));
    let mut creds = w.credentials.borrow_mut();
    assert!(creds.get(&mut h, &revoked, NOW).is_none(), "not here");
    assert_eq!(
        h.shared_value(&revoked),
        Some(&b""[..]),
        "nor in shared data"
    );
    assert!(
        creds.get(&mut h, &kept, NOW).is_some(),
        "other grants keep theirs"
    );
    // A worker that never saw the grant revoked cannot pick the credential up either.
    let mut elsewhere = Credentials::default();
    assert!(elsewhere.get(&mut h, &revoked, NOW).is_none());
}
