//! `/authorize` and the consent form: the front channel up to the identity provider.

use super::front::to_downstream;
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

pub(super) async fn authorize(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    headers: HeaderMap,
    OAuthQuery(q): OAuthQuery<AuthorizeQuery>,
) -> Result<Response, ErrorPage> {
    let client_id = q
        .client_id
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
    let client = clients::resolve(&app, &gw, client_id).await?;
    crate::telemetry::note("client_id", &client.id);
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
    let now = app.now();
    let doc = person::doc(&app, &gw);
    let requested: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let asks_again = q
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == "consent"));
    // A remembered approval answers top-level navigations only: framed (where the browser says
    // so, Fetch Metadata), the page is shown instead, and the page refuses to be framed.
    let framed = header_str(&headers, HeaderName::from_static("sec-fetch-dest"))
        .is_some_and(|d| d != "document");
    let may_remember = person::may_remember(doc, &client.id) && !asks_again && !framed;
    let before = if may_remember {
        let list = person::remembered(&app, &gw, &jar);
        person::still_granted(&app, list, &client.id, &server.name).await?
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
    let handle = crypto::token()?;
    let csrf = crypto::token()?;
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
    app.db(move |s| s.put_pending(&row)).await?;
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
    let apps_url = format!("{}{}", gw.issuer, md::APPS);
    let (server_title, server_description) = person::server_title(doc, &server.name);
    let nonce = crypto::token()?;
    let html = ConsentPage {
        nonce: &nonce,
        requester: person::requester(&gw, &client),
        client_id: &client.id,
        redirect_host: &host,
        redirect_local: scopegate_core::oauth::redirect::is_local_application(&ok.redirect_uri),
        server_name: &server.name,
        server_title: &server_title,
        server_description: server_description.as_deref(),
        asked: person::scope_lines(doc, &asked),
        kept: person::scope_lines(doc, &kept),
        action: &action,
        request: &handle,
        csrf: &csrf,
        apps_url: &apps_url,
    }
    .render()
    .map_err(Error::internal)?;
    let cookie = Cookie::build((CSRF_COOKIE, csrf))
        .path(format!("{}{}", gw.issuer_path, md::CONSENT))
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(PENDING_TTL_S as i64))
        .secure(gw.issuer.starts_with("https://"));
    Ok((jar.add(cookie), pages::respond(html, &nonce)).into_response())
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
    crate::telemetry::note("client_id", &data.client_id);
    crate::telemetry::note("server", &data.server);
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
    tracing::info!(gateway = %gw.name, client_id = %data.client_id, server = %data.server, "consent given; to the downstream server");
    app.metrics
        .consents
        .with_label_values(&[gw.name.as_str(), "approve"])
        .inc();
    to_downstream(&app, &gw, id_hash, &data, StatusCode::SEE_OTHER).await
}
