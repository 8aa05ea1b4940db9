//! `make demo`: the two-server example end to end, each request and answer printed.
//!
//! Starts a real authorization server (oidc-provider), the two example MCP servers and Envoy
//! with the scopegate filter, walks through the story, stops everything, and exits 0 only if
//! every step behaved as expected.

use scopegate_tests::authz::Authz;
use scopegate_tests::envoy::{Envoy, Spec};
use scopegate_tests::free_port;
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::stack::{gateway_doc, McpServer, OPS, SUPPORT};
use serde_json::{json, Value};
use std::time::Duration;

const CLIENT: &str = "demo-agent";
const SECRET: &str = "demo-agent-secret-not-for-production";

struct Walk {
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Walk {
    fn step(&mut self, title: &str) {
        println!("\n\x1b[1m== {title}\x1b[0m");
    }

    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        if ok {
            println!("   \x1b[32m✓\x1b[0m {what}");
            self.passed.push(what.to_string());
        } else {
            println!("   \x1b[31m✗ {what}\x1b[0m: {detail}");
            self.failed.push(what.to_string());
        }
    }
}

fn show_request(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) {
    let auth = match token {
        Some(t) => format!("  (Authorization: Bearer {}…)", &t[..t.len().min(16)]),
        None => "  (no token)".to_string(),
    };
    println!("   → {method} {url}{auth}");
    if let Some(b) = body {
        println!("     {b}");
    }
}

fn show_reply(r: &Reply) {
    println!("   ← {}", r.status);
    if let Some(h) = r.header("www-authenticate") {
        println!("     WWW-Authenticate: {h}");
    }
    let body = match r.result() {
        Some(res) => res["content"][0]["text"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| res.to_string()),
        None => r.body.clone(),
    };
    if !body.is_empty() {
        let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        println!("     {}", &one_line[..one_line.len().min(300)]);
    }
}

fn call(url: &str, token: &str, tool: &str, args: Value) -> Reply {
    let mut c = Client::new(url, Some(token));
    let init = c.initialize();
    if init.status != 200 {
        return init;
    }
    show_request(
        "POST",
        url,
        Some(token),
        Some(&json!({"method": "tools/call", "params": {"name": tool}})),
    );
    let r = c.call_tool(tool, args);
    show_reply(&r);
    r
}

fn main() {
    let mut w = Walk {
        passed: vec![],
        failed: vec![],
    };
    println!(
        "scopegate demo: one gateway (`saas`), two MCP servers, each with its own subset of scopes"
    );
    println!("  gateway saas allows:        tickets.read tickets.write accounts.read admin.read");
    println!("  support-assistant asks for: tickets.read accounts.read");
    println!("  ops-console asks for:       tickets.write admin.read");

    w.step("Starting: oidc-provider (the identity provider), two rmcp MCP servers, Envoy 1.40 with scopegate.wasm");
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let support_resource = format!("{public_url}{SUPPORT}");
    let ops_resource = format!("{public_url}{OPS}");
    let authz = Authz::start(
        "demo",
        &json!({
            "clients": [{
                "client_id": CLIENT, "client_secret": SECRET,
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid tickets.read tickets.write accounts.read admin.read"
            }],
            "resources": {
                support_resource.clone(): {"scope": "openid tickets.read tickets.write accounts.read admin.read", "alg": "ES256"},
                ops_resource.clone(): {"scope": "tickets.read tickets.write accounts.read admin.read", "alg": "RS256"}
            }
        }),
    );
    let support = McpServer::start("support-assistant", "demo");
    let ops = McpServer::start("ops-console", "demo");
    let mut doc = gateway_doc(&public_url, &authz.url);
    doc["gateways"][0]["jwks"] = json!({"cluster": "authz", "path": "/jwks"});
    let envoy = Envoy::start(&Spec {
        name: "demo".into(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), support.port),
            ("ops_console".into(), ops.port),
            ("authz".into(), authz.port),
        ],
        routes: vec![
            ("/support-assistant/".into(), "support_assistant".into()),
            ("/ops-console/".into(), "ops_console".into()),
        ],
        concurrency: 1,
        port: Some(port),
    });
    println!("   identity provider  {}", authz.url);
    println!("   Envoy              {public_url}  (servers at {SUPPORT} and {OPS})");

    let token_for = |resource: &str, scope: &str| -> String {
        authz.client_credentials(CLIENT, SECRET, resource, scope)["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Wait until the filter has fetched the identity provider's keys.
    let warm = token_for(&support_resource, "tickets.read");
    scopegate_tests::procs::wait_for("the filter's signing keys", Duration::from_secs(20), || {
        (Client::new(&envoy.url(SUPPORT), Some(&warm))
            .initialize()
            .status
            != 503)
            .then_some(())
    });

    w.step("1. A client with no token meets a 401 that says where to go");
    for path in [SUPPORT, OPS] {
        let url = envoy.url(path);
        show_request("POST", &url, None, Some(&json!({"method": "initialize"})));
        let r = Client::new(&url, None).initialize();
        show_reply(&r);
        let h = r.header("www-authenticate").unwrap_or_default();
        w.check(
            &format!("{path}: 401 with resource_metadata and the server's own scopes"),
            r.status == 401 && h.contains("resource_metadata=") && h.contains("scope="),
            &h,
        );
    }

    w.step(
        "2. Discovery: each server's RFC 9728 metadata names the identity provider and its subset",
    );
    for (path, scopes) in [
        (SUPPORT, json!(["tickets.read", "accounts.read"])),
        (OPS, json!(["tickets.write", "admin.read"])),
    ] {
        let url = envoy.url(&format!("/.well-known/oauth-protected-resource{path}"));
        show_request("GET", &url, None, None);
        let r = Client::get(&url, None);
        show_reply(&r);
        let d = r.json();
        w.check(
            &format!(
                "{path}: scopes_supported is the server's subset, authorization_servers the IdP"
            ),
            d["scopes_supported"] == scopes && d["authorization_servers"] == json!([authz.url]),
            &r.body,
        );
    }

    w.step("3. A support-assistant token (tickets.read accounts.read) calls its tools");
    let support_token = token_for(&support_resource, "tickets.read accounts.read");
    let r = call(
        &envoy.url(SUPPORT),
        &support_token,
        "get_account",
        json!({"account_id": "acme"}),
    );
    let seen = if r.status == 200 {
        r.tool_json()
    } else {
        Value::Null
    };
    w.check("get_account allowed", r.status == 200, &r.body);
    w.check(
        "the MCP server saw the identity headers, not the client's token",
        seen["authorization"].is_null() && seen["scopegate_scopes"] == "tickets.read accounts.read",
        &seen.to_string(),
    );

    w.step("4. The same token at ops-console is refused: it was issued for another resource");
    let url = envoy.url(OPS);
    show_request(
        "POST",
        &url,
        Some(&support_token),
        Some(&json!({"method": "initialize"})),
    );
    let r = Client::new(&url, Some(&support_token)).initialize();
    show_reply(&r);
    w.check(
        "401 invalid_token (audience)",
        r.status == 401
            && r.header("www-authenticate")
                .unwrap_or_default()
                .contains("invalid_token"),
        &r.body,
    );

    w.step("5. An ops-console token with admin.read only: update_ticket needs tickets.write");
    let ops_token = token_for(&ops_resource, "admin.read");
    let r = call(
        &envoy.url(OPS),
        &ops_token,
        "update_ticket",
        json!({"ticket_id": "T-42", "status": "closed"}),
    );
    let h = r.header("www-authenticate").unwrap_or_default();
    w.check(
        "403 insufficient_scope asking for tickets.write admin.read",
        r.status == 403
            && h.contains("insufficient_scope")
            && h.contains("scope=\"tickets.write admin.read\""),
        &h,
    );
    println!("   … the client steps up and gets a token with tickets.write admin.read");
    let stepped = token_for(&ops_resource, "tickets.write admin.read");
    let r = call(
        &envoy.url(OPS),
        &stepped,
        "update_ticket",
        json!({"ticket_id": "T-42", "status": "closed"}),
    );
    w.check(
        "update_ticket allowed after step-up",
        r.status == 200,
        &r.body,
    );

    w.step("6. Scopes outside the gateway's allowed set are never granted");
    let with_openid = token_for(&support_resource, "openid tickets.read");
    let r = call(&envoy.url(SUPPORT), &with_openid, "list_tickets", json!({}));
    let scopes = if r.status == 200 {
        r.tool_json()["scopegate_scopes"].clone()
    } else {
        Value::Null
    };
    w.check(
        "openid dropped: the server sees tickets.read only",
        r.status == 200 && scopes == "tickets.read",
        &r.body,
    );

    w.step("7. A forged token is refused");
    let mut forged = support_token.clone();
    forged.truncate(forged.len().saturating_sub(4));
    forged.push_str("AAAA");
    let url = envoy.url(SUPPORT);
    show_request(
        "POST",
        &url,
        Some(&forged),
        Some(&json!({"method": "initialize"})),
    );
    let r = Client::new(&url, Some(&forged)).initialize();
    show_reply(&r);
    w.check("401 invalid_token (signature)", r.status == 401, &r.body);

    w.step("8. Every decision is in Envoy's access log (filter state) and stats");
    std::thread::sleep(Duration::from_millis(300));
    for line in envoy
        .access_log()
        .iter()
        .filter(|l| !l["decision"].is_null())
    {
        println!(
            "   {} {} {} -> {} decision={} reason={} tool={} scopes={} foreign={}",
            line["method"].as_str().unwrap_or("-"),
            line["path"].as_str().unwrap_or("-"),
            line["server"].as_str().unwrap_or("-"),
            line["status"],
            line["decision"].as_str().unwrap_or("-"),
            line["reason"].as_str().unwrap_or("-"),
            line["tool"].as_str().unwrap_or("-"),
            line["scopes"].as_str().unwrap_or("-"),
            line["foreign_scopes"].as_str().unwrap_or("-"),
        );
    }
    let denied = envoy
        .stat("wasmcustom.scopegate.ops-console.deny.insufficient_scope")
        .unwrap_or(0);
    w.check(
        "the insufficient_scope refusal is counted in Envoy stats",
        denied >= 1,
        &denied.to_string(),
    );

    drop(envoy);
    drop(support);
    drop(ops);
    drop(authz);
    println!(
        "\n\x1b[1mdemo: {} passed, {} failed\x1b[0m (logs in target/it-logs/demo/)",
        w.passed.len(),
        w.failed.len()
    );
    if !w.failed.is_empty() {
        for f in &w.failed {
            println!("   failed: {f}");
        }
        std::process::exit(1);
    }
}
