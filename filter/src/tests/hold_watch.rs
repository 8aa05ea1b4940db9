//! The hold watch: a request whose headers are held with no body callback is refused from the
//! root's timer once the limit passes, in its own context; others are left alone.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use super::{document, worker, SERVERS};
use crate::fake_host::Fake;
use crate::hold_watch::{hold, on_tick, release, NO_BODY_LIMIT_MS};

#[test]
fn a_request_held_past_the_limit_without_a_body_is_refused_in_its_own_context() {
    let w = worker(&document(SERVERS, r#""body_mode": "hold_headers""#, ""));
    let mut h = Fake::default();
    let t0 = 1_000_000;
    hold(&w, 11, t0);
    hold(&w, 12, t0 + 5_000);
    hold(&w, 13, t0);
    release(&w, 13); // its body arrived

    on_tick(&mut h, &w, t0 + NO_BODY_LIMIT_MS - 1);
    assert!(h.replies.is_empty(), "not before the limit");

    on_tick(&mut h, &w, t0 + NO_BODY_LIMIT_MS);
    assert_eq!(h.replied_ids, vec![11]);
    let (status, headers, body) = &h.replies[0];
    assert_eq!(*status, 503);
    assert!(headers.contains(&("cache-control".into(), "no-store".into())));
    assert!(body.contains("temporarily_unavailable"), "{body}");
    assert_eq!(h.count("scopegate.hold_headers.no_body"), 1);
    assert!(!w.held.borrow().contains_key(&11), "answered once");
    assert!(w.held.borrow().contains_key(&12));

    on_tick(&mut h, &w, t0 + 5_000 + NO_BODY_LIMIT_MS);
    assert_eq!(h.replied_ids, vec![11, 12]);
    assert!(w.held.borrow().is_empty());
}

#[test]
fn a_held_request_that_is_gone_is_forgotten_without_a_reply() {
    let w = worker(&document(SERVERS, r#""body_mode": "hold_headers""#, ""));
    let mut h = Fake::failing(&["set_effective_context"]);
    hold(&w, 11, 0);
    on_tick(&mut h, &w, NO_BODY_LIMIT_MS);
    assert!(
        h.replies.is_empty(),
        "nothing sent to whichever context was current"
    );
    assert!(w.held.borrow().is_empty());
    assert_eq!(h.count("scopegate.hold_headers.no_body"), 1);
}
