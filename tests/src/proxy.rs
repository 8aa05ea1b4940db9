//! An HTTP proxy in front of the downstream authorization server, so a test can hold the broker's
//! refresh request (to kill the broker mid-refresh) or restart the server behind a fixed issuer.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

struct Shared {
    target: AtomicU16,
    hold_refresh: AtomicBool,
    held: Mutex<Option<mpsc::Sender<()>>>,
    refreshes: AtomicUsize,
    /// The next refresh's answer waits for the receiver (the downstream has already rotated).
    pause_answer: Mutex<Option<(mpsc::Sender<()>, tokio::sync::oneshot::Receiver<()>)>>,
}

#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    pub url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target: AtomicU16::new(0),
            hold_refresh: AtomicBool::new(false),
            held: Mutex::new(None),
            refreshes: AtomicUsize::new(0),
            pause_answer: Mutex::new(None),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let s = Arc::clone(&s);
                        let http = http.clone();
                        async move { forward(s, http, method, uri, headers, body).await }
                    },
                );
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Proxy {
            port,
            url: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    pub fn set_target(&self, port: u16) {
        self.shared.target.store(port, Ordering::SeqCst);
    }

    /// From now on, the next refresh-token request is held (never forwarded) and `rx` gets a
    /// message when it arrives.
    pub fn hold_next_refresh(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        *self.shared.held.lock().unwrap() = Some(tx);
        self.shared.hold_refresh.store(true, Ordering::SeqCst);
        rx
    }

    /// The next refresh is forwarded, but its answer reaches the broker only when the returned
    /// sender fires (or is dropped); the receiver gets a message once the downstream has answered.
    pub fn pause_next_refresh_answer(
        &self,
    ) -> (mpsc::Receiver<()>, tokio::sync::oneshot::Sender<()>) {
        let (answered_tx, answered_rx) = mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        *self.shared.pause_answer.lock().unwrap() = Some((answered_tx, release_rx));
        (answered_rx, release_tx)
    }

    /// Refresh-token requests forwarded so far.
    pub fn refreshes(&self) -> usize {
        self.shared.refreshes.load(Ordering::SeqCst)
    }
}

async fn forward(
    s: Arc<Shared>,
    http: reqwest::Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_refresh = uri.path() == "/token"
        && String::from_utf8_lossy(&body).contains("grant_type=refresh_token");
    if is_refresh && s.hold_refresh.swap(false, Ordering::SeqCst) {
        if let Some(tx) = s.held.lock().unwrap().take() {
            let _ = tx.send(());
        }
        // Never answer: the caller is killed while waiting; the server never sees the request.
        std::future::pending::<()>().await;
    }
    if is_refresh {
        s.refreshes.fetch_add(1, Ordering::SeqCst);
    }
    let url = format!(
        "http://127.0.0.1:{}{}",
        s.target.load(Ordering::SeqCst),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = http.request(method, url).body(body);
    for (k, v) in headers.iter() {
        if k != "content-length" && k != "connection" && k != "transfer-encoding" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out_headers = HeaderMap::new();
            for (k, v) in r.headers().iter() {
                if k != "content-length" && k != "connection" && k != "transfer-encoding" {
                    out_headers.append(k, v.clone());
                }
            }
            let body = r.bytes().await.unwrap_or_default();
            let pause = if is_refresh {
                s.pause_answer.lock().unwrap().take()
            } else {
                None
            };
            if let Some((answered, release)) = pause {
                let _ = answered.send(());
                let _ = release.await;
            }
            (status, out_headers, body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
