//! In-memory record of every HTTP request the server received, exposed at `/_seen` for tests.
//!
//! Tests call `/_seen` directly (not through Envoy) to assert what the upstream actually got:
//! that a denied request never arrived, or that the client's own token was stripped. The record
//! holds raw header values, tokens included, on purpose: it is the evidence those tests read. It
//! is never printed or logged, and it lives only in this process's memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Serialize;

/// Path of the inspection endpoint; requests to it are not recorded themselves.
pub const SEEN_PATH: &str = "/_seen";

/// One request as it reached this server.
#[derive(Clone, Debug, Serialize)]
pub struct SeenRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path and query exactly as received, e.g. `/support-assistant/mcp`.
    pub path: String,
    /// Every header by lower-case name; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The request body (a JSON-RPC message), set only once it has fully arrived: a request
    /// whose stream was reset before its body completed (a refusal after the headers went
    /// upstream) keeps `null` here, and never reaches the MCP handler.
    pub body: Option<String>,
    /// Identifies the entry while its body is still arriving.
    #[serde(skip)]
    seq: u64,
}

/// Bodies larger than this are refused rather than recorded (MCP messages are small).
const MAX_SEEN_BODY: usize = 4 * 1024 * 1024;

/// Shared, append-only (until cleared) list of requests in arrival order.
#[derive(Clone, Default)]
pub struct SeenLog {
    inner: Arc<Mutex<Vec<SeenRequest>>>,
    next_seq: Arc<std::sync::atomic::AtomicU64>,
}

impl SeenLog {
    fn push(&self, mut request: SeenRequest) -> u64 {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        request.seq = seq;
        // A panic elsewhere while holding the lock cannot leave a Vec half-written in a way
        // that matters here, so a poisoned lock is simply taken over.
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        seq
    }

    fn set_body(&self, seq: u64, body: String) {
        let mut all = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = all.iter_mut().rev().find(|r| r.seq == seq) {
            r.body = Some(body);
        }
    }

    fn snapshot(&self) -> Vec<SeenRequest> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Axum middleware: records the request line and headers as they arrive, then the body once
/// it is complete, then passes the request on. Responses are untouched, so SSE streams flow.
pub async fn record(State(log): State<SeenLog>, request: Request, next: Next) -> Response {
    if request.uri().path() == SEEN_PATH {
        return next.run(request).await;
    }
    {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in request.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let path = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |pq| pq.as_str().to_owned(),
        );
        let seq = log.push(SeenRequest {
            method: request.method().as_str().to_owned(),
            path,
            headers,
            body: None,
            seq: 0,
        });
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_SEEN_BODY).await {
            Ok(b) => b,
            // Reset or too large: the message never arrived, and the handler never sees it.
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        log.set_body(seq, String::from_utf8_lossy(&bytes).into_owned());
        next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
            .await
    }
}

/// `GET /_seen`: every recorded request, oldest first, as a JSON array.
pub async fn list(State(log): State<SeenLog>) -> Json<Vec<SeenRequest>> {
    Json(log.snapshot())
}

/// `DELETE /_seen`: forget everything recorded so far.
pub async fn clear(State(log): State<SeenLog>) -> impl IntoResponse {
    log.clear();
    StatusCode::NO_CONTENT
}
