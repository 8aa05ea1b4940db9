//! The one upstream every case proxies to: a trivial HTTP server answering every request with the
//! same small JSON-RPC result (or, when the request asks with `x-bench-listing`, a 40-tool
//! `tools/list` result as JSON or SSE), on its own thread and runtime, counting what it served.

use super::request::LISTING_HEADER;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the upstream answers: a JSON-RPC result the size of a small `tools/call` reply.
pub const BODY: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;

/// Tools in the listing answer: every [`HIDDEN_EVERY`]th is an `admin_` tool the bench
/// document gives `admin.read`, which the bench tokens lack, so the filter hides it.
pub const LISTED_TOOLS: usize = 40;
pub const HIDDEN_EVERY: usize = 4;

/// The name of listed tool `i`.
pub fn listed_tool(i: usize) -> String {
    if i % HIDDEN_EVERY == HIDDEN_EVERY - 1 {
        format!("admin_{i:02}")
    } else {
        format!("tool_{i:02}")
    }
}

/// The `tools/list` result: tools with a description and a small input schema, as servers list them.
pub fn listing() -> String {
    let tools: Vec<serde_json::Value> = (0..LISTED_TOOLS)
        .map(|i| {
            serde_json::json!({
                "name": listed_tool(i),
                "description": format!("Tool number {i} of the bench server: reads one record by id and returns it as text."),
                "inputSchema": {"type": "object", "properties": {"id": {"type": "string", "description": "the record id"}}, "required": ["id"]}
            })
        })
        .collect();
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).to_string()
}

pub struct Upstream {
    pub port: u16,
    served: Arc<AtomicU64>,
}

impl Upstream {
    /// Starts serving on a fresh loopback port (a single-threaded runtime: it is never the bottleneck
    /// at one Envoy worker, and it leaves the other core to Envoy and the load generator).
    pub fn start() -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        let list: &'static str = Box::leak(listing().into_boxed_str());
        let sse: &'static str =
            Box::leak(format!("event: message\ndata: {list}\n\n").into_boxed_str());
        std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                rt.block_on(async move {
                    let app =
                        axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
                            let counter = Arc::clone(&counter);
                            async move {
                                counter.fetch_add(1, Ordering::Relaxed);
                                let asked = headers.get(LISTING_HEADER).map(|v| v.as_bytes());
                                match asked {
                                    Some(b"json") => ([("content-type", "application/json")], list),
                                    Some(b"sse") => ([("content-type", "text/event-stream")], sse),
                                    _ => ([("content-type", "application/json")], BODY),
                                }
                            }
                        });
                    let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                    axum::serve(l, app).await.expect("upstream serve");
                });
            })
            .expect("upstream thread");
        Upstream { port, served }
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}
