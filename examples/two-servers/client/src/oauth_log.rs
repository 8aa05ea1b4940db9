//! rmcp's OAuth HTTP traffic (metadata discovery, registration, token requests), printed and
//! counted. rmcp lets a client supply the HTTP client behind `AuthorizationManager`; this one
//! wraps rmcp's default client and only watches.

use crate::show;
use rmcp::transport::auth::default_oauth_http_client;
use rmcp::transport::{AuthError, OAuthHttpClient, OAuthHttpClientFuture, OAuthHttpRequest};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// One OAuth request rmcp made, as the walkthrough checks it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `grant_type` of a token request.
    pub grant_type: Option<String>,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    pub fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.all().iter().filter(|s| f(s)).count()
    }
}

pub struct Logging {
    inner: Box<dyn OAuthHttpClient>,
    log: Log,
}

impl Logging {
    pub fn client(log: Log) -> Result<Arc<dyn OAuthHttpClient>, AuthError> {
        Ok(Arc::new(Logging {
            inner: Box::new(default_oauth_http_client()?),
            log,
        }))
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl OAuthHttpClient for Logging {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(async move {
            let method = request.request.method().to_string();
            let url = request.request.uri().to_string();
            let path = request.request.uri().path().to_string();
            let body = request.request.body().clone();
            let grant_type = form_field(&body, "grant_type");
            let extra = match &grant_type {
                Some(g) => {
                    let mut parts = vec![format!("grant_type={g}")];
                    for k in ["scope", "resource"] {
                        if let Some(v) = form_field(&body, k) {
                            parts.push(format!("{k}={v}"));
                        }
                    }
                    parts.join(" ")
                }
                None if method == "POST" => serde_json::from_slice::<Value>(&body)
                    .map(|v| show::json(&v, 160))
                    .unwrap_or_default(),
                None => String::new(),
            };
            show::request(&method, &url, &extra);
            let result = self.inner.execute(request).await;
            match &result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
                    let summary = summarize(&path, &body);
                    show::response(status, &summary);
                    if let Ok(mut log) = self.log.0.lock() {
                        log.push(Seen {
                            method,
                            path,
                            status,
                            grant_type,
                            body,
                        });
                    }
                }
                Err(e) => show::response("error", &e.to_string()),
            }
            result
        })
    }
}

/// The part of a metadata or token answer worth a line.
fn summarize(path: &str, body: &Value) -> String {
    let pick = |keys: &[&str]| -> String {
        let mut o = serde_json::Map::new();
        for k in keys {
            if let Some(v) = body.get(*k) {
                o.insert((*k).to_string(), v.clone());
            }
        }
        show::json(&Value::Object(o), 400)
    };
    if path.contains("oauth-protected-resource") {
        pick(&["resource", "authorization_servers", "scopes_supported"])
    } else if path.contains("oauth-authorization-server") || path.contains("openid-configuration") {
        pick(&[
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "code_challenge_methods_supported",
            "authorization_response_iss_parameter_supported",
        ])
    } else if body.get("access_token").is_some() {
        pick(&[
            "token_type",
            "scope",
            "expires_in",
            "access_token",
            "refresh_token",
        ])
    } else if body.get("client_id").is_some() {
        pick(&["client_id", "client_name", "redirect_uris"])
    } else {
        show::json(body, 300)
    }
}
