//! The listing filter on response headers and body: JSON, SSE in chunks, over the bound, and a
//! replacement the host refuses.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use super::{document, policy, SERVERS};
use crate::audit::Stats;
use crate::fake_host::Fake;
use crate::listing::{Watch, HIDDEN_FIELD};
use proxy_wasm::types::Action;
use scopegate_core::mcp::Call;
use scopegate_core::Policy;
use serde_json::{json, Value};

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

fn tools(names: &[&str]) -> Value {
    let tools: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools}})
}

/// A watch on `server` for a token holding `tickets.read` only.
fn watch(policy: &Policy, server: &str) -> Watch {
    let id = policy.server_by_name(server).unwrap();
    let effective = policy.gateways[0].scopes.set_of(&["tickets.read"]).unwrap();
    let calls = [Call {
        method: "tools/list".into(),
        name: None,
    }];
    Watch::new(id, policy.server(id).unwrap(), effective, &calls, REQUEST).unwrap()
}

fn response(content_type: &str, body: &[u8]) -> Fake {
    Fake {
        response_headers: vec![
            (":status".into(), "200".into()),
            ("content-type".into(), content_type.into()),
            ("content-length".into(), body.len().to_string()),
        ],
        response_body: body.to_vec(),
        ..Fake::default()
    }
}

fn listed(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn only_listing_calls_on_servers_that_hide_something_are_watched() {
    let p = policy(&document(SERVERS, "", ""));
    let id = p.server_by_name("support").unwrap();
    let effective = p.gateways[0].scopes.set_of(&["tickets.read"]).unwrap();
    let call = |m: &str| Call {
        method: m.into(),
        name: None,
    };
    let server = p.server(id).unwrap();
    assert!(Watch::new(id, server, effective, &[call("tools/call")], REQUEST).is_none());
    assert!(Watch::new(id, server, effective, &[call("tools/list")], REQUEST).is_some());
    // A notification (no id) awaits no response.
    let no_id = br#"{"jsonrpc":"2.0","method":"tools/list"}"#;
    assert!(Watch::new(id, server, effective, &[call("tools/list")], no_id).is_none());
}

#[test]
fn a_json_listing_loses_the_denied_entries_and_says_how_many() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "support");
    let body = tools(&["get_ticket", "drop_tables", "get_account"]).to_string();
    let mut h = response("application/json", body.as_bytes());
    let mut stats = Stats::default();
    assert!(matches!(
        w.on_headers(&mut h, &p, &mut stats),
        Action::Continue
    ));
    assert!(
        h.response_header_values("content-length").is_empty(),
        "the length changes"
    );
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, body.len(), true),
        Action::Continue
    ));
    // `get_account` stays: a step-up could reach it (hide: never_grantable).
    assert_eq!(listed(&h.response_body), vec!["get_ticket", "get_account"]);
    assert_eq!(h.filter_state[HIDDEN_FIELD], "1");
    assert_eq!(h.count("scopegate.support.listing.filtered"), 1);
    assert_eq!(h.count("scopegate.support.listing.hidden"), 1);
}

#[test]
fn hide_not_granted_also_hides_what_the_token_cannot_call() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "plain");
    let body = tools(&["get_ticket", "get_account"]).to_string();
    let mut h = response("application/json; charset=utf-8", body.as_bytes());
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    w.on_body(&mut h, &p, &mut stats, body.len(), true);
    assert_eq!(listed(&h.response_body), vec!["get_ticket"]);
    assert_eq!(h.filter_state[HIDDEN_FIELD], "1");
}

#[test]
fn an_sse_listing_split_across_chunks_is_held_until_its_event_is_complete() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "support");
    let event = format!(
        "event: message\ndata: {}\n\n",
        tools(&["get_ticket", "drop_tables"])
    );
    let notice =
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
    let (first, rest) = event.split_at(30);
    let mut h = response("text/event-stream", b"");
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);

    // A complete event that is not the answer: keep waiting.
    h.response_body = notice.as_bytes().to_vec();
    let n = h.response_body.len();
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, n, false),
        Action::Pause
    ));
    // Half an event: not even parsed (only its last bytes are looked at).
    h.response_body.extend_from_slice(first.as_bytes());
    h.response_reads.clear();
    let n = h.response_body.len();
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, n, false),
        Action::Pause
    ));
    assert_eq!(h.response_reads, vec![(n - 4, 4)], "the tail only");
    assert!(!h.filter_state.contains_key(HIDDEN_FIELD));
    // The rest arrives: filtered and released before the stream ends.
    h.response_body.extend_from_slice(rest.as_bytes());
    let n = h.response_body.len();
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, n, false),
        Action::Continue
    ));
    let out = String::from_utf8(h.response_body.clone()).unwrap();
    assert!(
        out.starts_with(notice),
        "other events keep their bytes: {out}"
    );
    assert!(
        out.contains("get_ticket") && !out.contains("drop_tables"),
        "{out}"
    );
    assert_eq!(h.filter_state[HIDDEN_FIELD], "1");
    // What follows streams untouched.
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, 5, true),
        Action::Continue
    ));
    assert_eq!(h.count("scopegate.support.listing.filtered"), 1);
}

/// A listing bigger than `filter.max_listing_bytes` (1024 here).
fn big_listing() -> String {
    let names: Vec<String> = (0..100).map(|i| format!("tool_number_{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tools(&names).to_string()
}

#[test]
fn over_the_bound_a_listing_that_denies_entries_is_replaced_by_an_error() {
    let p = policy(&document(SERVERS, r#""max_listing_bytes": 1024"#, ""));
    let mut w = watch(&p, "support");
    let body = big_listing();
    assert!(body.len() > 1024);
    let mut h = response("application/json", body.as_bytes());
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    assert!(matches!(
        w.on_body(&mut h, &p, &mut stats, body.len(), false),
        Action::Continue
    ));
    let error: Value = serde_json::from_slice(&h.response_body).unwrap();
    assert_eq!(error["id"], 7);
    assert!(error["error"]["code"].is_i64(), "{error}");
    assert_eq!(h.filter_state[HIDDEN_FIELD], "over_bound_replaced");
    assert_eq!(h.count("scopegate.support.listing.over_bound"), 1);
    assert_eq!(h.count("scopegate.support.listing.replaced"), 1);
    // The rest of the upstream's listing is dropped.
    h.response_body = b"more of the listing".to_vec();
    w.on_body(&mut h, &p, &mut stats, 19, true);
    assert!(h.response_body.is_empty());
}

#[test]
fn over_the_bound_a_listing_that_denies_nothing_passes_untouched() {
    let p = policy(&document(SERVERS, r#""max_listing_bytes": 1024"#, ""));
    let mut w = watch(&p, "plain");
    let body = big_listing();
    let mut h = response("application/json", body.as_bytes());
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    w.on_body(&mut h, &p, &mut stats, body.len(), false);
    assert_eq!(h.response_body, body.as_bytes());
    assert_eq!(h.filter_state[HIDDEN_FIELD], "over_bound");
    assert_eq!(h.count("scopegate.plain.listing.over_bound"), 1);
    assert_eq!(h.count("scopegate.plain.listing.replaced"), 0);
}

#[test]
fn a_failed_replace_never_lets_the_unfiltered_listing_through() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "support");
    let body = tools(&["get_ticket", "drop_tables"]).to_string();
    let mut h = response("application/json", body.as_bytes());
    h.fail = vec!["replace_response_body"];
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    w.on_body(&mut h, &p, &mut stats, body.len(), true);
    assert_eq!(h.resets, 1, "the stream is reset");
    assert_eq!(h.count("scopegate.support.listing.unfilterable"), 1);
    assert!(!h.filter_state.contains_key(HIDDEN_FIELD));
}

#[test]
fn a_failed_replace_where_nothing_is_denied_passes_and_says_so() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "plain");
    let body = tools(&["get_ticket", "get_account"]).to_string();
    let mut h = response("application/json", body.as_bytes());
    h.fail = vec!["replace_response_body"];
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    w.on_body(&mut h, &p, &mut stats, body.len(), true);
    assert_eq!(h.resets, 0);
    assert_eq!(h.filter_state[HIDDEN_FIELD], "unfilterable");
    assert_eq!(h.count("scopegate.plain.listing.unfilterable"), 1);
}

#[test]
fn a_listing_whose_length_cannot_change_is_left_alone() {
    let p = policy(&document(SERVERS, "", ""));
    let mut w = watch(&p, "support");
    let body = tools(&["drop_tables"]).to_string();
    let mut h = response("application/json", body.as_bytes());
    h.fail = vec!["remove_response_header"];
    let mut stats = Stats::default();
    w.on_headers(&mut h, &p, &mut stats);
    assert_eq!(h.filter_state[HIDDEN_FIELD], "unfilterable");
    w.on_body(&mut h, &p, &mut stats, body.len(), true);
    assert_eq!(h.times("response_body"), 0, "never buffered");

    // An error status is not a listing.
    let mut w = watch(&p, "support");
    let mut h = response("application/json", body.as_bytes());
    h.response_headers[0].1 = "500".into();
    w.on_headers(&mut h, &p, &mut stats);
    w.on_body(&mut h, &p, &mut stats, body.len(), true);
    assert_eq!(h.response_body, body.as_bytes());
    assert!(h.filter_state.is_empty());
}
