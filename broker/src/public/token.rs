//! `/token`: the authorization_code and refresh_token grants (rotation, reuse detection).

use super::*;

/// `/token`'s form: both grants' parameters (RFC 6749 §4.1.3, §6; RFC 7636 §4.5; RFC 8707 §2.2)
/// and `client_secret_post` credentials.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    credentials: ClientCredentials,
}

pub(super) async fn token(
    State(app): State<Arc<App>>,
    gw: Gateway,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm<TokenForm>,
) -> Result<Response, Error> {
    let body = match form.grant_type.as_deref() {
        Some("authorization_code") => authorization_code(&app, &gw, &headers, &form).await?,
        Some("refresh_token") => refresh_token(&app, &gw, &headers, &form).await?,
        Some(_) => {
            return Err(Error::unsupported_grant_type(
                "grant_type must be authorization_code or refresh_token",
            ))
        }
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
    };
    let grant_type = form.grant_type.as_deref().unwrap_or_default();
    app.metrics
        .token_grants
        .with_label_values(&[gw.name.as_str(), grant_type])
        .inc();
    Ok(json(StatusCode::OK, body))
}

async fn authorization_code(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<serde_json::Value, Error> {
    let client = form.credentials.authenticate(app, gw, headers).await?;
    let code = form
        .code
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let code_hash = crypto::hash(code);
    let key = code_hash.clone();
    let row = app
        .db(move |s| s.code(&key))
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("authorization code is not valid"))?;
    let now = app.now();
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
        redirect_uri: form.redirect_uri.as_deref(),
        code_verifier: form.code_verifier.as_deref(),
        resource: form.resource.as_deref(),
        now,
    };
    if let Err(e) = codes::redeem(&issued, &redemption) {
        if e == codes::replayed() {
            revoke_grant(app, &row.grant_id, "authorization code replayed").await;
        }
        return Err(e.into());
    }
    let grant = load_active_grant(app, &row.grant_id).await?;
    let refresh = if client.gets_refresh_tokens() {
        Some(crypto::token()?)
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
        .await?;
    if !ok {
        revoke_grant(app, &row.grant_id, "authorization code replayed").await;
        return Err(codes::replayed().into());
    }
    tracing::info!(gateway = %gw.name, grant_id = %grant.id, client_id = %client.id, "authorization code redeemed");
    tokens::token_response(app, gw, &grant, &grant.scope, refresh.as_deref())
}

async fn refresh_token(
    app: &Arc<App>,
    gw: &crate::app::GatewayRt,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<serde_json::Value, Error> {
    use scopegate_core::oauth::refresh::{narrow_scopes, on_present, Presented, Transition};
    let client = form.credentials.authenticate(app, gw, headers).await?;
    let presented = form
        .refresh_token
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let hash = crypto::hash(presented);
    let key = hash.clone();
    let row = app
        .db(move |s| s.refresh(&key))
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is not valid"))?;
    let gid = row.grant_id.clone();
    let grant = app
        .db(move |s| s.grant(&gid))
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is not valid"))?;
    if grant.gateway != gw.name {
        return Err(OAuthError::invalid_grant("refresh token is not valid").into());
    }
    let now = app.now();
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
            return Err(e.into());
        }
        Transition::Refuse(e) => return Err(e.into()),
    }
    let server = app
        .policy
        .server_by_name(&grant.server)
        .and_then(|i| app.policy.server(i))
        .ok_or_else(|| Error::internal("server vanished"))?;
    if form
        .resource
        .as_ref()
        .is_some_and(|r| r != &server.resource)
    {
        return Err(OAuthError::invalid_target("resource does not match the grant").into());
    }
    let index = &app.policy.gateways[gw.id].scopes;
    let granted = index
        .classify(&grant.scope.split(' ').collect::<Vec<_>>())
        .granted;
    let scope = index.render(narrow_scopes(index, granted, form.scope.as_deref())?);
    let next = crypto::token()?;
    let next_row = RefreshRow {
        token_hash: crypto::hash(&next),
        grant_id: grant.id.clone(),
        client_id: client.id.clone(),
        status: TokenStatus::Active,
        expires_at: now + app.broker.refresh_token_ttl_s,
        created_at: now,
    };
    let rotated = app.db(move |s| s.rotate_refresh(&hash, &next_row)).await?;
    if !rotated {
        // Lost a race with another use of the same token: that is reuse too.
        revoke_grant(app, &grant.id, "refresh token reused concurrently").await;
        return Err(OAuthError::invalid_grant(scopegate_core::oauth::refresh::REUSE).into());
    }
    app.grants.note_use(&grant.id, app.now());
    tokens::token_response(app, gw, &grant, &scope, Some(&next))
}

async fn load_active_grant(app: &App, id: &str) -> Result<GrantRow, Error> {
    let key = id.to_string();
    match app.db(move |s| s.grant(&key)).await? {
        Some(g) if g.status == GrantStatus::Active => Ok(g),
        _ => Err(OAuthError::invalid_grant("the grant is revoked").into()),
    }
}
