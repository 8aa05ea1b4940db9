//! `/callback`: the identity provider's answer, which ends an authorization (a grant and our code
//! for the client) or a person's sign-in to the connected-apps page (a session).

use super::*;
use crate::downstream::Credential;
use person::Session;

/// The downstream server's answer at `/callback` (RFC 6749 §4.1.2, RFC 9207).
#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    pub(super) state: Option<String>,
    pub(super) code: Option<String>,
    pub(super) error: Option<String>,
    pub(super) iss: Option<String>,
}

/// The downstream server's answer: a page while the request is unknown, afterwards every failure
/// goes back to the client's (verified) redirect URI.
pub(super) async fn callback(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
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
    if !data.login {
        crate::telemetry::note("client_id", &data.client_id);
        crate::telemetry::note("server", &data.server);
    }
    if data.login {
        return finish_sign_in(&app, &gw, jar, &pending, &q).await;
    }
    let (our_code, grant_id) = match grant_from_callback(&app, &gw, &q, &pending, &data).await {
        Ok(x) => x,
        Err(e) => {
            return Ok(redirect(
                StatusCode::FOUND,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            ))
        }
    };
    let mut pairs = vec![("code", our_code.as_str())];
    if let Some(s) = &data.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &gw.issuer));
    let to_client = redirect(StatusCode::FOUND, &with_params(&data.redirect_uri, &pairs));
    let doc = person::doc(&app, &gw);
    if !person::may_remember(doc, &data.client_id) {
        return Ok(to_client);
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
    Ok(match person::remember_cookie(&app, &gw, &list, ttl) {
        Ok(c) => (jar.add(c), to_client).into_response(),
        Err(e) => {
            tracing::warn!(gateway = %gw.name, error = %e, "consent could not be remembered");
            to_client
        }
    })
}

/// The identity provider's answer, checked and spent: its refusal or `iss` checked, its code
/// exchanged with the pending request's PKCE verifier, the person's identity resolved. Shared by
/// a client's authorization and a person's sign-in to the connected-apps page.
async fn identify(
    app: &App,
    gw: &crate::app::GatewayRt,
    q: &CallbackQuery,
    pending: &PendingRow,
) -> Result<(crate::downstream::Tokens, String), Error> {
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
    Ok((tokens, subject))
}

/// The downstream leg's end: its code exchanged, the user's identity resolved, the grant stored
/// with our code for the client; returns that code and the grant's id.
async fn grant_from_callback(
    app: &App,
    gw: &crate::app::GatewayRt,
    q: &CallbackQuery,
    pending: &PendingRow,
    data: &PendingData,
) -> Result<(String, String), Error> {
    let (tokens, subject) = identify(app, gw, q, pending).await?;
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
    Ok((our_code, grant_id))
}

/// `/callback` for a sign-in: the identity is resolved like a grant's, the sign-in's own tokens
/// are revoked downstream (they were for this alone), and the session cookie is set.
async fn finish_sign_in(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    jar: CookieJar,
    pending: &PendingRow,
    q: &CallbackQuery,
) -> Result<Response, ErrorPage> {
    let (tokens, subject) = identify(app, gw, q, pending).await.map_err(|e| {
        tracing::warn!(gateway = %gw.name, error = %e, "connected-apps sign-in refused");
        ErrorPage(Error::access_denied("sign-in failed"))
    })?;
    let sign_in = Credential {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
    };
    let (owner, gateway) = (Arc::clone(app), gw.id);
    tokio::spawn(async move {
        if let Some(g) = owner.gateway(gateway) {
            let _ = g.downstream.revoke(&sign_in).await;
        }
    });
    let session = Session {
        subject,
        expires_at: app.now() + person::SESSION_TTL_S,
        csrf: crypto::token()?,
    };
    let cookie = person::session_cookie(app, gw, &session).map_err(Error::internal)?;
    Ok((
        jar.add(cookie),
        redirect(StatusCode::SEE_OTHER, &format!("{}{}", gw.issuer, md::APPS)),
    )
        .into_response())
}
