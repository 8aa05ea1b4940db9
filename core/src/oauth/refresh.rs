//! Refresh-token families: rotation on every use, and reuse of a rotated token revokes the family.
//!
//! One family per grant. Only the newest token of a family is `Active`; presenting an older one
//! means two parties hold the family's tokens (one of them stole it), so the whole family dies
//! (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).

use super::OAuthError;
use crate::scopes::{split_scope, ScopeIndex, ScopeSet};

/// Where one refresh token is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    /// Exchanged for a newer token of the same family.
    Rotated,
    /// Revoked with its family (reuse, revocation, replayed code) or alone.
    Revoked,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Rotated => "rotated",
            TokenStatus::Revoked => "revoked",
        }
    }
    /// Unknown text reads as revoked: a damaged row must never refresh.
    pub fn parse(s: &str) -> TokenStatus {
        match s {
            "active" => TokenStatus::Active,
            "rotated" => TokenStatus::Rotated,
            _ => TokenStatus::Revoked,
        }
    }
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Mark it rotated, issue the family's next token.
    Rotate,
    /// Reuse of a rotated token: revoke the family, refuse with `error`.
    RevokeFamily(OAuthError),
    /// Refuse, change nothing.
    Refuse(OAuthError),
}

/// The stored facts about a presented token.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub status: TokenStatus,
    pub client_id: &'a str,
    pub expires_at: u64,
    /// Whether the family's grant is still alive (not revoked, downstream not dead).
    pub grant_active: bool,
}

/// The message of a detected reuse, as it goes on the wire.
pub const REUSE: &str = "refresh token was already used; the grant is revoked";

/// Decides a refresh-token request by `client_id` at time `now`.
pub fn on_present(t: &Presented, client_id: &str, now: u64) -> Transition {
    if !super::pkce::ct_eq(t.client_id.as_bytes(), client_id.as_bytes()) {
        return Transition::Refuse(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    match t.status {
        TokenStatus::Rotated if t.grant_active => {
            Transition::RevokeFamily(OAuthError::invalid_grant(REUSE))
        }
        TokenStatus::Rotated | TokenStatus::Revoked => {
            Transition::Refuse(OAuthError::invalid_grant("refresh token is revoked"))
        }
        TokenStatus::Active if !t.grant_active => {
            Transition::Refuse(OAuthError::invalid_grant("refresh token is revoked"))
        }
        TokenStatus::Active if now >= t.expires_at => {
            Transition::Refuse(OAuthError::invalid_grant("refresh token has expired"))
        }
        TokenStatus::Active => Transition::Rotate,
    }
}

/// A refresh may narrow the scopes (RFC 6749 §6), never widen them; client scopes are ignored.
pub fn narrow_scopes(
    index: &ScopeIndex,
    granted: ScopeSet,
    requested: Option<&str>,
) -> Result<ScopeSet, OAuthError> {
    let mut chosen = ScopeSet::EMPTY;
    for s in split_scope(requested.unwrap_or("")) {
        if super::is_client_scope(s) {
            continue;
        }
        match index.set_of(&[s]) {
            Ok(set) if set.is_subset_of(granted) => chosen = chosen.union(set),
            _ => {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{s}` was not granted"
                )))
            }
        }
    }
    Ok(if chosen.is_empty() { granted } else { chosen })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(status: TokenStatus, grant_active: bool) -> Presented<'static> {
        Presented {
            status,
            client_id: "c",
            expires_at: 100,
            grant_active,
        }
    }

    #[test]
    fn transitions() {
        assert_eq!(
            on_present(&t(TokenStatus::Active, true), "c", 1),
            Transition::Rotate
        );
        assert_eq!(
            on_present(&t(TokenStatus::Rotated, true), "c", 1),
            Transition::RevokeFamily(OAuthError::invalid_grant(REUSE))
        );
        // Once the family is dead, reuse changes nothing more.
        assert!(matches!(
            on_present(&t(TokenStatus::Rotated, false), "c", 1),
            Transition::Refuse(_)
        ));
        assert!(matches!(
            on_present(&t(TokenStatus::Active, false), "c", 1),
            Transition::Refuse(_)
        ));
        assert!(matches!(
            on_present(&t(TokenStatus::Revoked, true), "c", 1),
            Transition::Refuse(_)
        ));
        assert!(matches!(
            on_present(&t(TokenStatus::Active, true), "c", 100),
            Transition::Refuse(_)
        ));
        assert!(matches!(
            on_present(&t(TokenStatus::Active, true), "d", 1),
            Transition::Refuse(_)
        ));
        assert_eq!(TokenStatus::parse("garbage"), TokenStatus::Revoked);
    }

    #[test]
    fn scopes_only_narrow() {
        let i = ScopeIndex::new(&["a", "b", "c"]);
        let granted = i.set_of(&["a", "b"]).unwrap();
        assert_eq!(narrow_scopes(&i, granted, None).unwrap(), granted);
        assert_eq!(
            i.render(narrow_scopes(&i, granted, Some("a offline_access")).unwrap()),
            "a"
        );
        assert_eq!(
            narrow_scopes(&i, granted, Some("c")).unwrap_err().error,
            "invalid_scope"
        );
    }
}
