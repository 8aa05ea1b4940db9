//! End-to-end check of the built binary with rmcp's own MCP client, over both protocol shapes:
//! a stateful session (2025-11-25: initialize, `Mcp-Session-Id`, GET stream) and the stateless
//! 2026-07-28 protocol. Also checks the identity report, `/_seen`, streamed progress and SIGTERM.

// clippy.toml lets #[test] functions panic, but not the helpers they share; in a test harness a
// loud panic on any failed step is exactly what is wanted, helpers included.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::NotificationContext;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{json, Value};

/// The binary under test, started on an ephemeral port and killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scopegate-example-mcp"))
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scopegate-example-mcp");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit;
            }
            assert!(Instant::now() < deadline, "no exit within 5 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that speaks a chosen protocol version and records when progress arrives.
#[derive(Clone)]
struct Recorder {
    info: ClientConfig,
    progress: Arc<Mutex<Vec<(Instant, f64)>>>,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .expect("lock")
            .push((Instant::now(), params.progress));
    }
}

fn transport(url: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    let headers = HashMap::from([
        (
            HeaderName::from_static("x-scopegate-subject"),
            HeaderValue::from_static("demo-user"),
        ),
        (
            HeaderName::from_static("x-scopegate-scopes"),
            HeaderValue::from_static("tickets.read accounts.read"),
        ),
    ]);
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url)
            .auth_header("downstream-token")
            .custom_headers(headers),
    )
}

fn args(value: Value) -> serde_json::Map<String, Value> {
    serde_json::from_value(value).expect("object")
}

async fn exercise(version: ProtocolVersion, lifecycle: ClientLifecycleMode) -> Vec<Value> {
    let server = Server::start("support-assistant");
    let url = format!("{}/support-assistant/mcp", server.base);
    let recorder = Recorder {
        info: ClientConfig::default().with_protocol_version(version),
        progress: Arc::default(),
    };
    let client = recorder
        .clone()
        .serve_with_lifecycle(transport(&url), lifecycle)
        .await
        .expect("connect");

    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "export_accounts",
            "get_account",
            "list_tickets",
            "slow_count"
        ]
    );

    let result = client
        .call_tool(
            CallToolRequestParams::new("get_account")
                .with_arguments(args(json!({ "account_id": "acct-42" }))),
        )
        .await
        .expect("tools/call get_account");
    let report = result.structured_content.expect("structured content");
    assert_eq!(report["server"], "support-assistant");
    assert_eq!(report["tool"], "get_account");
    assert_eq!(report["authorization"], "Bearer downstream-token");
    assert_eq!(report["scopegate_subject"], "demo-user");
    assert_eq!(report["scopegate_scopes"], "tickets.read accounts.read");
    assert_eq!(report["scopegate_client_id"], Value::Null);
    assert_eq!(report["data"]["account"]["account_id"], "acct-42");

    // rmcp's client attaches a progressToken to every request, so progress rides the POST's
    // SSE response; each step must arrive on its own, not all at once with the result.
    let started = Instant::now();
    let counted = client
        .call_tool(CallToolRequestParams::new("slow_count").with_arguments(args(json!({ "n": 3 }))))
        .await
        .expect("tools/call slow_count");
    let finished = Instant::now();
    assert_eq!(counted.is_error, Some(false));
    let progress = recorder.progress.lock().expect("lock").clone();
    assert_eq!(
        progress.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0]
    );
    let first = progress[0].0.duration_since(started);
    assert!(
        first < Duration::from_millis(450)
            && finished.duration_since(started) >= Duration::from_millis(550),
        "progress was not streamed: first after {first:?}, result after {:?}",
        finished.duration_since(started)
    );

    client.cancel().await.expect("close client");

    let seen: Vec<Value> = reqwest::get(format!("{}/_seen", server.base))
        .await
        .expect("GET /_seen")
        .json()
        .await
        .expect("JSON");
    let cleared = reqwest::Client::new()
        .delete(format!("{}/_seen", server.base))
        .send()
        .await
        .expect("DELETE /_seen");
    assert_eq!(cleared.status(), 204);
    let after: Vec<Value> = reqwest::get(format!("{}/_seen", server.base))
        .await
        .expect("GET /_seen")
        .json()
        .await
        .expect("JSON");
    assert!(after.is_empty(), "/_seen not cleared: {after:?}");

    assert!(server.terminate().success(), "unclean exit on SIGTERM");
    seen
}

#[tokio::test]
async fn session_protocol_2025_11_25() {
    let seen = exercise(
        ProtocolVersion::V_2025_11_25,
        ClientLifecycleMode::Initialize,
    )
    .await;
    assert!(seen
        .iter()
        .skip(1)
        .all(|r| r["headers"]["mcp-protocol-version"] == "2025-11-25"));
    // The standalone GET stream a session client opens.
    assert!(seen.iter().any(|r| r["method"] == "GET"));
    assert!(seen.iter().all(|r| r["path"] == "/support-assistant/mcp"));
    assert!(seen
        .iter()
        .all(|r| r["headers"]["authorization"] == "Bearer downstream-token"));
    // A session: initialize first, then requests carrying its id, and the DELETE that ends it.
    assert!(seen
        .iter()
        .skip(1)
        .all(|r| r["headers"]["mcp-session-id"].is_string()));
    assert!(seen.iter().any(|r| r["method"] == "DELETE"));
}

#[tokio::test]
async fn stateless_protocol_2026_07_28() {
    let seen = exercise(
        ProtocolVersion::V_2026_07_28,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await;
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|r| r["headers"]["mcp-session-id"].is_null()));
    assert!(seen.iter().all(|r| r["method"] == "POST"));
    // 2026-07-28 requests name their method in a header (SEP-2243), which proxies may route on.
    assert!(seen
        .iter()
        .any(|r| r["headers"]["mcp-method"] == "tools/call"
            && r["headers"]["mcp-name"] == "slow_count"));
}
