//! What a client may call is what it sees: listings filtered per token (JSON and SSE, paginated),
//! resources and prompts by scope, batches authorized whole, and non-OAuth refusals as JSON-RPC
//! errors, through a real Envoy with the built filter and the example rmcp servers.

use scopegate_tests::envoy::{wait_keys_loaded, Envoy, Spec};
use scopegate_tests::issuer::Issuer;
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::procs::{log_dir, wait_for, Proc};
use scopegate_tests::stack::{McpServer, MCP_BIN, OPS, SUPPORT};
use scopegate_tests::{built, free_port};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The support-assistant example served without sessions, answering in `application/json`.
const JSON_PATH: &str = "/support-json/mcp";

struct Listings {
    issuer: Issuer,
    support: McpServer,
    support_json: McpServer,
    ops: McpServer,
    envoy: Envoy,
    public_url: String,
}

fn start_mcp(name: &str, path: &str, json: bool) -> McpServer {
    let bin = built(MCP_BIN, "cargo build -p scopegate-example-mcp");
    let mut cmd = Command::new(bin);
    cmd.args(["--name", name, "--listen", "127.0.0.1:0", "--path", path]);
    if json {
        cmd.arg("--json");
    }
    let label = if json { "support-json" } else { name };
    let mut proc = Proc::start(label, cmd, &log_dir("listings"));
    let addr = proc.wait_stdout_line("listening on ", Duration::from_secs(20));
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    McpServer { proc, port }
}

/// Resource, prompt and tool rules shared by both support servers.
fn support_rules(name: &str, cluster: &str, path: &str) -> Value {
    json!({
        "name": name, "cluster": cluster, "path": path,
        "scopes": ["tickets.read", "accounts.read"],
        "tools": {"list_tickets": ["tickets.read"], "get_account": ["accounts.read"]},
        "resources": {"tickets://*": ["tickets.read"], "accounts://{id}/profile": ["accounts.read"]},
        "prompts": {"triage_ticket": ["tickets.read"], "summarize_account": ["accounts.read"]},
    })
}

fn document(public_url: &str, issuer: &str, max_listing_bytes: Option<u64>) -> Value {
    let mut support = support_rules("support-assistant", "support_assistant", SUPPORT);
    support["deny"] = json!({"tools": ["export_accounts"], "resources": ["internal://*"],
                             "prompts": ["internal_escalation"]});
    support["budgets"] = json!([{"tool": "get_account", "requests": 2, "per_seconds": 3600}]);
    let mut support_json = support_rules("support-json", "support_json", JSON_PATH);
    support_json["listings"] = json!({"hide": "not_granted"});
    let mut doc = json!({
        "gateways": [{
            "name": "saas", "public_url": public_url, "issuer": issuer,
            "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
            "default_server": "support-assistant",
            "jwks": {"cluster": "test_issuer", "path": "/jwks"},
            "servers": [support, support_json,
                {"name": "ops-console", "cluster": "ops_console", "path": OPS,
                 "scopes": ["tickets.write", "admin.read"],
                 "tools": {"update_ticket": ["tickets.write"], "admin_report": ["admin.read"]}}]
        }]
    });
    if let Some(n) = max_listing_bytes {
        doc["filter"] = json!({"max_listing_bytes": n});
    }
    doc
}

fn start_envoy(
    name: &str,
    issuer: &Issuer,
    servers: [&McpServer; 3],
    max_listing_bytes: Option<u64>,
) -> (Envoy, String) {
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let doc = document(&public_url, &issuer.url, max_listing_bytes);
    let envoy = Envoy::start(&Spec {
        name: name.to_string(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), servers[0].port),
            ("support_json".into(), servers[1].port),
            ("ops_console".into(), servers[2].port),
            ("test_issuer".into(), issuer.port),
        ],
        routes: vec![
            ("/support-assistant/".into(), "support_assistant".into()),
            ("/support-json/".into(), "support_json".into()),
            ("/ops-console/".into(), "ops_console".into()),
        ],
        concurrency: 1,
        port: Some(port),
    });
    wait_keys_loaded(&envoy.url(SUPPORT));
    (envoy, public_url)
}

fn stack() -> &'static Listings {
    static STACK: OnceLock<Listings> = OnceLock::new();
    STACK.get_or_init(|| {
        let issuer = Issuer::start();
        let support = start_mcp("support-assistant", SUPPORT, false);
        let support_json = start_mcp("support-assistant", JSON_PATH, true);
        let ops = start_mcp("ops-console", OPS, false);
        let (envoy, public_url) =
            start_envoy("listings", &issuer, [&support, &support_json, &ops], None);
        Listings {
            issuer,
            support,
            support_json,
            ops,
            envoy,
            public_url,
        }
    })
}

impl Listings {
    fn client(&self, path: &str, scope: &str) -> Client {
        self.client_as(path, scope, "alice")
    }

    /// A client whose token names `subject`, so a test can pick its own requests out of what
    /// the shared servers saw (tests run in parallel).
    fn client_as(&self, path: &str, scope: &str, subject: &str) -> Client {
        let mut claims = self
            .issuer
            .claims(&format!("{}{path}", self.public_url), scope);
        claims["sub"] = json!(subject);
        let token = self.issuer.sign("es256", claims);
        let mut c = Client::new(&self.envoy.url(path), Some(&token));
        let r = c.initialize();
        assert_eq!(r.status, 200, "initialize {path}: {}", r.body);
        c
    }
}

/// How many requests of `subject` a server has seen.
/// How many of `subject`'s JSON-RPC messages reached the server. In the default body mode
/// (`hold_body`) a refused request's headers do go upstream and are reset before any body byte,
/// so what counts is whether the message arrived (`body` is null for a reset request).
fn seen_from(server: &McpServer, subject: &str) -> usize {
    server
        .seen()
        .iter()
        .filter(|r| r["headers"]["x-scopegate-subject"] == subject && !r["body"].is_null())
        .count()
}

/// The entries' names (or URIs) of a listing reply, and its `nextCursor`.
fn entries(r: &Reply, field: &str, key: &str) -> (Vec<String>, Option<String>) {
    assert_eq!(r.status, 200, "{}", r.body);
    let result = r
        .result()
        .unwrap_or_else(|| panic!("no result in {}", r.body));
    let mut names: Vec<String> = result[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {result}"))
        .iter()
        .map(|e| e[key].as_str().expect("entry key").to_string())
        .collect();
    names.sort();
    (names, result["nextCursor"].as_str().map(str::to_string))
}

fn content_type(r: &Reply) -> String {
    r.header("content-type").unwrap_or_default()
}

/// A JSON-RPC 2.0 error response to request `id` with `code`, and nothing else.
fn assert_jsonrpc_error(v: &Value, id: &Value, code: i64) {
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert_eq!(&v["id"], id, "{v}");
    assert_eq!(v["error"]["code"].as_i64(), Some(code), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v.get("result").is_none(), "{v}");
}

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
