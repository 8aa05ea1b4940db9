//! `/authorize` request rules: redirect URI, response type, PKCE, RFC 8707 resource and scope selection.

use super::{is_client_scope, pkce, OAuthError, OAuthErrorCode};
use crate::policy::{GatewayId, Policy, Server, ServerId};
use crate::scopes::{split_scope, ScopeIndex, ScopeSet};

/// The parameters of an authorization request that the policy looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizeParams<'a> {
    pub response_type: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub code_challenge_method: Option<&'a str>,
}

/// Why a request is refused, and whether the refusal may go back to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The redirect URI is not verified: tell the user, redirect nowhere (RFC 6749 §4.1.2.1).
    NoRedirect(OAuthError),
    /// The redirect URI is registered: send `error` there.
    Redirect {
        redirect_uri: String,
        error: OAuthError,
    },
}

/// A request the user may now be asked to consent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub redirect_uri: String,
    pub server: ServerId,
    /// API scopes only: never `openid` or `offline_access`.
    pub scopes: ScopeSet,
    pub code_challenge: String,
}

/// Checks an authorization request of a known client (whose registered URIs are given) at `gateway`.
pub fn check(
    policy: &Policy,
    gateway: GatewayId,
    registered_redirect_uris: &[String],
    p: &AuthorizeParams,
) -> Result<Accepted, AuthorizeError> {
    let redirect_uri = match p.redirect_uri {
        Some(uri) if super::client::redirect_registered(registered_redirect_uris, uri) => {
            uri.to_string()
        }
        Some(_) => {
            return Err(AuthorizeError::NoRedirect(OAuthError::invalid_request(
                "redirect_uri is not registered for this client",
            )))
        }
        None => match registered_redirect_uris {
            [only] => only.clone(),
            _ => {
                return Err(AuthorizeError::NoRedirect(OAuthError::invalid_request(
                    "redirect_uri is required",
                )))
            }
        },
    };
    let refuse = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
    };
    if p.response_type != Some("code") {
        return Err(refuse(OAuthError::new(
            OAuthErrorCode::UnsupportedResponseType,
            "response_type must be code",
        )));
    }
    pkce::check_challenge(p.code_challenge, p.code_challenge_method).map_err(refuse)?;
    let server_id = resource_server(policy, gateway, p.resource).map_err(refuse)?;
    let (server, index) = match policy
        .server(server_id)
        .and_then(|s| policy.gateway_of(s).map(|g| (s, &g.scopes)))
    {
        Some(found) => found,
        None => {
            return Err(refuse(OAuthError::invalid_target(
                "resource is not a configured server",
            )))
        }
    };
    let scopes = select_scopes(index, server, p.scope).map_err(refuse)?;
    Ok(Accepted {
        redirect_uri,
        server: server_id,
        scopes,
        code_challenge: p.code_challenge.unwrap_or_default().to_string(),
    })
}

/// RFC 8707: `resource` is required and must be exactly a server of this gateway.
pub fn resource_server(
    policy: &Policy,
    gateway: GatewayId,
    resource: Option<&str>,
) -> Result<ServerId, OAuthError> {
    let resource = match resource {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Err(OAuthError::invalid_target(
                "resource is required (RFC 8707): the MCP server's URL",
            ))
        }
    };
    match policy.server_for_resource(resource) {
        Some(id) if policy.server(id).is_some_and(|s| s.gateway == gateway) => Ok(id),
        Some(_) => Err(OAuthError::invalid_target(format!(
            "resource `{resource}` belongs to another gateway"
        ))),
        None => Err(OAuthError::invalid_target(format!(
            "resource `{resource}` is not a configured server"
        ))),
    }
}

/// The API scopes a server may be granted: its subset, without the client scopes.
pub fn api_subset(index: &ScopeIndex, server: &Server) -> ScopeSet {
    let client = index.classify(&["openid", "offline_access"]).granted;
    server.scopes.minus(client)
}

/// The scopes to grant for a requested `scope`: none asked means the server's whole subset (never
/// the gateway's allowed set); `openid` and `offline_access` are accepted and never granted as API
/// scopes; anything outside the server's subset is refused.
pub fn select_scopes(
    index: &ScopeIndex,
    server: &Server,
    requested: Option<&str>,
) -> Result<ScopeSet, OAuthError> {
    let subset = api_subset(index, server);
    let mut chosen = ScopeSet::EMPTY;
    for s in split_scope(requested.unwrap_or("")) {
        if is_client_scope(s) {
            continue;
        }
        match index.set_of(&[s]) {
            Ok(set) if set.is_subset_of(subset) => chosen = chosen.union(set),
            _ => {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{s}` is not available for server `{}` (it may ask for: {})",
                    server.name,
                    index.render(subset)
                )))
            }
        }
    }
    Ok(if chosen.is_empty() { subset } else { chosen })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::validate::load;

    pub(crate) const DOC: &str = r#"{
      "gateways": [
        {"name": "saas", "public_url": "https://mcp.example.com", "issuer": "https://mcp.example.com",
         "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
         "jwks": {"cluster": "b", "path": "/jwks"},
         "servers": [
           {"name": "support-assistant", "cluster": "sa", "path": "/support-assistant/mcp", "scopes": ["tickets.read", "accounts.read"]},
           {"name": "ops-console", "cluster": "oc", "path": "/ops-console/mcp", "scopes": ["tickets.write", "admin.read"]}]},
        {"name": "other", "public_url": "https://other.example.com", "issuer": "https://other.example.com",
         "allowed_scopes": ["x"], "jwks": {"cluster": "b", "path": "/jwks"},
         "servers": [{"name": "x", "cluster": "x", "path": "/x/mcp", "scopes": ["x"]}]}
      ]}"#;
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params<'a>() -> AuthorizeParams<'a> {
        AuthorizeParams {
            response_type: Some("code"),
            redirect_uri: Some("http://127.0.0.1:9/cb"),
            scope: None,
            resource: Some("https://mcp.example.com/support-assistant/mcp"),
            code_challenge: Some(CHALLENGE),
            code_challenge_method: Some("S256"),
        }
    }

    fn run(p: &AuthorizeParams) -> Result<(String, String), AuthorizeError> {
        let policy = load(DOC).unwrap();
        let ok = check(&policy, 0, &["http://127.0.0.1:9/cb".to_string()], p)?;
        let server = policy.server(ok.server).unwrap();
        Ok((
            server.name.clone(),
            policy.gateways[0].scopes.render(ok.scopes),
        ))
    }

    fn redirected(p: &AuthorizeParams) -> OAuthError {
        match run(p) {
            Err(AuthorizeError::Redirect { error, .. }) => error,
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn no_scope_means_the_server_subset() {
        assert_eq!(
            run(&params()).unwrap(),
            (
                "support-assistant".into(),
                "tickets.read accounts.read".into()
            )
        );
        let p = AuthorizeParams {
            scope: Some("openid offline_access"),
            ..params()
        };
        assert_eq!(run(&p).unwrap().1, "tickets.read accounts.read");
        let p = AuthorizeParams {
            scope: Some("accounts.read offline_access"),
            ..params()
        };
        assert_eq!(run(&p).unwrap().1, "accounts.read");
    }

    #[test]
    fn refusals_carry_exact_errors() {
        let p = AuthorizeParams {
            redirect_uri: Some("http://127.0.0.1:9/other"),
            ..params()
        };
        assert_eq!(
            run(&p).unwrap_err(),
            AuthorizeError::NoRedirect(OAuthError::invalid_request(
                "redirect_uri is not registered for this client"
            ))
        );
        let e = redirected(&AuthorizeParams {
            scope: Some("admin.read"),
            ..params()
        });
        assert_eq!(e.error, "invalid_scope");
        assert_eq!(e.description, "scope `admin.read` is not available for server `support-assistant` (it may ask for: tickets.read accounts.read)");
        let e = redirected(&AuthorizeParams {
            resource: None,
            ..params()
        });
        assert_eq!(
            e.description,
            "resource is required (RFC 8707): the MCP server's URL"
        );
        let e = redirected(&AuthorizeParams {
            resource: Some("https://other.example.com/x/mcp"),
            ..params()
        });
        assert_eq!(
            (e.error.as_str(), e.description.as_str()),
            (
                "invalid_target",
                "resource `https://other.example.com/x/mcp` belongs to another gateway"
            )
        );
        let e = redirected(&AuthorizeParams {
            code_challenge_method: Some("plain"),
            ..params()
        });
        assert_eq!(e.error, "invalid_request");
        let e = redirected(&AuthorizeParams {
            response_type: Some("token"),
            ..params()
        });
        assert_eq!(e.error, "unsupported_response_type");
    }
}
