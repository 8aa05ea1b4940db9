//! The public listener: what MCP clients and users' browsers reach through Envoy.
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

fn register(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if !gw.dcr {
            return StatusCode::NOT_FOUND.into_response();
        }
        // Only JSON: the content types a page can make a browser send cross-origin without a
        // preflight (text/plain, forms, multipart) are refused.
        if !http::is_json(&req.headers) {
            let mut r = error(&OAuthError::invalid_client_metadata(
                "the request body must be sent as Content-Type: application/json",
            ));
            *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return r;
        }
        let body: serde_json::Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                return error(&OAuthError::invalid_client_metadata(
                    "the request body is not JSON",
                ))
            }
        };
        let meta = match validate_registration(&body) {
            Ok(m) => m,
            Err(e) => return error(&e),
        };
        if let Err(r) = registration_admitted(&app, gw).await {
            return r;
        }
        let (Ok(client_id), Ok(secret)) = (crypto::id(), crypto::token()) else {
            return error(&server_error("no randomness"));
        };
        let secret = (!meta.is_public()).then_some(secret);
        let now = crate::now();
        let row = ClientRow {
            client_id: client_id.clone(),
            gateway: gw.name.clone(),
            metadata: serde_json::to_string(&meta).unwrap_or_default(),
            secret_hash: secret.as_deref().map(crypto::hash),
            created_at: now,
        };
        if let Err(e) = app.db(move |s| s.put_client(&row)).await {
            return error(&server_error(&e));
        }
        tracing::info!(gateway = %gw.name, client_id = %client_id, kind = "dcr", "client registered");
        app.metrics
            .registrations
            .with_label_values(&[gw.name.as_str()])
            .inc();
        let mut out = serde_json::to_value(&meta).unwrap_or_default();
        out["client_id"] = json!(client_id);
        out["client_id_issued_at"] = json!(now);
        if let Some(s) = secret {
            out["client_secret"] = json!(s);
            out["client_secret_expires_at"] = json!(0);
        }
        json(StatusCode::CREATED, out)
    })
}

/// The gateway's registration limits (core's window and cap): 429 with `Retry-After` beyond them.
async fn registration_admitted(app: &Arc<App>, gw: &crate::app::GatewayRt) -> Result<(), Response> {
    use scopegate_core::oauth::registration::room_for_one;
    let limits = gw.registration.clone();
    let name = gw.name.clone();
    let live = app
        .db(move |s| s.count_clients(&name))
        .await
        .map_err(|e| error(&server_error(&e)))?;
    let verdict = if !room_for_one(live, limits.max_clients) {
        Err(3600)
    } else {
        match gw.registrations.lock() {
            Ok(mut w) => w.admit(crate::now(), limits.per_minute),
            Err(_) => return Err(error(&server_error("registration window lock poisoned"))),
        }
    };
    verdict.map_err(|retry_after| {
        tracing::warn!(gateway = %gw.name, live, "registration refused: limit reached");
        let mut r = error(&OAuthError::new(
            "temporarily_unavailable",
            "too many client registrations for this gateway; retry later",
        ));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    })
}

fn authorize(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let q = match params(&req.query) {
            Ok(q) => q,
            Err(e) => return error_page(&e),
        };
        let Some(client_id) = q.get("client_id") else {
            return error_page(&OAuthError::invalid_request("client_id is required"));
        };
        let client = match clients::resolve(&app, gw, client_id).await {
            Ok(c) => c,
            Err(e) => return error_page(&e),
        };
        let p = AuthorizeParams {
            response_type: q.get("response_type").map(String::as_str),
            redirect_uri: q.get("redirect_uri").map(String::as_str),
            scope: q.get("scope").map(String::as_str),
            resource: q.get("resource").map(String::as_str),
            code_challenge: q.get("code_challenge").map(String::as_str),
            code_challenge_method: q.get("code_challenge_method").map(String::as_str),
        };
        let state = q.get("state").cloned();
        let ok = match authz::check(&app.policy, gw.id, &client.meta.redirect_uris, &p) {
            Ok(ok) => ok,
            Err(AuthorizeError::NoRedirect(e)) => return error_page(&e),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                error,
            }) => {
                return redirect(
                    StatusCode::FOUND,
                    &error_redirect(&redirect_uri, &error, state.as_deref(), &gw.issuer),
                );
            }
        };
        let Some(server) = app.policy.server(ok.server) else {
            return error_page(&server_error("server index"));
        };
        let index = &app.policy.gateways[gw.id].scopes;
        let scope = index.render(ok.scopes);
        let (Ok(handle), Ok(csrf)) = (crypto::token(), crypto::token()) else {
            return error_page(&server_error("no randomness"));
        };
        let data = PendingData {
            client_id: client.id.clone(),
            redirect_uri: ok.redirect_uri.clone(),
            state,
            server: server.name.clone(),
            scope: scope.clone(),
            code_challenge: ok.code_challenge.clone(),
        };
        let row = PendingRow {
            id_hash: crypto::hash(&handle),
            gateway: gw.name.clone(),
            data: serde_json::to_string(&data).unwrap_or_default(),
            csrf_hash: crypto::hash(&csrf),
            state_hash: None,
            secret: None,
            expires_at: crate::now() + PENDING_TTL_S,
        };
        if let Err(e) = app.db(move |s| s.put_pending(&row)).await {
            return error_page(&server_error(&e));
        }
        let host = scopegate_core::oauth::redirect::display_host(&ok.redirect_uri);
        let scopes: Vec<&str> = scope.split(' ').collect();
        let action = format!("{}{}", gw.issuer, md::CONSENT);
        let html = consent::render(&Consent {
            client_name: client.display_name(),
            client_id: &client.id,
            redirect_host: &host,
            server: &server.name,
            scopes: &scopes,
            action: &action,
            request: &handle,
            csrf: &csrf,
        });
        let secure = if gw.issuer.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{CSRF_COOKIE}={csrf}; Path={}{}; HttpOnly; SameSite=Strict; Max-Age={PENDING_TTL_S}{secure}",
            gw.issuer_path,
            md::CONSENT
        );
        app.metrics
            .authorizations
            .with_label_values(&[gw.name.as_str()])
            .inc();
        let mut r = axum::response::Html(html).into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
        r
    })
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

fn consent_post(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let form = match params(&String::from_utf8_lossy(&req.body)) {
            Ok(f) => f,
            Err(e) => return error_page(&e),
        };
        let (Some(handle), Some(csrf)) = (form.get("request"), form.get("csrf")) else {
            return error_page(&OAuthError::invalid_request("consent form is incomplete"));
        };
        let id_hash = crypto::hash(handle);
        let key = id_hash.clone();
        let pending = match app.db(move |s| s.pending(&key)).await {
            Ok(Some(p))
                if p.expires_at > crate::now()
                    && p.gateway == gw.name
                    && p.state_hash.is_none() =>
            {
                p
            }
            Ok(_) => {
                return error_page(&OAuthError::invalid_request(
                    "authorization request is unknown or expired",
                ))
            }
            Err(e) => return error_page(&server_error(&e)),
        };
        // Double-submit cookie plus the hash kept with the request: the form must come from the
        // page we rendered for this very request, in this browser.
        let cookie_ok = http::cookie(&req.headers, CSRF_COOKIE)
            .is_some_and(|c| pkce::ct_eq(c.as_bytes(), csrf.as_bytes()));
        if !cookie_ok || !pkce::ct_eq(crypto::hash(csrf).as_bytes(), pending.csrf_hash.as_bytes()) {
            let mut r = error_page(&OAuthError::invalid_request(
                "consent form failed the CSRF check",
            ));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        }
        let Ok(data) = serde_json::from_str::<PendingData>(&pending.data) else {
            return error_page(&server_error("pending row damaged"));
        };
        if form.get("decision").map(String::as_str) != Some("approve") {
            let key = id_hash.clone();
            let _ = app.db(move |s| s.delete_pending(&key)).await;
            tracing::info!(gateway = %gw.name, client_id = %data.client_id, "consent denied");
            app.metrics
                .consents
                .with_label_values(&[gw.name.as_str(), "deny"])
                .inc();
            let e = OAuthError::new("access_denied", "the user denied the request");
            return redirect(
                StatusCode::SEE_OTHER,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            );
        }
        let scopes: Vec<&str> = data.scope.split(' ').filter(|s| !s.is_empty()).collect();
        let (url, state, verifier, nonce) = match gw.downstream.authorize_url(&scopes).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(gateway = %gw.name, error = %e, "downstream authorization server unavailable");
                let e = OAuthError::new(
                    "temporarily_unavailable",
                    "the downstream authorization server is unavailable",
                );
                return redirect(
                    StatusCode::SEE_OTHER,
                    &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
                );
            }
        };
        let secret = serde_json::to_vec(&PendingSecret { verifier, nonce }).unwrap_or_default();
        let sealed = match app.sealer.seal(&format!("pending:{id_hash}"), &secret) {
            Ok(s) => s,
            Err(e) => return error_page(&server_error(&e)),
        };
        let state_hash = crypto::hash(&state);
        match app
            .db(move |s| s.approve_pending(&id_hash, &state_hash, &sealed))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return error_page(&OAuthError::invalid_request(
                    "authorization request is unknown or expired",
                ))
            }
            Err(e) => return error_page(&server_error(&e)),
        }
        tracing::info!(gateway = %gw.name, client_id = %data.client_id, server = %data.server, "consent given; to the downstream server");
        app.metrics
            .consents
            .with_label_values(&[gw.name.as_str(), "approve"])
            .inc();
        redirect(StatusCode::SEE_OTHER, &url)
    })
}

fn callback(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let q = match params(&req.query) {
            Ok(q) => q,
            Err(e) => return error_page(&e),
        };
        let Some(state) = q.get("state") else {
            return error_page(&OAuthError::invalid_request("state is required"));
        };
        let state_hash = crypto::hash(state);
        let pending = match app.db(move |s| s.take_pending_by_state(&state_hash)).await {
            Ok(Some(p)) if p.expires_at > crate::now() && p.gateway == gw.name => p,
            Ok(_) => {
                return error_page(&OAuthError::invalid_request(
                    "authorization state is unknown or expired",
                ))
            }
            Err(e) => return error_page(&server_error(&e)),
        };
        let Ok(data) = serde_json::from_str::<PendingData>(&pending.data) else {
            return error_page(&server_error("pending row damaged"));
        };
        let back = |e: OAuthError| {
            redirect(
                StatusCode::FOUND,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            )
        };
        if let Some(err) = q.get("error") {
            tracing::warn!(gateway = %gw.name, downstream_error = %err, "downstream authorization refused");
            let code = if err == "access_denied" {
                "access_denied"
            } else {
                "server_error"
            };
            return back(OAuthError::new(
                code,
                "the downstream authorization server refused the request",
            ));
        }
        if let Err(e) = gw
            .downstream
            .check_iss(q.get("iss").map(String::as_str))
            .await
        {
            tracing::warn!(gateway = %gw.name, error = %e, "downstream callback refused");
            return back(OAuthError::new(
                "server_error",
                "the downstream response failed the issuer check",
            ));
        }
        let Some(code) = q.get("code") else {
            return back(OAuthError::new(
                "server_error",
                "the downstream response had no code",
            ));
        };
        let secret: Option<PendingSecret> = pending
            .secret
            .as_deref()
            .and_then(|s| {
                app.sealer
                    .open(&format!("pending:{}", pending.id_hash), s)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(secret) = secret else {
            return back(server_error("pending secret does not open"));
        };
        let tokens = match gw.downstream.exchange_code(code, &secret.verifier).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(gateway = %gw.name, error = %e, "downstream code exchange failed");
                return back(OAuthError::new(
                    "server_error",
                    "the downstream code exchange failed",
                ));
            }
        };
        let subject = match gw.downstream.subject(&tokens, &secret.nonce).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(gateway = %gw.name, error = %e, "identity mapping failed");
                return back(OAuthError::new(
                    "server_error",
                    "the user's identity could not be resolved",
                ));
            }
        };
        let (Ok(grant_id), Ok(our_code)) = (crypto::id(), crypto::token()) else {
            return back(server_error("no randomness"));
        };
        let now = crate::now();
        let Some(server) = app
            .policy
            .server_by_name(&data.server)
            .and_then(|i| app.policy.server(i))
        else {
            return back(server_error("server vanished"));
        };
        let sealed = match tokens::seal_downstream(&app, &grant_id, &tokens) {
            Ok(s) => s,
            Err(e) => return back(server_error(&e)),
        };
        let grant = GrantRow {
            id: grant_id.clone(),
            gateway: gw.name.clone(),
            server: data.server.clone(),
            client_id: data.client_id.clone(),
            subject: subject.clone(),
            scope: data.scope.clone(),
            status: GrantStatus::Active,
            downstream: sealed,
            downstream_expires_at: tokens.expires_at,
            version: 0,
            created_at: now,
        };
        let code_row = CodeRow {
            code_hash: crypto::hash(&our_code),
            grant_id: grant_id.clone(),
            client_id: data.client_id.clone(),
            redirect_uri: data.redirect_uri.clone(),
            code_challenge: data.code_challenge.clone(),
            resource: server.resource.clone(),
            expires_at: now + CODE_TTL_S,
            used: false,
        };
        if let Err(e) = app.db(move |s| s.create_grant(&grant, &code_row)).await {
            return back(server_error(&e));
        }
        tracing::info!(gateway = %gw.name, grant_id = %grant_id, client_id = %data.client_id, server = %data.server, subject = %subject, "grant created");
        let mut pairs = vec![("code", our_code.as_str())];
        if let Some(s) = &data.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &gw.issuer));
        redirect(StatusCode::FOUND, &with_params(&data.redirect_uri, &pairs))
    })
}

fn token(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let form = match params(&String::from_utf8_lossy(&req.body)) {
            Ok(f) => f,
            Err(e) => return error(&e),
        };
        let grant_type = form.get("grant_type").cloned().unwrap_or_default();
        let result = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => authorization_code(&app, gw, &req.headers, &form).await,
            Some("refresh_token") => refresh_token(&app, gw, &req.headers, &form).await,
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        };
        match result {
            Ok(body) => {
                app.metrics
                    .token_grants
                    .with_label_values(&[gw.name.as_str(), grant_type.as_str()])
                    .inc();
                json(StatusCode::OK, body)
            }
            Err(e) => error(&e),
        }
    })
}

async fn authorization_code(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let client =
        clients::authenticate(app, gw, header_str(headers, header::AUTHORIZATION), form).await?;
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let code_hash = crypto::hash(code);
    let key = code_hash.clone();
    let row = app
        .db(move |s| s.code(&key))
        .await
        .map_err(|e| server_error(&e))?
        .ok_or_else(|| OAuthError::invalid_grant("authorization code is not valid"))?;
    let now = crate::now();
    let issued = codes::IssuedCode {
        client_id: &row.client_id,
        redirect_uri: &row.redirect_uri,
        code_challenge: &row.code_challenge,
        resource: &row.resource,
        expires_at: row.expires_at,
        used: row.used,
    };
    let redemption = codes::Redemption {
        client_id: &client.id,
        redirect_uri: form.get("redirect_uri").map(String::as_str),
        code_verifier: form.get("code_verifier").map(String::as_str),
        resource: form.get("resource").map(String::as_str),
        now,
    };
    if let Err(e) = codes::redeem(&issued, &redemption) {
        if e == codes::replayed() {
            revoke_grant(app, &row.grant_id, "authorization code replayed").await;
        }
        return Err(e);
    }
    let grant = load_active_grant(app, &row.grant_id).await?;
    let refresh = if client.gets_refresh_tokens() {
        Some(crypto::token().map_err(|e| server_error(&e))?)
    } else {
        None
    };
    let refresh_row = refresh.as_ref().map(|t| RefreshRow {
        token_hash: crypto::hash(t),
        grant_id: grant.id.clone(),
        client_id: client.id.clone(),
        status: TokenStatus::Active,
        expires_at: now + app.broker.refresh_token_ttl_s,
        created_at: now,
    });
    let ok = app
        .db(move |s| s.redeem_code(&code_hash, refresh_row.as_ref()))
        .await
        .map_err(|e| server_error(&e))?;
    if !ok {
        revoke_grant(app, &row.grant_id, "authorization code replayed").await;
        return Err(codes::replayed());
    }
    tracing::info!(gateway = %gw.name, grant_id = %grant.id, client_id = %client.id, "authorization code redeemed");
    tokens::token_response(app, gw, &grant, &grant.scope, refresh.as_deref())
}

async fn refresh_token(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    use scopegate_core::oauth::refresh::{narrow_scopes, on_present, Presented, Transition};
    let client =
        clients::authenticate(app, gw, header_str(headers, header::AUTHORIZATION), form).await?;
    let presented = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let hash = crypto::hash(presented);
    let key = hash.clone();
    let row = app
        .db(move |s| s.refresh(&key))
        .await
        .map_err(|e| server_error(&e))?
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is not valid"))?;
    let gid = row.grant_id.clone();
    let grant = app
        .db(move |s| s.grant(&gid))
        .await
        .map_err(|e| server_error(&e))?
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is not valid"))?;
    if grant.gateway != gw.name {
        return Err(OAuthError::invalid_grant("refresh token is not valid"));
    }
    let now = crate::now();
    let p = Presented {
        status: row.status,
        client_id: &row.client_id,
        expires_at: row.expires_at,
        grant_active: grant.status == GrantStatus::Active,
    };
    match on_present(&p, &client.id, now) {
        Transition::Rotate => {}
        Transition::RevokeFamily(e) => {
            revoke_grant(app, &grant.id, "refresh token reused").await;
            return Err(e);
        }
        Transition::Refuse(e) => return Err(e),
    }
    let server = app
        .policy
        .server_by_name(&grant.server)
        .and_then(|i| app.policy.server(i))
        .ok_or_else(|| server_error("server vanished"))?;
    if form.get("resource").is_some_and(|r| r != &server.resource) {
        return Err(OAuthError::invalid_target(
            "resource does not match the grant",
        ));
    }
    let index = &app.policy.gateways[gw.id].scopes;
    let granted = index
        .classify(&grant.scope.split(' ').collect::<Vec<_>>())
        .granted;
    let scope = index.render(narrow_scopes(
        index,
        granted,
        form.get("scope").map(String::as_str),
    )?);
    let next = crypto::token().map_err(|e| server_error(&e))?;
    let next_row = RefreshRow {
        token_hash: crypto::hash(&next),
        grant_id: grant.id.clone(),
        client_id: client.id.clone(),
        status: TokenStatus::Active,
        expires_at: now + app.broker.refresh_token_ttl_s,
        created_at: now,
    };
    let rotated = app
        .db(move |s| s.rotate_refresh(&hash, &next_row))
        .await
        .map_err(|e| server_error(&e))?;
    if !rotated {
        // Lost a race with another use of the same token: that is reuse too.
        revoke_grant(app, &grant.id, "refresh token reused concurrently").await;
        return Err(OAuthError::invalid_grant(
            scopegate_core::oauth::refresh::REUSE,
        ));
    }
    tokens::token_response(app, gw, &grant, &scope, Some(&next))
}

async fn load_active_grant(app: &Arc<App>, id: &str) -> Result<GrantRow, OAuthError> {
    let key = id.to_string();
    match app
        .db(move |s| s.grant(&key))
        .await
        .map_err(|e| server_error(&e))?
    {
        Some(g) if g.status == GrantStatus::Active => Ok(g),
        _ => Err(OAuthError::invalid_grant("the grant is revoked")),
    }
}

pub async fn revoke_grant(app: &Arc<App>, grant_id: &str, why: &str) {
    let id = grant_id.to_string();
    let now = crate::now();
    // Listed for the filter until every access token of the grant has expired (plus the
    // filter's largest clock leeway).
    let until = now + app.broker.access_token_ttl_s + 60;
    match app.db(move |s| s.revoke_family(&id, now, until)).await {
        Ok(()) => {
            tracing::warn!(grant_id = %grant_id, reason = why, "grant revoked");
            app.metrics.revocations.with_label_values(&[why]).inc();
        }
        Err(e) => {
            tracing::error!(grant_id = %grant_id, error = %e, "revocation failed");
            return;
        }
    }
    // The downstream grant goes too, off the request path: the client's answer must not wait
    // for (or depend on) the downstream server.
    let (app, id) = (Arc::clone(app), grant_id.to_string());
    tokio::spawn(async move { revoke_downstream(&app, &id).await });
}

async fn revoke_downstream(app: &Arc<App>, grant_id: &str) {
    let key = grant_id.to_string();
    let grant = match app.db(move |s| s.grant(&key)).await {
        Ok(Some(g)) => g,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(grant_id = %grant_id, error = %e, "downstream revocation: grant unreadable");
            return;
        }
    };
    let Some(gw) = app.gateways.iter().find(|g| g.name == grant.gateway) else {
        return;
    };
    let sealed = match tokens::open_downstream(app, &grant) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(grant_id = %grant_id, error = %e, "downstream revocation: credential unreadable");
            return;
        }
    };
    match gw.downstream.revoke(&sealed).await {
        Ok(true) => tracing::info!(grant_id = %grant_id, "downstream grant revoked"),
        Ok(false) => {
            tracing::info!(grant_id = %grant_id, "downstream has no revocation endpoint")
        }
        Err(e) => {
            tracing::warn!(grant_id = %grant_id, error = %e, "downstream revocation failed")
        }
    }
}

fn revoke_endpoint(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let form = match params(&String::from_utf8_lossy(&req.body)) {
            Ok(f) => f,
            Err(e) => return error(&e),
        };
        let client = match clients::authenticate(
            &app,
            gw,
            header_str(&req.headers, header::AUTHORIZATION),
            &form,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return error(&e),
        };
        let Some(token) = form.get("token") else {
            return error(&OAuthError::invalid_request("token is required"));
        };
        // RFC 7009 §2.2: unknown or foreign tokens get the same 200 as revoked ones.
        let hash = crypto::hash(token);
        let grant_id = match app.db(move |s| s.refresh(&hash)).await {
            Ok(Some(r)) if r.client_id == client.id => Some(r.grant_id),
            _ => tokens::verify_own(&app, gw, token)
                .ok()
                .filter(|c| c.client_id.as_deref() == Some(&client.id))
                .and_then(|c| c.grant_id),
        };
        if let Some(id) = grant_id {
            revoke_grant(&app, &id, "revoked by the client").await;
        }
        json(StatusCode::OK, json!({}))
    })
}
