//! Who a `client_id` is (preregistered, DCR, CIMD) and client authentication at `/token` and `/revoke`.

use crate::app::{App, GatewayRt};
use crate::crypto;
use crate::error::Error;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use scopegate_core::oauth::client::ClientMetadata;
use scopegate_core::oauth::{cimd, pkce, OAuthError};
use std::collections::HashMap;

pub struct Client {
    pub id: String,
    pub meta: ClientMetadata,
    pub secret_hash: Option<String>,
}

impl Client {
    pub fn gets_refresh_tokens(&self) -> bool {
        self.meta.grant_types.iter().any(|g| g == "refresh_token")
    }
}

/// Looks a client up in the order clients prefer: preregistered, CIMD URL, DCR.
pub async fn resolve(app: &App, gw: &GatewayRt, client_id: &str) -> Result<Client, Error> {
    if let Some(p) = gw.prereg.get(client_id) {
        return Ok(Client {
            id: client_id.to_string(),
            meta: p.meta.clone(),
            secret_hash: p.secret_hash.clone(),
        });
    }
    if cimd::is_document_url(client_id) {
        let fetcher = gw.cimd.as_ref().ok_or_else(|| {
            OAuthError::invalid_client("client metadata documents are not enabled for this gateway")
        })?;
        let meta = fetcher.get(client_id, app.now()).await?;
        return Ok(Client {
            id: client_id.to_string(),
            meta,
            secret_hash: None,
        });
    }
    let id = client_id.to_string();
    match app.db(move |s| s.client(&id)).await? {
        Some(r) if r.gateway == gw.name => {
            let meta: ClientMetadata = serde_json::from_str(&r.metadata)
                .map_err(|_| OAuthError::invalid_client("client record is damaged"))?;
            Ok(Client {
                id: r.client_id,
                meta,
                secret_hash: r.secret_hash,
            })
        }
        _ => Err(OAuthError::invalid_client("unknown client_id").into()),
    }
}

/// Client authentication (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, or a
/// public client naming itself. Fails with `invalid_client` (HTTP 401).
pub async fn authenticate(
    app: &App,
    gw: &GatewayRt,
    authorization: Option<&str>,
    form: &HashMap<String, String>,
) -> Result<Client, Error> {
    let basic = match authorization.and_then(|h| h.strip_prefix("Basic ")) {
        Some(b64) => {
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            Some((form_decode(id), form_decode(secret)))
        }
        None => None,
    };
    let (id, secret) = match (basic, form.get("client_id")) {
        (Some((id, _)), Some(f)) if &id != f => {
            return Err(
                OAuthError::invalid_client("client_id differs from the Basic credentials").into(),
            )
        }
        (Some((id, secret)), _) => (id, Some(secret)),
        (None, Some(id)) => (
            id.clone(),
            form.get("client_secret").filter(|s| !s.is_empty()).cloned(),
        ),
        (None, None) => {
            return Err(
                OAuthError::invalid_client("client authentication is required (client_id)").into(),
            )
        }
    };
    let client = resolve(app, gw, &id).await?;
    match (&client.secret_hash, secret) {
        (Some(expected), Some(given))
            if pkce::ct_eq(expected.as_bytes(), crypto::hash(&given).as_bytes()) =>
        {
            Ok(client)
        }
        (Some(_), _) => Err(OAuthError::invalid_client("client authentication failed").into()),
        (None, None) => Ok(client),
        (None, Some(_)) => {
            Err(OAuthError::invalid_client("client is public: it has no secret").into())
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential part (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Deletes registered clients that never got a grant within their gateway's
/// `clients.registration.unused_client_ttl_s` (blocking: run from the maintenance task).
pub fn sweep_unused(app: &App, now: u64) -> Result<(), String> {
    for g in &app.gateways {
        let before = now.saturating_sub(g.registration.unused_client_ttl_s);
        let n = app.store.sweep_unused_clients(&g.name, before)?;
        if n > 0 {
            tracing::info!(gateway = %g.name, clients = n, "unused clients swept");
        }
    }
    Ok(())
}
