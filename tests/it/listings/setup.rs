//! The listings tests' shared stack (issuer, servers, Envoy) and helpers reading listing replies.

use scopegate_tests::envoy::{wait_keys_loaded, Envoy, Spec};
use scopegate_tests::issuer::Issuer;
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::procs::{log_dir, Proc};
use scopegate_tests::stack::{McpServer, MCP_BIN, OPS, SUPPORT};
use scopegate_tests::{built, free_port};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The support-assistant example served without sessions, answering in `application/json`.
pub(super) const JSON_PATH: &str = "/support-json/mcp";

pub(super) struct Listings {
    pub(super) issuer: Issuer,
    pub(super) support: McpServer,
    pub(super) support_json: McpServer,
    pub(super) ops: McpServer,
    pub(super) envoy: Envoy,
    pub(super) public_url: String,
}

pub(super) fn start_mcp(name: &str, path: &str, json: bool) -> McpServer {
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
pub(super) fn support_rules(name: &str, cluster: &str, path: &str) -> Value {
    json!({
        "name": name, "cluster": cluster, "path": path,
        "scopes": ["tickets.read", "accounts.read"],
        "tools": {"list_tickets": ["tickets.read"], "get_account": ["accounts.read"]},
        "resources": {"tickets://*": ["tickets.read"], "accounts://{id}/profile": ["accounts.read"]},
        "prompts": {"triage_ticket": ["tickets.read"], "summarize_account": ["accounts.read"]},
    })
}

pub(super) fn document(public_url: &str, issuer: &str, max_listing_bytes: Option<u64>) -> Value {
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

pub(super) fn start_envoy(
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

pub(super) fn stack() -> &'static Listings {
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
    pub(super) fn client(&self, path: &str, scope: &str) -> Client {
        self.client_as(path, scope, "alice")
    }

    /// A client whose token names `subject`, so a test can pick its own requests out of what
    /// the shared servers saw (tests run in parallel).
    pub(super) fn client_as(&self, path: &str, scope: &str, subject: &str) -> Client {
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
pub(super) fn seen_from(server: &McpServer, subject: &str) -> usize {
    server
        .seen()
        .iter()
        .filter(|r| r["headers"]["x-scopegate-subject"] == subject && !r["body"].is_null())
        .count()
}

/// The entries' names (or URIs) of a listing reply, and its `nextCursor`.
pub(super) fn entries(r: &Reply, field: &str, key: &str) -> (Vec<String>, Option<String>) {
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

pub(super) fn content_type(r: &Reply) -> String {
    r.header("content-type").unwrap_or_default()
}

/// A JSON-RPC 2.0 error response to request `id` with `code`, and nothing else.
pub(super) fn assert_jsonrpc_error(v: &Value, id: &Value, code: i64) {
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
