//! Harness for the integration tests: real processes (Envoy, MCP servers, authorization servers)
//! started per test binary, torn down when it exits.

pub mod authz;
pub mod bootstrap;
pub mod broker;
pub mod brokered;
pub mod cimd_host;
pub mod dashboard;
pub mod downstream;
pub mod ecds;
pub mod envoy;
pub mod fleet;
pub mod issuer;
pub mod mcp;
pub mod oauth;
pub mod otlp;
pub mod postgres;
pub mod procs;
pub mod proxy;
pub mod ratelimit;
pub mod redis;
pub mod render;
pub mod sdk_clients;
pub mod slots;
pub mod stack;
pub mod walkthrough;

use std::path::PathBuf;

/// The repository root (tests run with the crate dir as cwd).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file the build must have produced; a missing one fails the test with the command that makes it.
pub fn built(rel: &str, how: &str) -> PathBuf {
    let p = repo_root().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `{how}` (or `make test`)",
        p.display()
    );
    p
}

/// A free loopback port (bound then released; good enough for tests on one machine).
///
/// The port comes from below the kernel's ephemeral range (32768-60999 here): a port from
/// `bind(0)` could be handed to another process's `bind(0)` or taken as an outgoing
/// connection's source port before the test's server binds it, which made Envoy fail now and
/// then with "address already in use". Below that range only explicit binds take ports; a
/// counter spaces this process's picks and the pid spaces test processes apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (start + n * 7) % SPAN).expect("below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN);
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Serves `app` on a fresh loopback port from its own thread and runtime (test fixtures that live
/// as long as the test binary); returns the port.
pub fn serve_in_background(app: axum::Router) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(l, app).await.expect("serve");
        });
    });
    port
}
