//! An OAuth error as it goes on the wire: a registered code plus a human description.

use serde_json::{json, Value};
use std::fmt;

/// `error` and `error_description` of RFC 6749 §5.2 / RFC 7591 §3.2.2 / RFC 8693 §2.2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_client", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_scope", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_target", d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_client_metadata", d)
    }
    pub fn invalid_redirect_uri(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_redirect_uri", d)
    }

    /// The JSON body of an error response.
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl std::error::Error for OAuthError {}
