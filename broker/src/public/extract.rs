//! The public listener's extractors: the gateway a request is for, and OAuth parameters decoded
//! into structs with every repeated parameter refused.

use crate::app::{App, GatewayRt};
use crate::error::Error;
use crate::http::{header_str, params};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::ops::Deref;
use std::sync::Arc;

/// The gateways sharing one issuer path, set on their routes by the router.
#[derive(Clone)]
pub struct GatewayGroup(pub Arc<Vec<usize>>);

/// The gateway a request is for: the only one under the request's issuer path, else the one whose
/// issuer names the request's `Host`. No gateway: 404.
pub struct Gateway {
    app: Arc<App>,
    index: usize,
}

impl Deref for Gateway {
    type Target = GatewayRt;
    fn deref(&self) -> &GatewayRt {
        // The index was checked against this very `App` when the extractor ran.
        &self.app.gateways[self.index]
    }
}

impl FromRequestParts<Arc<App>> for Gateway {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, StatusCode> {
        let ids = parts
            .extensions
            .get::<GatewayGroup>()
            .ok_or(StatusCode::NOT_FOUND)?;
        let index = pick(app, &ids.0, &parts.headers).ok_or(StatusCode::NOT_FOUND)?;
        let Some(gw) = app.gateways.get(index) else {
            return Err(StatusCode::NOT_FOUND);
        };
        crate::telemetry::note("gateway", &gw.name);
        Ok(Gateway {
            app: Arc::clone(app),
            index,
        })
    }
}

/// Which gateway of `ids` a request is for: the only one, else by `Host` against the issuer.
fn pick(app: &App, ids: &[usize], headers: &axum::http::HeaderMap) -> Option<usize> {
    if let [only] = ids {
        return Some(*only);
    }
    let host = header_str(headers, header::HOST)?;
    ids.iter().copied().find(|i| {
        app.gateways.get(*i).is_some_and(|g| {
            g.issuer
                .split_once("://")
                .map(|(_, r)| r.split('/').next() == Some(host))
                .unwrap_or(false)
        })
    })
}

/// `application/x-www-form-urlencoded` text as `T`; a repeated parameter is `invalid_request`
/// (RFC 6749 §3.1). axum's `Form`/`Query` keep one of the repeats silently, hence this.
fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, Error> {
    let map = params(raw)?;
    serde_json::to_value(map)
        .and_then(serde_json::from_value)
        .map_err(|e| scopegate_core::oauth::OAuthError::invalid_request(e.to_string()).into())
}

/// The query string as `T` (every field a parameter, all optional: the handler names what is
/// missing in its own words).
pub struct OAuthQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for OAuthQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        decode(parts.uri.query().unwrap_or("")).map(OAuthQuery)
    }
}

/// The form body as `T`. The body was read (bounded, or drained and refused) by
/// [`crate::body::bounded`] before any handler runs; the content type is not checked, as before.
pub struct OAuthForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OAuthForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        decode(&String::from_utf8_lossy(&body))
            .map(OAuthForm)
            .map_err(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Q {
        a: Option<String>,
        b: Option<String>,
    }

    #[test]
    fn parameters_decode_into_the_struct() {
        let q: Q = decode("a=1&c=3").unwrap();
        assert_eq!(q.a.as_deref(), Some("1"));
        assert_eq!(q.b, None);
        let q: Q = decode("b=x%20y+z").unwrap();
        assert_eq!(q.b.as_deref(), Some("x y z"));
    }

    #[test]
    fn a_repeated_parameter_is_refused_even_one_the_struct_ignores() {
        for raw in ["a=1&a=1", "a=1&b=2&a=3", "c=1&c=2"] {
            let e = decode::<Q>(raw).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{raw}");
            assert!(e.description().contains("is repeated"), "{raw}: {e}");
        }
    }
}
