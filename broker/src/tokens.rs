//! Our access tokens (RFC 9068 JWTs) and the sealed downstream credential of a grant.

use crate::app::{App, GatewayRt};
use crate::clients::server_error;
use crate::downstream::Tokens;
use crate::keys::AccessClaims;
use crate::store::GrantRow;
use jwt_simple::prelude::{Claims as JwtClaims, Duration};
use scopegate_core::jwt::{self, Claims, VerifyOptions};
use scopegate_core::oauth::OAuthError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// What the grant row keeps encrypted.
#[derive(Serialize, Deserialize)]
pub struct Sealed {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

fn context(grant_id: &str) -> String {
    format!("grant:{grant_id}")
}

pub fn seal_downstream(app: &App, grant_id: &str, t: &Tokens) -> Result<Vec<u8>, String> {
    let s = Sealed {
        access_token: t.access_token.clone(),
        refresh_token: t.refresh_token.clone(),
    };
    let plain = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
    app.sealer.seal(&context(grant_id), &plain)
}

pub fn open_downstream(app: &App, g: &GrantRow) -> Result<Sealed, String> {
    let plain = app.sealer.open(&context(&g.id), &g.downstream)?;
    serde_json::from_slice(&plain).map_err(|e| format!("grant {}: {e}", g.id))
}

/// Signs an access token for the grant's server with `scope`, and builds the `/token` answer.
pub fn token_response(
    app: &Arc<App>,
    gw: &GatewayRt,
    grant: &GrantRow,
    scope: &str,
    refresh: Option<&str>,
) -> Result<Value, OAuthError> {
    let server = app
        .policy
        .server_by_name(&grant.server)
        .and_then(|i| app.policy.server(i))
        .ok_or_else(|| server_error("server vanished"))?;
    let ttl = app.broker.access_token_ttl_s;
    let jti = crate::crypto::id().map_err(|e| server_error(&e))?;
    let claims = JwtClaims::with_custom_claims(
        AccessClaims {
            scope: scope.to_string(),
            client_id: grant.client_id.clone(),
            grant_id: grant.id.clone(),
        },
        Duration::from_secs(ttl),
    )
    .with_issuer(&gw.issuer)
    .with_subject(&grant.subject)
    .with_audience(&server.resource)
    .with_jwt_id(jti);
    let access = app
        .keys
        .sign(claims, crate::now())
        .map_err(|e| server_error(&e))?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    Ok(body)
}

/// Verifies one of our own access tokens for gateway `gw` (signature, `iss`, `exp`).
pub fn verify_own(app: &App, gw: &GatewayRt, token: &str) -> Result<Claims, jwt::TokenError> {
    let keys = app.keys.verifier().ok_or(jwt::TokenError::NoMatchingKey)?;
    jwt::verify(token, &keys, &VerifyOptions::new(&gw.issuer, crate::now()))
}
