//! An OAuth error as it goes on the wire: a registered code plus a human description.

use serde_json::{json, Value};
use std::fmt;

/// The `error` codes scopegate sends: RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591
/// §3.2.2, RFC 8693 §2.2.2, RFC 8707 §2, and two of the filter's own (`unauthorized`,
/// `rate_limited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidTarget,
    InvalidClientMetadata,
    InvalidRedirectUri,
    UnsupportedGrantType,
    UnsupportedResponseType,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    /// The filter's 401 body when no token was sent (the challenge itself carries no code).
    Unauthorized,
    /// The filter's 429 body when a request budget is spent.
    RateLimited,
}

impl OAuthErrorCode {
    /// The code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            OAuthErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::InvalidToken => "invalid_token",
            OAuthErrorCode::InsufficientScope => "insufficient_scope",
            OAuthErrorCode::Unauthorized => "unauthorized",
            OAuthErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a wire string (tests, and codes read from another server's reply).
impl PartialEq<&str> for OAuthErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `error` and `error_description` of RFC 6749 §5.2 / RFC 7591 §3.2.2 / RFC 8693 §2.2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidClient, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidTarget, d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidClientMetadata, d)
    }
    pub fn invalid_redirect_uri(d: impl Into<String>) -> OAuthError {
        OAuthError::new(OAuthErrorCode::InvalidRedirectUri, d)
    }

    /// The JSON body of an error response.
    pub fn body(&self) -> Value {
        json!({ "error": self.error.as_str(), "error_description": self.description })
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_wire_code() {
        let e = OAuthError::new(OAuthErrorCode::InvalidRedirectUri, "no");
        assert_eq!(
            e.body(),
            json!({"error": "invalid_redirect_uri", "error_description": "no"})
        );
        assert_eq!(e.to_string(), "invalid_redirect_uri: no");
        assert_eq!(
            OAuthErrorCode::UnsupportedGrantType,
            "unsupported_grant_type"
        );
    }
}
