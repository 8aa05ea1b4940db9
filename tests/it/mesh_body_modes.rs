//! Per-tool decisions in each `filter.body_mode`, with scopegate delivered by ECDS the way
//! istiod delivers a `WasmPlugin` (no `allow_on_headers_stop_iteration` unless the mode needs
//! it), proven from the MCP server's side: a refused JSON-RPC message never reaches it.

use scopegate_tests::ecds::{Delivery, MeshStack};
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

static MARK: AtomicU64 = AtomicU64::new(1);

/// A header value no other request carries, to find this request in the server's record.
fn mark() -> String {
    format!("m{}", MARK.fetch_add(1, Ordering::Relaxed))
}

fn with_mode(mode: &str) -> impl FnOnce(&mut Value) + '_ {
    move |doc: &mut Value| doc["filter"] = json!({ "body_mode": mode })
}

/// What the support-assistant server saw of the request carrying `mark`: `None` if nothing
/// at all, else the body it received (`Value::Null` when the stream ended before the body).
fn upstream_saw(s: &MeshStack, mark: &str) -> Option<Value> {
    s.support
        .seen()
        .into_iter()
        .find(|r| r["headers"]["x-test-mark"] == mark)
        .map(|r| r["body"].clone())
}

/// Sends one JSON-RPC call on an initialized session, marked; returns the reply and the mark.
fn call(c: &mut Client, msg: Value, headers: &[(&str, &str)]) -> (Reply, String) {
    let m = mark();
    let mut h: Vec<(&str, &str)> = vec![("x-test-mark", m.as_str())];
    h.extend_from_slice(headers);
    (c.post(&msg, &h), m)
}

fn tool(id: u64, name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": {"account_id": "acme"}}})
}

fn jsonrpc_error_code(r: &Reply) -> Option<i64> {
    r.json()["error"]["code"].as_i64()
}

/// The message never arrived: either nothing reached the server, or only a request start
/// whose body never completed (Envoy reset the upstream stream).
fn assert_message_never_arrived(s: &MeshStack, mark: &str, what: &str) -> &'static str {
    match upstream_saw(s, mark) {
        None => "nothing",
        Some(Value::Null) => "headers only, stream reset before the body",
        Some(body) => panic!("{what}: the refused message reached the MCP server: {body}"),
    }
}

/// The checks every mode must pass; returns what the upstream saw of a refused tool call.
fn per_tool_enforcement(s: &MeshStack, mode: &str) -> &'static str {
    let reader = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&reader));
    let r = c.initialize();
    assert_eq!(r.status, 200, "{mode}: initialize: {}", r.body);

    // Allowed: the tool runs, with identity headers and without the client's token.
    let (r, m) = call(&mut c, tool(10, "list_tickets"), &[]);
    assert_eq!(r.status, 200, "{mode}: list_tickets: {}", r.body);
    let seen = r.tool_json();
    assert_eq!(seen["scopegate_subject"], json!("alice"), "{mode}");
    assert_eq!(seen["scopegate_scopes"], json!("tickets.read"), "{mode}");
    assert_eq!(seen["authorization"], Value::Null, "{mode}: token passed");
    let body = upstream_saw(s, &m).expect("the allowed call reached the server");
    assert!(
        body.as_str().is_some_and(|b| b.contains("list_tickets")),
        "{mode}: {body}"
    );

    // Refused on the body: get_account needs accounts.read.
    let (r, m) = call(&mut c, tool(11, "get_account"), &[]);
    assert_eq!(r.status, 403, "{mode}: get_account: {}", r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("insufficient_scope")),
        "{mode}"
    );
    let refused = assert_message_never_arrived(s, &m, mode);

    // A batch hiding the refused tool behind an allowed one.
    let batch = json!([tool(12, "list_tickets"), tool(13, "get_account")]);
    let (r, m) = call(&mut c, batch, &[]);
    assert!(
        r.status == 403 || r.status == 400,
        "{mode}: batch: {} {}",
        r.status,
        r.body
    );
    assert_message_never_arrived(s, &m, mode);

    // 2026-07-28 headers that disagree with the body: 400, -32020, never authorized on headers.
    let (r, m) = call(
        &mut c,
        tool(14, "get_account"),
        &[("mcp-method", "tools/call"), ("mcp-name", "list_tickets")],
    );
    assert_eq!(r.status, 400, "{mode}: mismatch: {}", r.body);
    assert_eq!(jsonrpc_error_code(&r), Some(-32020), "{mode}: {}", r.body);
    assert_eq!(
        r.json()["id"],
        json!(14),
        "{mode}: the refusal answers the request's id"
    );
    assert_message_never_arrived(s, &m, mode);

    // Headers that agree: allowed, and refused.
    let (r, _) = call(
        &mut c,
        tool(15, "list_tickets"),
        &[("mcp-method", "tools/call"), ("mcp-name", "list_tickets")],
    );
    assert_eq!(r.status, 200, "{mode}: agreeing headers: {}", r.body);
    let (r, m) = call(
        &mut c,
        tool(16, "get_account"),
        &[("mcp-method", "tools/call"), ("mcp-name", "get_account")],
    );
    assert_eq!(r.status, 403, "{mode}: declared refused tool: {}", r.body);
    assert_message_never_arrived(s, &m, mode);

    // With the scope, the same tool runs.
    let both = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&both));
    assert_eq!(c.initialize().status, 200, "{mode}");
    let (r, _) = call(&mut c, tool(17, "get_account"), &[]);
    assert_eq!(
        r.status, 200,
        "{mode}: get_account with the scope: {}",
        r.body
    );

    // The refusal is in the access log with its reason.
    let line = s
        .envoy
        .envoy
        .wait_access_log(|l| l["tool"] == "get_account" && l["reason"] == "insufficient_scope");
    assert_eq!(line["decision"], "deny", "{mode}");
    refused
}

#[test]
fn hold_body_without_the_flag_enforces_per_tool_scopes() {
    let s = MeshStack::start(
        "mesh_hold_body",
        Delivery::default(),
        with_mode("hold_body"),
    );
    let refused = per_tool_enforcement(&s, "hold_body");
    println!("hold_body, refused tools/call: the upstream saw {refused}");
    // A refusal the headers already show never starts an upstream request at all.
    let reader = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&reader));
    assert_eq!(c.initialize().status, 200);
    let (r, m) = call(
        &mut c,
        tool(20, "get_account"),
        &[("mcp-method", "tools/call"), ("mcp-name", "get_account")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        upstream_saw(&s, &m),
        None,
        "declared refusals start nothing"
    );

    // Per-tool budgets count held bodies when they are decided: three admin_report calls an
    // hour on ops-console, then 429 with Retry-After, and the fourth message never arrives.
    let admin = s.issuer.token(&s.resource(OPS), "admin.read");
    let mut c = Client::new(&s.envoy.url(OPS), Some(&admin));
    assert_eq!(c.initialize().status, 200);
    for i in 0..3 {
        let r = c.call_tool("admin_report", json!({}));
        assert_eq!(r.status, 200, "call {i}: {}", r.body);
    }
    let (r, m) = call(&mut c, tool(21, "admin_report"), &[]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let seen = s
        .ops
        .seen()
        .into_iter()
        .find(|r| r["headers"]["x-test-mark"] == m.as_str())
        .map(|r| r["body"].clone());
    assert!(
        matches!(seen, None | Some(Value::Null)),
        "the call over budget reached the server: {seen:?}"
    );
}

#[test]
fn hold_body_is_the_default() {
    let s = MeshStack::start("mesh_default_mode", Delivery::default(), |_| {});
    per_tool_enforcement(&s, "default");
}

#[test]
fn mcp_metadata_reads_the_native_filter_and_fails_closed_without_it() {
    let s = MeshStack::start(
        "mesh_mcp_metadata",
        Delivery {
            native_mcp: true,
            ..Delivery::default()
        },
        with_mode("mcp_metadata"),
    );
    let refused = per_tool_enforcement(&s, "mcp_metadata");
    println!("mcp_metadata, refused tools/call: the upstream saw {refused}");
    assert_eq!(refused, "nothing", "the native filter holds the headers");
    // A POST the native filter does not parse (no SSE in Accept) carries no metadata: refused.
    let reader = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let m = mark();
    let r = reqwest::blocking::Client::new()
        .post(s.envoy.url(SUPPORT))
        .header("authorization", format!("Bearer {reader}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-test-mark", &m)
        .body(tool(30, "list_tickets").to_string())
        .send()
        .expect("HTTP request");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().expect("a JSON-RPC error");
    assert_eq!(
        body["id"],
        Value::Null,
        "nothing recorded, no id to answer: {body}"
    );
    assert_eq!(upstream_saw(&s, &m), None);

    // Duplicate keys: Envoy 1.40 passes them through (last key wins) with a
    // `passthrough_reason`; a server reading the first key would run another method. Refused.
    let smuggled = r#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"get_account"},"method":"tools/list"}"#;
    let m = mark();
    let r = reqwest::blocking::Client::new()
        .post(s.envoy.url(SUPPORT))
        .header("authorization", format!("Bearer {reader}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-test-mark", &m)
        .body(smuggled)
        .send()
        .expect("HTTP request");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().expect("a JSON-RPC error");
    assert_eq!(
        body["id"],
        json!(31),
        "the id envoy.filters.http.mcp recorded: {body}"
    );
    assert_eq!(body["error"]["code"], json!(-32600), "{body}");
    assert_eq!(upstream_saw(&s, &m), None);

    // A string id comes back as sent; a JSON null anywhere in the message (which the
    // namespace's own property cannot even serialize) still decides.
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&reader));
    assert_eq!(c.initialize().status, 200);
    let (r, _) = call(
        &mut c,
        json!({"jsonrpc": "2.0", "id": "req-40", "method": "tools/call",
               "params": {"name": "get_account", "arguments": {}}}),
        &[("mcp-name", "list_tickets")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["id"], json!("req-40"), "{}", r.body);
    // scopegate decides it and lets it through (the server then refuses a null id itself).
    let (r, m) = call(
        &mut c,
        json!({"jsonrpc": "2.0", "id": null, "method": "tools/list"}),
        &[],
    );
    let body = upstream_saw(&s, &m).expect("a null id reached the server");
    assert!(
        body.as_str().is_some_and(|b| b.contains("tools/list")),
        "{} {body}",
        r.status
    );
}

#[test]
fn mcp_metadata_without_the_native_filter_refuses_every_tool_call() {
    // A misconfigured chain (mode set, native filter missing) fails closed, not open.
    let s = MeshStack::start(
        "mesh_mcp_metadata_missing",
        Delivery::default(),
        with_mode("mcp_metadata"),
    );
    let both = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&both));
    let m = mark();
    let r = c.request(
        "tools/call",
        json!({"name": "get_account", "arguments": {}}),
        &[("x-test-mark", &m)],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(upstream_saw(&s, &m), None);
}

#[test]
fn hold_headers_with_the_flag_enforces_per_tool_scopes() {
    let s = MeshStack::start(
        "mesh_hold_headers",
        Delivery {
            allow_on_headers_stop_iteration: true,
            ..Delivery::default()
        },
        with_mode("hold_headers"),
    );
    let refused = per_tool_enforcement(&s, "hold_headers");
    println!("hold_headers, refused tools/call: the upstream saw {refused}");
    assert_eq!(refused, "nothing", "the headers were held");
}

#[test]
fn hold_body_with_the_flag_behaves_the_same() {
    // An EnvoyFilter that does set the flag changes nothing for the default mode.
    let s = MeshStack::start(
        "mesh_hold_body_flag",
        Delivery {
            allow_on_headers_stop_iteration: true,
            ..Delivery::default()
        },
        with_mode("hold_body"),
    );
    per_tool_enforcement(&s, "hold_body with the flag");
}

#[test]
fn hold_headers_without_the_flag_fails_closed() {
    // The mistake this guards against: the mode that needs the flag, delivered by a WasmPlugin.
    let s = MeshStack::start(
        "mesh_hold_headers_no_flag",
        Delivery::default(),
        with_mode("hold_headers"),
    );
    let both = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    let reader = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    for (token, tool_name) in [(&reader, "get_account"), (&both, "list_tickets")] {
        let mut c = Client::new(&s.envoy.url(SUPPORT), Some(token));
        let (r, m) = call(&mut c, tool(40, tool_name), &[]);
        // Envoy never hands the body over; the filter's timer answers instead of a hang.
        assert_eq!(r.status, 503, "{tool_name}: {}", r.body);
        assert_eq!(upstream_saw(&s, &m), None, "{tool_name} reached the server");
    }
    assert!(
        s.envoy
            .envoy
            .log()
            .contains("set allow_on_headers_stop_iteration: true"),
        "the log says what is wrong"
    );
    assert!(
        s.envoy
            .envoy
            .stat("wasmcustom.scopegate.hold_headers.no_body")
            .unwrap_or(0)
            >= 2
    );
    // Requests that need no body are unaffected.
    let r = Client::get(&s.envoy.url("/plain/x"), None);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn hold_body_after_a_header_time_callout_without_the_flag() {
    // A token with a new `kid` makes the filter refetch keys while it holds the headers; without
    // the flag Envoy then stops the whole stream, and hands the body over only after resuming.
    let s = MeshStack::start(
        "mesh_hold_body_callout",
        Delivery::default(),
        with_mode("hold_body"),
    );
    let resource = s.resource(SUPPORT);
    let mut c = Client::new(
        &s.envoy.url(SUPPORT),
        Some(&s.issuer.token(&resource, "tickets.read")),
    );
    assert_eq!(c.initialize().status, 200);
    s.issuer.add_unpublished("ES256", "rotated-a");
    s.issuer.publish("rotated-a");
    s.issuer.add_unpublished("ES256", "rotated-b");
    let fetches = s.issuer.fetches();
    c.token = Some(
        s.issuer
            .sign("rotated-a", s.issuer.claims(&resource, "tickets.read")),
    );
    let (r, m) = call(&mut c, tool(50, "list_tickets"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(s.issuer.fetches() > fetches, "the kid was refetched");
    let body = upstream_saw(&s, &m).expect("reached the server");
    assert!(body.as_str().is_some_and(|b| b.contains("list_tickets")));

    s.issuer.publish("rotated-b");
    c.token = Some(
        s.issuer
            .sign("rotated-b", s.issuer.claims(&resource, "tickets.read")),
    );
    // The unknown-kid refetch is rate-limited to one a second in this document.
    let mut marks = Vec::new();
    let status = scopegate_tests::procs::wait_for(
        "the second rotated key to be accepted",
        std::time::Duration::from_secs(20),
        || {
            let (r, m) = call(&mut c, tool(51, "get_account"), &[]);
            marks.push(m);
            (r.status != 401).then_some(r.status)
        },
    );
    assert_eq!(status, 403);
    for m in &marks {
        assert_message_never_arrived(&s, m, "get_account after a refetch");
    }
}
