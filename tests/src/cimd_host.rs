//! A local https host for Client ID Metadata Documents, with a self-signed certificate for
//! `localhost` and `127.0.0.1` that the broker is told to trust (`broker.tls_ca_file`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

struct Docs {
    bodies: Mutex<HashMap<String, String>>,
    fetches: AtomicUsize,
}

#[derive(Clone)]
pub struct CimdHost {
    pub port: u16,
    /// PEM of the certificate (to write into the broker's `tls_ca_file`).
    pub cert_pem: String,
    docs: Arc<Docs>,
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((s, a)) = self.tcp.accept().await {
                if let Ok(tls) = self.acceptor.accept(s).await {
                    return (tls, a);
                }
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl CimdHost {
    pub fn start() -> CimdHost {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let cert_pem = cert.cert.pem();
        let chain = vec![cert.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_l.set_nonblocking(true).unwrap();
        let port = std_l.local_addr().unwrap().port();
        let docs = Arc::new(Docs {
            bodies: Mutex::new(HashMap::new()),
            fetches: AtomicUsize::new(0),
        });
        let d = Arc::clone(&docs);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/{name}",
                    axum::routing::get(move |Path(name): Path<String>| {
                        let d = Arc::clone(&d);
                        async move {
                            d.fetches.fetch_add(1, Ordering::SeqCst);
                            match d.bodies.lock().unwrap().get(&name) {
                                Some(b) => (
                                    StatusCode::OK,
                                    [
                                        (header::CONTENT_TYPE, "application/json"),
                                        (header::CACHE_CONTROL, "max-age=300"),
                                    ],
                                    b.clone(),
                                )
                                    .into_response(),
                                None => StatusCode::NOT_FOUND.into_response(),
                            }
                        }
                    }),
                );
                let tcp = tokio::net::TcpListener::from_std(std_l).unwrap();
                axum::serve(TlsListener { tcp, acceptor }, app)
                    .await
                    .unwrap();
            });
        });
        CimdHost {
            port,
            cert_pem,
            docs,
        }
    }

    /// `https://localhost:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("https://localhost:{}/{name}", self.port)
    }

    pub fn put(&self, name: &str, body: &Value) {
        self.put_raw(name, body.to_string());
    }

    pub fn put_raw(&self, name: &str, body: String) {
        self.docs
            .bodies
            .lock()
            .unwrap()
            .insert(name.to_string(), body);
    }

    pub fn fetches(&self) -> usize {
        self.docs.fetches.load(Ordering::SeqCst)
    }
}
