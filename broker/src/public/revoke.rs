//! Revocation: RFC 7009 `/revoke`, and revoking a grant (listed for the filter, revoked downstream).

use super::*;

pub async fn revoke_grant(app: &Arc<App>, grant_id: &str, why: &str) {
    let id = grant_id.to_string();
    let now = app.now();
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
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        revoke_downstream(&app, &id).await
    }));
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
    let credential = match app.grants.open(&grant) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(grant_id = %grant_id, error = %e, "downstream revocation: credential unreadable");
            return;
        }
    };
    match gw.downstream.revoke(&credential).await {
        Ok(true) => tracing::info!(grant_id = %grant_id, "downstream grant revoked"),
        Ok(false) => {
            tracing::info!(grant_id = %grant_id, "downstream has no revocation endpoint")
        }
        Err(e) => {
            tracing::warn!(grant_id = %grant_id, error = %e, "downstream revocation failed")
        }
    }
}

/// `/revoke`'s form (RFC 7009 §2.1; `token_type_hint` is optional and not needed).
#[derive(Deserialize)]
pub(super) struct RevokeForm {
    token: Option<String>,
    #[serde(flatten)]
    credentials: ClientCredentials,
}

pub(super) async fn revoke_endpoint(
    State(app): State<Arc<App>>,
    gw: Gateway,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm<RevokeForm>,
) -> Result<Response, Error> {
    let client = form.credentials.authenticate(&app, &gw, &headers).await?;
    let token = form
        .token
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // RFC 7009 §2.2: unknown or foreign tokens get the same 200 as revoked ones.
    let hash = crypto::hash(token);
    let grant_id = match app.db(move |s| s.refresh(&hash)).await {
        Ok(Some(r)) if r.client_id == client.id => Some(r.grant_id),
        _ => tokens::verify_own(&app, &gw, token)
            .ok()
            .filter(|c| c.client_id.as_deref() == Some(&client.id))
            .and_then(|c| c.grant_id),
    };
    if let Some(id) = grant_id {
        revoke_grant(&app, &id, "revoked by the client").await;
    }
    Ok(json(StatusCode::OK, json!({})))
}
