//! Client metadata: redirect-URI rules and RFC 7591 dynamic registration requests.

use super::OAuthError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest URI accepted in client metadata.
pub const MAX_URI_LEN: usize = 2048;
/// Longest `client_name` (it is shown on the consent page).
pub const MAX_NAME_LEN: usize = 200;

/// What the broker keeps about a client, whichever way it registered. Serialized as the RFC 7591
/// §3.2.1 echo: absent members are left out, never `null` (SDK clients reject `null` members), and
/// the RFC defaults applied at validation are present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    /// `none` (public), `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// `web` or `native` (OpenID Connect Dynamic Registration).
    pub application_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
}

/// The RFC 7591 §3.2.1 client information response: the registered metadata plus what the server
/// assigned. `client_secret_expires_at` is required when a secret is issued (0: never expires).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationResponse<'a> {
    pub client_id: &'a str,
    pub client_id_issued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    #[serde(flatten)]
    pub metadata: &'a ClientMetadata,
}

impl<'a> RegistrationResponse<'a> {
    pub fn new(
        metadata: &'a ClientMetadata,
        client_id: &'a str,
        issued_at: u64,
        secret: Option<&'a str>,
    ) -> RegistrationResponse<'a> {
        RegistrationResponse {
            client_id,
            client_id_issued_at: issued_at,
            client_secret: secret,
            client_secret_expires_at: secret.map(|_| 0),
            metadata,
        }
    }
}

impl ClientMetadata {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }
}

pub use super::redirect::{check_redirect_uri, redirect_registered};

/// Validates an RFC 7591 registration request into the metadata the broker keeps.
/// Unknown members are ignored, as RFC 7591 §2 allows.
pub fn validate_registration(body: &Value) -> Result<ClientMetadata, OAuthError> {
    let obj = body.as_object().ok_or_else(|| {
        OAuthError::invalid_client_metadata("the request body must be a JSON object")
    })?;
    let redirect_uris = string_list(obj, "redirect_uris")?
        .ok_or_else(|| OAuthError::invalid_redirect_uri("redirect_uris is required"))?;
    metadata_from(obj, redirect_uris, "client_secret_basic")
}

/// Shared by DCR and CIMD: everything but where `redirect_uris` came from and the default auth method.
pub(crate) fn metadata_from(
    obj: &Map<String, Value>,
    redirect_uris: Vec<String>,
    default_auth: &str,
) -> Result<ClientMetadata, OAuthError> {
    check_redirect_uris(&redirect_uris)?;
    let grant_types = grant_types(obj)?;
    let response_types = string_list(obj, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::invalid_client_metadata(
            "response_types must be [\"code\"]",
        ));
    }
    let auth = string_member(obj, "token_endpoint_auth_method")?
        .unwrap_or_else(|| default_auth.to_string());
    if !matches!(
        auth.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method `{auth}` is not supported (none, client_secret_basic, client_secret_post)"
        )));
    }
    let application_type =
        string_member(obj, "application_type")?.unwrap_or_else(|| "web".to_string());
    if application_type != "web" && application_type != "native" {
        return Err(OAuthError::invalid_client_metadata(
            "application_type must be `web` or `native`",
        ));
    }
    let Described {
        client_name,
        scope,
        client_uri,
    } = described(obj)?;
    Ok(ClientMetadata {
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: auth,
        application_type,
        scope,
        client_uri,
    })
}

/// At least one redirect URI, not too many, each acceptable.
fn check_redirect_uris(redirect_uris: &[String]) -> Result<(), OAuthError> {
    if redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris must not be empty",
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "at most {MAX_REDIRECT_URIS} redirect_uris"
        )));
    }
    for uri in redirect_uris {
        check_redirect_uri(uri).map_err(OAuthError::invalid_redirect_uri)?;
    }
    Ok(())
}

/// `grant_types`: the code grant, and refresh if asked for; nothing else.
fn grant_types(obj: &Map<String, Value>) -> Result<Vec<String>, OAuthError> {
    let grant_types =
        string_list(obj, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(g) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "grant_type `{g}` is not supported (authorization_code, refresh_token)"
        )));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types must include authorization_code",
        ));
    }
    Ok(grant_types)
}

/// The members that describe a client rather than how it authorizes.
struct Described {
    client_name: Option<String>,
    scope: Option<String>,
    client_uri: Option<String>,
}

/// `client_name`, `scope` and `client_uri`: optional, and well-formed when present.
fn described(obj: &Map<String, Value>) -> Result<Described, OAuthError> {
    let client_name = string_member(obj, "client_name")?;
    if let Some(name) = &client_name {
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(OAuthError::invalid_client_metadata(format!(
                "client_name must be 1 to {MAX_NAME_LEN} printable characters"
            )));
        }
    }
    let scope = string_member(obj, "scope")?;
    if let Some(s) = &scope {
        if let Some(bad) =
            crate::scopes::split_scope(s).find(|t| !crate::scopes::is_valid_scope_token(t))
        {
            return Err(OAuthError::invalid_client_metadata(format!(
                "scope `{bad}` is not a valid scope token"
            )));
        }
    }
    let client_uri = string_member(obj, "client_uri")?;
    if let Some(u) = &client_uri {
        if u.len() > MAX_URI_LEN || !u.starts_with("https://") {
            return Err(OAuthError::invalid_client_metadata(
                "client_uri must be an https URL",
            ));
        }
    }
    Ok(Described {
        client_name,
        scope,
        client_uri,
    })
}

fn string_member(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, OAuthError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(OAuthError::invalid_client_metadata(format!(
            "{name} must be a string"
        ))),
    }
}

fn string_list(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, OAuthError> {
    let bad = || {
        let msg = format!("{name} must be an array of strings");
        if name == "redirect_uris" {
            OAuthError::invalid_redirect_uri(msg)
        } else {
            OAuthError::invalid_client_metadata(msg)
        }
    };
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every `null` anywhere in a JSON document, by path.
    fn nulls(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(at.to_string()),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| nulls(x, &format!("{at}[{i}]"), out)),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, x)| nulls(x, &format!("{at}.{k}"), out)),
            _ => {}
        }
    }

    #[test]
    fn minimal_public_registration_echoes_defaults_and_omits_absent_members() {
        let m = validate_registration(&json!({
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "none"
        }))
        .unwrap();
        let out = serde_json::to_value(RegistrationResponse::new(&m, "c1", 1700, None)).unwrap();
        assert_eq!(
            out,
            json!({
                "client_id": "c1",
                "client_id_issued_at": 1700,
                "redirect_uris": ["http://127.0.0.1:9/cb"],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "web"
            })
        );
    }

    #[test]
    fn confidential_registration_echoes_everything_registered() {
        let m = validate_registration(&json!({
            "redirect_uris": ["https://a.example/cb"],
            "client_name": "App",
            "client_uri": "https://a.example",
            "scope": "tickets.read",
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": "native",
            "software_id": "ignored"
        }))
        .unwrap();
        let out = serde_json::to_value(RegistrationResponse::new(&m, "c2", 1700, Some("s3cret")))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "client_id": "c2",
                "client_id_issued_at": 1700,
                "client_secret": "s3cret",
                "client_secret_expires_at": 0,
                "client_name": "App",
                "client_uri": "https://a.example",
                "scope": "tickets.read",
                "redirect_uris": ["https://a.example/cb"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
                "application_type": "native"
            })
        );
    }

    #[test]
    fn stored_metadata_has_no_nulls_and_reads_back() {
        // The broker stores the serialized metadata and reads it back (also rows written before
        // absent members were omitted, which carry `null`).
        let m = validate_registration(&json!({"redirect_uris": ["https://a.example/cb"]})).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        let mut found = Vec::new();
        nulls(&serde_json::from_str(&text).unwrap(), "$", &mut found);
        assert!(found.is_empty(), "null members: {found:?} in {text}");
        assert_eq!(serde_json::from_str::<ClientMetadata>(&text).unwrap(), m);
        let old = r#"{"client_name":null,"redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_basic","application_type":"web","scope":null,"client_uri":null}"#;
        assert_eq!(serde_json::from_str::<ClientMetadata>(old).unwrap(), m);
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:3000/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:3000/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]:3000/cb").is_ok());
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "com.example.app:/cb",
            "https:///cb",
            "https://u@app.example.com/cb",
            "javascript://x",
            "/cb",
            "http://127.0.0.1.evil.com/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad} accepted");
        }
        assert!(redirect_registered(
            &["https://a/cb".into()],
            "https://a/cb"
        ));
        assert!(!redirect_registered(
            &["https://a/cb".into()],
            "https://a/cb/"
        ));
    }

    #[test]
    fn registration_defaults_and_errors() {
        let m = validate_registration(&json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none", "client_name": "C"})).unwrap();
        assert_eq!(m.grant_types, vec!["authorization_code"]);
        assert_eq!(m.application_type, "web");
        assert!(m.is_public());
        let m = validate_registration(&json!({"redirect_uris": ["https://a.example/cb"]})).unwrap();
        assert_eq!(m.token_endpoint_auth_method, "client_secret_basic");

        let cases = [
            (
                json!([1]),
                "invalid_client_metadata",
                "the request body must be a JSON object",
            ),
            (
                json!({}),
                "invalid_redirect_uri",
                "redirect_uris is required",
            ),
            (
                json!({"redirect_uris": "https://a/cb"}),
                "invalid_redirect_uri",
                "redirect_uris must be an array of strings",
            ),
            (
                json!({"redirect_uris": []}),
                "invalid_redirect_uri",
                "redirect_uris must not be empty",
            ),
            (
                json!({"redirect_uris": ["https://a/cb#f"]}),
                "invalid_redirect_uri",
                "redirect URI `https://a/cb#f` must not have a fragment",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "grant_types": ["implicit"]}),
                "invalid_client_metadata",
                "grant_type `implicit` is not supported (authorization_code, refresh_token)",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "application_type": "desktop"}),
                "invalid_client_metadata",
                "application_type must be `web` or `native`",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "client_name": 7}),
                "invalid_client_metadata",
                "client_name must be a string",
            ),
            (
                json!({"redirect_uris": ["https://a/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
                "response_types must be [\"code\"]",
            ),
        ];
        for (body, error, description) in cases {
            let e = validate_registration(&body).unwrap_err();
            assert_eq!(
                (e.error.as_str(), e.description.as_str()),
                (error, description),
                "{body}"
            );
        }
    }
}
