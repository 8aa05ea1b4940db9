//! Why a request was decided the way it was: the closed set of reason codes and their wire strings.

use std::fmt;

/// A decision's reason. Its [`Reason::as_str`] lands in access logs (`scopegate_reason`), the
/// audit record and stats counter names, so each string is part of the documented interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Allowed.
    Ok,
    /// No `Authorization: Bearer` header.
    NoToken,
    /// The bearer token, or a claim that goes into a header, cannot be used as sent.
    Malformed,
    UnsupportedAlgorithm,
    UnknownKid,
    NoMatchingKey,
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    WrongIssuer,
    MissingIssuer,
    WrongAudience,
    /// The token carries scopes the gateway never grants (`reject_foreign_scopes`).
    ForeignScope,
    NoSubject,
    /// No signing keys loaded yet.
    JwksUnavailable,
    InsufficientScope,
    /// The document denies the call outright.
    Denied,
    NotJsonRpc,
    McpHeaderMismatch,
    McpMetadataMissing,
    BodyTooLarge,
    BudgetExceeded,
    /// The broker says the grant behind the token is gone.
    GrantRevoked,
    /// A brokered gateway's token names no grant.
    NoGrant,
    BrokerUnavailable,
    /// The rate limit service could not count a budgeted call (`filter.rate_limit.on_error: deny`).
    RateLimitUnavailable,
    /// The gateway itself failed (a host call, lost state): fail closed.
    InternalError,
}

impl Reason {
    /// The snake_case code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::NoToken => "no_token",
            Reason::Malformed => "malformed",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnknownKid => "unknown_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::BadSignature => "bad_signature",
            Reason::MissingExp => "missing_exp",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::MissingIssuer => "missing_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::ForeignScope => "foreign_scope",
            Reason::NoSubject => "no_subject",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::Denied => "denied",
            Reason::NotJsonRpc => "not_json_rpc",
            Reason::McpHeaderMismatch => "mcp_header_mismatch",
            Reason::McpMetadataMissing => "mcp_metadata_missing",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BudgetExceeded => "budget_exceeded",
            Reason::GrantRevoked => "grant_revoked",
            Reason::NoGrant => "no_grant",
            Reason::BrokerUnavailable => "broker_unavailable",
            Reason::RateLimitUnavailable => "rate_limit_unavailable",
            Reason::InternalError => "internal_error",
        }
    }

    /// The audit record's `decision`: `allow` for [`Reason::Ok`], `deny` for every other.
    pub const fn decision(self) -> &'static str {
        match self {
            Reason::Ok => "allow",
            _ => "deny",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a wire string (tests, and readers of access logs).
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_distinct_snake_case() {
        let all = [
            Reason::Ok,
            Reason::NoToken,
            Reason::Malformed,
            Reason::UnsupportedAlgorithm,
            Reason::UnknownKid,
            Reason::NoMatchingKey,
            Reason::BadSignature,
            Reason::MissingExp,
            Reason::Expired,
            Reason::NotYetValid,
            Reason::WrongIssuer,
            Reason::MissingIssuer,
            Reason::WrongAudience,
            Reason::ForeignScope,
            Reason::NoSubject,
            Reason::JwksUnavailable,
            Reason::InsufficientScope,
            Reason::Denied,
            Reason::NotJsonRpc,
            Reason::McpHeaderMismatch,
            Reason::McpMetadataMissing,
            Reason::BodyTooLarge,
            Reason::BudgetExceeded,
            Reason::GrantRevoked,
            Reason::NoGrant,
            Reason::BrokerUnavailable,
            Reason::RateLimitUnavailable,
            Reason::InternalError,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(r.to_string(), s);
            assert_eq!(r.decision(), if r == Reason::Ok { "allow" } else { "deny" });
        }
    }
}
