//! RFC 8414 authorization-server metadata for a gateway, and where the broker serves its endpoints.

use crate::config::ClientsDoc;
use crate::policy::Gateway;
use serde_json::{json, Value};

/// The path part of an issuer URL (`""` for an origin): every endpoint hangs off it.
pub fn issuer_path(issuer: &str) -> &str {
    let rest = issuer.split_once("://").map(|(_, r)| r).unwrap_or(issuer);
    match rest.find('/') {
        Some(i) => rest.get(i..).unwrap_or(""),
        None => "",
    }
}

/// Where the metadata is served: RFC 8414 §3 inserts the well-known segment before the issuer's
/// path; clients that append it (OIDC discovery style) are served too.
pub fn well_known_paths(issuer: &str) -> Vec<String> {
    let p = issuer_path(issuer);
    let mut out = vec![
        format!("/.well-known/oauth-authorization-server{p}"),
        format!("/.well-known/openid-configuration{p}"),
    ];
    if !p.is_empty() {
        out.push(format!("{p}/.well-known/oauth-authorization-server"));
        out.push(format!("{p}/.well-known/openid-configuration"));
    }
    out
}

/// Endpoint paths relative to the issuer.
pub const AUTHORIZE: &str = "/authorize";
pub const CONSENT: &str = "/consent";
pub const CALLBACK: &str = "/callback";
/// The person's connected-apps page, and its withdrawal form's target.
pub const APPS: &str = "/apps";
pub const APPS_WITHDRAW: &str = "/apps/withdraw";
pub const TOKEN: &str = "/token";
pub const REGISTER: &str = "/register";
pub const REVOKE: &str = "/revoke";
pub const JWKS: &str = "/jwks";

/// The metadata document. `scopes_supported` is the allowed set without the client scopes.
pub fn document(g: &Gateway, clients: &ClientsDoc) -> Value {
    let i = &g.issuer;
    let scopes: Vec<&str> = g
        .scopes
        .names(g.scopes.all())
        .into_iter()
        .filter(|s| !super::is_client_scope(s))
        .collect();
    let mut doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}{AUTHORIZE}"),
        "token_endpoint": format!("{i}{TOKEN}"),
        "revocation_endpoint": format!("{i}{REVOKE}"),
        "jwks_uri": format!("{i}{JWKS}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "client_id_metadata_document_supported": clients.cimd.is_some(),
        "authorization_response_iss_parameter_supported": true,
    });
    if clients.dcr {
        doc["registration_endpoint"] = json!(format!("{i}{REGISTER}"));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_for_origin_and_path_issuers() {
        assert_eq!(issuer_path("https://a.example"), "");
        assert_eq!(issuer_path("https://a.example/saas"), "/saas");
        assert_eq!(
            well_known_paths("https://a.example"),
            vec![
                "/.well-known/oauth-authorization-server",
                "/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            well_known_paths("https://a.example/saas"),
            vec![
                "/.well-known/oauth-authorization-server/saas",
                "/.well-known/openid-configuration/saas",
                "/saas/.well-known/oauth-authorization-server",
                "/saas/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn document_advertises_what_mcp_clients_need() {
        let policy = crate::validate::load(super::super::authorize::tests::DOC).unwrap();
        let g = &policy.gateways[0];
        let doc = document(g, &policy.document.gateways[0].clients);
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["authorization_response_iss_parameter_supported"],
            json!(true)
        );
        assert_eq!(
            doc["scopes_supported"],
            json!([
                "tickets.read",
                "tickets.write",
                "accounts.read",
                "admin.read"
            ])
        );
        assert_eq!(
            doc["token_endpoint"],
            json!("https://mcp.example.com/token")
        );
        assert_eq!(
            doc["registration_endpoint"],
            json!("https://mcp.example.com/register")
        );
    }
}
