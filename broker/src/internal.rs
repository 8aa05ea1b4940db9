//! The internal listener, for the filter only: RFC 8693 token exchange, JWKS, counters.
//!
//! It is bound to an address only the mesh reaches; it trusts no header and re-verifies every
//! subject token.

use crate::app::App;
use crate::clients::server_error;
use crate::downstream::RefreshError;
use crate::http::{error, json, params};
use crate::store::{GrantRow, GrantStatus};
use crate::tokens;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use scopegate_core::oauth::{token_exchange, OAuthError};
use scopegate_core::revocation::{self, Page, Revoked};
use serde_json::json;
use std::sync::Arc;

use scopegate_core::exchange::ACCESS_TOKEN_TYPE;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/internal/token-exchange", post(exchange))
        .route("/internal/stats", get(stats))
        .route(revocation::DEFAULT_PATH, get(revocations))
        .route("/metrics", get(crate::metrics::serve))
        .route(
            "/jwks",
            get(|State(app): State<Arc<App>>| async move { axum::Json(app.keys.jwks()) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(crate::body::MAX_BODY))
        .layer(axum::middleware::from_fn(crate::body::bounded))
        .layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&app), "internal"),
            crate::metrics::track,
        ))
        .with_state(app)
}

/// The counters the tests and the demo read, from the same counters as `/metrics`.
async fn stats(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    axum::Json(json!({
        "token_exchanges": crate::metrics::Metrics::total(&m.exchanges),
        "downstream_refreshes": m.downstream_refreshes.get(),
        "downstream_refresh_failures": m.downstream_refresh_failures.get(),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// Revoked grants after the filter's cursor (`?since=`), for its revocations poll.
async fn revocations(
    State(app): State<Arc<App>>,
    axum::extract::Query(q): axum::extract::Query<Since>,
) -> Response {
    match app
        .db(move |s| s.revocations_since(q.since, revocation::PAGE_LIMIT))
        .await
    {
        Ok((cursor, rows)) => json(
            StatusCode::OK,
            serde_json::to_value(Page {
                cursor,
                revoked: rows
                    .into_iter()
                    .map(|(grant_id, until)| Revoked { grant_id, until })
                    .collect(),
            })
            .unwrap_or_default(),
        ),
        Err(e) => error(&server_error(&e)),
    }
}

async fn exchange(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let result = do_exchange(&app, &body).await;
    app.metrics
        .exchanges
        .with_label_values(&[result.as_ref().map_or_else(|e| e.error, |_| "ok")])
        .inc();
    match result {
        Ok((token, expires_in)) => json(
            StatusCode::OK,
            json!({
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": expires_in,
            }),
        ),
        Err(e) => error(&e),
    }
}

async fn do_exchange(app: &Arc<App>, body: &[u8]) -> Result<(String, u64), OAuthError> {
    let form = params(&String::from_utf8_lossy(body))?;
    let get = |k: &str| form.get(k).map(String::as_str);
    let req = token_exchange::check(&token_exchange::Params {
        grant_type: get("grant_type"),
        subject_token: get("subject_token"),
        subject_token_type: get("subject_token_type"),
        resource: get("resource"),
        requested_token_type: get("requested_token_type"),
    })?;
    let server_id = app
        .policy
        .server_for_resource(req.resource)
        .ok_or_else(|| OAuthError::invalid_target("resource is not a configured server"))?;
    let server = app
        .policy
        .server(server_id)
        .ok_or_else(|| server_error("server index"))?;
    let gw = app
        .gateway(server.gateway)
        .ok_or_else(|| OAuthError::invalid_target("resource's gateway is not brokered"))?;
    let claims = tokens::verify_own(app, gw, req.subject_token).map_err(|e| {
        OAuthError::invalid_request(format!(
            "subject_token is not a valid access token: {}",
            e.reason()
        ))
    })?;
    let grant_id =
        token_exchange::subject_grant(&claims.aud, claims.grant_id.as_deref(), req.resource)?;
    let grant = load(app, grant_id).await?;
    if grant.server != server.name {
        return Err(OAuthError::invalid_grant("the grant is for another server"));
    }
    crate::public::note_use(app, &grant.id);
    current_downstream(app, gw, grant).await
}

async fn load(app: &Arc<App>, grant_id: &str) -> Result<GrantRow, OAuthError> {
    let id = grant_id.to_string();
    match app
        .db(move |s| s.grant(&id))
        .await
        .map_err(|e| server_error(&e))?
    {
        Some(g) if g.status == GrantStatus::Active => Ok(g),
        _ => Err(OAuthError::invalid_grant(
            "the grant is revoked or the downstream grant is gone",
        )),
    }
}

/// The grant's downstream access token, refreshed first if it is within the margin of expiry.
/// Concurrent callers for one grant wait for a single refresh (single-flight) and then reuse it.
async fn current_downstream(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    grant: GrantRow,
) -> Result<(String, u64), OAuthError> {
    let margin = app.broker.downstream_refresh_margin_s;
    let fresh = |g: &GrantRow| g.downstream_expires_at > crate::now() + margin;
    if fresh(&grant) {
        return hand_out(app, &grant);
    }
    let lock = {
        let mut locks = app
            .refresh_locks
            .lock()
            .map_err(|_| server_error("lock poisoned"))?;
        Arc::clone(locks.entry(grant.id.clone()).or_default())
    };
    let result = {
        let _guard = lock.lock().await;
        // Someone may have refreshed while we waited.
        let grant = load(app, &grant.id).await?;
        if fresh(&grant) {
            hand_out(app, &grant)
        } else {
            refresh_across_replicas(app, gw, grant, fresh).await
        }
    };
    drop(lock);
    if let Ok(mut locks) = app.refresh_locks.lock() {
        if locks
            .get(&grant.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&grant.id);
        }
    }
    result
}

/// Refreshes under the store's lock for the grant, so no two brokers on one database spend the same
/// downstream refresh token (identity providers revoke a family when one is used twice).
async fn refresh_across_replicas(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    grant: GrantRow,
    fresh: impl Fn(&GrantRow) -> bool,
) -> Result<(String, u64), OAuthError> {
    let held = fleet_lock(app, &grant.id).await?;
    // Another replica may have refreshed while we waited for its lock.
    let result = match load(app, &grant.id).await {
        Ok(g) if fresh(&g) => hand_out(app, &g),
        Ok(g) => refresh(app, gw, g).await,
        Err(e) => Err(e),
    };
    // The lock's release is a database call: off the async workers.
    let _ = tokio::task::spawn_blocking(move || drop(held)).await;
    result
}

async fn fleet_lock(
    app: &Arc<App>,
    grant_id: &str,
) -> Result<Box<dyn crate::store::RefreshLock>, OAuthError> {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(app.broker.refresh_lock_timeout_ms);
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let id = grant_id.to_string();
        match app.db(move |s| s.try_lock_refresh(&id)).await {
            Ok(Some(held)) => return Ok(held),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Ok(None) => {
                tracing::warn!(grant_id = %grant_id, "downstream refresh lock: timed out waiting for another broker");
                return Err(OAuthError::new(
                    "temporarily_unavailable",
                    "another broker is refreshing this grant",
                ));
            }
            Err(e) => return Err(server_error(&e)),
        }
    }
}

/// Stores a refreshed downstream credential, retrying: the downstream has already spent the old
/// refresh token, so giving up here would lose the grant.
async fn store_refreshed(
    app: &Arc<App>,
    grant: &GrantRow,
    blob: Vec<u8>,
    expires_at: u64,
) -> Result<bool, OAuthError> {
    let mut pause = std::time::Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let (id, version, blob) = (grant.id.clone(), grant.version, blob.clone());
        match app
            .db(move |s| s.update_downstream(&id, version, &blob, expires_at, crate::now()))
            .await
        {
            Ok(stored) => return Ok(stored),
            Err(e) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(grant_id = %grant.id, attempt, error = %e, "storing the refreshed downstream token failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
                attempt += 1;
            }
            Err(e) => {
                tracing::error!(grant_id = %grant.id, error = %e, "refreshed downstream token could not be stored; the grant needs a new authorization");
                return Err(server_error(&e));
            }
        }
    }
}

/// About 15 s of retries (50 ms doubling to 2 s): a database failover, not a dead database.
const STORE_ATTEMPTS: u32 = 12;

fn hand_out(app: &App, g: &GrantRow) -> Result<(String, u64), OAuthError> {
    let sealed = tokens::open_downstream(app, g).map_err(|e| server_error(&e))?;
    Ok((
        sealed.access_token,
        g.downstream_expires_at.saturating_sub(crate::now()),
    ))
}

async fn refresh(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    grant: GrantRow,
) -> Result<(String, u64), OAuthError> {
    let sealed = tokens::open_downstream(app, &grant).map_err(|e| server_error(&e))?;
    let Some(rt) = sealed.refresh_token else {
        mark_dead(app, &grant.id, "no downstream refresh token").await;
        return Err(dead());
    };
    app.metrics.downstream_refreshes.inc();
    match gw.downstream.refresh(&rt).await {
        Ok(t) => {
            let blob = tokens::seal_downstream(app, &grant.id, &t).map_err(|e| server_error(&e))?;
            let stored = store_refreshed(app, &grant, blob, t.expires_at).await?;
            if !stored {
                // Revoked meanwhile, or another replica won: what is stored now is the truth.
                let g = load(app, &grant.id).await?;
                return hand_out(app, &g);
            }
            tracing::info!(gateway = %gw.name, grant_id = %grant.id, "downstream token refreshed");
            Ok((t.access_token, t.expires_at.saturating_sub(crate::now())))
        }
        Err(RefreshError::Dead) => {
            app.metrics.downstream_refresh_failures.inc();
            mark_dead(
                app,
                &grant.id,
                "downstream refused the refresh (invalid_grant)",
            )
            .await;
            Err(dead())
        }
        Err(RefreshError::Unavailable(e)) => {
            app.metrics.downstream_refresh_failures.inc();
            tracing::warn!(gateway = %gw.name, grant_id = %grant.id, error = %e, "downstream refresh failed");
            Err(OAuthError::new(
                "temporarily_unavailable",
                "the downstream authorization server is unavailable",
            ))
        }
    }
}

fn dead() -> OAuthError {
    OAuthError::invalid_grant("the downstream grant is gone; the user must authorize again")
}

async fn mark_dead(app: &Arc<App>, grant_id: &str, why: &str) {
    let id = grant_id.to_string();
    if let Err(e) = app
        .db(move |s| s.set_grant_status(&id, GrantStatus::Dead, crate::now()))
        .await
    {
        tracing::error!(grant_id = %grant_id, error = %e, "could not mark grant dead");
    }
    tracing::warn!(grant_id = %grant_id, reason = why, "grant is dead");
}
