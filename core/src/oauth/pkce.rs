//! PKCE (RFC 7636), S256 only: OAuth 2.1 and MCP forbid `plain`.

use super::OAuthError;
use ct_codecs::{Base64UrlSafeNoPadding, Encoder};

/// Checks the `code_challenge` and `code_challenge_method` of an authorization request.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), OAuthError> {
    let challenge = match challenge {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(OAuthError::invalid_request(
                "code_challenge is required (PKCE with S256)",
            ))
        }
    };
    match method {
        Some("S256") => {}
        Some("plain") | None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256 (plain is not supported)",
            ))
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ))
        }
    }
    // A SHA-256 digest in base64url without padding is exactly 43 characters.
    if challenge.len() != 43 || !challenge.bytes().all(is_b64url) {
        return Err(OAuthError::invalid_request(
            "code_challenge is not a base64url SHA-256 digest",
        ));
    }
    Ok(())
}

/// Whether `verifier` is a well-formed RFC 7636 verifier whose S256 digest equals `challenge`.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if verifier.len() < 43 || verifier.len() > 128 || !verifier.bytes().all(is_unreserved) {
        return false;
    }
    match s256(verifier) {
        Some(digest) => ct_eq(digest.as_bytes(), challenge.as_bytes()),
        None => false,
    }
}

/// `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> Option<String> {
    let digest = hmac_sha256::Hash::hash(verifier.as_bytes());
    Base64UrlSafeNoPadding::encode_to_string(digest).ok()
}

/// Constant-time equality for secrets (PKCE digests, client secrets, CSRF tokens): the time
/// taken depends on the lengths only, never on where the first difference is.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` keeps the comparison free of data-dependent branches (lengths are not secret).
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_vector_verifies() {
        assert_eq!(s256(VERIFIER).as_deref(), Some(CHALLENGE));
        assert!(verify_s256(VERIFIER, CHALLENGE));
        assert!(!verify_s256(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            CHALLENGE
        ));
        assert!(!verify_s256("short", CHALLENGE));
        assert!(!verify_s256(CHALLENGE, CHALLENGE));
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert!(check_challenge(Some(CHALLENGE), Some("S256")).is_ok());
        let plain = check_challenge(Some(CHALLENGE), Some("plain")).unwrap_err();
        assert_eq!(plain.error, "invalid_request");
        assert_eq!(
            plain.description,
            "code_challenge_method must be S256 (plain is not supported)"
        );
        assert_eq!(
            check_challenge(Some(CHALLENGE), None).unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(
            check_challenge(None, Some("S256")).unwrap_err().description,
            "code_challenge is required (PKCE with S256)"
        );
        assert!(check_challenge(Some("abc"), Some("S256")).is_err());
    }

    #[test]
    fn ct_eq_compares_bytes() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
