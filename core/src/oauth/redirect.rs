//! Redirect URIs: what a client may register (RFC 6749 §3.1.2, RFC 8252 §7.3/§8.3) and when a
//! requested one matches a registered one.
//!
//! URIs are parsed with the WHATWG parser of the `url` crate, never split by hand: an authority
//! like `localhost:evil.example` or `[::1]evil.example` is not a host and a port, it is no URL.
//!
//! Loopback: `http` is allowed only for loopback hosts. For IP literals (`127.0.0.0/8`, `[::1]`)
//! the port is ignored when matching, since native clients pick a free port at every start
//! (RFC 8252 §7.3: the authorization server MUST allow any port). `localhost` is accepted at
//! registration (the MCP Inspector and several SDKs use it), but RFC 8252 §8.3 calls it NOT
//! RECOMMENDED (it may resolve elsewhere), so it gets none of the IP literals' leniency: it
//! matches exactly, port included.

use url::{Host, Url};

/// Longest URI accepted in client metadata.
pub const MAX_URI_LEN: usize = 2048;

/// A redirect URI a client may register: absolute `https`, or `http` on a loopback host, with a
/// valid port, no fragment and no user info. The error names the URI and the rule it breaks.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    parse(uri).map(|_| ())
}

/// Whether `requested` is one of `registered`: exact string equality (RFC 9700 §2.1, OAuth 2.1
/// §4.1.1), except that a loopback IP literal redirect URI matches with any port (RFC 8252 §7.3).
///
/// The comparison is on the strings as sent, never on parsed URLs: a parser resolves
/// `/x/../callback` to `/callback` and lower-cases the scheme, so a URI the client never
/// registered would match. Only the port is taken out before comparing, and only when both sides
/// are `http` on a loopback IP literal.
pub fn redirect_registered(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Some(req) = loopback_without_port(requested) else {
        return false;
    };
    registered
        .iter()
        .any(|r| loopback_without_port(r).as_deref() == Some(req.as_str()))
}

/// The host and port to show the user on the consent page (`127.0.0.1:8123`, `app.example.com`).
pub fn display_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Whether a redirect URI sends the browser to the person's own machine (a loopback host): the
/// consent page warns that the application is a local one (MCP authorization, security
/// considerations).
pub fn is_local_application(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| match u.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

fn parse(uri: &str) -> Result<Url, String> {
    if uri.len() > MAX_URI_LEN {
        return Err(format!(
            "redirect URI is longer than {MAX_URI_LEN} characters"
        ));
    }
    // The parser silently strips tabs, newlines and surrounding spaces; a URI that needed that
    // is not the URI the client will be sent to.
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "redirect URI `{uri}` has whitespace or control characters"
        ));
    }
    let u = Url::parse(uri).map_err(|e| format!("redirect URI `{uri}` is not a valid URL: {e}"))?;
    if u.cannot_be_a_base() || !uri.contains("://") {
        return Err(format!("redirect URI `{uri}` is not an absolute URL"));
    }
    if u.fragment().is_some() {
        return Err(format!("redirect URI `{uri}` must not have a fragment"));
    }
    let authority = uri
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    // `https:///cb` parses as host `cb`: the parser forgives what a registration must not.
    if authority.is_empty() {
        return Err(format!("redirect URI `{uri}` has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() || authority.contains('@') {
        return Err(format!("redirect URI `{uri}` must not carry user info"));
    }
    let Some(host) = u.host() else {
        return Err(format!("redirect URI `{uri}` has no host"));
    };
    if u.port() == Some(0) {
        return Err(format!("redirect URI `{uri}` has port 0"));
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback_host(&host) => Ok(u),
        "http" => Err(format!(
            "redirect URI `{uri}` must use https (http only for loopback)"
        )),
        _ => Err(format!(
            "redirect URI `{uri}` must use https, or http on a loopback host"
        )),
    }
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `http` on a loopback IP literal: the redirect URIs whose port is free (RFC 8252 §7.3).
fn is_loopback_ip(u: &Url) -> bool {
    u.scheme() == "http"
        && match u.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        }
}

/// The URI as written with its port taken out, when it is a valid `http` redirect URI on a
/// loopback IP literal (`http://127.0.0.1:49152/cb` -> `http://127.0.0.1/cb`); `None` otherwise.
fn loopback_without_port(uri: &str) -> Option<String> {
    let u = parse(uri).ok()?;
    if !is_loopback_ip(&u) {
        return None;
    }
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // `[::1]:3000` keeps its brackets; an IPv4 literal has at most one colon, before the port.
    let host = match authority.rfind(']') {
        Some(close) => &authority[..=close],
        None => authority.split(':').next().unwrap_or(authority),
    };
    Some(format!("http://{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1:3000/cb",
            "http://127.0.0.1/cb",
            "http://localhost:3000/cb",
            "http://[::1]:3000/cb",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refused_with_the_reason() {
        let cases = [
            ("http://localhost:evil.example/cb", "is not a valid URL"),
            ("http://127.0.0.1:80x/cb", "is not a valid URL"),
            ("http://[::1]evil.example/cb", "is not a valid URL"),
            ("http://127.0.0.1:99999/cb", "is not a valid URL"),
            ("http://127.0.0.1:0/cb", "has port 0"),
            ("http://app.example.com/cb", "must use https"),
            ("http://127.0.0.1.evil.com/cb", "must use https"),
            ("https://app.example.com/cb#x", "must not have a fragment"),
            ("https://app.example.com/cb#", "must not have a fragment"),
            ("https://u@app.example.com/cb", "must not carry user info"),
            ("https://u:p@app.example.com/cb", "must not carry user info"),
            ("https://@app.example.com/cb", "must not carry user info"),
            ("com.example.app:/cb", "is not an absolute URL"),
            ("javascript:alert(1)", "is not an absolute URL"),
            ("/cb", "is not a valid URL"),
            ("https:///cb", "has no host"),
            ("ftp://app.example.com/cb", "must use https"),
            ("https://app.example.com/c b", "whitespace"),
            ("https://app.example.com/cb\n", "whitespace"),
        ];
        for (uri, why) in cases {
            let e = check_redirect_uri(uri).expect_err(uri);
            assert!(e.contains(why), "{uri}: {e}");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_URI_LEN));
        assert!(check_redirect_uri(&long).is_err());
    }

    #[test]
    fn loopback_ip_literals_match_any_port() {
        let reg = vec!["http://127.0.0.1:3000/cb".to_string()];
        assert!(redirect_registered(&reg, "http://127.0.0.1:3000/cb"));
        assert!(redirect_registered(&reg, "http://127.0.0.1:49152/cb"));
        assert!(redirect_registered(&reg, "http://127.0.0.1/cb"));
        assert!(!redirect_registered(&reg, "http://127.0.0.1:49152/other"));
        assert!(!redirect_registered(&reg, "http://127.0.0.1:49152/cb?x=1"));
        assert!(!redirect_registered(&reg, "http://127.0.0.2:49152/cb"));
        assert!(!redirect_registered(&reg, "http://localhost:3000/cb"));
        assert!(!redirect_registered(&reg, "https://127.0.0.1:3000/cb"));
        assert!(!redirect_registered(&reg, "http://127.0.0.1:80x/cb"));
        let v6 = vec!["http://[::1]:3000/cb".to_string()];
        assert!(redirect_registered(&v6, "http://[::1]:61000/cb"));
        assert!(!redirect_registered(&v6, "http://127.0.0.1:61000/cb"));
    }

    #[test]
    fn localhost_and_https_match_exactly() {
        let reg = vec![
            "http://localhost:6274/oauth/callback".to_string(),
            "https://app.example.com/cb".to_string(),
        ];
        assert!(redirect_registered(
            &reg,
            "http://localhost:6274/oauth/callback"
        ));
        assert!(!redirect_registered(
            &reg,
            "http://localhost:6275/oauth/callback"
        ));
        assert!(redirect_registered(&reg, "https://app.example.com/cb"));
        assert!(!redirect_registered(
            &reg,
            "https://app.example.com:8443/cb"
        ));
        assert!(!redirect_registered(&reg, "https://app.example.com/cb/"));
    }

    /// RFC 9700 §2.1: the loopback port is the only leniency; everything else is compared as
    /// sent, so a variant that a URL parser would normalise to the registered URI is refused.
    #[test]
    fn variants_of_a_registered_uri_are_refused() {
        let reg = vec![
            "http://127.0.0.1:3000/callback".to_string(),
            "https://app.example.com/oauth/callback".to_string(),
        ];
        for variant in [
            // dot segments
            "http://127.0.0.1:3000/x/../callback",
            "http://127.0.0.1:49152/x/../callback",
            "http://127.0.0.1:3000/./callback",
            "https://app.example.com/oauth/x/../callback",
            "https://app.example.com/./oauth/callback",
            // encoded dot segments
            "http://127.0.0.1:3000/x/%2e%2e/callback",
            "http://127.0.0.1:3000/x/%2E%2E/callback",
            "https://app.example.com/oauth/x/%2e%2e/callback",
            // case
            "HTTP://127.0.0.1:3000/callback",
            "http://127.0.0.1:3000/Callback",
            "https://APP.example.com/oauth/callback",
            "HTTPS://app.example.com/oauth/callback",
            // trailing slash
            "http://127.0.0.1:3000/callback/",
            "https://app.example.com/oauth/callback/",
            // query
            "http://127.0.0.1:3000/callback?x=1",
            "http://127.0.0.1:49152/callback?",
            "https://app.example.com/oauth/callback?x=1",
            "https://app.example.com/oauth/callback?",
            // default port spelled out, empty path spelled differently
            "https://app.example.com:443/oauth/callback",
            "http://127.0.0.1:3000//callback",
            // another spelling of the loopback address
            "http://127.1:3000/callback",
            "http://0x7f.0.0.1:3000/callback",
        ] {
            assert!(!redirect_registered(&reg, variant), "{variant} matched");
        }
        assert!(redirect_registered(&reg, "http://127.0.0.1:3000/callback"));
        assert!(redirect_registered(&reg, "http://127.0.0.1:61000/callback"));
        assert!(redirect_registered(&reg, "http://127.0.0.1/callback"));
        assert!(redirect_registered(
            &reg,
            "https://app.example.com/oauth/callback"
        ));
        let v6 = vec!["http://[::1]/callback".to_string()];
        assert!(redirect_registered(&v6, "http://[::1]:5000/callback"));
        assert!(!redirect_registered(&v6, "http://[::1]:5000/x/../callback"));
        assert!(!redirect_registered(
            &v6,
            "http://[0:0:0:0:0:0:0:1]:5000/callback"
        ));
    }

    #[test]
    fn local_applications() {
        assert!(is_local_application("http://127.0.0.1:8123/cb"));
        assert!(is_local_application("http://[::1]:9/cb"));
        assert!(is_local_application("http://localhost:6274/oauth/callback"));
        assert!(!is_local_application("https://app.example.com/cb"));
        assert!(!is_local_application("https://127.0.0.1.example.com/cb"));
        assert!(!is_local_application("not a url"));
    }

    #[test]
    fn consent_host() {
        assert_eq!(display_host("http://127.0.0.1:8123/cb"), "127.0.0.1:8123");
        assert_eq!(
            display_host("https://app.example.com/cb"),
            "app.example.com"
        );
        assert_eq!(display_host("http://[::1]:9/cb"), "[::1]:9");
    }
}
