//! One authorization in a real browser: headless Chromium (Debian's, driven by playwright-core)
//! loads the broker's consent page through Envoy, shows the client, redirect host, server and
//! scopes, clicks Allow, and lands on the client's loopback redirect URI with a code that works;
//! a page that frames the consent page gets nothing rendered.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::mcp::Client;
use scopegate_tests::oauth::{pkce, redeem, register, AuthRequest};
use scopegate_tests::procs::{log_dir, Proc};
use scopegate_tests::repo_root;
use scopegate_tests::stack::SUPPORT;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const DIR: &str = "sdk_browser";

type Captured = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// The client's side: the loopback redirect URI (keeps what arrives, in memory only) and a page
/// that frames whatever `framed` holds.
fn client_pages(captured: Captured, framed: Arc<Mutex<String>>) -> u16 {
    use axum::extract::Query;
    use axum::response::Html;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/callback",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let captured = Arc::clone(&captured);
                async move {
                    captured.lock().unwrap().push(q);
                    Html("<p id=\"done\">Authorization finished.</p>")
                }
            }),
        )
        .route(
            "/framer",
            get(move || {
                let framed = Arc::clone(&framed);
                async move {
                    let src = framed.lock().unwrap().replace('&', "&amp;").replace('"', "&quot;");
                    Html(format!(
                        "<!doctype html><title>framer</title><iframe src=\"{src}\" width=600 height=400></iframe>"
                    ))
                }
            }),
        );
    scopegate_tests::serve_in_background(app)
}

#[test]
fn consent_in_headless_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make sdk-clients` (apt-get install -y chromium chromium-driver)"
    );
    assert!(
        repo_root()
            .join("tests/clients/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `make sdk-clients` (npm ci in tests/clients)"
    );
    let b = Brokered::start(DIR, 600, None, 1);
    let captured: Captured = Arc::default();
    let framed = Arc::new(Mutex::new(String::new()));
    let port = client_pages(Arc::clone(&captured), Arc::clone(&framed));
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let client_id = register(&b.public_url, &redirect_uri);
    let resource = b.resource(SUPPORT);
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(
        &b.public_url,
        &client_id,
        &redirect_uri,
        &resource,
        &challenge,
    );
    let url = req.url();
    // A second, separate authorization request for the framing attempt.
    *framed.lock().unwrap() = AuthRequest::new(
        &b.public_url,
        &client_id,
        &redirect_uri,
        &resource,
        &challenge,
    )
    .url();

    // The headers that forbid framing, as served.
    let page = reqwest::blocking::get(&url).unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["x-frame-options"].to_str().unwrap(), "DENY");
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    let logs = log_dir(DIR);
    let config = logs.join("chromium.json");
    std::fs::write(
        &config,
        json!({
            "authorization_url": url,
            "redirect_uri": redirect_uri,
            "framer_url": format!("http://127.0.0.1:{port}/framer"),
            "chromium": CHROMIUM,
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root().join("tests/clients"))
        .arg("chromium-consent.mjs")
        .arg(&config);
    let mut proc = Proc::start("chromium-consent", cmd, &logs);
    let status = proc.wait_exit(Duration::from_secs(180));
    let stdout = std::fs::read_to_string(&proc.stdout_path).unwrap_or_default();
    let out: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result (exit {status:?}):\n{}", proc.stderr()));
    assert_eq!(out["ok"], true, "{}", out["error"]);

    // What the user was shown.
    assert_eq!(out["consent_status"], 200);
    assert_eq!(
        out["shows"],
        json!({
            "title": "Allow access to support-assistant?",
            "client_name": "Test MCP Client",
            "client_id": client_id,
            "server": "support-assistant",
            "redirect_host": format!("127.0.0.1:{port}"),
            "scopes": ["tickets.read", "accounts.read"],
        })
    );
    // Allow led through the identity provider back to the client, with code, state and iss.
    assert_eq!(out["landed"], json!(redirect_uri));
    assert_eq!(out["landed_params"], json!(["code", "iss", "state"]));
    assert_eq!(out["landed_iss"], json!(b.public_url));
    assert_eq!(out["landed_body"], "Authorization finished.");
    let got = captured.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one redirect reached the client");
    assert_eq!(got[0]["state"], "st-123");
    // The code works, and so does the token.
    let r = redeem(
        &b.public_url,
        &client_id,
        &got[0]["code"],
        &redirect_uri,
        &verifier,
        &resource,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&b.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let call = c.call_tool("list_tickets", json!({}));
    assert_eq!(call.status, 200, "{}", call.body);

    // Framed, the consent page renders nothing: Chromium replaced the frame with its error page.
    assert_eq!(out["framed_consent_rendered"], false, "{out}");
    assert!(
        out["frame_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("chrome-error://")),
        "{out}"
    );
}
