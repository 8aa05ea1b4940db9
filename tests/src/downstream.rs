//! The example authorization server configured as the broker's downstream: the gateway's
//! confidential client, the broker's callbacks, short token lifetimes, an optional fixed issuer.

use crate::authz::Authz;
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "scopegate-saas";
pub const CLIENT_SECRET: &str = "test-downstream-secret";
pub const API: &str = "https://api.example.com";
pub const USER: &str = "demo-user";

pub struct Spec {
    /// The broker callbacks it accepts.
    pub redirect_uris: Vec<String>,
    /// Access-token lifetime for the API, seconds.
    pub access_ttl: u64,
    /// Fixed issuer (a proxy in front of it); by default its own URL.
    pub issuer: Option<String>,
}

pub fn config(spec: &Spec) -> Value {
    let mut config = json!({
        "host": "127.0.0.1",
        "port": 0,
        "accessTokenTTL": spec.access_ttl,
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": spec.redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "openid offline_access tickets.read tickets.write accounts.read admin.read"
        }],
        "resources": {API: {"scope": "tickets.read tickets.write accounts.read admin.read", "accessTokenTTL": spec.access_ttl}},
    });
    if let Some(i) = &spec.issuer {
        config["issuer"] = json!(i);
    }
    config
}

/// Starts it; returns the server and its issuer.
pub fn start(dir: &str, spec: &Spec) -> (Authz, String) {
    let authz = Authz::start(dir, &config(spec));
    let issuer = spec.issuer.clone().unwrap_or_else(|| authz.url.clone());
    (authz, issuer)
}
