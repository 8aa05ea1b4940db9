//! The broker's one error type: a failed request as the OAuth error its caller sees, with the HTTP
//! answer that carries it (JSON to a client, a page to a person's browser).
//!
//! The OAuth error codes the broker names itself are chosen here and nowhere else (core's
//! `OAuthErrorCode` spells them on the wire).

use crate::crypto::CryptoError;
use crate::http::json;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scopegate_core::oauth::{OAuthError, OAuthErrorCode as Code};

/// A request that failed: the OAuth error (RFC 6749 §5.2) and, for the few answers that need
/// them, another status or a `Retry-After`. As a response it is JSON that no cache keeps;
/// `invalid_client` is 401 with a challenge, `server_error` 500, `temporarily_unavailable` 503,
/// anything else 400.
#[derive(Debug, Clone)]
pub struct Error {
    oauth: OAuthError,
    status: Option<StatusCode>,
    retry_after: Option<u64>,
}

impl Error {
    /// A failure of ours (store, sealing, randomness, a broken invariant): the detail is logged,
    /// the caller sees only `server_error`.
    pub fn internal(detail: impl std::fmt::Display) -> Error {
        tracing::error!(error = %detail, "internal error");
        OAuthError::new(Code::ServerError, "internal error").into()
    }

    /// `server_error` with a description the caller may read (a downstream leg that failed).
    pub fn server_error(description: &str) -> Error {
        OAuthError::new(Code::ServerError, description).into()
    }

    /// `temporarily_unavailable`: try again later (a downstream or another replica is busy).
    pub fn unavailable(description: &str) -> Error {
        OAuthError::new(Code::TemporarilyUnavailable, description).into()
    }

    /// `access_denied`: the user (here or downstream) said no.
    pub fn access_denied(description: &str) -> Error {
        OAuthError::new(Code::AccessDenied, description).into()
    }

    pub fn unsupported_grant_type(description: &str) -> Error {
        OAuthError::new(Code::UnsupportedGrantType, description).into()
    }

    /// Answers with `status` instead of the one the error code implies (415, 429).
    pub fn with_status(mut self, status: StatusCode) -> Error {
        self.status = Some(status);
        self
    }

    /// Adds `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Error {
        self.retry_after = Some(seconds);
        self
    }

    /// The OAuth error code (`invalid_grant`, …): for redirects and metric labels.
    pub fn code(&self) -> &'static str {
        self.oauth.error.as_str()
    }

    pub fn description(&self) -> &str {
        &self.oauth.description
    }

    fn status_of_code(&self) -> StatusCode {
        match self.oauth.error {
            Code::InvalidClient => StatusCode::UNAUTHORIZED,
            Code::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Code::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.oauth.fmt(f)
    }
}

impl From<OAuthError> for Error {
    fn from(oauth: OAuthError) -> Error {
        Error {
            oauth,
            status: None,
            retry_after: None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::internal(e)
    }
}

impl From<CryptoError> for Error {
    fn from(e: CryptoError) -> Error {
        Error::internal(e)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        crate::telemetry::note("oauth.error", self.code());
        let by_code = self.status_of_code();
        let mut r = json(self.status.unwrap_or(by_code), self.oauth.body());
        if by_code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"scopegate\""),
            );
        }
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The same failure shown to a person's browser on the front channel (`/authorize`, the consent
/// form, `/callback`) when it cannot be sent back to a verified redirect URI: 400, or the status
/// set with [`Error::with_status`] (403 for a failed CSRF check), and never a Basic challenge,
/// which a browser would turn into a password prompt.
#[derive(Debug)]
pub struct ErrorPage(pub Error);

impl<E: Into<Error>> From<E> for ErrorPage {
    fn from(e: E) -> ErrorPage {
        ErrorPage(e.into())
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        crate::telemetry::note("oauth.error", self.0.code());
        json(
            self.0.status.unwrap_or(StatusCode::BAD_REQUEST),
            self.0.oauth.body(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(r: &Response, h: header::HeaderName) -> Option<&str> {
        r.headers().get(h).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn the_status_follows_the_code_and_invalid_client_is_challenged() {
        let r = Error::from(OAuthError::invalid_client("x")).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some("Basic realm=\"scopegate\"")
        );
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(&r, header::PRAGMA), Some("no-cache"));
        let r = Error::unavailable("busy").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&r, header::WWW_AUTHENTICATE), None);
        let r = Error::internal("disk on fire").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            Error::from(OAuthError::invalid_grant("x"))
                .into_response()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn an_internal_error_keeps_its_detail_out_of_the_answer() {
        let e = Error::internal("password=hunter2");
        assert_eq!(e.code(), "server_error");
        assert_eq!(e.description(), "internal error");
    }

    #[test]
    fn another_status_and_retry_after_when_asked() {
        let r = Error::unavailable("later")
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .retry_after(60)
            .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, header::RETRY_AFTER), Some("60"));
    }

    #[test]
    fn a_page_is_400_or_its_set_status_and_never_challenges() {
        let r = ErrorPage::from(OAuthError::invalid_client("x")).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(header(&r, header::WWW_AUTHENTICATE), None);
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
        let r = ErrorPage(
            Error::from(OAuthError::invalid_request("x")).with_status(StatusCode::FORBIDDEN),
        )
        .into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ErrorPage::from(Error::internal("x"))
                .into_response()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
}
