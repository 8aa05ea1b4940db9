//! The public listener: what MCP clients and users' browsers reach through Envoy, one module per
//! endpoint family (registration, authorization, token, revocation) behind one router.
//!
//! Per gateway, under its issuer's path: RFC 8414 metadata, `/register` (RFC 7591), `/authorize`,
//! `/consent`, `/callback` (from the downstream server), `/token`, `/revoke` (RFC 7009), `/jwks`,
//! and the person's own page of connected applications (`/apps`).

use crate::app::App;
use crate::clients;
use crate::crypto;
use crate::error::{Error, ErrorPage};
use crate::http::{self, header_str, json};
use crate::pages::{self, ConsentPage};
use crate::store::{ClientRow, CodeRow, GrantRow, GrantStatus, PendingRow, RefreshRow};
use crate::tokens;
use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use scopegate_core::oauth::authorize::{self as authz, AuthorizeError, AuthorizeParams};
use scopegate_core::oauth::client::validate_registration;
use scopegate_core::oauth::consent::{
    consent_need, remember, union_scope, ConsentNeed, Remembered,
};
use scopegate_core::oauth::metadata as md;
use scopegate_core::oauth::refresh::TokenStatus;
use scopegate_core::oauth::{code as codes, pkce, OAuthError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod apps;
mod authorize;
mod callback;
mod extract;
mod front;
mod person;
mod register;
mod revoke;
mod token;

use authorize::{authorize, consent_post};
use callback::callback;
use extract::{Gateway, GatewayGroup, OAuthForm, OAuthQuery};
use register::register;
use revoke::revoke_endpoint;
pub use revoke::revoke_grant;
use token::token;

/// Authorization requests live this long between `/authorize` and `/callback`.
const PENDING_TTL_S: u64 = 600;
/// Our authorization codes live this long (RFC 6749 §4.1.2 recommends at most 10 minutes).
const CODE_TTL_S: u64 = 60;
const CSRF_COOKIE: &str = "scopegate_csrf";

/// The request as the pending row keeps it (the client's side of the authorization).
#[derive(Serialize, Deserialize)]
struct PendingData {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    server: String,
    scope: String,
    code_challenge: String,
    /// Scopes the person approved before for this client and server (remembered consent).
    #[serde(default)]
    approved_before: String,
    /// A person signing in to the connected-apps page, not a client's authorization.
    #[serde(default)]
    login: bool,
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
    let mut r: Router<Arc<App>> = Router::new();
    for (p, ids) in groups {
        let mut group = Router::new();
        let issuer_like = format!("https://x{p}");
        for wk in md::well_known_paths(&issuer_like) {
            group = group.route(&wk, get(metadata));
        }
        group = group
            .route(&format!("{p}{}", md::AUTHORIZE), get(authorize))
            .route(&format!("{p}{}", md::CONSENT), post(consent_post))
            .route(&format!("{p}{}", md::CALLBACK), get(callback))
            .route(&format!("{p}{}", apps::APPS), get(apps::apps))
            .route(&format!("{p}{}", apps::WITHDRAW), post(apps::withdraw))
            .route(&format!("{p}{}", md::TOKEN), post(token))
            .route(&format!("{p}{}", md::REVOKE), post(revoke_endpoint))
            .route(&format!("{p}{}", md::REGISTER), post(register))
            .route(&format!("{p}{}", md::JWKS), get(jwks));
        r = r.merge(group.layer(Extension(GatewayGroup(Arc::new(ids)))));
    }
    r.layer(axum::extract::DefaultBodyLimit::max(crate::body::MAX_BODY))
        .layer(axum::middleware::from_fn(crate::body::bounded))
        .layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&app.metrics), "public"),
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            "public",
            crate::telemetry::trace,
        ))
        .with_state(app)
}

async fn metadata(gw: Gateway) -> Response {
    axum::Json(gw.metadata.clone()).into_response()
}

/// The signing keys are the broker's, not a gateway's; the gateway is still picked (404 without).
async fn jwks(State(app): State<Arc<App>>, _gw: Gateway) -> Response {
    axum::Json(app.keys.jwks()).into_response()
}

/// `client_secret_post` credentials in a `/token` or `/revoke` form (RFC 6749 §2.3.1).
#[derive(Deserialize)]
struct ClientCredentials {
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl ClientCredentials {
    /// Client authentication with these and the `Authorization` header ([`clients::authenticate`]).
    async fn authenticate(
        &self,
        app: &Arc<App>,
        gw: &crate::app::GatewayRt,
        headers: &HeaderMap,
    ) -> Result<clients::Client, Error> {
        let form: HashMap<String, String> = [
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
        let client =
            clients::authenticate(app, gw, header_str(headers, header::AUTHORIZATION), &form)
                .await?;
        crate::telemetry::note("client_id", &client.id);
        Ok(client)
    }
}

/// The client's redirect URI with the error (RFC 6749 §4.1.2.1) and our issuer (RFC 9207).
fn error_redirect(redirect_uri: &str, e: &Error, state: Option<&str>, iss: &str) -> String {
    crate::telemetry::note("oauth.error", e.code());
    let mut pairs = vec![("error", e.code()), ("error_description", e.description())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss));
    with_params(redirect_uri, &pairs)
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = status.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => ErrorPage::from(OAuthError::invalid_request(
            "redirect target is not a valid header value",
        ))
        .into_response(),
    }
}

/// `uri` with parameters appended to its query.
fn with_params(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

#[cfg(test)]
mod person_tests;
#[cfg(test)]
mod tests;
