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
    /// OpenID Connect's `prompt`: `consent` shows the page even where an approval is remembered.
    prompt: Option<String>,
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
    pub(super) state: Option<String>,
    pub(super) code: Option<String>,
    pub(super) error: Option<String>,
    pub(super) iss: Option<String>,
}

pub(super) async fn authorize(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthQuery(q): OAuthQuery<AuthorizeQuery>,
) -> Response {
    let Some(client_id) = &q.client_id else {
        return ErrorPage(OAuthError::invalid_request("client_id is required")).into_response();
    };
    let client = match clients::resolve(&app, &gw, client_id).await {
        Ok(c) => c,
        Err(e) => return ErrorPage(e).into_response(),
    };
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
        Err(AuthorizeError::NoRedirect(e)) => return ErrorPage(e).into_response(),
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
        return ErrorPage(server_error("server index")).into_response();
    };
    let index = &app.policy.gateways[gw.id].scopes;
    let scope = index.render(ok.scopes);
    let now = crate::now();
    let doc = person::doc(&app, &gw);
    let requested: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let asks_again = q
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == "consent"));
    let may_remember = person::may_remember(doc, &client.id) && !asks_again;
    let before = if may_remember {
        let list = person::remembered(&app, &gw, &jar);
        match person::still_granted(&app, list, &client.id, &server.name).await {
            Ok(b) => b,
            Err(e) => return ErrorPage(server_error(&e)).into_response(),
        }
    } else {
        Vec::new()
    };
    let need = consent_need(
        &before,
        &client.id,
        &server.name,
        &requested,
        now,
        may_remember,
    );
    let approved_before = before
        .iter()
        .map(|r| r.scope.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let (Ok(handle), Ok(csrf)) = (crypto::token(), crypto::token()) else {
        return ErrorPage(server_error("no randomness")).into_response();
    };
    let data = PendingData {
        client_id: client.id.clone(),
        redirect_uri: ok.redirect_uri.clone(),
        state,
        server: server.name.clone(),
        scope: scope.clone(),
        code_challenge: ok.code_challenge.clone(),
        approved_before,
        login: false,
    };
    let id_hash = crypto::hash(&handle);
    let row = PendingRow {
        id_hash: id_hash.clone(),
        gateway: gw.name.clone(),
        data: serde_json::to_string(&data).unwrap_or_default(),
        csrf_hash: crypto::hash(&csrf),
        state_hash: None,
        secret: None,
        expires_at: now + PENDING_TTL_S,
    };
    if let Err(e) = app.db(move |s| s.put_pending(&row)).await {
        return ErrorPage(server_error(&e)).into_response();
    }
    app.metrics
        .authorizations
        .with_label_values(&[gw.name.as_str()])
        .inc();
    let (asked, kept) = match need {
        ConsentNeed::Remembered => {
            tracing::info!(gateway = %gw.name, client_id = %data.client_id, server = %data.server, "consent remembered; to the downstream server");
            app.metrics
                .consents
                .with_label_values(&[gw.name.as_str(), "remembered"])
                .inc();
            return to_downstream(&app, &gw, id_hash, &data, StatusCode::FOUND).await;
        }
        ConsentNeed::Ask { new, kept } => (new, kept),
    };
    let host = scopegate_core::oauth::redirect::display_host(&ok.redirect_uri);
    let action = format!("{}{}", gw.issuer, md::CONSENT);
    let apps_url = format!("{}{}", gw.issuer, super::apps::APPS);
    let (server_title, server_description) = person::server_title(doc, &server.name);
    let Ok(nonce) = crypto::token() else {
        return ErrorPage(server_error("no randomness")).into_response();
    };
    let page = ConsentPage {
        nonce: &nonce,
        requester: person::requester(&gw, &client),
        client_id: &client.id,
        redirect_host: &host,
        redirect_local: person::is_local(&ok.redirect_uri),
        server_name: &server.name,
        server_title: &server_title,
        server_description: server_description.as_deref(),
        asked: person::scope_lines(doc, &asked),
        kept: person::scope_lines(doc, &kept),
        action: &action,
        request: &handle,
        csrf: &csrf,
        apps_url: &apps_url,
    };
    let html = match page.render() {
        Ok(h) => h,
        Err(e) => return ErrorPage(server_error(&e)).into_response(),
    };
    let cookie = Cookie::build((CSRF_COOKIE, csrf))
        .path(format!("{}{}", gw.issuer_path, md::CONSENT))
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(PENDING_TTL_S as i64))
        .secure(gw.issuer.starts_with("https://"));
    (jar.add(cookie), pages::respond(html, &nonce)).into_response()
}

/// Sends the browser to the downstream authorization server for an approved request (approved
/// on the page just now, or remembered): the downstream leg's secrets are sealed in its row.
pub(super) async fn to_downstream(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    id_hash: String,
    data: &PendingData,
    status: StatusCode,
) -> Response {
    let scopes: Vec<&str> = data.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let (url, state, verifier, nonce) = match gw.downstream.authorize_url(&scopes).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(gateway = %gw.name, error = %e, "downstream authorization server unavailable");
            let e = OAuthError::new(
                "temporarily_unavailable",
                "the downstream authorization server is unavailable",
            );
            if data.login {
                return ErrorPage(e).into_response();
            }
            return redirect(
                status,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            );
        }
    };
    let secret = serde_json::to_vec(&PendingSecret { verifier, nonce }).unwrap_or_default();
    let sealed = match app.sealer.seal(&format!("pending:{id_hash}"), &secret) {
        Ok(s) => s,
        Err(e) => return ErrorPage(server_error(&e)).into_response(),
    };
    let state_hash = crypto::hash(&state);
    match app
        .db(move |s| s.approve_pending(&id_hash, &state_hash, &sealed))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return ErrorPage(OAuthError::invalid_request(
                "authorization request is unknown or expired",
            ))
            .into_response()
        }
        Err(e) => return ErrorPage(server_error(&e)).into_response(),
    }
    redirect(status, &url)
}

pub(super) async fn consent_post(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthForm(form): OAuthForm<ConsentForm>,
) -> Response {
    let (Some(handle), Some(csrf)) = (&form.request, &form.csrf) else {
        return ErrorPage(OAuthError::invalid_request("consent form is incomplete"))
            .into_response();
    };
    let id_hash = crypto::hash(handle);
    let key = id_hash.clone();
    let pending = match app.db(move |s| s.pending(&key)).await {
        Ok(Some(p))
            if p.expires_at > crate::now() && p.gateway == gw.name && p.state_hash.is_none() =>
        {
            p
        }
        Ok(_) => {
            return ErrorPage(OAuthError::invalid_request(
                "authorization request is unknown or expired",
            ))
            .into_response()
        }
        Err(e) => return ErrorPage(server_error(&e)).into_response(),
    };
    // Double-submit cookie plus the hash kept with the request: the form must come from the
    // page we rendered for this very request, in this browser.
    let cookie_ok = jar
        .get(CSRF_COOKIE)
        .is_some_and(|c| pkce::ct_eq(c.value().as_bytes(), csrf.as_bytes()));
    if !cookie_ok || !pkce::ct_eq(crypto::hash(csrf).as_bytes(), pending.csrf_hash.as_bytes()) {
        return (
            StatusCode::FORBIDDEN,
            ErrorPage(OAuthError::invalid_request(
                "consent form failed the CSRF check",
            )),
        )
            .into_response();
    }
    let Ok(data) = serde_json::from_str::<PendingData>(&pending.data) else {
        return ErrorPage(server_error("pending row damaged")).into_response();
    };
    if form.decision.as_deref() != Some("approve") {
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
    tracing::info!(gateway = %gw.name, client_id = %data.client_id, server = %data.server, "consent given; to the downstream server");
    app.metrics
        .consents
        .with_label_values(&[gw.name.as_str(), "approve"])
        .inc();
    to_downstream(&app, &gw, id_hash, &data, StatusCode::SEE_OTHER).await
}

pub(super) async fn callback(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthQuery(q): OAuthQuery<CallbackQuery>,
) -> Response {
    let Some(state) = &q.state else {
        return ErrorPage(OAuthError::invalid_request("state is required")).into_response();
    };
    let state_hash = crypto::hash(state);
    let pending = match app.db(move |s| s.take_pending_by_state(&state_hash)).await {
        Ok(Some(p)) if p.expires_at > crate::now() && p.gateway == gw.name => p,
        Ok(_) => {
            return ErrorPage(OAuthError::invalid_request(
                "authorization state is unknown or expired",
            ))
            .into_response()
        }
        Err(e) => return ErrorPage(server_error(&e)).into_response(),
    };
    let Ok(data) = serde_json::from_str::<PendingData>(&pending.data) else {
        return ErrorPage(server_error("pending row damaged")).into_response();
    };
    if data.login {
        return super::apps::finish_sign_in(&app, &gw, jar, &pending, &q).await;
    }
    let back = |e: OAuthError| {
        redirect(
            StatusCode::FOUND,
            &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
        )
    };
    if let Some(err) = &q.error {
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
    if let Err(e) = gw.downstream.check_iss(q.iss.as_deref()).await {
        tracing::warn!(gateway = %gw.name, error = %e, "downstream callback refused");
        return back(OAuthError::new(
            "server_error",
            "the downstream response failed the issuer check",
        ));
    }
    let Some(code) = &q.code else {
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
    let to_client = redirect(StatusCode::FOUND, &with_params(&data.redirect_uri, &pairs));
    let doc = person::doc(&app, &gw);
    if !person::may_remember(doc, &data.client_id) {
        return to_client;
    }
    // The person approved this client for this server (on the page, or earlier and remembered):
    // the browser remembers it, bound to the new grant, until the grant is withdrawn.
    let ttl = doc.map_or(0, |d| d.consent.remember_for_s);
    let approval = Remembered {
        client_id: data.client_id.clone(),
        server: data.server.clone(),
        scope: union_scope(&data.scope, &data.approved_before),
        grant_id,
        expires_at: now + ttl,
    };
    let list = remember(person::remembered(&app, &gw, &jar), approval, now);
    match person::remember_cookie(&app, &gw, &list, ttl) {
        Ok(c) => (jar.add(c), to_client).into_response(),
        Err(e) => {
            tracing::warn!(gateway = %gw.name, error = %e, "consent could not be remembered");
            to_client
        }
    }
}
