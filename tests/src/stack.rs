//! The two-server example in validate mode: two MCP servers, an echo upstream that no gateway
//! governs, a token issuer, and Envoy with scopegate in front of them.

use crate::envoy::{wait_keys_loaded, Envoy};
use crate::issuer::Issuer;
use crate::procs::{log_dir, Proc};
use crate::{built, free_port};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

pub const MCP_BIN: &str = "target/debug/scopegate-example-mcp";
pub const SUPPORT: &str = "/support-assistant/mcp";
pub const OPS: &str = "/ops-console/mcp";

/// One example MCP server process.
pub struct McpServer {
    pub proc: Proc,
    pub port: u16,
}

impl McpServer {
    pub fn start(name: &str, dir: &str) -> McpServer {
        let bin = built(MCP_BIN, "cargo build -p scopegate-example-mcp");
        let mut cmd = Command::new(bin);
        cmd.args(["--name", name, "--listen", "127.0.0.1:0"]);
        let mut proc = Proc::start(name, cmd, &log_dir(dir));
        let addr = proc.wait_stdout_line("listening on ", Duration::from_secs(20));
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        McpServer { proc, port }
    }

    /// Every request this server received (its `/_seen` endpoint, read directly, not via Envoy).
    pub fn seen(&self) -> Vec<Value> {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/_seen", self.port))
            .and_then(|r| r.json::<Vec<Value>>())
            .expect("/_seen")
    }

    pub fn clear_seen(&self) {
        reqwest::blocking::Client::new()
            .delete(format!("http://127.0.0.1:{}/_seen", self.port))
            .send()
            .expect("DELETE /_seen");
    }
}

/// An upstream no gateway governs: answers every request with the headers it received.
pub fn start_echo() -> u16 {
    crate::serve_in_background(axum::Router::new().fallback(
        |headers: axum::http::HeaderMap| async move {
            let h: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            axum::Json(json!({ "echo": true, "headers": h }))
        },
    ))
}

/// The example gateway document for validate mode, issuer and JWKS from the test issuer.
pub fn gateway_doc(public_url: &str, issuer: &str) -> Value {
    json!({
        "gateways": [{
            "name": "saas",
            "public_url": public_url,
            "issuer": issuer,
            "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
            "default_server": "support-assistant",
            "jwks": {"cluster": "test_issuer", "path": "/jwks", "unknown_kid_refetch_s": 1},
            "servers": [
                {"name": "support-assistant", "cluster": "support_assistant", "path": SUPPORT,
                 "scopes": ["tickets.read", "accounts.read"],
                 "tools": {"list_tickets": ["tickets.read"], "get_account": ["accounts.read"]}},
                {"name": "ops-console", "cluster": "ops_console", "path": OPS,
                 "scopes": ["tickets.write", "admin.read"],
                 "tools": {"update_ticket": ["tickets.write"], "admin_report": ["admin.read"]},
                 "budgets": [{"tool": "admin_report", "requests": 3, "per_seconds": 3600}]}
            ]
        }]
    })
}

/// Everything up, Envoy last.
pub struct Stack {
    pub issuer: Issuer,
    pub support: McpServer,
    pub ops: McpServer,
    pub echo_port: u16,
    pub envoy: Envoy,
    pub public_url: String,
}

impl Stack {
    /// Starts the stack; `tweak` edits the document before Envoy gets it.
    pub fn start(name: &str, tweak: impl FnOnce(&mut Value)) -> Stack {
        Stack::start_workers(name, 1, tweak)
    }

    /// As [`Stack::start`] with `workers` Envoy worker threads.
    pub fn start_workers(name: &str, workers: u32, tweak: impl FnOnce(&mut Value)) -> Stack {
        let issuer = Issuer::start();
        let support = McpServer::start("support-assistant", name);
        let ops = McpServer::start("ops-console", name);
        let echo_port = start_echo();
        let (envoy, public_url) =
            start_envoy(name, &issuer, &support, &ops, echo_port, workers, tweak);
        Stack {
            issuer,
            support,
            ops,
            echo_port,
            envoy,
            public_url,
        }
    }

    /// Another Envoy (with its own public URL, the document edited by `tweak`) in front of this
    /// stack's servers and issuer: for a test whose Envoy counters only its own requests may
    /// move, while other tests share the stack's Envoy.
    pub fn own_envoy(&self, name: &str, tweak: impl FnOnce(&mut Value)) -> (Envoy, String) {
        start_envoy(
            name,
            &self.issuer,
            &self.support,
            &self.ops,
            self.echo_port,
            1,
            tweak,
        )
    }

    pub fn resource(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

/// Envoy running what `scopegate-broker render envoy` prints for the example document (as the
/// shipped envoy/envoy.yaml is) edited by `tweak`, plus the one upstream no gateway governs;
/// returns once the filter has its keys, with the gateway's public URL.
fn start_envoy(
    name: &str,
    issuer: &Issuer,
    support: &McpServer,
    ops: &McpServer,
    echo_port: u16,
    workers: u32,
    tweak: impl FnOnce(&mut Value),
) -> (Envoy, String) {
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut doc = gateway_doc(&public_url, &issuer.url);
    tweak(&mut doc);
    let envoy = start_example_envoy(
        name,
        &doc,
        &example_clusters(issuer, support, ops),
        None,
        port,
        workers,
        &|boot| add_plain_upstream(boot, echo_port),
    );
    (envoy, public_url)
}

/// The example document's clusters: its two servers and the issuer's JWKS.
pub fn example_clusters(
    issuer: &Issuer,
    support: &McpServer,
    ops: &McpServer,
) -> [(&'static str, u16); 3] {
    [
        ("support_assistant", support.port),
        ("ops_console", ops.port),
        ("test_issuer", issuer.port),
    ]
}

/// Envoy running what `scopegate-broker render envoy` prints for `doc` (not brokered) in front of
/// `clusters` and, when given, the rate limit service at `rate_limit`, with `edit` applied to the
/// bootstrap; returns once the filter has its keys. Stacks and fleets start their Envoys here.
pub fn start_example_envoy(
    name: &str,
    doc: &Value,
    clusters: &[(&str, u16)],
    rate_limit: Option<&str>,
    port: u16,
    workers: u32,
    edit: &dyn Fn(&mut Value),
) -> Envoy {
    let envoy = crate::render::start_envoy_edited(
        name,
        doc,
        &crate::render::Upstreams {
            clusters,
            broker: None,
            rate_limit,
        },
        port,
        workers,
        edit,
    );
    wait_keys_loaded(&envoy.url(SUPPORT));
    envoy
}

/// Adds the echo upstream (cluster `plain_upstream`, route prefix `/plain/`) to a rendered
/// bootstrap: traffic there is no gateway's, and tests check it passes untouched.
pub fn add_plain_upstream(boot: &mut Value, echo_port: u16) {
    if let Some(clusters) = boot["static_resources"]["clusters"].as_array_mut() {
        clusters.push(crate::bootstrap::cluster("plain_upstream", echo_port));
    }
    let hcm = &mut boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    if let Some(routes) = hcm["route_config"]["virtual_hosts"][0]["routes"].as_array_mut() {
        routes.push(crate::bootstrap::route("/plain/", "plain_upstream"));
    }
}
