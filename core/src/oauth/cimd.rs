//! Client ID Metadata Documents: which `client_id` URLs may be fetched, and what a document must say.
//!
//! The fetch itself is the broker's; these rules decide before and after it. The URL is chosen by
//! whoever starts an authorization, so every limit here is a server-side request forgery defence.

use super::client::{metadata_from, ClientMetadata, MAX_URI_LEN};
use super::OAuthError;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest document fetched (the draft suggests 5 KB); bigger bodies are cut off and refused.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Cache lifetime when the response says nothing, and the most it may ask for.
pub const DEFAULT_CACHE_S: u64 = 300;
pub const MAX_CACHE_S: u64 = 24 * 3600;

/// Whether a `client_id` names a metadata document rather than a registered client.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// A `client_id` URL split into the parts the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentUrl {
    /// Lower-case host; IPv6 literals keep their brackets.
    pub host: String,
    /// Set when the host is an IP literal, so no resolver is consulted.
    pub ip: Option<IpAddr>,
}

/// Checks the shape the draft requires: `https`, a host, a path other than `/`, no fragment, no
/// user info, no dot segments.
pub fn check_url(client_id: &str) -> Result<DocumentUrl, OAuthError> {
    let bad = |why: &str| {
        OAuthError::invalid_client(format!(
            "client_id `{client_id}` is not a valid metadata document URL: {why}"
        ))
    };
    if client_id.len() > MAX_URI_LEN {
        return Err(bad("too long"));
    }
    let rest = client_id
        .strip_prefix("https://")
        .ok_or_else(|| bad("it must use https"))?;
    if client_id.contains('#') {
        return Err(bad("it must not have a fragment"));
    }
    if client_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("it has whitespace"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad("it must not carry user info"));
    }
    let path_only = path.split('?').next().unwrap_or("");
    if path_only.is_empty() || path_only == "/" {
        return Err(bad("it must have a path"));
    }
    if path_only.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("it must not have dot segments"));
    }
    let host = crate::url::authority_host(authority);
    if host.is_empty() || host == "[]" {
        return Err(bad("it has no host"));
    }
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    Ok(DocumentUrl { host, ip })
}

/// Whether the gateway's `allowed_hosts` admit `host`: `*`, the exact host, or `*.suffix`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        a == "*"
            || a.eq_ignore_ascii_case(host)
            || a.strip_prefix("*.").is_some_and(|suffix| {
                host.len() > suffix.len() + 1
                    && host
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
            })
    })
}

/// Addresses a fetch must never reach unless the host is allow-listed: loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast, documentation and benchmark ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
}

/// Whether an address of `host` may be connected to.
pub fn address_allowed(host: &str, ip: IpAddr, allow_private_hosts: &[String]) -> bool {
    !is_private(ip)
        || allow_private_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// Validates a fetched document: JSON object, `client_id` equal to the URL it came from,
/// a `client_name`, `redirect_uris`, no shared secret (the document is public).
pub fn validate_document(url: &str, body: &[u8]) -> Result<ClientMetadata, OAuthError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(OAuthError::invalid_client(format!(
            "client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| OAuthError::invalid_client("client metadata document is not JSON"))?;
    let obj = doc.as_object().ok_or_else(|| {
        OAuthError::invalid_client("client metadata document is not a JSON object")
    })?;
    match obj.get("client_id").and_then(Value::as_str) {
        Some(id) if id == url => {}
        _ => {
            return Err(OAuthError::invalid_client(
                "client metadata document's client_id does not equal its URL",
            ))
        }
    }
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(OAuthError::invalid_client(
            "client metadata document must not carry a client_secret",
        ));
    }
    if !obj.get("client_name").is_some_and(Value::is_string) {
        return Err(OAuthError::invalid_client(
            "client metadata document has no client_name",
        ));
    }
    let redirect_uris: Vec<String> = match obj.get("redirect_uris").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => {
            return Err(OAuthError::invalid_client(
                "client metadata document has no redirect_uris",
            ))
        }
    };
    let meta = metadata_from(obj, redirect_uris, "none").map_err(|e| {
        OAuthError::invalid_client(format!("client metadata document: {}", e.description))
    })?;
    if meta.token_endpoint_auth_method.starts_with("client_secret") {
        return Err(OAuthError::invalid_client(
            "client metadata document clients cannot use a shared secret (token_endpoint_auth_method)",
        ));
    }
    Ok(meta)
}

/// How long a fetched document may be reused, from its `Cache-Control` header.
/// `no-store`/`no-cache` mean zero (fetch again next time); a long `max-age` is capped.
pub fn cache_seconds(cache_control: Option<&str>) -> u64 {
    let Some(cc) = cache_control else {
        return DEFAULT_CACHE_S;
    };
    let mut secs = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return 0;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            secs = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    secs.unwrap_or(DEFAULT_CACHE_S).min(MAX_CACHE_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = check_url("https://app.example.com/client.json").unwrap();
        assert_eq!(u.host, "app.example.com");
        assert_eq!(u.ip, None);
        assert_eq!(
            check_url("https://127.0.0.1:8443/c").unwrap().ip,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(check_url("https://[::1]:8443/c").unwrap().host, "[::1]");
        for bad in [
            "http://a.example/c",
            "https://a.example",
            "https://a.example/",
            "https://a.example/c#x",
            "https://u@a.example/c",
            "https://a.example/../c",
        ] {
            let e = check_url(bad).unwrap_err();
            assert_eq!(e.error, "invalid_client", "{bad}");
        }
    }

    #[test]
    fn host_policy() {
        let allowed = vec![
            "app.example.com".to_string(),
            "*.clients.example".to_string(),
        ];
        assert!(host_allowed("app.example.com", &allowed));
        assert!(host_allowed("x.clients.example", &allowed));
        assert!(!host_allowed("clients.example", &allowed));
        assert!(!host_allowed("evil.com", &allowed));
        assert!(host_allowed("evil.com", &["*".to_string()]));
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!address_allowed("localhost", lo, &[]));
        assert!(address_allowed("localhost", lo, &["localhost".to_string()]));
    }

    #[test]
    fn documents() {
        let url = "https://app.example.com/c.json";
        let good = serde_json::json!({"client_id": url, "client_name": "App", "redirect_uris": ["http://127.0.0.1:3/cb"]});
        let m = validate_document(url, good.to_string().as_bytes()).unwrap();
        assert!(m.is_public());
        let other = serde_json::json!({"client_id": "https://evil.example/c.json", "client_name": "App", "redirect_uris": ["http://127.0.0.1:3/cb"]});
        assert_eq!(
            validate_document(url, other.to_string().as_bytes())
                .unwrap_err()
                .description,
            "client metadata document's client_id does not equal its URL"
        );
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(validate_document(url, &big)
            .unwrap_err()
            .description
            .contains("larger than"));
        let secret = serde_json::json!({"client_id": url, "client_name": "App", "redirect_uris": ["http://127.0.0.1:3/cb"], "token_endpoint_auth_method": "client_secret_basic"});
        assert!(validate_document(url, secret.to_string().as_bytes()).is_err());
    }

    #[test]
    fn caching() {
        assert_eq!(cache_seconds(None), DEFAULT_CACHE_S);
        assert_eq!(cache_seconds(Some("public, max-age=3600")), 3600);
        assert_eq!(cache_seconds(Some("max-age=1")), 1);
        assert_eq!(cache_seconds(Some("no-store")), 0);
        assert_eq!(cache_seconds(Some("max-age=99999999")), MAX_CACHE_S);
    }
}
