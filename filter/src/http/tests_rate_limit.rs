//! Budgets counted by the rate limit service, against a fake host: one gRPC call per budgeted
//! request in every body mode, each request waiting on its own call, the answer applied (go on,
//! 429 with the service's reset time, `on_error`), and nothing kept in shared data.
#![cfg(test)] // declared in http/mod.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::tests::worker_for;
use super::tests_native_mcp::recorded_tool_call;
use super::*;
use crate::fake_host::Fake;
use crate::tests::document;
use scopegate_core::rate_limit::proto::{encode_request, grpc_service};

/// `support` budgets one tool per subject; `plain` every request per client.
const SERVERS: &str = r#"
  {"name": "support", "cluster": "support", "path": "/support/mcp",
   "scopes": ["tickets.read", "accounts.read"],
   "tools": {"get_account": ["accounts.read"]},
   "budgets": [{"tool": "update_ticket", "requests": 2, "per_seconds": 60}]},
  {"name": "plain", "cluster": "plain", "path": "/plain/mcp", "scopes": ["tickets.read"],
   "budgets": [{"requests": 5, "per_seconds": 3600, "per": "client_id"}]}"#;

fn doc(body_mode: &str, on_error: &str) -> String {
    document(
        SERVERS,
        &format!(
            r#""body_mode": "{body_mode}",
  "rate_limit": {{"cluster": "rls", "domain": "mcp", "timeout_ms": 250, "on_error": "{on_error}"}}"#
        ),
        "",
    )
}

fn worker(body_mode: &str, on_error: &str, server: &str) -> Rc<Worker> {
    worker_for(
        &doc(body_mode, on_error),
        server,
        "tickets.read accounts.read",
    )
}

fn tool_call(id: u32, tool: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#)
        .into_bytes()
}

/// `RateLimitResponse { overall_code: OK }`.
const OK: &[u8] = &[0x08, 1];

/// `RateLimitResponse { overall_code: OVER_LIMIT, statuses: [{ code: OVER_LIMIT,
/// duration_until_reset: 41 s 5 ns }] }`.
const OVER_LIMIT: &[u8] = &[0x08, 2, 0x12, 8, 0x08, 2, 0x22, 4, 0x08, 41, 0x10, 5];

fn update_ticket_descriptor() -> Vec<u8> {
    encode_request(
        "mcp",
        &[vec![
            ("gateway", "saas"),
            ("server", "support"),
            ("budget", "tool:update_ticket:60s"),
            ("subject", "alice"),
        ]],
    )
}

fn answer(r: &mut Request<Fake>, h: &mut Fake, token: u32, status: u32, message: &[u8]) {
    h.grpc_body = message.to_vec();
    r.rate_limit_answered(h, token, status, message.len());
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn hold_body_asks_once_the_body_is_read_and_lets_it_go_when_counted() {
    let w = worker("hold_body", "deny", "support");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Continue));
    assert!(h.grpc_dispatched.is_empty(), "the tool is not known yet");
    h.body = tool_call(7, "update_ticket");
    let n = h.body.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Pause));
    assert!(matches!(
        r.phase,
        Phase::AwaitingRateLimit { call: 101, .. }
    ));
    let (upstream, service, method, message) = &h.grpc_dispatched[0];
    assert_eq!(upstream.as_bytes(), grpc_service("rls").as_slice());
    assert_eq!(service, "envoy.service.ratelimit.v3.RateLimitService");
    assert_eq!(method, "ShouldRateLimit");
    assert_eq!(message, &update_ticket_descriptor());
    assert!(
        !String::from_utf8_lossy(message).contains("tok"),
        "never the token"
    );
    answer(&mut r, &mut h, 101, 0, OK);
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.resumed, 1);
    assert!(h.replies.is_empty());
    assert_eq!(h.filter_state["scopegate_reason"], "ok");
    assert_eq!(h.count("scopegate.support.allow.ok"), 1);
    assert_eq!(h.times("shared_data") + h.times("set_shared_data"), 0);
    assert!(h.shared.is_empty(), "no per-subject state in shared data");
}

#[test]
fn hold_headers_over_limit_is_a_429_with_the_reset_time_and_a_json_rpc_error() {
    let w = worker("hold_headers", "deny", "support");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Pause));
    h.body = tool_call(7, "update_ticket");
    let n = h.body.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Pause));
    assert_eq!(h.grpc_dispatched.len(), 1);
    assert!(
        h.header("authorization") == vec!["Bearer tok"],
        "headers still held, unedited"
    );
    answer(&mut r, &mut h, 101, 0, OVER_LIMIT);
    assert!(matches!(r.phase, Phase::Replied));
    assert_eq!(h.resumed, 0);
    let (status, headers, body) = &h.replies[0];
    assert_eq!(*status, 429);
    assert_eq!(
        header(headers, "retry-after"),
        Some("42"),
        "41 s 5 ns, rounded up"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32011);
    assert_eq!(h.filter_state["scopegate_reason"], "budget_exceeded");
    assert_eq!(h.count("scopegate.support.deny.budget_exceeded"), 1);
    assert!(h.shared.is_empty());
}

#[test]
fn mcp_metadata_asks_at_header_time() {
    let w = worker("mcp_metadata", "deny", "support");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    h.properties
        .insert("metadata".into(), recorded_tool_call(9.0, "update_ticket"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Pause));
    assert_eq!(h.grpc_dispatched[0].3, update_ticket_descriptor());
    // The body arriving meanwhile waits too.
    assert!(matches!(r.request_body(&mut h, 10, true), Action::Pause));
    answer(&mut r, &mut h, 101, 0, OK);
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.resumed, 1);
    assert_eq!(h.header("x-scopegate-subject"), vec!["alice"]);
}

#[test]
fn calls_no_budget_counts_never_wait_for_the_service() {
    let w = worker("hold_body", "deny", "support");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    r.request_headers(&mut h, false);
    h.body = tool_call(3, "get_account");
    let n = h.body.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Continue));
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.times("dispatch_grpc"), 0);
}

#[test]
fn a_whole_server_budget_counts_every_request_per_client() {
    let w = worker("hold_body", "deny", "plain");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    let expected = encode_request(
        "mcp",
        &[vec![
            ("gateway", "saas"),
            ("server", "plain"),
            ("budget", "server:3600s"),
            ("client_id", "agent"),
        ]],
    );
    assert_eq!(h.grpc_dispatched[0].3, expected);
    // Over the limit with no reset time: the budget's window.
    answer(&mut r, &mut h, 101, 0, &[0x08, 2]);
    assert_eq!(h.replies[0].0, 429);
    assert_eq!(header(&h.replies[0].1, "retry-after"), Some("3600"));
}

#[test]
fn a_batch_holding_a_budgeted_call_is_counted_once() {
    let w = worker("hold_body", "deny", "support");
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(w), 1);
    r.request_headers(&mut h, false);
    let batch = format!(
        "[{},{},{}]",
        String::from_utf8(tool_call(1, "get_account")).unwrap(),
        String::from_utf8(tool_call(2, "update_ticket")).unwrap(),
        String::from_utf8(tool_call(3, "update_ticket")).unwrap()
    );
    h.body = batch.into_bytes();
    let n = h.body.len();
    assert!(matches!(r.request_body(&mut h, n, true), Action::Pause));
    assert_eq!(h.grpc_dispatched.len(), 1);
    assert_eq!(h.grpc_dispatched[0].3, update_ticket_descriptor());
    answer(&mut r, &mut h, 101, 0, OVER_LIMIT);
    let body: serde_json::Value = serde_json::from_str(&h.replies[0].2).unwrap();
    let ids: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "one -32011 per request of the batch");
    assert_eq!(body[1]["error"]["code"], -32011);
}

#[test]
fn on_error_deny_refuses_when_the_service_fails_times_out_or_cannot_be_called() {
    for failure in ["timeout", "unreadable", "dispatch"] {
        let w = worker("hold_body", "deny", "plain");
        let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
        if failure == "dispatch" {
            h.fail = vec!["dispatch_grpc"];
        }
        let mut r = Request::<Fake>::new(Some(w), 1);
        let action = r.request_headers(&mut h, true);
        match failure {
            // gRPC DEADLINE_EXCEEDED: the host reports the status, no message.
            "timeout" => answer(&mut r, &mut h, 101, 4, b""),
            "unreadable" => answer(&mut r, &mut h, 101, 0, &[0x0a, 9]),
            _ => assert!(matches!(action, Action::Pause)),
        }
        assert!(matches!(r.phase, Phase::Replied), "{failure}");
        assert_eq!(h.replies[0].0, 503, "{failure}");
        assert!(h.replies[0].2.contains("temporarily_unavailable"));
        assert_eq!(h.filter_state["scopegate_reason"], "rate_limit_unavailable");
        assert_eq!(h.count("scopegate.plain.deny.rate_limit_unavailable"), 1);
        assert_eq!(h.resumed, 0);
    }
}

#[test]
fn on_error_allow_lets_the_call_pass_uncounted_and_counts_that() {
    let w = worker("hold_body", "allow", "plain");
    assert!(w.policy.warnings.iter().any(|w| w.contains("on_error")));
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut r = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    assert!(matches!(r.request_headers(&mut h, true), Action::Pause));
    answer(&mut r, &mut h, 101, 14, b"");
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.resumed, 1);
    assert!(h.replies.is_empty());
    assert_eq!(h.filter_state["scopegate_reason"], "ok");
    assert_eq!(h.count("scopegate.rate_limit.unavailable_allowed"), 1);
    assert_eq!(h.count("scopegate.plain.rate_limit.unavailable_allowed"), 1);

    // A call that cannot even be dispatched: the same, without waiting.
    h.fail = vec!["dispatch_grpc"];
    h.effective = 2;
    h.headers = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok")).headers;
    let mut r = Request::<Fake>::new(Some(w), 2);
    assert!(matches!(r.request_headers(&mut h, true), Action::Continue));
    assert!(matches!(r.phase, Phase::Done));
    assert_eq!(h.count("scopegate.rate_limit.unavailable_allowed"), 2);
}

#[test]
fn concurrent_requests_on_one_worker_each_wait_on_their_own_call() {
    let w = worker("hold_body", "deny", "plain");
    let mut h = Fake::request("GET", "/plain/mcp", "plain", Some("Bearer tok"));
    let mut first = Request::<Fake>::new(Some(Rc::clone(&w)), 1);
    let mut second = Request::<Fake>::new(Some(Rc::clone(&w)), 2);
    assert!(matches!(first.request_headers(&mut h, true), Action::Pause));
    h.effective = 2;
    assert!(matches!(
        second.request_headers(&mut h, true),
        Action::Pause
    ));
    assert_eq!(
        h.grpc_dispatched.len(),
        2,
        "the second did not wait for the first"
    );
    // The second's answer comes first; the first's call is still its own.
    answer(&mut second, &mut h, 101, 0, OK);
    assert!(
        matches!(second.phase, Phase::AwaitingRateLimit { call: 102, .. }),
        "another call's answer is not this request's"
    );
    answer(&mut second, &mut h, 102, 0, OVER_LIMIT);
    assert_eq!(h.replied_ids, vec![2]);
    assert!(matches!(
        first.phase,
        Phase::AwaitingRateLimit { call: 101, .. }
    ));
    h.effective = 1;
    answer(&mut first, &mut h, 101, 0, OK);
    assert_eq!(h.resumed_ids, vec![1]);
    assert!(matches!(first.phase, Phase::Done));
}
