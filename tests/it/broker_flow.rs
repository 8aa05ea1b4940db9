//! The broker against the real downstream authorization server (oidc-provider): metadata, DCR,
//! preregistered clients, authorize + consent + downstream login + callback, token, refresh with
//! rotation and reuse detection, token exchange, revocation, and every refusal with its exact error.

use scopegate_tests::broker::{BrokerStack, PREREG, PREREG_REDIRECT};
use scopegate_tests::downstream::{API, USER};
use scopegate_tests::oauth::{
    form_value, pkce, post_form, query, redeem, refresh, register, Agent, AuthRequest,
};
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use std::sync::OnceLock;

const CLIENT_CB: &str = "http://127.0.0.1:1/client/cb";

fn stack() -> &'static BrokerStack {
    static S: OnceLock<BrokerStack> = OnceLock::new();
    S.get_or_init(|| BrokerStack::start("broker_flow", 300, None, |_| {}))
}

fn b64_json(part: &str) -> Value {
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header(jwt: &str) -> Value {
    b64_json(jwt.split('.').next().unwrap())
}

fn payload(jwt: &str) -> Value {
    b64_json(jwt.split('.').nth(1).unwrap())
}

/// A DCR client authorized for `resource`; returns (client_id, token response).
fn authorized(s: &BrokerStack, resource: &str, scope: Option<&str>) -> (String, Value) {
    let client = register(&s.issuer, CLIENT_CB);
    let (verifier, challenge) = pkce();
    let mut req = AuthRequest::new(&s.issuer, &client, CLIENT_CB, resource, &challenge);
    req.scope = scope.map(str::to_string);
    let code = Agent::default().authorize(&req);
    let r = redeem(&s.issuer, &client, &code, CLIENT_CB, &verifier, resource);
    assert_eq!(r.status, 200, "{}", r.body);
    (client, r.json())
}

#[test]
fn metadata_is_served_at_every_well_known_form() {
    let s = stack();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m: Value = reqwest::blocking::get(format!("{}{path}", s.issuer))
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(m["issuer"], json!(s.issuer), "{path}");
        assert_eq!(
            m["authorization_endpoint"],
            json!(format!("{}/authorize", s.issuer))
        );
        assert_eq!(m["token_endpoint"], json!(format!("{}/token", s.issuer)));
        assert_eq!(
            m["registration_endpoint"],
            json!(format!("{}/register", s.issuer))
        );
        assert_eq!(
            m["revocation_endpoint"],
            json!(format!("{}/revoke", s.issuer))
        );
        assert_eq!(m["jwks_uri"], json!(format!("{}/jwks", s.issuer)));
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            m["authorization_response_iss_parameter_supported"],
            json!(true)
        );
        assert_eq!(m["client_id_metadata_document_supported"], json!(false));
        assert_eq!(
            m["scopes_supported"],
            json!([
                "tickets.read",
                "tickets.write",
                "accounts.read",
                "admin.read"
            ])
        );
    }
    // An issuer with a path: RFC 8414's inserted form and the appended form.
    for path in [
        "/.well-known/oauth-authorization-server/other",
        "/other/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration/other",
    ] {
        let m: Value = reqwest::blocking::get(format!("{}{path}", s.issuer))
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(m["issuer"], json!(s.other_issuer), "{path}");
        assert_eq!(
            m["token_endpoint"],
            json!(format!("{}/token", s.other_issuer))
        );
        assert_eq!(m["scopes_supported"], json!(["x.read"]));
    }
    // The same JWKS on both listeners; ES256 keys with kids.
    let public: Value = reqwest::blocking::get(format!("{}/jwks", s.issuer))
        .unwrap()
        .json()
        .unwrap();
    let internal: Value = reqwest::blocking::get(format!("{}/jwks", s.broker.internal))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(public, internal);
    assert_eq!(public["keys"][0]["alg"], json!("ES256"));
    assert!(public["keys"][0]["kid"].is_string());
    assert_eq!(s.keys().len(), public["keys"].as_array().unwrap().len());
    for p in ["/healthz", "/readyz"] {
        assert_eq!(
            reqwest::blocking::get(format!("{}{p}", s.issuer))
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            reqwest::blocking::get(format!("{}{p}", s.broker.internal))
                .unwrap()
                .status(),
            200
        );
    }
}

#[test]
fn dcr_client_full_flow_with_refresh_rotation_reuse_and_exchange() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let (client, t) = authorized(s, &resource, Some("tickets.read offline_access"));
    assert_eq!(t["token_type"], json!("Bearer"));
    assert_eq!(t["scope"], json!("tickets.read"));
    let access = t["access_token"].as_str().unwrap();
    let h = header(access);
    assert_eq!(h["typ"], json!("at+jwt"));
    assert_eq!(h["alg"], json!("ES256"));
    // The MCP server's (and filter's) check: core verification against the broker's JWKS.
    let c = s.verify(access, &resource);
    assert_eq!(c.iss, s.issuer);
    assert_eq!(c.sub.as_deref(), Some(USER));
    assert_eq!(c.scopes, vec!["tickets.read".to_string()]);
    assert_eq!(c.client_id.as_deref(), Some(client.as_str()));
    assert!(c.jti.is_some() && c.iat.is_some());
    let grant_id = c.grant_id.clone().expect("grant_id");

    // Token exchange: the downstream access token for this grant, a real JWT from oidc-provider.
    let (status, x) = s.broker.exchange(access, &resource);
    assert_eq!(status, 200, "{x}");
    assert_eq!(
        x["issued_token_type"],
        json!("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(x["token_type"], json!("Bearer"));
    assert!(x["expires_in"].as_u64().unwrap() > 0);
    let down = payload(x["access_token"].as_str().unwrap());
    assert_eq!(down["aud"], json!(API));
    assert_eq!(down["sub"], json!(USER));
    assert_eq!(down["iss"], json!(s.downstream_issuer));
    assert_eq!(down["scope"], json!("tickets.read"));

    // Refresh rotates.
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(&s.issuer, &client, &rt1, &resource);
    assert_eq!(r.status, 200, "{}", r.body);
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    let c2 = s.verify(r.json()["access_token"].as_str().unwrap(), &resource);
    assert_eq!(c2.grant_id.as_deref(), Some(grant_id.as_str()));

    // Reuse of the rotated token revokes the whole family.
    let r = refresh(&s.issuer, &client, &rt1, &resource);
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token was already used; the grant is revoked"})
        )
    );
    let r = refresh(&s.issuer, &client, &rt2, &resource);
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token is revoked"})
        )
    );
    let (status, x) = s.broker.exchange(access, &resource);
    assert_eq!((status, &x["error"]), (400, &json!("invalid_grant")), "{x}");
}

#[test]
fn no_scope_gets_the_server_subset_and_the_token_is_bound_to_that_server() {
    let s = stack();
    let ops = s.resource(OPS);
    let (_, t) = authorized(s, &ops, None);
    assert_eq!(t["scope"], json!("tickets.write admin.read"));
    let c = s.verify(t["access_token"].as_str().unwrap(), &ops);
    assert_eq!(
        c.scopes,
        vec!["tickets.write".to_string(), "admin.read".to_string()]
    );
    // The token is not good for the other server's credential.
    let (status, x) = s
        .broker
        .exchange(t["access_token"].as_str().unwrap(), &s.resource(SUPPORT));
    assert_eq!(
        (status, x["error"].as_str()),
        (400, Some("invalid_request")),
        "{x}"
    );
    let (status, x) = s.broker.exchange("not-a-token", &ops);
    assert_eq!(
        (status, x["error"].as_str()),
        (400, Some("invalid_request")),
        "{x}"
    );
    let (status, x) = s.broker.exchange(t["access_token"].as_str().unwrap(), &ops);
    assert_eq!(status, 200, "{x}");
    assert_eq!(
        payload(x["access_token"].as_str().unwrap())["scope"],
        json!("tickets.write admin.read")
    );
}

#[test]
fn code_replay_is_refused_and_revokes_the_grant() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let client = register(&s.issuer, CLIENT_CB);
    let (verifier, challenge) = pkce();
    let code = Agent::default().authorize(&AuthRequest::new(
        &s.issuer, &client, CLIENT_CB, &resource, &challenge,
    ));
    let first = redeem(&s.issuer, &client, &code, CLIENT_CB, &verifier, &resource);
    assert_eq!(first.status, 200, "{}", first.body);
    let again = redeem(&s.issuer, &client, &code, CLIENT_CB, &verifier, &resource);
    assert_eq!(
        (again.status, again.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "authorization code was already used"})
        )
    );
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(&s.issuer, &client, &rt, &resource);
    assert_eq!(
        r.json()["error_description"],
        json!("refresh token is revoked")
    );
}

#[test]
fn token_request_checks_pkce_and_resource() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let client = register(&s.issuer, CLIENT_CB);
    let (verifier, challenge) = pkce();
    let code = Agent::default().authorize(&AuthRequest::new(
        &s.issuer, &client, CLIENT_CB, &resource, &challenge,
    ));
    let (wrong, _) = pkce();
    let r = redeem(&s.issuer, &client, &code, CLIENT_CB, &wrong, &resource);
    assert_eq!(
        r.json(),
        json!({"error": "invalid_grant", "error_description": "code_verifier does not match the code_challenge"})
    );
    let r = redeem(
        &s.issuer,
        &client,
        &code,
        CLIENT_CB,
        &verifier,
        &s.resource(OPS),
    );
    assert_eq!(
        r.json(),
        json!({"error": "invalid_target", "error_description": "resource does not match the authorization request"})
    );
    let r = redeem(&s.issuer, &client, &code, CLIENT_CB, &verifier, &resource);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn preregistered_client_and_revocation() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let (verifier, challenge) = pkce();
    let agent = Agent::default();
    let req = AuthRequest::new(&s.issuer, PREREG, PREREG_REDIRECT, &resource, &challenge);
    let page = agent.consent_page(&req);
    assert!(page.contains("Prereg App"), "{page}");
    assert!(
        page.contains("support-assistant") && page.contains("127.0.0.1:1"),
        "{page}"
    );
    assert!(
        page.contains("<code>tickets.read</code>") && page.contains("<code>accounts.read</code>"),
        "{page}"
    );
    let q = agent.decide(&req, &page, "approve");
    let r = redeem(
        &s.issuer,
        PREREG,
        &q["code"],
        PREREG_REDIRECT,
        &verifier,
        &resource,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(s.broker.exchange(access, &resource).0, 200);
    // RFC 7009: revoking the refresh token revokes the grant; the gateway token's exchange fails.
    let rv = post_form(
        &format!("{}/revoke", s.issuer),
        &[
            ("token", t["refresh_token"].as_str().unwrap()),
            ("client_id", PREREG),
        ],
        None,
    );
    assert_eq!(rv.status, 200, "{}", rv.body);
    let r = refresh(
        &s.issuer,
        PREREG,
        t["refresh_token"].as_str().unwrap(),
        &resource,
    );
    assert_eq!(r.json()["error"], json!("invalid_grant"));
    let (status, x) = s.broker.exchange(access, &resource);
    assert_eq!(
        (status, x["error"].as_str()),
        (400, Some("invalid_grant")),
        "{x}"
    );
    // Unknown tokens get the same 200.
    let rv = post_form(
        &format!("{}/revoke", s.issuer),
        &[("token", "nonsense"), ("client_id", PREREG)],
        None,
    );
    assert_eq!(rv.status, 200);
}

#[test]
fn consent_denied_and_csrf() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let (_, challenge) = pkce();
    let req = AuthRequest::new(&s.issuer, PREREG, PREREG_REDIRECT, &resource, &challenge);
    let agent = Agent::default();
    let page = agent.consent_page(&req);
    let q = agent.decide(&req, &page, "deny");
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state"), Some(&req.state));
    assert_eq!(q.get("iss"), Some(&s.issuer));
    // A form posted without the browser's cookie (cross-site) is refused.
    let page = agent.consent_page(&req);
    let r = post_form(
        &format!("{}/consent", s.issuer),
        &[
            ("request", &form_value(&page, "request")),
            ("csrf", &form_value(&page, "csrf")),
            ("decision", "approve"),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"error": "invalid_request", "error_description": "consent form failed the CSRF check"})
        )
    );
}

/// A refusal sent back to the client's redirect URI: its `error` and `error_description`.
fn redirected_error(req: &AuthRequest) -> (String, String) {
    let g = Agent::default().get(&req.url());
    assert_eq!(g.status, 302, "{}", g.body);
    let q = query(g.location.as_deref().unwrap());
    assert!(g
        .location
        .as_deref()
        .unwrap()
        .starts_with(&req.redirect_uri));
    assert_eq!(q.get("iss"), Some(&req.issuer));
    (q["error"].clone(), q["error_description"].clone())
}

#[test]
fn bad_authorization_requests_get_exact_errors() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let (_, challenge) = pkce();
    let base = AuthRequest::new(&s.issuer, PREREG, PREREG_REDIRECT, &resource, &challenge);

    // Unregistered redirect URI: an error page, no redirect at all.
    let bad = AuthRequest {
        redirect_uri: "http://127.0.0.1:1/evil".into(),
        ..base.clone()
    };
    let g = Agent::default().get(&bad.url());
    assert_eq!((g.status, g.location.as_deref()), (400, None));
    assert_eq!(
        g.json(),
        json!({"error": "invalid_request", "error_description": "redirect_uri is not registered for this client"})
    );

    let unknown = AuthRequest {
        client_id: "nobody".into(),
        ..base.clone()
    };
    let g = Agent::default().get(&unknown.url());
    assert_eq!(
        (g.status, g.json()),
        (
            400,
            json!({"error": "invalid_client", "error_description": "unknown client_id"})
        )
    );

    let cases = [
        (AuthRequest { method: "plain".into(), ..base.clone() }, "invalid_request", "code_challenge_method must be S256 (plain is not supported)".to_string()),
        (AuthRequest { resource: None, ..base.clone() }, "invalid_target", "resource is required (RFC 8707): the MCP server's URL".to_string()),
        (
            AuthRequest { resource: Some("http://127.0.0.1:2/x/mcp".into()), ..base.clone() },
            "invalid_target",
            "resource `http://127.0.0.1:2/x/mcp` belongs to another gateway".to_string(),
        ),
        (
            AuthRequest { resource: Some(format!("{}/nope/mcp", s.issuer)), ..base.clone() },
            "invalid_target",
            format!("resource `{}/nope/mcp` is not a configured server", s.issuer),
        ),
        (
            AuthRequest { scope: Some("tickets.read admin.read".into()), ..base.clone() },
            "invalid_scope",
            "scope `admin.read` is not available for server `support-assistant` (it may ask for: tickets.read accounts.read)".to_string(),
        ),
    ];
    for (req, error, description) in cases {
        assert_eq!(redirected_error(&req), (error.to_string(), description));
    }
}

#[test]
fn malformed_registrations_get_rfc7591_errors() {
    let s = stack();
    let post = |body: &str| {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/register", s.issuer))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let cases = [
        ("{not json", "invalid_client_metadata", "the request body is not JSON"),
        ("[]", "invalid_client_metadata", "the request body must be a JSON object"),
        ("{}", "invalid_redirect_uri", "redirect_uris is required"),
        (r#"{"redirect_uris": ["http://app.example.com/cb"]}"#, "invalid_redirect_uri", "redirect URI `http://app.example.com/cb` must use https (http only for loopback)"),
        (r#"{"redirect_uris": ["https://app.example.com/cb#frag"]}"#, "invalid_redirect_uri", "redirect URI `https://app.example.com/cb#frag` must not have a fragment"),
        (r#"{"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["password"]}"#, "invalid_client_metadata", "grant_type `password` is not supported (authorization_code, refresh_token)"),
        (r#"{"redirect_uris": ["https://app.example.com/cb"], "application_type": "desktop"}"#, "invalid_client_metadata", "application_type must be `web` or `native`"),
        (r#"{"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"}"#, "invalid_client_metadata", "token_endpoint_auth_method `private_key_jwt` is not supported (none, client_secret_basic, client_secret_post)"),
    ];
    for (body, error, description) in cases {
        assert_eq!(
            post(body),
            (
                400,
                json!({"error": error, "error_description": description})
            ),
            "{body}"
        );
    }
    // A confidential client gets a secret and must authenticate with it.
    let (status, v) =
        post(r#"{"redirect_uris": ["https://app.example.com/cb"], "client_name": "Web App"}"#);
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["token_endpoint_auth_method"],
        json!("client_secret_basic")
    );
    let id = v["client_id"].as_str().unwrap();
    let r = post_form(
        &format!("{}/token", s.issuer),
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        Some((id, "wrong")),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            401,
            json!({"error": "invalid_client", "error_description": "client authentication failed"})
        )
    );
    let r = post_form(
        &format!("{}/token", s.issuer),
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        Some((id, v["client_secret"].as_str().unwrap())),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token is not valid"})
        )
    );
}
