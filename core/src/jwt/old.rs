//! The payload reader `payload.rs` replaced (jwt-simple's `JWTClaims` with a flattened
//! `Custom`), kept for the differential test to compare against.
#![cfg(test)]

use jwt_simple::claims::{Audiences, JWTClaims};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::payload::Payload;

/// The claims jwt-simple does not model. Nested `flatten` leaves exactly the remaining
/// members in `extra`, so the payload is parsed once.
#[derive(Deserialize)]
struct Custom {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    scope: Option<Value>,
    #[serde(default)]
    scp: Option<Value>,
    #[serde(default)]
    grant_id: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The payload as the old reader read it, in the new reader's terms (`aud` as it arrived:
/// the string form as one audience, none when empty; the array form as its set).
pub(super) fn read(json: &[u8]) -> Result<Payload, serde_json::Error> {
    let claims: JWTClaims<Custom> = serde_json::from_slice(json)?;
    let custom = claims.custom;
    Ok(Payload {
        iat: claims.issued_at.map(|t| t.as_secs()),
        exp: claims.expires_at.map(|t| t.as_secs()),
        nbf: claims.invalid_before.map(|t| t.as_secs()),
        iss: claims.issuer,
        sub: claims.subject,
        aud: claims.audiences.map(|a| match a {
            Audiences::AsString(a) if a.is_empty() => Vec::new(),
            Audiences::AsString(a) => vec![a],
            Audiences::AsSet(set) => set.into_iter().collect(),
        }),
        jti: claims.jwt_id,
        nonce: claims.nonce,
        client_id: custom.client_id,
        azp: custom.azp,
        scope: custom.scope,
        scp: custom.scp,
        grant_id: custom.grant_id,
        extra: custom.extra,
    })
}
