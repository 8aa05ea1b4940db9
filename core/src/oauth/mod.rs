//! The broker's OAuth authorization-server rules, pure: registration, authorize, code, refresh, PKCE.
//!
//! The broker adapts HTTP, storage and crypto around these; every refusal here carries the exact
//! OAuth error code and description that goes on the wire, so the tests can assert them.

pub mod authorize;
pub mod cimd;
pub mod client;
pub mod code;
pub mod consent;
pub mod error;
pub mod id_token;
pub mod metadata;
pub mod pkce;
pub mod redirect;
pub mod refresh;
pub mod registration;
pub mod token_exchange;

pub use error::{OAuthError, OAuthErrorCode};

/// Scopes that clients add on their own (identity, refresh) and that are never API scopes.
pub fn is_client_scope(scope: &str) -> bool {
    scope == "openid" || scope == "offline_access"
}
