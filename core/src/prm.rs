//! RFC 9728 protected-resource metadata documents, one per server.

use serde_json::json;

/// Scopes an MCP server must not advertise (2026-07-28: `offline_access` is the client's business).
pub fn is_advertised(scope: &str) -> bool {
    scope != "offline_access"
}

/// The metadata URL for a resource: the well-known segment goes between the origin and the path.
pub fn metadata_url(public_url: &str, path: &str) -> String {
    format!("{public_url}{}{path}", crate::policy::PRM_WELL_KNOWN)
}

/// The document served for one server.
pub fn document(resource: &str, issuer: &str, scopes: &[&str], resource_name: &str) -> String {
    let scopes: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|s| is_advertised(s))
        .collect();
    json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": resource_name,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_rfc9728_fields() {
        let doc = document(
            "https://mcp.example.com/support-assistant/mcp",
            "https://mcp.example.com",
            &["tickets.read", "offline_access", "accounts.read"],
            "support-assistant",
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            v["resource"],
            "https://mcp.example.com/support-assistant/mcp"
        );
        assert_eq!(v["authorization_servers"][0], "https://mcp.example.com");
        assert_eq!(
            v["scopes_supported"],
            json!(["tickets.read", "accounts.read"])
        );
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    }

    #[test]
    fn metadata_url_inserts_the_well_known_segment() {
        assert_eq!(
            metadata_url("https://mcp.example.com", "/ops-console/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/ops-console/mcp"
        );
    }
}
