//! `scopegate-broker serve`: both listeners, graceful shutdown, and the maintenance loop.

use crate::app::App;
use crate::cli::ServeArgs;
use crate::clock::SystemClock;
use crate::{internal, public};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_INTERNAL: &str = "127.0.0.1:8081";

pub fn serve_cmd(a: ServeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let telemetry = match rt.block_on(async { crate::telemetry::init() }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match rt.block_on(serve(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "broker stopped");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    };
    // The runtime still runs the exporter's channel while the last batch goes out.
    telemetry.shutdown();
    code
}

async fn serve(a: ServeArgs) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&a.config).map_err(|e| format!("cannot read {}: {e}", a.config))?;
    let policy = scopegate_core::validate::load(&text).map_err(|e| e.to_string())?;
    for w in &policy.warnings {
        tracing::warn!(warning = %w, "config");
    }
    let broker = policy.document.broker.clone().unwrap_or_default();
    // Blocking database clients (PostgreSQL's sync client) must not run on a tokio worker.
    let b = broker.clone();
    let app = tokio::task::spawn_blocking(move || {
        let store = crate::store::open(&b)?;
        App::build(policy, store, Arc::new(SystemClock))
    })
    .await
    .map_err(|e| format!("startup task: {e}"))??;
    let app = Arc::new(app);

    let public_addr = a
        .listen
        .or(broker.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let internal_addr = a
        .internal_listen
        .or(broker.internal_listen.clone())
        .unwrap_or_else(|| DEFAULT_INTERNAL.to_string());
    let public_l = tokio::net::TcpListener::bind(&public_addr)
        .await
        .map_err(|e| format!("bind {public_addr}: {e}"))?;
    let internal_l =
        crate::listen::Internal::bind(&internal_addr, broker.internal_mesh_authorized).await?;
    let (pa, ia) = (
        public_l.local_addr().map_err(|e| e.to_string())?,
        internal_l.describe(),
    );

    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&app));
    let public = public::router(Arc::clone(&app)).merge(health.clone());
    let internal = internal::router(Arc::clone(&app)).merge(health);

    let maintenance = tokio::spawn(maintain(Arc::clone(&app)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let s1 = axum::serve(public_l, public).with_graceful_shutdown(wait(stop_rx.clone()));
    let s2 = internal_l.serve(internal, wait(stop_rx));
    tracing::info!(public = %pa, internal = %ia, "listening");
    println!("listening public={pa} internal={ia}");
    let _ = std::io::stdout().flush();

    let servers = tokio::spawn(async move { tokio::try_join!(async move { s1.await }, s2) });
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    maintenance.abort();
    match tokio::time::timeout(Duration::from_secs(10), servers).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!("server: {e}")),
        Ok(Err(e)) => Err(format!("server task: {e}")),
        Err(_) => Err("connections still open after 10 s; exiting".into()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.db(|s| s.ping()).await {
        Ok(()) if app.keys.verifier().is_some() => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    }
}

/// Key rotation and purging of expired rows, every 30 s.
async fn maintain(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let a = Arc::clone(&app);
        let r = tokio::task::spawn_blocking(move || {
            let now = a.now();
            a.keys.maintain(now)?;
            crate::clients::sweep_unused(&a, now)?;
            a.store.purge(now).map_err(String::from)
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed"),
            Err(e) => tracing::error!(error = %e, "maintenance task failed"),
        }
    }
}
