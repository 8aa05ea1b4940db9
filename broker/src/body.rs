//! Request bodies read whole and bounded before any handler runs; a body over the bound is drained
//! (up to a second, larger bound) before the 413 goes out.
//!
//! Answering before the body is read and then closing makes the kernel send a TCP reset, which
//! can destroy the answer in flight: a proxy in front (Envoy) then reports a 503 "reset before
//! headers" instead of our 413. Draining first means the proxy always sees the 413.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use scopegate_core::oauth::OAuthError;
use std::time::Duration;

/// Largest body any endpoint reads (registration documents and forms are far smaller).
pub const MAX_BODY: usize = 64 * 1024;
/// Past this much (or this long), an oversized body is no longer drained: the connection closes.
const MAX_DRAIN: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Middleware: buffers the body up to [`MAX_BODY`], or drains it and answers 413.
pub async fn bounded(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        drain(body, 0).await;
        return too_large();
    }
    match read(body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Read::TooLarge(rest, seen)) => {
            drain(rest, seen).await;
            too_large()
        }
        Err(Read::Broken) => {
            (StatusCode::BAD_REQUEST, "request body could not be read").into_response()
        }
    }
}

enum Read {
    TooLarge(Body, usize),
    Broken,
}

async fn read(mut body: Body) -> Result<Bytes, Read> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Read::Broken);
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_BODY {
                return Err(Read::TooLarge(body, buf.len()));
            }
        }
    }
    Ok(Bytes::from(buf))
}

async fn drain(mut body: Body, mut seen: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= MAX_DRAIN {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

fn too_large() -> Response {
    let e =
        OAuthError::invalid_request(format!("the request body is larger than {MAX_BODY} bytes"));
    let mut r = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(e.body())).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
