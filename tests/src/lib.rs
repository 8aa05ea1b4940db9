//! Harness for the integration tests: real processes (Envoy, MCP servers, authorization servers)
//! started per test binary, torn down when it exits.

pub mod authz;
pub mod bench;
pub mod broker;
pub mod brokered;
pub mod cimd_host;
pub mod downstream;
pub mod ecds;
pub mod envoy;
pub mod issuer;
pub mod mcp;
pub mod oauth;
pub mod postgres;
pub mod procs;
pub mod proxy;
pub mod render;
pub mod sdk_clients;
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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
