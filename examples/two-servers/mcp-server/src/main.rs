//! `scopegate-example-mcp`: an MCP server (rmcp, Streamable HTTP) that plays `support-assistant`
//! or `ops-console` behind the scopegate gateway and reports what reached it.
//!
//! Usage: `scopegate-example-mcp --name support-assistant|ops-console --listen 127.0.0.1:0
//! [--path /support-assistant/mcp] [--json]`. `--json` serves without sessions and answers
//! plain requests with `application/json` instead of an SSE stream. Once bound it prints `listening on 127.0.0.1:PORT` on
//! stdout, the one line test harnesses wait for.

mod catalog;
mod seen;
mod tools;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::seen::SeenLog;
use crate::tools::{ExampleServer, Role};

const USAGE: &str = "usage: scopegate-example-mcp --name support-assistant|ops-console \
                     [--listen 127.0.0.1:0] [--path /<name>/mcp] [--json]";

/// How long open streams get to finish after SIGTERM/SIGINT before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Parsed command line.
struct Args {
    role: Role,
    listen: SocketAddr,
    path: String,
    /// Stateless, with JSON (not SSE) responses where the call sends no notifications.
    json: bool,
}

/// Hand-rolled parsing: four flags do not justify a CLI framework's build time on a shared box.
/// `Ok(None)` means help was asked for.
fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut name = None;
    let mut listen = None;
    let mut path = None;
    let mut json = false;
    while let Some(flag) = argv.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (flag, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--json" {
            json = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => argv
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        match flag.as_str() {
            "--name" => name = Some(value),
            "--listen" => listen = Some(value),
            "--path" => path = Some(value),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("--name is required\n{USAGE}"))?;
    let role = Role::parse(&name)
        .ok_or_else(|| format!("--name must be support-assistant or ops-console, not {name:?}"))?;
    let listen = listen
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .map_err(|e| format!("--listen must be HOST:PORT: {e}"))?;
    let path = path.unwrap_or_else(|| format!("/{}/mcp", role.name()));
    if !path.starts_with('/') || path == "/" || path == seen::SEEN_PATH {
        return Err(format!(
            "--path must be an absolute path other than / and {}",
            seen::SEEN_PATH
        ));
    }
    Ok(Some(Args {
        role,
        listen,
        path,
        json,
    }))
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that resolves on the
/// first of them. Installing before the "listening" line matters: a harness may signal as soon
/// as it has read that line, and an uninstalled handler would mean death by signal, not exit 0.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Elsewhere only Ctrl-C exists; tokio registers it when the future is first polled.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn run(args: Args) -> Result<(), String> {
    let cancel = CancellationToken::new();

    // The gateway forwards the client's Host (e.g. mcp.example.com), so rmcp's loopback-only
    // Host check (a DNS-rebinding guard for desktop servers) would refuse proxied requests. This
    // server only ever sits behind the gateway or on loopback in tests.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(cancel.child_token())
        .with_legacy_session_mode(!args.json)
        .with_json_response(args.json);
    let role = args.role;
    let mcp = StreamableHttpService::new(
        move || Ok(ExampleServer::new(role)),
        Arc::new(LocalSessionManager::default()),
        config,
    );

    let log = SeenLog::default();
    let app = Router::new()
        .route(
            seen::SEEN_PATH,
            get(seen::list).delete(seen::clear).with_state(log.clone()),
        )
        .nest_service(&args.path, mcp)
        // Outermost, so it also records requests that match no route (404s).
        .layer(axum::middleware::from_fn_with_state(log, seen::record));

    let signalled = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    // The one stdout line harnesses wait for; flushed so a pipe reader sees it at once.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    let stop = cancel.clone();
    tokio::spawn(async move {
        signalled.await;
        // Ends rmcp's sessions and SSE streams too, so graceful shutdown does not wait on them.
        stop.cancel();
        // A client holding a connection open must not keep the process alive.
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        std::process::exit(0);
    });

    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .map_err(|e| format!("server error: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("scopegate-example-mcp: {message}");
            ExitCode::FAILURE
        }
    }
}
