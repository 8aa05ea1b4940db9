//! Fetching Client ID Metadata Documents: bounded in size and time, no redirects, no private
//! addresses unless allow-listed (checked on the literal and on every resolved address), cached
//! per `Cache-Control`.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use scopegate_core::config::CimdDoc;
use scopegate_core::oauth::cimd;
use scopegate_core::oauth::client::ClientMetadata;
use scopegate_core::oauth::OAuthError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Entries beyond this are dropped (expired ones first, then all), bounding memory.
const MAX_CACHED: usize = 10_000;

/// Resolves names with the system resolver and drops private addresses of hosts not allow-listed.
struct GuardedResolver {
    allow_private_hosts: Arc<Vec<String>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow_private_hosts);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| cimd::address_allowed(&host, a.ip(), &allow))
                .collect();
            if ok.is_empty() {
                return Err(
                    format!("{host} resolves only to private or loopback addresses").into(),
                );
            }
            let addrs: Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

pub struct Fetcher {
    policy: CimdDoc,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (ClientMetadata, u64)>>,
}

impl Fetcher {
    pub fn new(
        policy: &CimdDoc,
        timeout_ms: u64,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<Fetcher, String> {
        let resolver = GuardedResolver {
            allow_private_hosts: Arc::new(policy.allow_private_hosts.clone()),
        };
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(timeout_ms))
            .https_only(true)
            .dns_resolver(Arc::new(resolver));
        for c in extra_roots {
            b = b.add_root_certificate(c.clone());
        }
        Ok(Fetcher {
            policy: policy.clone(),
            http: b.build().map_err(|e| format!("CIMD client: {e}"))?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The metadata a `client_id` URL stands for, from the cache or fetched now.
    pub async fn get(&self, client_id: &str, now: u64) -> Result<ClientMetadata, OAuthError> {
        let url = cimd::check_url(client_id)?;
        if !cimd::host_allowed(&url.host, &self.policy.allowed_hosts) {
            return Err(OAuthError::invalid_client(format!(
                "client metadata documents from `{}` are not allowed",
                url.host
            )));
        }
        if let Some(ip) = url.ip {
            if !cimd::address_allowed(&url.host, ip, &self.policy.allow_private_hosts) {
                return Err(OAuthError::invalid_client(format!(
                    "client_id `{client_id}` points at a private or loopback address"
                )));
            }
        }
        if let Some((meta, until)) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(client_id).cloned())
        {
            if now < until {
                return Ok(meta);
            }
        }
        let (meta, ttl) = self.fetch(client_id).await?;
        if ttl > 0 {
            if let Ok(mut c) = self.cache.lock() {
                if c.len() >= MAX_CACHED {
                    c.retain(|_, (_, until)| *until > now);
                    if c.len() >= MAX_CACHED {
                        c.clear();
                    }
                }
                c.insert(client_id.to_string(), (meta.clone(), now + ttl));
            }
        }
        Ok(meta)
    }

    // A client's own host: the span is ours, its trace context is not sent there.
    #[tracing::instrument(name = "client metadata document", skip_all, fields(otel.kind = "client"))]
    async fn fetch(&self, url: &str) -> Result<(ClientMetadata, u64), OAuthError> {
        let fail = |why: String| {
            OAuthError::invalid_client(format!(
                "client metadata document could not be fetched: {why}"
            ))
        };
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status().as_u16())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > cimd::MAX_DOCUMENT_BYTES as u64)
        {
            return Err(OAuthError::invalid_client(format!(
                "client metadata document is larger than {} bytes",
                cimd::MAX_DOCUMENT_BYTES
            )));
        }
        let cache_control = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
            body.extend_from_slice(&chunk);
            if body.len() > cimd::MAX_DOCUMENT_BYTES {
                break; // validate_document names the size
            }
        }
        let meta = cimd::validate_document(url, &body)?;
        Ok((meta, cimd::cache_seconds(cache_control.as_deref())))
    }
}

/// reqwest hides the cause (e.g. our resolver's refusal) in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
