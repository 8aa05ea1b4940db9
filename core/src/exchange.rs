//! The filter's side of the RFC 8693 token exchange with the broker: the request it sends, how it
//! reads the answer, and how long the downstream credential may be reused.

use crate::authorize::Target;
use crate::challenge::ChallengeKind;
use crate::decision::{Audit, Decision, Denial, Reason};
use crate::oauth::OAuthErrorCode;
use serde::Deserialize;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Longest a credential is reused before its expiry: it must not expire between our check and
/// the upstream's.
const MAX_MARGIN_S: u64 = 30;

/// A downstream credential and when to stop using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_token: String,
    /// Unix seconds after which a new exchange is needed (a little before the real expiry).
    pub reuse_until: u64,
}

impl Credential {
    pub fn usable_at(&self, now: u64) -> bool {
        now < self.reuse_until
    }

    /// `reuse_until` then the token, one line each: the shared-data form every worker reads.
    pub fn encode(&self) -> String {
        format!("{}\n{}", self.reuse_until, self.access_token)
    }

    pub fn decode(text: &[u8]) -> Option<Credential> {
        let text = std::str::from_utf8(text).ok()?;
        let (until, token) = text.split_once('\n')?;
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        Some(Credential {
            access_token: token.to_string(),
            reuse_until: until.parse().ok()?,
        })
    }
}

/// Why no credential came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// The broker says the grant is gone (`invalid_grant`): the client must re-authorize.
    DeadGrant,
    /// Broker down, timing out, or answering something we cannot use: fail closed, retry later.
    Unavailable,
}

/// The key a credential is cached under: one per grant and server.
pub fn cache_key(grant_id: &str, server: &str) -> String {
    format!("scopegate.cred.{server}.{grant_id}")
}

/// The form body of the exchange request.
pub fn request_body(subject_token: &str, resource: &str) -> String {
    let mut out = String::with_capacity(subject_token.len() + resource.len() + 160);
    out.push_str("grant_type=");
    percent_encode(&mut out, GRANT_TYPE);
    out.push_str("&subject_token_type=");
    percent_encode(&mut out, ACCESS_TOKEN_TYPE);
    out.push_str("&resource=");
    percent_encode(&mut out, resource);
    out.push_str("&subject_token=");
    percent_encode(&mut out, subject_token);
    out
}

/// `application/x-www-form-urlencoded` escaping of everything but unreserved characters.
fn percent_encode(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[derive(Deserialize)]
struct Success {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Failure {
    error: String,
}

/// Reads the broker's answer. `status` is `None` when the call failed (reset, timeout).
pub fn parse_response(
    status: Option<u16>,
    body: &[u8],
    now: u64,
) -> Result<Credential, ExchangeError> {
    match status {
        Some(200) => {
            let ok: Success =
                serde_json::from_slice(body).map_err(|_| ExchangeError::Unavailable)?;
            let bearer = ok
                .token_type
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
            let header_safe = !ok.access_token.is_empty()
                && ok.access_token.bytes().all(|b| b.is_ascii_graphic());
            if !bearer || !header_safe {
                return Err(ExchangeError::Unavailable);
            }
            // Without expires_in, reuse briefly: the broker refreshes on its side.
            let lifetime = ok.expires_in.unwrap_or(MAX_MARGIN_S);
            let margin = MAX_MARGIN_S.min(lifetime / 5);
            Ok(Credential {
                access_token: ok.access_token,
                reuse_until: now.saturating_add(lifetime.saturating_sub(margin)),
            })
        }
        Some(400 | 401) => match serde_json::from_slice::<Failure>(body) {
            Ok(f) if OAuthErrorCode::InvalidGrant == f.error.as_str() => {
                Err(ExchangeError::DeadGrant)
            }
            _ => Err(ExchangeError::Unavailable),
        },
        _ => Err(ExchangeError::Unavailable),
    }
}

/// The refusal when no downstream credential could be had.
pub fn refusal(target: Target<'_>, err: ExchangeError, audit: &Audit) -> Decision {
    match err {
        ExchangeError::DeadGrant => dead_grant(target, Reason::GrantRevoked, audit),
        ExchangeError::Unavailable => {
            let denial = Denial::oauth(
                503,
                OAuthErrorCode::TemporarilyUnavailable,
                "the downstream credential could not be obtained; retry shortly",
            );
            Decision::refusal(Reason::BrokerUnavailable, denial, audit.clone())
        }
    }
}

/// The refusal for a brokered gateway's token that names no grant (not one the broker issued).
pub fn no_grant(target: Target<'_>, audit: &Audit) -> Decision {
    dead_grant(target, Reason::NoGrant, audit)
}

/// No grant to act on: the client must authorize again.
fn dead_grant(target: Target<'_>, reason: Reason, audit: &Audit) -> Decision {
    target.unauthorized_as(
        audit.clone(),
        ChallengeKind::InvalidToken,
        reason,
        "the authorization behind this token is gone; authorize again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_form_encoded() {
        let b = request_body("a.b+c/d=", "http://127.0.0.1:10000/ops-console/mcp");
        assert_eq!(
            b,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&resource=http%3A%2F%2F127.0.0.1%3A10000%2Fops-console%2Fmcp&subject_token=a.b%2Bc%2Fd%3D"
        );
    }

    #[test]
    fn success_is_reused_until_shortly_before_expiry() {
        let body = br#"{"access_token":"down.stream","token_type":"Bearer","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#;
        let c = parse_response(Some(200), body, 1000).unwrap();
        assert_eq!(c.access_token, "down.stream");
        assert_eq!(c.reuse_until, 1270);
        assert!(c.usable_at(1269));
        assert!(!c.usable_at(1270));
        // Short lifetimes keep most of their life.
        let c = parse_response(Some(200), br#"{"access_token":"x","expires_in":10}"#, 0).unwrap();
        assert_eq!(c.reuse_until, 8);
    }

    #[test]
    fn dead_grants_and_outages_are_told_apart() {
        assert_eq!(
            parse_response(Some(400), br#"{"error":"invalid_grant"}"#, 0),
            Err(ExchangeError::DeadGrant)
        );
        assert_eq!(
            parse_response(Some(400), br#"{"error":"invalid_request"}"#, 0),
            Err(ExchangeError::Unavailable)
        );
        assert_eq!(
            parse_response(Some(500), b"", 0),
            Err(ExchangeError::Unavailable)
        );
        assert_eq!(
            parse_response(None, b"", 0),
            Err(ExchangeError::Unavailable)
        );
        assert_eq!(
            parse_response(Some(200), b"not json", 0),
            Err(ExchangeError::Unavailable)
        );
        assert_eq!(
            parse_response(Some(200), br#"{"access_token":"a\nb","expires_in":60}"#, 0),
            Err(ExchangeError::Unavailable),
            "a credential that could split a header is refused"
        );
        assert_eq!(
            parse_response(Some(200), br#"{"access_token":"a","token_type":"DPoP"}"#, 0),
            Err(ExchangeError::Unavailable)
        );
    }

    #[test]
    fn shared_form_round_trips() {
        let c = Credential {
            access_token: "tok".into(),
            reuse_until: 42,
        };
        assert_eq!(Credential::decode(c.encode().as_bytes()), Some(c));
        assert_eq!(Credential::decode(b"garbage"), None);
        assert_eq!(Credential::decode(b"12\n"), None);
    }
}
