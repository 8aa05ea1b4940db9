//! Our access tokens (RFC 9068 JWTs): signing one for a grant, and verifying one we issued.

use crate::app::{App, GatewayRt};
use crate::error::Error;
use crate::keys::AccessClaims;
use crate::store::GrantRow;
use jwt_simple::prelude::{Claims as JwtClaims, Duration};
use scopegate_core::jwt::{self, Claims, VerifyOptions};
use serde_json::{json, Value};

/// Signs an access token for the grant's server with `scope`, and builds the `/token` answer.
pub fn token_response(
    app: &App,
    gw: &GatewayRt,
    grant: &GrantRow,
    scope: &str,
    refresh: Option<&str>,
) -> Result<Value, Error> {
    let server = app
        .policy
        .server_by_name(&grant.server)
        .and_then(|i| app.policy.server(i))
        .ok_or_else(|| Error::internal("server vanished"))?;
    let ttl = app.broker.access_token_ttl_s;
    let jti = crate::crypto::id()?;
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
    let access = app.keys.sign(claims, app.now()).map_err(Error::internal)?;
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
    jwt::verify(token, &keys, &VerifyOptions::new(&gw.issuer, app.now()))
}
