//! Redeeming an authorization code at `/token`: single use, same client, same redirect, PKCE, resource.

use super::{pkce, OAuthError};

/// What was recorded when the code was issued.
#[derive(Debug, Clone, Copy)]
pub struct IssuedCode<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub resource: &'a str,
    pub expires_at: u64,
    pub used: bool,
}

/// The token request presenting it.
#[derive(Debug, Clone, Copy)]
pub struct Redemption<'a> {
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub now: u64,
}

/// The exact refusal of a replayed code; the broker also revokes what the code yielded.
pub fn replayed() -> OAuthError {
    OAuthError::invalid_grant("authorization code was already used")
}

/// Whether the code may be exchanged. A used code is refused first: a replay says so whatever
/// else the request gets wrong, and the broker revokes the grant (RFC 6749 §4.1.2).
pub fn redeem(code: &IssuedCode, r: &Redemption) -> Result<(), OAuthError> {
    if code.used {
        return Err(replayed());
    }
    if r.now >= code.expires_at {
        return Err(OAuthError::invalid_grant("authorization code has expired"));
    }
    if !pkce::ct_eq(code.client_id.as_bytes(), r.client_id.as_bytes()) {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if r.redirect_uri.is_some_and(|u| u != code.redirect_uri) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = r
        .code_verifier
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    if !pkce::verify_s256(verifier, code.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if r.resource.is_some_and(|res| res != code.resource) {
        return Err(OAuthError::invalid_target(
            "resource does not match the authorization request",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn code(used: bool) -> IssuedCode<'static> {
        IssuedCode {
            client_id: "c",
            redirect_uri: "http://127.0.0.1:9/cb",
            code_challenge: CHALLENGE,
            resource: "https://m/s/mcp",
            expires_at: 100,
            used,
        }
    }
    fn req() -> Redemption<'static> {
        Redemption {
            client_id: "c",
            redirect_uri: Some("http://127.0.0.1:9/cb"),
            code_verifier: Some(VERIFIER),
            resource: Some("https://m/s/mcp"),
            now: 50,
        }
    }

    #[test]
    fn good_code_redeems_once() {
        assert!(redeem(&code(false), &req()).is_ok());
        assert_eq!(redeem(&code(true), &req()).unwrap_err(), replayed());
    }

    #[test]
    fn each_mismatch_is_named() {
        let cases: [(Redemption, &str); 6] = [
            (
                Redemption { now: 100, ..req() },
                "authorization code has expired",
            ),
            (
                Redemption {
                    client_id: "d",
                    ..req()
                },
                "authorization code was issued to another client",
            ),
            (
                Redemption {
                    redirect_uri: Some("http://127.0.0.1:9/x"),
                    ..req()
                },
                "redirect_uri does not match the authorization request",
            ),
            (
                Redemption {
                    code_verifier: None,
                    ..req()
                },
                "code_verifier is required (PKCE)",
            ),
            (
                Redemption {
                    code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"),
                    ..req()
                },
                "code_verifier does not match the code_challenge",
            ),
            (
                Redemption {
                    resource: Some("https://m/other/mcp"),
                    ..req()
                },
                "resource does not match the authorization request",
            ),
        ];
        for (r, msg) in cases {
            assert_eq!(redeem(&code(false), &r).unwrap_err().description, msg);
        }
        assert!(redeem(
            &code(false),
            &Redemption {
                resource: None,
                redirect_uri: None,
                ..req()
            }
        )
        .is_ok());
    }
}
