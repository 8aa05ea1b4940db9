//! The broker's side of RFC 8693 token exchange: which requests it answers, and which subject
//! tokens may be exchanged for a server's downstream credential.

use super::{OAuthError, OAuthErrorCode};
use crate::exchange::{ACCESS_TOKEN_TYPE, GRANT_TYPE};

/// The form parameters of an exchange request the broker looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<'a> {
    pub grant_type: Option<&'a str>,
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub resource: Option<&'a str>,
    /// RFC 8693 §2.1: when present, must ask for what we issue (an access token).
    pub requested_token_type: Option<&'a str>,
}

/// A well-formed request: the subject token and the resource (a server's URL) it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub subject_token: &'a str,
    pub resource: &'a str,
}

/// RFC 8693 §2.1-2.2: the grant type, an access-token subject, a resource.
pub fn check<'a>(p: &Params<'a>) -> Result<Request<'a>, OAuthError> {
    if p.grant_type != Some(GRANT_TYPE) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "grant_type must be token-exchange",
        ));
    }
    if p.subject_token_type != Some(ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be an access token",
        ));
    }
    if p.requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(OAuthError::invalid_request(
            "requested_token_type must be an access token",
        ));
    }
    let subject_token = p
        .subject_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let resource = p
        .resource
        .filter(|r| !r.is_empty())
        .ok_or_else(|| OAuthError::invalid_target("resource is required"))?;
    Ok(Request {
        subject_token,
        resource,
    })
}

/// The verified subject token's claims against the request: issued for this resource, naming a
/// grant. Returns the grant id.
pub fn subject_grant<'c>(
    aud: &[String],
    grant_id: Option<&'c str>,
    resource: &str,
) -> Result<&'c str, OAuthError> {
    if !aud.iter().any(|a| a == resource) {
        return Err(OAuthError::invalid_request(
            "subject_token is not for this resource",
        ));
    }
    grant_id.ok_or_else(|| OAuthError::invalid_request("subject_token has no grant_id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<'a>() -> Params<'a> {
        Params {
            grant_type: Some(GRANT_TYPE),
            subject_token: Some("a.b.c"),
            subject_token_type: Some(ACCESS_TOKEN_TYPE),
            resource: Some("https://mcp.example.com/s/mcp"),
            requested_token_type: None,
        }
    }

    #[test]
    fn well_formed_requests_pass() {
        assert_eq!(
            check(&ok()),
            Ok(Request {
                subject_token: "a.b.c",
                resource: "https://mcp.example.com/s/mcp"
            })
        );
        let p = Params {
            requested_token_type: Some(ACCESS_TOKEN_TYPE),
            ..ok()
        };
        assert!(check(&p).is_ok());
    }

    #[test]
    fn refusals_carry_exact_errors() {
        let cases = [
            (
                Params {
                    grant_type: Some("authorization_code"),
                    ..ok()
                },
                "unsupported_grant_type",
            ),
            (
                Params {
                    grant_type: None,
                    ..ok()
                },
                "unsupported_grant_type",
            ),
            (
                Params {
                    subject_token_type: Some("urn:ietf:params:oauth:token-type:id_token"),
                    ..ok()
                },
                "invalid_request",
            ),
            (
                Params {
                    requested_token_type: Some("urn:ietf:params:oauth:token-type:refresh_token"),
                    ..ok()
                },
                "invalid_request",
            ),
            (
                Params {
                    subject_token: Some(""),
                    ..ok()
                },
                "invalid_request",
            ),
            (
                Params {
                    resource: None,
                    ..ok()
                },
                "invalid_target",
            ),
        ];
        for (p, error) in cases {
            assert_eq!(check(&p).unwrap_err().error, error, "{p:?}");
        }
    }

    #[test]
    fn the_subject_must_be_for_the_resource_and_name_a_grant() {
        let aud = vec!["https://r".to_string()];
        assert_eq!(subject_grant(&aud, Some("g"), "https://r"), Ok("g"));
        assert_eq!(
            subject_grant(&aud, Some("g"), "https://other")
                .unwrap_err()
                .description,
            "subject_token is not for this resource"
        );
        assert_eq!(
            subject_grant(&aud, None, "https://r")
                .unwrap_err()
                .description,
            "subject_token has no grant_id"
        );
    }
}
