//! What a client may call is what it sees: listings filtered per token (JSON and SSE, paginated),
//! resources and prompts by scope, batches authorized whole, and non-OAuth refusals as JSON-RPC
//! errors, through a real Envoy with the built filter and the example rmcp servers.

mod setup;

use scopegate_tests::mcp::Client;
use scopegate_tests::procs::wait_for;
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use setup::{
    assert_jsonrpc_error, content_type, entries, seen_from, stack, start_envoy, JSON_PATH,
};
use std::time::Duration;

#[test]
fn sse_tools_list_hides_never_grantable_tools_and_keeps_step_up_ones() {
    let s = stack();
    let mut c = s.client(SUPPORT, "tickets.read");
    let r = c.request("tools/list", json!({}), &[]);
    assert!(
        content_type(&r).starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let (tools, _) = entries(&r, "tools", "name");
    // export_accounts is denied outright; get_account needs a scope a step-up can add.
    assert_eq!(tools, ["get_account", "list_tickets", "slow_count"]);
    let line = s
        .envoy
        .wait_access_log(|l| l["server"] == "support-assistant" && l["hidden"] == "1");
    assert_eq!(line["decision"], "allow");

    // Discoverable, called, refused with the scope to step up to.
    let r = c.call_tool("get_account", json!({"account_id": "acct-42"}));
    assert_eq!(r.status, 403, "{}", r.body);
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"tickets.read accounts.read\""),
        "{challenge}"
    );

    // After the step-up the same listing still shows it, and the call passes.
    let mut c = s.client(SUPPORT, "tickets.read accounts.read");
    let (tools, _) = entries(&c.request("tools/list", json!({}), &[]), "tools", "name");
    assert_eq!(tools, ["get_account", "list_tickets", "slow_count"]);
    assert_eq!(
        c.call_tool("get_account", json!({"account_id": "a"}))
            .status,
        200
    );
}

#[test]
fn a_hidden_tool_called_anyway_is_refused_before_the_server() {
    let s = stack();
    let mut c = s.client_as(SUPPORT, "tickets.read accounts.read", "hidden-caller");
    let before = seen_from(&s.support, "hidden-caller");
    let r = c.post(
        &json!({"jsonrpc": "2.0", "id": "x-9", "method": "tools/call",
                "params": {"name": "export_accounts", "arguments": {}}}),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        None,
        "no scope helps: no challenge"
    );
    assert_jsonrpc_error(&r.json(), &json!("x-9"), -32010);
    // Denied resources and prompts too, even though they exist upstream.
    let r = c.request(
        "resources/read",
        json!({"uri": "internal://audit-log"}),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -32010);
    let r = c.request("prompts/get", json!({"name": "internal_escalation"}), &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let after: Vec<Value> = s.support.seen().into_iter().skip(before).collect();
    assert!(
        !after
            .iter()
            .any(|x| x.to_string().contains("export_accounts")),
        "the server saw the refused call: {after:?}"
    );
    let line = s.envoy.wait_access_log(|l| l["reason"] == "denied");
    assert_eq!(line["status"], 403);
}

#[test]
fn resources_and_prompts_need_their_scopes() {
    let s = stack();
    let mut c = s.client(SUPPORT, "tickets.read");
    let r = c.request("resources/read", json!({"uri": "tickets://T-1001"}), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.request(
        "resources/read",
        json!({"uri": "accounts://acct-42/profile"}),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.contains("scope=\"tickets.read accounts.read\"")));
    assert_eq!(
        c.request("prompts/get", json!({"name": "triage_ticket"}), &[])
            .status,
        200
    );
    assert_eq!(
        c.request("prompts/get", json!({"name": "summarize_account"}), &[])
            .status,
        403
    );
}

#[test]
fn json_listings_show_only_what_the_token_grants_with_hide_not_granted() {
    let s = stack();
    let mut c = s.client(JSON_PATH, "tickets.read");
    let r = c.request("tools/list", json!({}), &[]);
    assert!(
        content_type(&r).starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        entries(&r, "tools", "name").0,
        ["export_accounts", "list_tickets", "slow_count"]
    );
    let r = c.request("prompts/list", json!({}), &[]);
    assert_eq!(
        entries(&r, "prompts", "name").0,
        ["internal_escalation", "triage_ticket"]
    );
    let r = c.request("resources/templates/list", json!({}), &[]);
    assert_eq!(
        entries(&r, "resourceTemplates", "uriTemplate").0,
        ["internal://{log}", "tickets://{ticket_id}"]
    );
    let mut wide = s.client(JSON_PATH, "tickets.read accounts.read");
    let r = wide.request("tools/list", json!({}), &[]);
    assert_eq!(
        entries(&r, "tools", "name").0,
        [
            "export_accounts",
            "get_account",
            "list_tickets",
            "slow_count"
        ]
    );
    let line = s
        .envoy
        .wait_access_log(|l| l["server"] == "support-json" && l["hidden"] == "1");
    assert_eq!(line["status"], 200);
}

/// Every page of `resources/list`, following `nextCursor`.
fn all_pages(c: &mut Client) -> (Vec<String>, Vec<String>) {
    let mut uris = Vec::new();
    let mut cursors = Vec::new();
    let mut params = json!({});
    for _ in 0..10 {
        let r = c.request("resources/list", params.clone(), &[]);
        let (page, next) = entries(&r, "resources", "uri");
        uris.extend(page);
        match next {
            Some(n) => {
                cursors.push(n.clone());
                params = json!({"cursor": n});
            }
            None => return (uris, cursors),
        }
    }
    panic!("resources/list never ended");
}

#[test]
fn paginated_listings_keep_next_cursor() {
    let s = stack();
    // Default setting: only the denied internal:// resource goes; the cursors survive.
    let (mut uris, cursors) = all_pages(&mut s.client(SUPPORT, "tickets.read"));
    assert_eq!(cursors, ["2", "4"]);
    uris.sort();
    assert_eq!(
        uris,
        [
            "accounts://acct-42/profile",
            "tickets://T-1001",
            "tickets://T-1002",
            "tickets://T-1003"
        ]
    );
    assert!(
        !uris.iter().any(|u| u.starts_with("internal://")),
        "{uris:?}"
    );
    // hide: not_granted over JSON: a page may come back empty, its cursor intact.
    let (mut uris, cursors) = all_pages(&mut s.client(JSON_PATH, "tickets.read"));
    assert_eq!(cursors, ["2", "4"]);
    // accounts:// needs accounts.read; internal:// has no rule on this server, so it shows.
    uris.sort();
    assert_eq!(
        uris,
        [
            "internal://audit-log",
            "tickets://T-1001",
            "tickets://T-1002",
            "tickets://T-1003"
        ]
    );
}

#[test]
fn a_batch_with_one_forbidden_call_is_refused_whole() {
    let s = stack();
    let mut c = s.client_as(SUPPORT, "tickets.read", "batch-caller");
    let before = seen_from(&s.support, "batch-caller");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_tickets", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_account", "arguments": {"account_id": "a"}}}
    ]);
    let r = c.post(&batch, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let h = r.header("www-authenticate").expect("challenge");
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("this batch needs scope `accounts.read`"), "{h}");
    assert!(h.contains("scope=\"tickets.read accounts.read\""), "{h}");
    // A batch holding a denied call: one JSON-RPC error per request.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_tickets", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "export_accounts", "arguments": {}}}
    ]);
    let r = c.post(&batch, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let v = r.json();
    assert_jsonrpc_error(&v[0], &json!(3), -32010);
    assert_jsonrpc_error(&v[1], &json!(4), -32010);
    assert_eq!(
        seen_from(&s.support, "batch-caller"),
        before,
        "the server saw a refused batch"
    );
}

#[test]
fn non_oauth_refusals_are_json_rpc_errors_with_http_status_and_headers() {
    let s = stack();
    let mut c = s.client(SUPPORT, "tickets.read accounts.read");
    // 400: Mcp-Name disagrees with the body.
    let r = c.post(
        &json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call",
                "params": {"name": "list_tickets", "arguments": {}}}),
        &[("mcp-method", "tools/call"), ("mcp-name", "get_account")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_jsonrpc_error(&r.json(), &json!(41), -32020);
    // 413: larger than filter.max_body_bytes (64 KiB); the id is unknown, so null.
    let big = "x".repeat(80 * 1024);
    let r = c.post(
        &json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
                "params": {"name": "list_tickets", "arguments": {"status": big}}}),
        &[],
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_jsonrpc_error(&r.json(), &Value::Null, -32012);
    // 429: get_account's budget is 2 per subject; Retry-After stays.
    let mut claims = s.issuer.claims(
        &format!("{}{SUPPORT}", s.public_url),
        "tickets.read accounts.read",
    );
    claims["sub"] = json!("budget-user");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&s.issuer.sign("es256", claims)));
    assert_eq!(c.initialize().status, 200);
    for _ in 0..2 {
        assert_eq!(
            c.call_tool("get_account", json!({"account_id": "a"}))
                .status,
            200
        );
    }
    let r = c.post(
        &json!({"jsonrpc": "2.0", "id": "b-3", "method": "tools/call",
                "params": {"name": "get_account", "arguments": {"account_id": "a"}}}),
        &[],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    let v = r.json();
    assert_jsonrpc_error(&v, &json!("b-3"), -32011);
    assert_eq!(v["error"]["data"]["retry_after"], json!(retry));
    // 401 keeps the OAuth shape.
    let r = Client::new(&s.envoy.url(SUPPORT), None).initialize();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
}

#[test]
fn listing_effects_are_counted_in_envoy_stats() {
    let s = stack();
    // An Envoy of its own in front of the shared servers: its counters move only for this
    // test's requests (the shared Envoy's move for every listing test running alongside).
    let (envoy, public_url) = start_envoy(
        "listings_counters",
        &s.issuer,
        [&s.support, &s.support_json, &s.ops],
        None,
    );
    let counter = |name: &str| {
        envoy
            .stat(&format!(
                "wasmcustom.scopegate.support-assistant.listing.{name}"
            ))
            .unwrap_or(0)
    };
    assert_eq!((counter("filtered"), counter("hidden")), (0, 0));
    let token = s
        .issuer
        .token(&format!("{public_url}{SUPPORT}"), "tickets.read");
    let mut c = Client::new(&envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    // The SSE listing, filtered: the denied prompt is gone, the one a step-up reaches stays.
    let r = c.request("prompts/list", json!({}), &[]);
    assert!(
        content_type(&r).starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let (prompts, _) = entries(&r, "prompts", "name");
    assert_eq!(prompts, ["summarize_account", "triage_ticket"]);
    assert!(!r.body.contains("internal_escalation"), "{}", r.body);
    let filtered = wait_for("the listing counters", Duration::from_secs(10), || {
        Some(counter("filtered")).filter(|n| *n > 0)
    });
    assert_eq!(
        (filtered, counter("hidden")),
        (1, 1),
        "one listing filtered, one entry hidden"
    );
    // A second listing adds its own: tools/list hides export_accounts.
    let (tools, _) = entries(&c.request("tools/list", json!({}), &[]), "tools", "name");
    assert_eq!(tools, ["get_account", "list_tickets", "slow_count"]);
    wait_for(
        "the second listing's counters",
        Duration::from_secs(10),
        || (counter("filtered") == 2).then_some(()),
    );
    assert_eq!(counter("hidden"), 2);
}

#[test]
fn servers_with_nothing_to_hide_stream_listings_untouched() {
    let s = stack();
    // ops-console denies nothing and keeps the default: its listing is never read.
    let mut c = s.client(OPS, "admin.read");
    let r = c.request("tools/list", json!({}), &[]);
    assert_eq!(
        entries(&r, "tools", "name").0,
        ["admin_report", "slow_count", "update_ticket"]
    );
    let line = s
        .envoy
        .wait_access_log(|l| l["server"] == "ops-console" && l["method"] == "POST");
    assert!(line["hidden"].is_null() || line["hidden"] == "-", "{line}");
}

#[test]
fn over_the_bound_listings_pass_or_become_errors() {
    let s = stack();
    // A second Envoy in front of the same servers, reading at most 1 KiB of a listing.
    let (envoy, public_url) = start_envoy(
        "listings_bound",
        &s.issuer,
        [&s.support, &s.support_json, &s.ops],
        Some(1024),
    );
    let client = |path: &str| {
        let token = s
            .issuer
            .token(&format!("{public_url}{path}"), "tickets.read");
        let mut c = Client::new(&envoy.url(path), Some(&token));
        assert_eq!(c.initialize().status, 200);
        c
    };
    // Where entries are denied outright, an unread listing could show them: a JSON-RPC error.
    let r = client(SUPPORT).request("tools/list", json!({}), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let err = r
        .messages
        .iter()
        .find(|m| m.get("error").is_some())
        .unwrap_or_else(|| panic!("no error in {}", r.body));
    // initialize took id 1.
    assert_jsonrpc_error(err, &json!(2), -32013);
    assert!(!r.body.contains("export_accounts"), "{}", r.body);
    // Where only step-up entries would be hidden, it passes untouched and the record says so.
    let r = client(JSON_PATH).request("tools/list", json!({}), &[]);
    assert_eq!(
        entries(&r, "tools", "name").0,
        [
            "export_accounts",
            "get_account",
            "list_tickets",
            "slow_count"
        ]
    );
    let line = envoy.wait_access_log(|l| l["hidden"] == "over_bound");
    assert_eq!(line["server"], "support-json");
    envoy.wait_access_log(|l| l["hidden"] == "over_bound_replaced");
}

#[test]
fn other_responses_on_a_filtering_server_still_stream() {
    let s = stack();
    let mut c = s.client(SUPPORT, "tickets.read");
    let r = c.request(
        "tools/call",
        json!({"name": "slow_count", "arguments": {"n": 3}, "_meta": {"progressToken": "p1"}}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        content_type(&r).starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let progress = r
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 3, "{}", r.body);
    assert!(r.result().is_some(), "{}", r.body);
}
