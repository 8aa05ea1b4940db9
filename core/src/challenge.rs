//! `WWW-Authenticate: Bearer` challenges (RFC 6750 §3, RFC 9728 §5.1, MCP 2025-11-25 `scope`).

/// Which challenge to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// No credentials at all: RFC 6750 says send no `error` code.
    NoToken,
    InvalidToken,
    InsufficientScope,
}

/// Builds the header value. `scope` and `description` must already be header-safe; they are
/// quoted here and any `"` or `\` or control character is dropped defensively so a value can
/// never break the header (Envoy answers 503 to a header value with a newline).
pub fn www_authenticate(
    kind: ChallengeKind,
    resource_metadata: &str,
    scope: &str,
    description: Option<&str>,
) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("Bearer ");
    match kind {
        ChallengeKind::NoToken => {}
        ChallengeKind::InvalidToken => out.push_str("error=\"invalid_token\", "),
        ChallengeKind::InsufficientScope => out.push_str("error=\"insufficient_scope\", "),
    }
    if let Some(d) = description {
        out.push_str("error_description=\"");
        push_quoted(&mut out, d);
        out.push_str("\", ");
    }
    out.push_str("resource_metadata=\"");
    push_quoted(&mut out, resource_metadata);
    out.push('"');
    if !scope.is_empty() {
        out.push_str(", scope=\"");
        push_quoted(&mut out, scope);
        out.push('"');
    }
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.extend(
        s.chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str =
        "https://mcp.example.com/.well-known/oauth-protected-resource/support-assistant/mcp";

    #[test]
    fn no_token_has_no_error_code() {
        assert_eq!(
            www_authenticate(
                ChallengeKind::NoToken,
                PRM,
                "tickets.read accounts.read",
                None
            ),
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"tickets.read accounts.read\"")
        );
    }

    #[test]
    fn insufficient_scope_carries_description_and_scope() {
        let h = www_authenticate(
            ChallengeKind::InsufficientScope,
            PRM,
            "tickets.read tickets.write",
            Some("tool \"x\"\nneeds more"),
        );
        assert_eq!(
            h,
            format!("Bearer error=\"insufficient_scope\", error_description=\"tool xneeds more\", resource_metadata=\"{PRM}\", scope=\"tickets.read tickets.write\"")
        );
    }

    #[test]
    fn empty_scope_is_left_out() {
        let h = www_authenticate(ChallengeKind::InvalidToken, PRM, "", None);
        assert_eq!(
            h,
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{PRM}\"")
        );
    }
}
