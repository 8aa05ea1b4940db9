//! Sends a person's browser to the identity provider for an approved authorization (approved on
//! the consent page, or remembered) or a sign-in to the connected-apps page.

use super::*;

/// Sends the browser to the downstream authorization server for an approved request (approved
/// on the page just now, or remembered, or a person signing in to the connected-apps page): the
/// downstream leg's secrets are sealed in its row.
pub(super) async fn to_downstream(
    app: &App,
    gw: &crate::app::GatewayRt,
    id_hash: String,
    data: &PendingData,
    status: StatusCode,
) -> Result<Response, ErrorPage> {
    let scopes: Vec<&str> = data.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let (url, state, verifier, nonce) = match gw.downstream.authorize_url(&scopes).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(gateway = %gw.name, error = %e, "downstream authorization server unavailable");
            let e = Error::unavailable("the downstream authorization server is unavailable");
            if data.login {
                return Err(e.into());
            }
            return Ok(redirect(
                status,
                &error_redirect(&data.redirect_uri, &e, data.state.as_deref(), &gw.issuer),
            ));
        }
    };
    let secret = serde_json::to_vec(&PendingSecret { verifier, nonce }).unwrap_or_default();
    let sealed = app.sealer.seal(&format!("pending:{id_hash}"), &secret)?;
    let state_hash = crypto::hash(&state);
    if !app
        .db(move |s| s.approve_pending(&id_hash, &state_hash, &sealed))
        .await?
    {
        return Err(
            OAuthError::invalid_request("authorization request is unknown or expired").into(),
        );
    }
    Ok(redirect(status, &url))
}
