//! The internal listener, for the filter only: RFC 8693 token exchange, JWKS, counters.
//!
//! It is bound to an address only the mesh reaches; it trusts no header and re-verifies every
//! subject token. The exchanged token is the grant's current downstream one, from [`crate::grants`]
//! (where the downstream refresh single-flight lives).

use crate::app::App;
use crate::error::Error;
use crate::http::{json, params};
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
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move { app.metrics.answer() }),
        )
        .route(
            "/jwks",
            get(|State(app): State<Arc<App>>| async move { axum::Json(app.keys.jwks()) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(crate::body::MAX_BODY))
        .layer(axum::middleware::from_fn(crate::body::bounded))
        .layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&app.metrics), "internal"),
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            "internal",
            crate::telemetry::trace,
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
) -> Result<Response, Error> {
    let (cursor, rows) = app
        .db(move |s| s.revocations_since(q.since, revocation::PAGE_LIMIT))
        .await?;
    let page = Page {
        cursor,
        revoked: rows
            .into_iter()
            .map(|(grant_id, until)| Revoked { grant_id, until })
            .collect(),
    };
    Ok(json(
        StatusCode::OK,
        serde_json::to_value(page).unwrap_or_default(),
    ))
}

async fn exchange(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, Error> {
    let result = do_exchange(&app, &body).await;
    app.metrics
        .exchanges
        .with_label_values(&[result.as_ref().map_or_else(Error::code, |_| "ok")])
        .inc();
    let (token, expires_in) = result?;
    Ok(json(
        StatusCode::OK,
        json!({
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }),
    ))
}

async fn do_exchange(app: &App, body: &[u8]) -> Result<(String, u64), Error> {
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
        .ok_or_else(|| Error::internal("server index"))?;
    let gw = app
        .gateway(server.gateway)
        .ok_or_else(|| OAuthError::invalid_target("resource's gateway is not brokered"))?;
    crate::telemetry::note("gateway", &gw.name);
    crate::telemetry::note("server", &server.name);
    let claims = tokens::verify_own(app, gw, req.subject_token).map_err(|e| {
        OAuthError::invalid_request(format!(
            "subject_token is not a valid access token: {}",
            e.reason()
        ))
    })?;
    let grant_id =
        token_exchange::subject_grant(&claims.aud, claims.grant_id.as_deref(), req.resource)?;
    let grant = app.grants.active(grant_id).await?;
    if grant.server != server.name {
        return Err(OAuthError::invalid_grant("the grant is for another server").into());
    }
    app.grants.note_use(&grant.id, app.now());
    app.grants.current(grant, &gw.downstream, &gw.name).await
}
