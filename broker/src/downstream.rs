//! The broker as a confidential client of a gateway's downstream authorization server (`oauth2` crate).

use crate::clock::Clock;
use crate::secret::Secret;
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use scopegate_core::config::GatewayDoc;
use scopegate_core::jwks::KeySet;
use scopegate_core::jwt::{self, VerifyOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// `id_token` comes back next to the OAuth fields when `openid` was asked.
#[derive(Clone, Serialize, Deserialize)]
pub struct IdFields {
    #[serde(default)]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdFields {}

impl std::fmt::Debug for IdFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdFields { .. }")
    }
}

type Response = StandardTokenResponse<IdFields, BasicTokenType>;
/// A client with its authorization and token endpoints set (oauth2's typestate).
type ReadyClient = oauth2::Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;
type OClient = oauth2::Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// What discovery told us.
struct Discovered {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    /// RFC 7009, where the downstream advertises it: revoking our grant revokes theirs too.
    revocation_endpoint: Option<String>,
    jwks_uri: Option<String>,
    /// Replaced when an ID token names a key we have not seen: identity providers rotate keys.
    jwks: std::sync::RwLock<Option<std::sync::Arc<KeySet>>>,
}

/// Tokens from the downstream token endpoint (`Debug` prints only the expiry).
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    #[serde(skip)]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a grant keeps of its downstream tokens (sealed at rest): what a refresh or a revocation
/// spends.
#[derive(Serialize, Deserialize)]
pub struct Credential {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

/// Why a refresh failed.
#[derive(Debug)]
pub enum RefreshError {
    /// `invalid_grant`: the downstream grant is gone; the user must authorize again.
    Dead,
    /// Network, 5xx, unparseable answer: try again later.
    Unavailable(String),
}

pub struct Downstream {
    authorization_server: String,
    client_id: String,
    client_secret: Option<Secret>,
    redirect_uri: String,
    resource: Option<String>,
    extra_scopes: Vec<String>,
    subject_claim: String,
    http: reqwest::Client,
    meta: OnceCell<Discovered>,
    clock: Arc<dyn Clock>,
}

impl Downstream {
    /// `secret` is read by the caller from the env var or file the document names.
    pub fn new(
        g: &GatewayDoc,
        secret: Option<String>,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Option<Downstream> {
        let d = g.downstream.as_ref()?;
        Some(Downstream {
            authorization_server: d.authorization_server.clone(),
            client_id: d.client_id.clone(),
            client_secret: secret.map(Secret::new),
            redirect_uri: format!("{}{}", g.issuer, scopegate_core::oauth::metadata::CALLBACK),
            resource: d.resource.clone(),
            extra_scopes: d.extra_scopes.clone(),
            subject_claim: g.identity.subject_claim.clone(),
            http,
            meta: OnceCell::new(),
            clock,
        })
    }

    /// OIDC discovery, else RFC 8414; the document's `issuer` must be the configured one exactly.
    async fn meta(&self) -> Result<&Discovered, String> {
        self.meta.get_or_try_init(|| self.discover()).await
    }

    #[tracing::instrument(name = "downstream discovery", skip_all, fields(otel.kind = "client"))]
    async fn discover(&self) -> Result<Discovered, String> {
        let base = &self.authorization_server;
        let path = scopegate_core::oauth::metadata::issuer_path(base);
        let origin = base.strip_suffix(path).unwrap_or(base);
        let candidates = [
            format!("{base}/.well-known/openid-configuration"),
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
        ];
        let mut last = String::new();
        for url in candidates {
            match self.get_json(&url).await {
                Ok(doc) => {
                    let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
                    if s("issuer").as_deref() != Some(base.as_str()) {
                        return Err(format!("downstream metadata at {url} names another issuer"));
                    }
                    let jwks_uri = s("jwks_uri");
                    let jwks = match &jwks_uri {
                        Some(u) => self.fetch_keys(u).await.ok(),
                        None => None,
                    };
                    return Ok(Discovered {
                        issuer: base.clone(),
                        authorization_endpoint: s("authorization_endpoint")
                            .ok_or("downstream metadata has no authorization_endpoint")?,
                        token_endpoint: s("token_endpoint")
                            .ok_or("downstream metadata has no token_endpoint")?,
                        userinfo_endpoint: s("userinfo_endpoint"),
                        revocation_endpoint: s("revocation_endpoint"),
                        jwks_uri,
                        jwks: std::sync::RwLock::new(jwks.map(std::sync::Arc::new)),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(format!("downstream discovery failed: {last}"))
    }

    #[tracing::instrument(name = "downstream jwks", skip_all, fields(otel.kind = "client"))]
    async fn fetch_keys(&self, url: &str) -> Result<KeySet, String> {
        let v = self.get_json(url).await?;
        KeySet::from_json(v.to_string().as_bytes()).map_err(|e| format!("downstream JWKS: {e}"))
    }

    /// The downstream signing keys; `refetch` after an ID token named an unknown `kid`.
    async fn keys(&self, d: &Discovered, refetch: bool) -> Result<std::sync::Arc<KeySet>, String> {
        let current = d
            .jwks
            .read()
            .map_err(|_| "downstream JWKS lock poisoned")?
            .clone();
        if let (Some(keys), false) = (&current, refetch) {
            return Ok(keys.clone());
        }
        let url = d
            .jwks_uri
            .as_deref()
            .ok_or("downstream metadata has no jwks_uri")?;
        let fresh = std::sync::Arc::new(self.fetch_keys(url).await?);
        *d.jwks
            .write()
            .map_err(|_| "downstream JWKS lock poisoned")? = Some(fresh.clone());
        Ok(fresh)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(url)
            .headers(trace_headers())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", r.status()));
        }
        r.json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }

    fn client(&self, d: &Discovered) -> Result<ReadyClient, String> {
        let mut c = OClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(d.authorization_endpoint.clone()).map_err(|e| e.to_string())?,
            )
            .set_token_uri(TokenUrl::new(d.token_endpoint.clone()).map_err(|e| e.to_string())?)
            .set_redirect_uri(
                RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| e.to_string())?,
            );
        if let Some(s) = &self.client_secret {
            c = c.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        Ok(c)
    }

    /// Where to send the user: the server's subset plus the configured extra scopes, our own
    /// PKCE, `state` and `nonce`. Returns (url, state, pkce verifier, nonce).
    pub async fn authorize_url(
        &self,
        scopes: &[&str],
    ) -> Result<(String, String, String, String), String> {
        let d = self.meta().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = crate::crypto::token()?;
        let client = self.client(d)?;
        let mut req = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for s in scopes
            .iter()
            .copied()
            .chain(self.extra_scopes.iter().map(String::as_str))
        {
            req = req.add_scope(Scope::new(s.to_string()));
        }
        req = req.add_extra_param("nonce", nonce.clone());
        if let Some(r) = &self.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        let (url, state) = req.url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            verifier.secret().clone(),
            nonce,
        ))
    }

    /// RFC 9207: when the downstream sends `iss` on the callback it must be its issuer.
    pub async fn check_iss(&self, iss: Option<&str>) -> Result<(), String> {
        let d = self.meta().await?;
        match iss {
            Some(i) if i != d.issuer => Err("callback iss is not the downstream issuer".into()),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "downstream code exchange", skip_all, fields(otel.kind = "client"))]
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<Tokens, String> {
        let d = self.meta().await?;
        let client = self.client(d)?;
        let mut req = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()));
        if let Some(r) = &self.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        let resp = req
            .request_async(&Traced(&self.http))
            .await
            .map_err(describe)?;
        Ok(tokens(&resp, None, self.clock.now()))
    }

    #[tracing::instrument(
        name = "downstream refresh",
        skip_all,
        fields(otel.kind = "client", oauth.error = tracing::field::Empty)
    )]
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, RefreshError> {
        let d = self.meta().await.map_err(RefreshError::Unavailable)?;
        let client = self.client(d).map_err(RefreshError::Unavailable)?;
        let token = RefreshToken::new(refresh_token.to_string());
        match client
            .exchange_refresh_token(&token)
            .request_async(&Traced(&self.http))
            .await
        {
            Ok(resp) => Ok(tokens(&resp, Some(refresh_token), self.clock.now())),
            Err(RequestTokenError::ServerResponse(e))
                if *e.error() == BasicErrorResponseType::InvalidGrant =>
            {
                tracing::Span::current().record("oauth.error", "invalid_grant");
                Err(RefreshError::Dead)
            }
            Err(e) => Err(RefreshError::Unavailable(describe(e))),
        }
    }

    /// Revokes the downstream grant behind `t` (RFC 7009): its refresh token, else its access
    /// token. `Ok(false)` when the downstream advertises no revocation endpoint.
    #[tracing::instrument(name = "downstream revocation", skip_all, fields(otel.kind = "client"))]
    pub async fn revoke(&self, t: &Credential) -> Result<bool, String> {
        let d = self.meta().await?;
        let Some(url) = &d.revocation_endpoint else {
            return Ok(false);
        };
        // Directly rather than through `oauth2`, which insists on https even where the document
        // allows plain http (a loopback downstream in tests and labs).
        let (token, hint) = match &t.refresh_token {
            Some(r) => (r.as_str(), "refresh_token"),
            None => (t.access_token.as_str(), "access_token"),
        };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut req = self.http.post(url).headers(trace_headers());
        match &self.client_secret {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic.
            Some(secret) => {
                req = req.basic_auth(
                    form_encode(&self.client_id),
                    Some(form_encode(secret.expose())),
                )
            }
            None => form.push(("client_id", self.client_id.as_str())),
        }
        let req = req.form(&form);
        let r = req
            .send()
            .await
            .map_err(|e| format!("downstream revocation endpoint unreachable: {e}"))?;
        if !r.status().is_success() {
            return Err(format!(
                "downstream revocation endpoint: HTTP {}",
                r.status()
            ));
        }
        Ok(true)
    }

    /// The gateway subject, by the identity rule: a claim of the (verified) ID token, else of userinfo.
    pub async fn subject(&self, t: &Tokens, nonce: &str) -> Result<String, String> {
        let d = self.meta().await?;
        if let Some(id_token) = &t.id_token {
            let opts = VerifyOptions::new(&d.issuer, self.clock.now());
            let keys = self.keys(d, false).await?;
            let c = match jwt::verify(id_token, &keys, &opts) {
                Err(jwt::TokenError::UnknownKid(_)) => {
                    let keys = self.keys(d, true).await?;
                    jwt::verify(id_token, &keys, &opts)
                }
                other => other,
            }
            .map_err(|e| format!("ID token: {e}"))?;
            scopegate_core::oauth::id_token::check_audience(
                &c.aud,
                c.extra.get("azp").and_then(Value::as_str),
                &self.client_id,
            )?;
            if c.extra.get("nonce").and_then(Value::as_str) != Some(nonce) {
                return Err("ID token nonce does not match".into());
            }
            let claim = if self.subject_claim == "sub" {
                c.sub.clone()
            } else {
                c.extra
                    .get(&self.subject_claim)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            if let Some(s) = claim.filter(|s| !s.is_empty()) {
                return Ok(s);
            }
        }
        let url = d
            .userinfo_endpoint
            .as_ref()
            .ok_or_else(|| format!("no `{}` claim and no userinfo endpoint", self.subject_claim))?;
        let v = self.userinfo(url, &t.access_token).await?;
        v.get(&self.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("userinfo has no `{}` claim", self.subject_claim))
    }
}

impl Downstream {
    #[tracing::instrument(name = "downstream userinfo", skip_all, fields(otel.kind = "client"))]
    async fn userinfo(&self, url: &str, access_token: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(url)
            .headers(trace_headers())
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| format!("userinfo: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("userinfo: HTTP {}", r.status()));
        }
        r.json().await.map_err(|e| format!("userinfo: {e}"))
    }
}

/// The HTTP client for token endpoint calls through `oauth2`, carrying the current trace context.
struct Traced<'a>(&'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for Traced<'_> {
    type Error = <reqwest::Client as AsyncHttpClient<'c>>::Error;
    type Future = <reqwest::Client as AsyncHttpClient<'c>>::Future;

    fn call(&'c self, mut request: oauth2::HttpRequest) -> Self::Future {
        crate::telemetry::inject(request.headers_mut());
        self.0.call(request)
    }
}

/// The current trace context (W3C `traceparent`), for a downstream request.
fn trace_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    crate::telemetry::inject(&mut h);
    h
}

fn tokens(resp: &Response, previous_refresh: Option<&str>, now: u64) -> Tokens {
    let ttl = resp.expires_in().map(|d| d.as_secs()).unwrap_or(300);
    Tokens {
        access_token: resp.access_token().secret().clone(),
        // A server that does not rotate keeps the old refresh token valid.
        refresh_token: resp
            .refresh_token()
            .map(|r| r.secret().clone())
            .or(previous_refresh.map(str::to_string)),
        expires_at: now + ttl,
        id_token: resp.extra_fields().id_token.clone(),
    }
}

/// An error without the response body (which could echo a token).
fn describe<E: std::error::Error>(e: RequestTokenError<E, BasicErrorResponse>) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("downstream token endpoint: {}", r.error()),
        RequestTokenError::Request(e) => format!("downstream token endpoint unreachable: {e}"),
        RequestTokenError::Parse(e, _) => format!("downstream token response unparseable: {e}"),
        RequestTokenError::Other(s) => format!("downstream token endpoint: {s}"),
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The HTTP client for downstream calls: no redirects (SSRF), bounded time.
pub fn http_client(extra_roots: &[reqwest::Certificate]) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    for c in extra_roots {
        b = b.add_root_certificate(c.clone());
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}
