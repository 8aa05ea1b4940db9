//! Strict checks that the URLs in the document are canonical, since clients compare them byte for byte.
//!
//! MCP clients send the PRM's `resource` back verbatim and compare `issuer` by string, so a URL
//! that a client would normalise differently (upper-case host, default port, trailing slash,
//! dot segments) breaks discovery. Rather than normalise silently we refuse and say why. Hosts are
//! ASCII (IDNs in punycode), which also keeps a URL library with Unicode tables out of the `.wasm`.

/// Why a URL is not canonical.
pub type UrlError = String;

/// Checks `scheme://host[:port]` with nothing after it. `http` is accepted only for loopback hosts.
pub fn check_origin(s: &str) -> Result<(), UrlError> {
    let (scheme, rest) = split_scheme(s)?;
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !tail.is_empty() {
        return Err(format!(
            "`{s}` must be an origin only (no path, trailing slash, query or fragment)"
        ));
    }
    check_authority(s, scheme, authority)
}

/// Checks an absolute URL `scheme://host[:port][/path]` without query or fragment.
pub fn check_url(s: &str) -> Result<(), UrlError> {
    let (scheme, rest) = split_scheme(s)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains(['?', '#']) || path.contains(['?', '#']) {
        return Err(format!("`{s}` must not have a query or fragment"));
    }
    check_authority(s, scheme, authority)?;
    if !path.is_empty() {
        check_path(path).map_err(|e| format!("`{s}`: {e}"))?;
    }
    Ok(())
}

/// Checks an absolute path such as `/support-assistant/mcp`.
pub fn check_path(p: &str) -> Result<(), UrlError> {
    if !p.starts_with('/') {
        return Err(format!("path `{p}` must start with `/`"));
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(format!("path `{p}` must not end with `/`"));
    }
    if p == "/" {
        return Err("path must not be `/` alone".to_string());
    }
    for seg in p.split('/').skip(1) {
        if seg.is_empty() {
            return Err(format!("path `{p}` has an empty segment (`//`)"));
        }
        if seg == "." || seg == ".." {
            return Err(format!("path `{p}` has a dot segment"));
        }
        if let Some(c) = seg.chars().find(|c| !is_pchar(*c)) {
            return Err(format!(
                "path `{p}` has `{c}`; use unreserved characters only (letters, digits, `-._~`)"
            ));
        }
    }
    Ok(())
}

/// Whether an origin's host is loopback (where plain `http` is tolerated for local setups).
pub fn is_loopback_origin(s: &str) -> bool {
    split_scheme(s)
        .map(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            is_loopback_host(host_of(authority))
        })
        .unwrap_or(false)
}

/// The host of an `authority` (`host[:port]` or `[v6][:port]`), lower-cased, IPv6 in brackets.
pub fn authority_host(authority: &str) -> String {
    host_of(authority).to_ascii_lowercase()
}

fn split_scheme(s: &str) -> Result<(&str, &str), UrlError> {
    if let Some(rest) = s.strip_prefix("https://") {
        Ok(("https", rest))
    } else if let Some(rest) = s.strip_prefix("http://") {
        Ok(("http", rest))
    } else {
        Err(format!("`{s}` must start with `https://` (lower case)"))
    }
}

fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => authority.get(..=i).unwrap_or(authority),
            None => authority,
        }
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

fn check_authority(s: &str, scheme: &str, authority: &str) -> Result<(), UrlError> {
    if authority.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    if authority.contains('@') {
        return Err(format!("`{s}` must not carry user info"));
    }
    let host = host_of(authority);
    let port = authority.get(host.len()..).unwrap_or("");
    if host.starts_with('[') {
        if !host.ends_with(']')
            || !host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == ':' || c == '.')
        {
            return Err(format!("`{s}` has a malformed IPv6 host"));
        }
    } else {
        if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
            return Err(format!("`{s}` has a malformed host"));
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(format!(
                "`{s}`: host has `{c}`; write hosts in lower case ASCII (punycode for IDNs)"
            ));
        }
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("");
        let n: u32 = digits
            .parse()
            .map_err(|_| format!("`{s}` has a malformed port"))?;
        if digits.starts_with('0') || n == 0 || n > 65535 {
            return Err(format!("`{s}` has a malformed port"));
        }
        if (scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
            return Err(format!("`{s}` names the default port; leave it out"));
        }
    }
    if scheme == "http" && !is_loopback_host(host) {
        return Err(format!(
            "`{s}` must use https (plain http only for loopback)"
        ));
    }
    Ok(())
}

fn is_pchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(check_origin("https://mcp.example.com").is_ok());
        assert!(check_origin("https://mcp.example.com:8443").is_ok());
        assert!(check_origin("http://127.0.0.1:10000").is_ok());
        assert!(check_origin("http://localhost:10000").is_ok());
        assert!(check_origin("http://[::1]:10000").is_ok());
        for bad in [
            "https://mcp.example.com/",
            "https://MCP.example.com",
            "https://mcp.example.com:443",
            "http://mcp.example.com",
            "ftp://x",
            "https://",
            "https://u@mcp.example.com",
            "https://mcp.example.com?x",
            "https://mcp.example.com:0",
            "https://mcp.example.com:99999",
            "HTTPS://mcp.example.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn urls_and_paths() {
        assert!(check_url("https://auth.example.com").is_ok());
        assert!(check_url("https://auth.example.com/realms/x").is_ok());
        assert!(check_url("https://auth.example.com/realms/x/").is_err());
        assert!(check_url("https://auth.example.com/a?b").is_err());
        assert!(check_path("/support-assistant/mcp").is_ok());
        for bad in [
            "support/mcp",
            "/a/",
            "/a//b",
            "/a/../b",
            "/a/./b",
            "/a%20b",
            "/",
            "/a b",
        ] {
            assert!(check_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn authority_hosts() {
        assert_eq!(authority_host("MCP.Example.com:8443"), "mcp.example.com");
        assert_eq!(authority_host("[::1]:10000"), "[::1]");
        assert_eq!(authority_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn loopback() {
        assert!(is_loopback_origin("http://127.0.0.1:1"));
        assert!(!is_loopback_origin("https://example.com"));
    }
}
