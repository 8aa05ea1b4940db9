//! Small HTTP helpers shared by both listeners: parameters, OAuth error and JSON responses.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scopegate_core::oauth::{OAuthError, OAuthErrorCode};
use serde_json::Value;
use std::collections::HashMap;

/// Form or query parameters; a repeated parameter is an error (RFC 6749 §3.1).
pub fn params(raw: &str) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    Ok(out)
}

/// A JSON response that no cache keeps (RFC 6749 §5.1).
pub fn json(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An OAuth error as an answer: JSON that no cache keeps; `invalid_client` is 401 with a
/// challenge (RFC 6749 §5.2). Wrap it in `(StatusCode, …)` for the few answers with another status.
#[derive(Debug)]
pub struct OAuthReply(pub OAuthError);

impl From<OAuthError> for OAuthReply {
    fn from(e: OAuthError) -> OAuthReply {
        OAuthReply(e)
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let status = match self.0.error {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut r = json(status, self.0.body());
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"scopegate\""),
            );
        }
        r
    }
}

/// [`OAuthReply`] for callers that hold a borrowed error (the internal listener).
pub fn error(e: &OAuthError) -> Response {
    OAuthReply(e.clone()).into_response()
}

/// An error shown to the user instead of redirecting (unverified client or redirect URI): 400
/// whatever the error, as JSON that no cache keeps.
#[derive(Debug)]
pub struct ErrorPage(pub OAuthError);

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        json(StatusCode::BAD_REQUEST, self.0.body())
    }
}

pub fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = status.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => ErrorPage(OAuthError::invalid_request(
            "redirect target is not a valid header value",
        ))
        .into_response(),
    }
}

/// `uri` with parameters appended to its query.
pub fn with_params(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request says its body is JSON: `application/json`, parameters (charset) allowed.
pub fn is_json(headers: &HeaderMap) -> bool {
    header_str(headers, header::CONTENT_TYPE)
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case("application/json"))
}
