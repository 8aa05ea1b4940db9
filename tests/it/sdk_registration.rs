//! What the real broker puts in its JSON, pinned: RFC 7591 §3.2.1 registration responses echo
//! what was registered with the RFC defaults filled in and omit absent members (never `null`: the
//! official TypeScript SDK rejects the whole registration over one), and no other document the
//! broker serves (metadata, JWKS, token, refresh, errors, revocation) carries a `null` either.

use scopegate_tests::broker::BrokerStack;
use scopegate_tests::oauth::{pkce, post_form, redeem, refresh, Agent, AuthRequest};
use scopegate_tests::sdk_clients::nulls;
use scopegate_tests::stack::SUPPORT;
use serde_json::{json, Value};

const CB: &str = "http://127.0.0.1:1/shape/cb";

fn no_nulls(what: &str, v: &Value) {
    let n = nulls(v);
    assert!(n.is_empty(), "{what} has null members {n:?}: {v}");
}

fn register(issuer: &str, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{issuer}/register"))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn broker_json_has_no_nulls_and_registration_echoes_rfc7591_defaults() {
    let s = BrokerStack::start("sdk_registration", 600, None, |_| {});
    let issuer = &s.issuer;

    // The smallest public registration: the defaults are echoed, nothing else appears.
    let (status, public) = register(
        issuer,
        json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"}),
    );
    assert_eq!(status, 201, "{public}");
    no_nulls("public registration", &public);
    assert_eq!(
        keys(&public),
        [
            "application_type",
            "client_id",
            "client_id_issued_at",
            "grant_types",
            "redirect_uris",
            "response_types",
            "token_endpoint_auth_method"
        ]
    );
    assert_eq!(public["grant_types"], json!(["authorization_code"]));
    assert_eq!(public["response_types"], json!(["code"]));
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(public["redirect_uris"], json!([CB]));

    // Confidential by default (RFC 7591 §2: client_secret_basic), with what it registered echoed.
    let (status, conf) = register(
        issuer,
        json!({"redirect_uris": ["https://app.example/cb"], "client_name": "Shape App",
               "client_uri": "https://app.example", "scope": "tickets.read",
               "grant_types": ["authorization_code", "refresh_token"], "logo_uri": "https://app.example/l.png"}),
    );
    assert_eq!(status, 201, "{conf}");
    no_nulls("confidential registration", &conf);
    assert_eq!(conf["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(conf["client_secret_expires_at"], 0);
    assert!(conf["client_secret"]
        .as_str()
        .is_some_and(|x| x.len() >= 32));
    assert_eq!(conf["client_name"], "Shape App");
    assert_eq!(conf["client_uri"], "https://app.example");
    assert_eq!(conf["scope"], "tickets.read");
    assert_eq!(
        conf["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );

    // A refused registration: an RFC 7591 §3.2.2 error, no nulls.
    let (status, err) = register(issuer, json!({"client_name": "x"}));
    assert_eq!(status, 400);
    assert_eq!(keys(&err), ["error", "error_description"]);
    assert_eq!(err["error"], "invalid_redirect_uri");

    // Metadata and keys.
    for wk in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/jwks",
    ] {
        let v: Value = reqwest::blocking::get(format!("{issuer}{wk}"))
            .unwrap()
            .json()
            .unwrap();
        no_nulls(wk, &v);
    }

    // Token, refresh, token error, revocation for a client registered above.
    let client_id = public["client_id"].as_str().unwrap();
    let (status, both) = register(
        issuer,
        json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"]}),
    );
    assert_eq!(status, 201);
    no_nulls("registration", &both);
    let client_id_rt = both["client_id"].as_str().unwrap();
    let resource = s.resource(SUPPORT);
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(issuer, client_id_rt, CB, &resource, &challenge);
    let code = Agent::default().authorize(&req);
    let t = redeem(issuer, client_id_rt, &code, CB, &verifier, &resource);
    assert_eq!(t.status, 200, "{}", t.body);
    no_nulls("token response", &t.json());
    let rt = t.json()["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(issuer, client_id_rt, &rt, &resource);
    assert_eq!(r.status, 200, "{}", r.body);
    no_nulls("refresh response", &r.json());
    let bad = redeem(issuer, client_id, "not-a-code", CB, &verifier, &resource);
    assert_eq!(bad.status, 400);
    assert_eq!(keys(&bad.json()), ["error", "error_description"]);
    let rv = post_form(
        &format!("{issuer}/revoke"),
        &[("token", "unknown"), ("client_id", client_id)],
        None,
    );
    assert_eq!((rv.status, rv.json()), (200, json!({})));
}
