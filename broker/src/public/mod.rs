//! The public listener: what MCP clients and users' browsers reach through Envoy, one module per
//! endpoint family (registration, authorization, token, revocation) behind one router.
//!
//! Per gateway, under its issuer's path: RFC 8414 metadata, `/register` (RFC 7591), `/authorize`,
//! `/consent`, `/callback` (from the downstream server), `/token`, `/revoke` (RFC 7009), `/jwks`.

use crate::app::App;
use crate::clients::{self, server_error};
use crate::consent::{self, Consent};
use crate::crypto;
use crate::http::{self, error, error_page, header_str, json, params, redirect, with_params};
use crate::store::{ClientRow, CodeRow, GrantRow, GrantStatus, PendingRow, RefreshRow};
use crate::tokens;
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use scopegate_core::oauth::authorize::{self as authz, AuthorizeError, AuthorizeParams};
use scopegate_core::oauth::client::validate_registration;
use scopegate_core::oauth::metadata as md;
use scopegate_core::oauth::refresh::TokenStatus;
use scopegate_core::oauth::{code as codes, pkce, OAuthError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod authorize;
mod register;
mod revoke;
mod token;

use authorize::{authorize, callback, consent_post};
use register::register;
use revoke::revoke_endpoint;
pub use revoke::revoke_grant;
use token::token;

/// Authorization requests live this long between `/authorize` and `/callback`.
const PENDING_TTL_S: u64 = 600;
/// Our authorization codes live this long (RFC 6749 §4.1.2 recommends at most 10 minutes).
const CODE_TTL_S: u64 = 60;
const CSRF_COOKIE: &str = "scopegate_csrf";

pub struct Req {
    pub headers: HeaderMap,
    pub query: String,
    pub body: Bytes,
}

type Fut = Pin<Box<dyn Future<Output = Response> + Send>>;
type Handler = fn(Arc<App>, usize, Req) -> Fut;

/// The request as the pending row keeps it (the client's side of the authorization).
#[derive(Serialize, Deserialize)]
struct PendingData {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    server: String,
    scope: String,
    code_challenge: String,
}

/// The downstream leg's secrets, sealed in the pending row.
#[derive(Serialize, Deserialize)]
struct PendingSecret {
    verifier: String,
    nonce: String,
}

pub fn router(app: Arc<App>) -> Router {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, g) in app.gateways.iter().enumerate() {
        groups.entry(g.issuer_path.clone()).or_default().push(i);
    }
    let mut r = Router::new();
    for (p, ids) in groups {
        let ids = Arc::new(ids);
        let route = |h: Handler, get_or_post: bool| -> MethodRouter {
            let app = Arc::clone(&app);
            let ids = Arc::clone(&ids);
            let f = move |headers: HeaderMap, uri: Uri, body: Bytes| {
                let app = Arc::clone(&app);
                let ids = Arc::clone(&ids);
                async move {
                    match pick(&app, &ids, &headers) {
                        Some(gi) => {
                            h(
                                app,
                                gi,
                                Req {
                                    headers,
                                    query: uri.query().unwrap_or("").to_string(),
                                    body,
                                },
                            )
                            .await
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            };
            if get_or_post {
                get(f)
            } else {
                post(f)
            }
        };
        let issuer_like = format!("https://x{p}");
        for wk in md::well_known_paths(&issuer_like) {
            r = r.route(&wk, route(metadata, true));
        }
        r = r
            .route(&format!("{p}{}", md::AUTHORIZE), route(authorize, true))
            .route(&format!("{p}{}", md::CONSENT), route(consent_post, false))
            .route(&format!("{p}{}", md::CALLBACK), route(callback, true))
            .route(&format!("{p}{}", md::TOKEN), route(token, false))
            .route(&format!("{p}{}", md::REVOKE), route(revoke_endpoint, false))
            .route(&format!("{p}{}", md::REGISTER), route(register, false))
            .route(&format!("{p}{}", md::JWKS), route(jwks, true));
    }
    r.layer(axum::extract::DefaultBodyLimit::max(crate::body::MAX_BODY))
        .layer(axum::middleware::from_fn(crate::body::bounded))
        .layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&app), "public"),
            crate::metrics::track,
        ))
}

/// Which gateway a request is for: the only one under this path, else by `Host` against the issuer.
fn pick(app: &App, ids: &[usize], headers: &HeaderMap) -> Option<usize> {
    if let [only] = ids {
        return Some(*only);
    }
    let host = header_str(headers, header::HOST)?;
    ids.iter().copied().find(|i| {
        app.gateways.get(*i).is_some_and(|g| {
            g.issuer
                .split_once("://")
                .map(|(_, r)| r.split('/').next() == Some(host))
                .unwrap_or(false)
        })
    })
}

fn metadata(app: Arc<App>, gi: usize, _req: Req) -> Fut {
    Box::pin(async move {
        match app.gateways.get(gi) {
            Some(g) => axum::Json(g.metadata.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    })
}

fn jwks(app: Arc<App>, _gi: usize, _req: Req) -> Fut {
    Box::pin(async move { axum::Json(app.keys.jwks()).into_response() })
}

fn error_redirect(redirect_uri: &str, e: &OAuthError, state: Option<&str>, iss: &str) -> String {
    let mut pairs = vec![
        ("error", e.error),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss));
    with_params(redirect_uri, &pairs)
}
