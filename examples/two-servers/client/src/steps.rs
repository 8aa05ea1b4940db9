//! The walkthrough's moves (401, authorize and connect, call, list, wait), each with its check.

use crate::browser::Browser;
use crate::oauth_log::{Log, Logging, Seen};
use crate::show;
use crate::summary::Summary;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::auth::{AuthClient, AuthorizationCallback, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One MCP server connection: its OAuth client (rmcp's manager, shared with the transport) and
/// its MCP session.
pub(crate) struct Conn {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    pub(crate) log: Log,
    pub(crate) auth: AuthClient<reqwest::Client>,
    /// The MCP session; `None` once closed.
    pub(crate) service: Option<RunningService<RoleClient, ()>>,
    pub(crate) client_id: String,
    /// When the current access token was received, and its lifetime.
    pub(crate) token_at: Instant,
    pub(crate) expires_in: u64,
    pub(crate) grant_used: bool,
}

impl Conn {
    pub(crate) async fn close(&mut self) {
        if let Some(service) = self.service.take() {
            show::note(&format!(
                "closing the {} MCP session (DELETE {})",
                self.name, self.url
            ));
            let _ = service.cancel().await;
        }
    }
}

pub(crate) struct Walk {
    pub(crate) s: Summary,
    pub(crate) browser: Browser,
    pub(crate) redirect_uri: String,
    /// Holds the redirect URI's port for the client's lifetime (see browser.rs).
    pub(crate) _loopback: std::net::TcpListener,
}

pub(crate) fn scope_set(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_string).collect()
}

pub(crate) fn challenge_param(h: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = h.find(&marker)? + marker.len();
    h[start..].split('"').next().map(str::to_string)
}

/// The last token answer rmcp received on this connection.
pub(crate) fn last_token(log: &Log) -> Option<Seen> {
    log.all()
        .into_iter()
        .rev()
        .find(|s| s.grant_type.is_some() && s.status == 200)
}

impl Walk {
    pub(crate) fn check(&mut self, what: &str, ok: bool, detail: &str) -> bool {
        if ok {
            println!("   \x1b[32m✓\x1b[0m {what}");
            self.s.passed.push(what.to_string());
        } else {
            println!("   \x1b[31m✗ {what}\x1b[0m: {detail}");
            self.s
                .failed
                .push(format!("{what}: {}", show::clip(detail, 300)));
        }
        ok
    }

    pub(crate) fn skip(&mut self, what: &str, why: &str) {
        println!("   - skipped: {what} ({why})");
        self.s.skipped.push(what.to_string());
    }

    /// Connects with no token; returns the `WWW-Authenticate` challenge of the 401.
    pub(crate) async fn meet_401(&mut self, name: &str, url: &str, scopes: &str) -> Option<String> {
        show::request("POST", url, "MCP handshake, no token");
        match ().serve(StreamableHttpClientTransport::from_uri(url)).await {
            Ok(service) => {
                let _ = service.cancel().await;
                self.check(
                    &format!("{name}: 401 without a token"),
                    false,
                    "it answered",
                );
                None
            }
            Err(e) => {
                let Some(h) = e.auth_challenge().map(str::to_string) else {
                    self.check(
                        &format!("{name}: 401 without a token"),
                        false,
                        &e.to_string(),
                    );
                    return None;
                };
                show::response(401, &format!("WWW-Authenticate: {h}"));
                let ok = challenge_param(&h, "resource_metadata").is_some()
                    && challenge_param(&h, "scope").as_deref() == Some(scopes);
                self.check(
                    &format!("{name}: 401 names its metadata and its own scopes ({scopes})"),
                    ok,
                    &h,
                );
                Some(h)
            }
        }
    }

    /// rmcp's reactive OAuth flow from a challenge: discovery, registration, authorization URL,
    /// (browser), code exchange. Then an MCP session over rmcp's authorized transport.
    pub(crate) async fn authorize_and_connect(
        &mut self,
        name: &'static str,
        url: &str,
        challenge: &str,
        scopes: Option<&[&str]>,
    ) -> Result<Conn, String> {
        let log = Log::default();
        let http = Logging::client(log.clone()).map_err(|e| e.to_string())?;
        let mut state = OAuthState::new_with_oauth_http_client(url, http)
            .await
            .map_err(|e| format!("oauth state: {e}"))?;
        let mut request = AuthorizationRequest::new(self.redirect_uri.clone())
            .with_challenge(challenge)
            .with_client_name(format!("scopegate walkthrough ({name})"));
        if let Some(s) = scopes {
            request = request.with_scopes(s.iter().copied());
        }
        show::note("discovery from the challenge, then registration (rmcp):");
        state
            .start_authorization(request)
            .await
            .map_err(|e| format!("start authorization: {e}"))?;
        let auth_url = state
            .get_authorization_url()
            .await
            .map_err(|e| format!("authorization URL: {e}"))?;
        self.show_auth_url(&auth_url);
        let callback = self
            .browser
            .authorize(&auth_url, &self.redirect_uri)
            .await?;
        self.show_callback(&callback);
        show::note("code exchange (rmcp, with the PKCE verifier and `resource`):");
        state
            .handle_callback_url(&callback)
            .await
            .map_err(|e| format!("code exchange: {e}"))?;
        let manager = state
            .into_authorization_manager()
            .ok_or("rmcp did not reach the authorized state")?;
        let (client_id, _) = manager
            .get_credentials()
            .await
            .map_err(|e| format!("credentials: {e}"))?;
        self.s.authorizations += 1;
        let expires_in = last_token(&log)
            .and_then(|t| t.body["expires_in"].as_u64())
            .unwrap_or(0);
        let auth = AuthClient::new(reqwest::Client::new(), manager);
        let transport = StreamableHttpClientTransport::with_client(
            auth.clone(),
            StreamableHttpClientTransportConfig::with_uri(url.to_string()),
        );
        show::request(
            "POST",
            url,
            "MCP handshake with the access token (rmcp AuthClient)",
        );
        let service =
            ().serve(transport)
                .await
                .map_err(|e| match e.auth_challenge() {
                    Some(h) => format!("handshake refused: {h}"),
                    None => format!("handshake: {e}"),
                })?;
        let info = service
            .peer_info()
            .and_then(|i| {
                i.server_info
                    .as_ref()
                    .map(|s| format!("{} {}", s.name, s.version))
            })
            .unwrap_or_default();
        show::response(200, &format!("initialized: {info}"));
        Ok(Conn {
            name,
            url: url.to_string(),
            log,
            auth,
            service: Some(service),
            client_id,
            token_at: Instant::now(),
            expires_in,
            grant_used: false,
        })
    }

    pub(crate) fn show_auth_url(&self, auth_url: &str) {
        let q: Vec<(String, String)> = url::Url::parse(auth_url)
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "-".into())
        };
        show::note(&format!(
            "authorization URL: client_id={} scope=\"{}\" resource={} code_challenge_method={} redirect_uri={}",
            get("client_id"),
            get("scope"),
            get("resource"),
            get("code_challenge_method"),
            get("redirect_uri")
        ));
    }

    pub(crate) fn show_callback(&self, callback: &str) {
        match AuthorizationCallback::from_redirect_url(callback) {
            Ok(c) => show::note(&format!(
                "redirected back: code={} state={} iss={}",
                show::token(&c.code),
                show::token(&c.csrf_token),
                c.issuer.as_deref().unwrap_or("(none)")
            )),
            Err(e) => show::note(&format!("redirected back to {callback}: {e}")),
        }
    }

    /// Calls a tool on the connection's session; returns what the server reported, or the
    /// challenge of a refusal.
    pub(crate) async fn call(
        &mut self,
        c: &mut Conn,
        tool: &str,
        args: Value,
    ) -> Result<Value, String> {
        let token = c.auth.get_access_token().await.unwrap_or_default();
        show::request(
            "POST",
            &c.url,
            &format!("tools/call {tool} {args}  (Bearer {})", show::token(&token)),
        );
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Value::Object(m) = args {
            params = params.with_arguments(m);
        }
        self.s.tool_calls += 1;
        let Some(service) = c.service.as_ref() else {
            return Err("the MCP session is closed".into());
        };
        match service.call_tool(params).await {
            Ok(r) => {
                let seen = r
                    .structured_content
                    .clone()
                    .or_else(|| {
                        r.content
                            .first()
                            .and_then(|ct| ct.as_text())
                            .and_then(|t| serde_json::from_str(&t.text).ok())
                    })
                    .unwrap_or(Value::Null);
                show::response(200, &describe_seen(&seen));
                c.grant_used = true;
                Ok(seen)
            }
            Err(e) => {
                let h = e.auth_challenge().map(str::to_string);
                match h {
                    Some(h) => {
                        let status = if h.contains("insufficient_scope") {
                            403
                        } else {
                            401
                        };
                        show::response(status, &format!("WWW-Authenticate: {h}"));
                        Err(h)
                    }
                    None => {
                        show::response("error", &e.to_string());
                        Err(e.to_string())
                    }
                }
            }
        }
    }

    /// Lists the tools the connection's session may see (scopegate filters the listing).
    pub(crate) async fn list_tools(&mut self, c: &mut Conn) -> Result<Vec<String>, String> {
        show::request("POST", &c.url, "tools/list");
        let Some(service) = c.service.as_ref() else {
            return Err("the MCP session is closed".into());
        };
        match service.list_all_tools().await {
            Ok(tools) => {
                let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
                show::response(200, &format!("tools: {}", names.join(", ")));
                Ok(names)
            }
            Err(e) => {
                show::response("error", &e.to_string());
                Err(e.to_string())
            }
        }
    }

    /// Waits for `what` if it is at most `max_wait` seconds away.
    pub(crate) async fn wait(&mut self, what: &str, secs: u64, max_wait: u64) -> bool {
        if secs > max_wait {
            self.skip(what, &format!("{secs} s away; --max-wait is {max_wait}"));
            return false;
        }
        show::note(&format!("… waiting {secs} s for {what}"));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        true
    }
}

/// What the MCP server reported: the credential that reached it and scopegate's headers.
pub(crate) fn describe_seen(seen: &Value) -> String {
    let auth = seen["authorization"].as_str().unwrap_or("");
    let cred = match auth.strip_prefix("Bearer ").and_then(show::jwt_claims) {
        Some(c) => format!(
            "downstream credential iss={} aud={} sub={} exp={}",
            c["iss"].as_str().unwrap_or("-"),
            c["aud"],
            c["sub"].as_str().unwrap_or("-"),
            c["exp"]
        ),
        None if auth.is_empty() => "no credential".to_string(),
        None => format!("credential {}", show::token(auth)),
    };
    format!(
        "{} answered {}: {cred}; x-scopegate-scopes=\"{}\" x-scopegate-subject={}",
        seen["server"].as_str().unwrap_or("?"),
        seen["tool"].as_str().unwrap_or("?"),
        seen["scopegate_scopes"].as_str().unwrap_or("-"),
        seen["scopegate_subject"].as_str().unwrap_or("-"),
    )
}

pub(crate) fn downstream_of(seen: &Value) -> Option<(String, u64)> {
    let auth = seen["authorization"].as_str()?.strip_prefix("Bearer ")?;
    let exp = show::jwt_claims(auth)?["exp"].as_u64()?;
    Some((auth.to_string(), exp))
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
