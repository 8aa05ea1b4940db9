//! `/authorize`, the consent form and `/callback` from the downstream server: the front channel.

use super::*;

/// `/authorize`'s query (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2).
#[derive(Deserialize)]
pub(super) struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
}

/// The consent page's form.
#[derive(Deserialize)]
pub(super) struct ConsentForm {
    request: Option<String>,
    csrf: Option<String>,
    decision: Option<String>,
}

/// The downstream server's answer at `/callback` (RFC 6749 §4.1.2, RFC 9207).
#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

pub(super) async fn authorize(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthQuery(q): OAuthQuery<AuthorizeQuery>,
) -> Result<Response, ErrorPage> {
    let client_id = q
        .client_id
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
    let client = clients::resolve(&app, &gw, client_id).await?;
    let p = AuthorizeParams {
        response_type: q.response_type.as_deref(),
        redirect_uri: q.redirect_uri.as_deref(),
        scope: q.scope.as_deref(),
        resource: q.resource.as_deref(),
        code_challenge: q.code_challenge.as_deref(),
        code_challenge_method: q.code_challenge_method.as_deref(),
    };
    let state = q.state.clone();
    let ok = match authz::check(&app.policy, gw.id, &client.meta.redirect_uris, &p) {
        Ok(ok) => ok,
        Err(AuthorizeError::NoRedirect(e)) => return Err(e.into()),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            error,
        }) => {
            return Ok(redirect(
                StatusCode::FOUND,
                &error_redirect(&redirect_uri, &error.into(), state.as_deref(), &gw.issuer),
            ));
        }
    };
    let server = app
        .policy
        .server(ok.server)
        .ok_or_else(|| Error::internal("server index"))?;
    let index = &app.policy.gateways[gw.id].scopes;
    let scope = index.render(ok.scopes);
    let handle = crypto::token()?;
    let csrf = crypto::token()?;
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
        expires_at: app.now() + PENDING_TTL_S,
    };
    app.db(move |s| s.put_pending(&row)).await?;
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
    let cookie = Cookie::build((CSRF_COOKIE, csrf))
        .path(format!("{}{}", gw.issuer_path, md::CONSENT))
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(PENDING_TTL_S as i64))
        .secure(gw.issuer.starts_with("https://"));
    app.metrics
        .authorizations
        .with_label_values(&[gw.name.as_str()])
        .inc();
    Ok((
        jar.add(cookie),
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        axum::response::Html(html),
    )
        .into_response())
}

pub(super) async fn consent_post(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthForm(form): OAuthForm<ConsentForm>,
) -> Result<Response, ErrorPage> {
    let (Some(handle), Some(csrf)) = (&form.request, &form.csrf) else {
        return Err(OAuthError::invalid_request("consent form is incomplete").into());
    };
    let unknown = || OAuthError::invalid_request("authorization request is unknown or expired");
    let id_hash = crypto::hash(handle);
    let key = id_hash.clone();
    let now = app.now();
    let pending = app
        .db(move |s| s.pending(&key))
        .await?
        .filter(|p| p.expires_at > now && p.gateway == gw.name && p.state_hash.is_none())
        .ok_or_else(unknown)?;
    // Double-submit cookie plus the hash kept with the request: the form must come from the
    // page we rendered for this very request, in this browser.
    let cookie_ok = jar
        .get(CSRF_COOKIE)
        .is_some_and(|c| pkce::ct_eq(c.value().as_bytes(), csrf.as_bytes()));
    if !cookie_ok || !pkce::ct_eq(crypto::hash(csrf).as_bytes(), pending.csrf_hash.as_bytes()) {
        return Err(ErrorPage(
            Error::from(OAuthError::invalid_request(
                "consent form failed the CSRF check",
            ))
            .with_status(StatusCode::FORBIDDEN),
        ));
    }
    let data = serde_json::from_str::<PendingData>(&pending.data)
        .map_err(|_| Error::internal("pending row damaged"))?;
    let back = |e: Error| {
        redirect(
            StatusCode::SEE_OTHER,
            &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
        )
    };
    if form.decision.as_deref() != Some("approve") {
        let key = id_hash.clone();
        let _ = app.db(move |s| s.delete_pending(&key)).await;
        tracing::info!(gateway = %gw.name, client_id = %data.client_id, "consent denied");
        app.metrics
            .consents
            .with_label_values(&[gw.name.as_str(), "deny"])
            .inc();
        return Ok(back(Error::access_denied("the user denied the request")));
    }
    let scopes: Vec<&str> = data.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let (url, state, verifier, nonce) = match gw.downstream.authorize_url(&scopes).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(gateway = %gw.name, error = %e, "downstream authorization server unavailable");
            return Ok(back(Error::unavailable(
                "the downstream authorization server is unavailable",
            )));
        }
    };
    let secret = serde_json::to_vec(&PendingSecret { verifier, nonce }).unwrap_or_default();
    let sealed = app.sealer.seal(&format!("pending:{id_hash}"), &secret)?;
    let state_hash = crypto::hash(&state);
    if !app
        .db(move |s| s.approve_pending(&id_hash, &state_hash, &sealed))
        .await?
    {
        return Err(unknown().into());
    }
    tracing::info!(gateway = %gw.name, client_id = %data.client_id, server = %data.server, "consent given; to the downstream server");
    app.metrics
        .consents
        .with_label_values(&[gw.name.as_str(), "approve"])
        .inc();
    Ok(redirect(StatusCode::SEE_OTHER, &url))
}

/// The downstream server's answer: a page while the request is unknown, afterwards every failure
/// goes back to the client's (verified) redirect URI.
pub(super) async fn callback(
    State(app): State<Arc<App>>,
    gw: Gateway,
    OAuthQuery(q): OAuthQuery<CallbackQuery>,
) -> Result<Response, ErrorPage> {
    let state = q
        .state
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("state is required"))?;
    let state_hash = crypto::hash(state);
    let now = app.now();
    let pending = app
        .db(move |s| s.take_pending_by_state(&state_hash))
        .await?
        .filter(|p| p.expires_at > now && p.gateway == gw.name)
        .ok_or_else(|| OAuthError::invalid_request("authorization state is unknown or expired"))?;
    let data = serde_json::from_str::<PendingData>(&pending.data)
        .map_err(|_| Error::internal("pending row damaged"))?;
    Ok(
        match grant_from_callback(&app, &gw, &q, &pending, &data).await {
            Ok(our_code) => {
                let mut pairs = vec![("code", our_code.as_str())];
                if let Some(s) = &data.state {
                    pairs.push(("state", s));
                }
                pairs.push(("iss", &gw.issuer));
                redirect(StatusCode::FOUND, &with_params(&data.redirect_uri, &pairs))
            }
            Err(e) => redirect(
                StatusCode::FOUND,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            ),
        },
    )
}

/// The downstream leg's end: its code exchanged, the user's identity resolved, the grant stored
/// with our code for the client, which is returned.
async fn grant_from_callback(
    app: &App,
    gw: &crate::app::GatewayRt,
    q: &CallbackQuery,
    pending: &PendingRow,
    data: &PendingData,
) -> Result<String, Error> {
    if let Some(err) = &q.error {
        tracing::warn!(gateway = %gw.name, downstream_error = %err, "downstream authorization refused");
        let why = "the downstream authorization server refused the request";
        return Err(if err == "access_denied" {
            Error::access_denied(why)
        } else {
            Error::server_error(why)
        });
    }
    if let Err(e) = gw.downstream.check_iss(q.iss.as_deref()).await {
        tracing::warn!(gateway = %gw.name, error = %e, "downstream callback refused");
        return Err(Error::server_error(
            "the downstream response failed the issuer check",
        ));
    }
    let code = q
        .code
        .as_ref()
        .ok_or_else(|| Error::server_error("the downstream response had no code"))?;
    let secret: PendingSecret = pending
        .secret
        .as_deref()
        .and_then(|s| {
            app.sealer
                .open(&format!("pending:{}", pending.id_hash), s)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::internal("pending secret does not open"))?;
    let tokens = gw
        .downstream
        .exchange_code(code, &secret.verifier)
        .await
        .map_err(|e| {
            tracing::warn!(gateway = %gw.name, error = %e, "downstream code exchange failed");
            Error::server_error("the downstream code exchange failed")
        })?;
    let subject = gw
        .downstream
        .subject(&tokens, &secret.nonce)
        .await
        .map_err(|e| {
            tracing::warn!(gateway = %gw.name, error = %e, "identity mapping failed");
            Error::server_error("the user's identity could not be resolved")
        })?;
    let grant_id = crypto::id()?;
    let our_code = crypto::token()?;
    let now = app.now();
    let server = app
        .policy
        .server_by_name(&data.server)
        .and_then(|i| app.policy.server(i))
        .ok_or_else(|| Error::internal("server vanished"))?;
    let grant = GrantRow {
        id: grant_id.clone(),
        gateway: gw.name.clone(),
        server: data.server.clone(),
        client_id: data.client_id.clone(),
        subject: subject.clone(),
        scope: data.scope.clone(),
        status: GrantStatus::Active,
        downstream: app.grants.seal(&grant_id, &tokens)?,
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
    app.db(move |s| s.create_grant(&grant, &code_row)).await?;
    tracing::info!(gateway = %gw.name, grant_id = %grant_id, client_id = %data.client_id, server = %data.server, subject = %subject, "grant created");
    Ok(our_code)
}
