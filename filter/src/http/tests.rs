//! The request state machine against a fake host: every phase, the fail-closed paths, the
//! local replies, and what reaches the upstream's headers.
#![cfg(test)] // declared in http/mod.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::*;
use crate::fake_host::{Fake, NOW};
use crate::tests::{document, policy, BROKERED};
use scopegate_core::jwks::Algorithm;
use scopegate_core::jwt::Claims;

/// `support` gates one tool by scope; `plain` only checks the server's scopes.
const SERVERS: &str = r#"
  {"name": "support", "cluster": "support", "path": "/support/mcp",
   "scopes": ["tickets.read", "accounts.read"],
   "tools": {"get_account": ["accounts.read"]}},
  {"name": "plain", "cluster": "plain", "path": "/plain/mcp", "scopes": ["tickets.read"]}"#;

fn doc(body_mode: &str) -> String {
    document(SERVERS, &format!(r#""body_mode": "{body_mode}""#), "")
}

/// A worker whose token cache already holds `tok` (scopes as given) for `server`.
pub(super) fn worker(body_mode: &str, server: &str, scopes: &str) -> Rc<Worker> {
    worker_for(&doc(body_mode), server, scopes)
}

/// A worker on document `doc` whose token cache already holds `tok` (alice, client `agent`,
/// scopes as given) for `server`.
pub(super) fn worker_for(doc: &str, server: &str, scopes: &str) -> Rc<Worker> {
    worker_holding(doc, server, scopes, None)
}

/// [`worker_for`], the cached token naming `grant_id` when given (a brokered gateway's).
fn worker_holding(doc: &str, server: &str, scopes: &str, grant_id: Option<&str>) -> Rc<Worker> {
    let policy = policy(doc);
    let id = policy.server_by_name(server).unwrap();
    let resource = policy.server(id).unwrap().resource.clone();
    let worker = Rc::new(Worker::new(policy));
    let claims = Claims {
        iss: "https://idp.example.com".into(),
        sub: Some("alice".into()),
        aud: vec![resource],
        exp: NOW + 600,
        nbf: None,
        iat: Some(NOW),
        jti: None,
        client_id: Some("agent".into()),
        scopes: scopes.split(' ').map(str::to_string).collect(),
        kid: None,
        alg: Algorithm::Es256,
        grant_id: grant_id.map(str::to_string),
        extra: Default::default(),
    };
    worker
        .tokens
        .borrow_mut()
        .insert("tok", Rc::new(claims), NOW, 5);
    worker
}

fn assert_forwarded_as_alice(h: &Fake) {
    assert!(h.header("authorization").is_empty(), "client token removed");
    assert_eq!(
        h.header("x-scopegate-subject"),
        vec!["alice"],
        "forged value replaced"
    );
    assert_eq!(h.header("x-scopegate-client-id"), vec!["agent"]);
    assert_eq!(h.header("x-scopegate-scopes"), vec!["tickets.read"]);
}

#[test]
fn a_cache_hit_forwards_with_identity_and_without_the_client_token() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Continue));
    assert!(matches!(r.phase, Phase::Done));
    assert_forwarded_as_alice(&h);
    assert!(h.replies.is_empty());
    assert_eq!(h.filter_state["scopegate_decision"], "allow");
    assert_eq!(h.filter_state["scopegate_reason"], "ok");
    assert_eq!(h.filter_state["scopegate_server"], "plain");
    assert_eq!(h.record()["subject"], "alice");
    assert_eq!(h.count("scopegate.plain.allow.ok"), 1);
    // The hot path: two header reads (`:path`, `authorization`: `:method` only where bodies are
    // read), one property, one clock read, four header edits, four filter-state writes and one
    // counter (defined on first use only).
    let calls: Vec<&str> = h
        .calls
        .iter()
        .copied()
        .filter(|c| *c != "define_counter")
        .collect();
    assert_eq!(
        calls,
        vec![
            "request_header",
            "property",
            "now",
            "request_header",
            "remove_request_header",
            "replace_request_header",
            "replace_request_header",
            "replace_request_header",
            "set_filter_state",
            "set_filter_state",
            "set_filter_state",
            "set_filter_state",
            "increment_counter",
        ]
    );
}

#[test]
fn no_token_is_a_401_challenge_and_nothing_is_forwarded() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", None);
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert!(matches!(r.phase, Phase::Replied));
    let (status, headers, _) = &h.replies[0];
    assert_eq!(*status, 401);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer ")));
    assert_eq!(
        h.header("x-scopegate-subject"),
        vec!["mallory"],
        "headers untouched"
    );
    assert_eq!(h.filter_state["scopegate_reason"], "no_token");
    assert_eq!(h.count("scopegate.plain.deny.no_token"), 1);
    // A later body callback must not let anything through.
    assert!(matches!(r.request_body(&mut h, 10, true), Action::Pause));
}

#[test]
fn an_ungoverned_cluster_passes_untouched() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request("GET", "/other", "elsewhere", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Continue));
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.header("authorization"), vec!["Bearer tok"]);
    assert!(h.filter_state.is_empty());
    assert!(matches!(r.request_body(&mut h, 10, true), Action::Continue));
}

#[test]
fn a_failing_host_call_fails_closed_with_an_audit_record_and_a_counter() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    h.fail = vec!["remove_request_header"];
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert!(matches!(r.phase, Phase::Replied));
    assert_eq!(h.replies[0].0, 503);
    assert_eq!(h.filter_state["scopegate_decision"], "deny");
    assert_eq!(h.filter_state["scopegate_reason"], "internal_error");
    assert_eq!(h.count("scopegate.plain.deny.internal_error"), 1);
}

#[test]
fn an_unconfigured_filter_refuses_with_a_record() {
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(None, 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert_eq!(h.replies[0].0, 503);
    assert_eq!(h.filter_state["scopegate_reason"], "internal_error");
    assert_eq!(h.count("scopegate.deny.internal_error"), 1);
}

#[test]
fn metadata_is_served_locally() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request(
        "GET",
        "/.well-known/oauth-protected-resource/plain/mcp",
        "plain",
        None,
    );
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert_eq!(h.replies[0].0, 200);
    assert!(h.replies[0].2.contains("authorization_servers"));
}

const GET_ACCOUNT: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account"}}"#;
const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

#[test]
fn hold_body_sends_identity_then_refuses_a_held_call() {
    let w = worker("hold_body", "support", "tickets.read");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Continue));
    assert!(matches!(r.phase, Phase::HoldingBody { .. }));
    assert!(h.header("authorization").is_empty());
    h.body = GET_ACCOUNT.to_vec();
    assert!(matches!(r.request_body(&mut h, 10, false), Action::Pause));
    let n = GET_ACCOUNT.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Pause));
    assert!(matches!(r.phase, Phase::Replied));
    assert_eq!(h.replies[0].0, 403);
    assert_eq!(h.record()["tool"], "get_account");
    assert_eq!(h.filter_state["scopegate_reason"], "insufficient_scope");
}

#[test]
fn hold_body_lets_an_allowed_message_go() {
    let w = worker("hold_body", "support", "tickets.read");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Continue));
    h.body = LIST.to_vec();
    assert!(matches!(
        r.request_body(&mut h, LIST.len(), true),
        Action::Continue
    ));
    assert!(matches!(r.phase, Phase::Done));
    assert!(h.replies.is_empty());
    assert_eq!(h.filter_state["scopegate_decision"], "allow");
}

#[test]
fn hold_headers_holds_everything_until_the_message_is_decided() {
    let w = worker("hold_headers", "support", "tickets.read accounts.read");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Pause));
    assert!(matches!(r.phase, Phase::HoldingHeaders { .. }));
    assert_eq!(
        h.header("authorization"),
        vec!["Bearer tok"],
        "nothing edited yet"
    );
    assert!(w.held.borrow().contains_key(&1), "the hold watch knows it");
    h.body = GET_ACCOUNT.to_vec();
    let n = GET_ACCOUNT.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Continue));
    assert!(matches!(r.phase, Phase::Done));
    assert!(w.held.borrow().is_empty());
    assert!(h.header("authorization").is_empty());
    assert_eq!(h.header("x-scopegate-subject"), vec!["alice"]);
    assert_eq!(h.record()["tool"], "get_account");
}

#[test]
fn trailers_end_a_held_body_and_decide_it() {
    let w = worker("hold_body", "support", "tickets.read");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    r.request_headers(&mut h, false);
    h.body = GET_ACCOUNT.to_vec();
    r.request_body(&mut h, GET_ACCOUNT.len(), false);
    assert!(matches!(r.request_trailers(&mut h), Action::Pause));
    assert_eq!(h.replies[0].0, 403);
}

#[test]
fn an_unreadable_body_fails_closed() {
    let w = worker("hold_body", "support", "tickets.read");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    r.request_headers(&mut h, false);
    h.fail = vec!["request_body"];
    assert!(matches!(r.request_body(&mut h, 5, true), Action::Pause));
    assert_eq!(h.replies[0].0, 503);
    assert_eq!(h.filter_state["scopegate_reason"], "internal_error");
    assert_eq!(h.filter_state["scopegate_server"], "support");
}

/// A brokered gateway whose token cache holds `tok`, naming grant `g1`.
fn brokered_worker() -> Rc<Worker> {
    let doc = document(
        SERVERS,
        r#""broker": {"cluster": "broker"}, "body_mode": "hold_body""#,
        BROKERED,
    );
    worker_holding(&doc, "plain", "tickets.read", Some("g1"))
}

/// Two requests for one grant: the first exchanges, the second parks on it.
fn two_requests_for_one_grant(w: &Rc<Worker>) -> (Fake, Request<Fake>, Request<Fake>) {
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let second = h.headers.clone();
    let mut first = Request::<Fake>::new(Some(Rc::clone(w)), 1);
    assert!(matches!(first.request_headers(&mut h, true), Action::Pause));
    assert!(matches!(first.phase, Phase::AwaitingCredential { .. }));
    h.others.insert(2, second);
    h.set_effective_context(2).unwrap();
    let mut other = Request::<Fake>::new(Some(Rc::clone(w)), 2);
    assert!(matches!(other.request_headers(&mut h, true), Action::Pause));
    assert!(matches!(other.phase, Phase::AwaitingExchange));
    assert_eq!(h.dispatched.len(), 1, "one exchange for the grant");
    h.set_effective_context(1).unwrap();
    (h, first, other)
}

#[test]
fn requests_for_a_grant_in_exchange_wait_and_go_on_with_its_credential() {
    let w = brokered_worker();
    let (mut h, mut first, other) = two_requests_for_one_grant(&w);
    h.call_status = Some(200);
    h.call_body = br#"{"access_token":"down","token_type":"Bearer","expires_in":300}"#.to_vec();
    let n = h.call_body.len();
    first.call_response(&mut h, 7, n);
    assert!(matches!(first.phase, Phase::Done));
    assert_eq!(
        h.resumed_ids,
        vec![1, 2],
        "both resumed, each in its own context"
    );
    assert_eq!(h.effective, 1, "back in the first request's context");
    assert_eq!(h.header("authorization"), vec!["Bearer down"]);
    assert_eq!(
        h.others[&2]
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1,
        "Bearer down"
    );
    assert!(!w
        .parking
        .borrow()
        .is_exchanging(&scopegate_core::exchange::cache_key("g1", "plain")));
    drop(other);
    assert!(
        w.parking.borrow().is_empty(),
        "a finished parked request leaves nothing behind"
    );
}

#[test]
fn a_failed_exchange_refuses_every_waiting_request_the_same_way() {
    let w = brokered_worker();
    let (mut h, mut first, mut other) = two_requests_for_one_grant(&w);
    h.call_status = Some(503);
    first.call_response(&mut h, 7, 0);
    assert_eq!(h.replied_ids, vec![1, 2]);
    assert_eq!(h.replies[0].0, h.replies[1].0);
    assert!(h.resumed_ids.is_empty());
    // The parked request learns its fate on its next callback and lets nothing through.
    assert!(matches!(other.request_body(&mut h, 3, true), Action::Pause));
    assert!(matches!(other.phase, Phase::Replied));
}

#[test]
fn a_request_dropped_mid_exchange_refuses_its_waiters() {
    let w = brokered_worker();
    let (_h, first, _other) = two_requests_for_one_grant(&w);
    // The drop path uses `Fake::default()`: the refusal reaches the parked copy.
    drop(first);
    let parking = w.parking.borrow();
    assert!(matches!(parking.woken_phase(2), Some(Phase::Replied)));
    drop(parking);
    drop(_other);
    assert!(
        w.parking.borrow().is_empty(),
        "nothing left in flight or parked"
    );
}

#[test]
fn a_hit_reuses_the_admission_per_server_and_never_across_servers() {
    let w = worker("hold_body", "plain", "tickets.read");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Continue));
    let cached = w.tokens.borrow().get("tok", NOW, 5).unwrap();
    let plain = w.policy.server_by_name("plain").unwrap();
    let support = w.policy.server_by_name("support").unwrap();
    let first = cached
        .admitted(plain)
        .expect("admission kept with the token");
    assert!(cached.admitted(support).is_none());

    // The token's audience is `plain`: on `support` it is refused there, not admitted from
    // `plain`'s entry.
    let mut h = Fake::request("GET", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 2);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    assert_eq!(h.replies[0].0, 401);
    assert_eq!(h.filter_state["scopegate_reason"], "wrong_audience");

    // Again on `plain`: the same admission, the same record.
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer  tok "));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 3);
    assert!(matches!(r.request_headers(&mut h, true), Action::Continue));
    assert!(Rc::ptr_eq(&first, &cached.admitted(plain).unwrap()));
    assert_eq!(h.filter_state["scopegate_record"], &*first.record);
    assert_forwarded_as_alice(&h);
}

/// The exchange callout carries the request's trace context: Envoy's own span (written by the
/// `header_mutation` filter `render envoy --otlp-collector` adds) before the client's.
#[test]
fn the_exchange_callout_carries_the_requests_trace_context() {
    const ENVOY: &str = "00-20fb58057924853fb3f879192806ea7a-75e4e88f2e762438-01";
    const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let callout = |extra: &[(&str, &str)]| {
        let w = brokered_worker();
        let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
        for (k, v) in extra {
            h.headers.push((k.to_string(), v.to_string()));
        }
        let mut r = Request::<Fake>::new(Some(w), 1);
        assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
        let (cluster, headers, _) = h.dispatched.pop().unwrap();
        assert_eq!(cluster, "broker");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        (get("traceparent"), get("tracestate"))
    };
    assert_eq!(
        callout(&[
            ("x-scopegate-traceparent", ENVOY),
            ("traceparent", CLIENT),
            ("tracestate", "vendor=1")
        ]),
        (Some(ENVOY.into()), Some("vendor=1".into()))
    );
    assert_eq!(
        callout(&[("traceparent", CLIENT)]),
        (Some(CLIENT.into()), None)
    );
    // Envoy renders `-` when the request is not traced; a bad value is not passed on.
    assert_eq!(
        callout(&[
            ("x-scopegate-traceparent", "00-----01"),
            ("tracestate", "a=1")
        ]),
        (None, None)
    );
    assert_eq!(callout(&[]), (None, None));
}

/// One held-body request with `body` and extra headers, on worker `w`; the Fake afterwards.
fn held_call(w: &Rc<Worker>, id: u32, body: &[u8], extra: &[(&str, &str)]) -> Fake {
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    for (k, v) in extra {
        h.headers.push((k.to_string(), v.to_string()));
    }
    let mut r = Request::<Fake>::new(Some(Rc::clone(w)), id);
    r.request_headers(&mut h, false);
    h.body = body.to_vec();
    r.request_body(&mut h, body.len(), true);
    h
}

#[test]
fn a_repeated_call_reuses_its_decision_and_any_other_call_is_decided_again() {
    let w = worker("hold_body", "support", "tickets.read");
    let first = held_call(&w, 1, LIST, &[]);
    assert_eq!(first.filter_state["scopegate_decision"], "allow");
    // The same token, server and call: the kept decision, with the same record.
    let again = held_call(&w, 2, LIST, &[]);
    assert!(again.replies.is_empty());
    assert_eq!(
        again.filter_state["scopegate_record"],
        first.filter_state["scopegate_record"]
    );
    // Another call with the same token is decided on its own: refused.
    let other = held_call(&w, 3, GET_ACCOUNT, &[]);
    assert_eq!(other.replies[0].0, 403);
    assert_eq!(other.filter_state["scopegate_reason"], "insufficient_scope");
    // The kept call, with headers that disagree with the body, is still refused.
    let mismatch = held_call(&w, 4, LIST, &[("mcp-method", "tools/call")]);
    assert_eq!(mismatch.replies[0].0, 400);
    assert_eq!(
        mismatch.filter_state["scopegate_reason"],
        "mcp_header_mismatch"
    );
    // And a batch smuggling the refused call behind the kept one is decided whole.
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_account"}}]"#;
    let smuggled = held_call(&w, 5, batch, &[]);
    assert_eq!(smuggled.replies[0].0, 403);
}
