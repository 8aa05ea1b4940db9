//! The one upstream every case proxies to: a trivial HTTP server answering every request with the
//! same small JSON-RPC result, on its own thread and runtime, counting what it served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the upstream answers: a JSON-RPC result the size of a small `tools/call` reply.
pub const BODY: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;

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
        std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                rt.block_on(async move {
                    let app = axum::Router::new().fallback(move || {
                        let counter = Arc::clone(&counter);
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            ([("content-type", "application/json")], BODY)
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
