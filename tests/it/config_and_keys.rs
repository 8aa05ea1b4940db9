//! Documents Envoy must refuse, strict deployments, and what happens before keys are loaded.

use scopegate_tests::envoy::{Envoy, Spec};
use scopegate_tests::free_port;
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::{gateway_doc, McpServer, Stack, SUPPORT};
use serde_json::json;

#[test]
fn envoy_refuses_a_server_scope_outside_the_allowed_set_and_names_it() {
    let mut doc = gateway_doc("http://127.0.0.1:10000", "http://127.0.0.1:9");
    doc["gateways"][0]["servers"][1]["scopes"] = json!(["tickets.write", "billing.write"]);
    let spec = Spec {
        name: "refuse_bad_scope".into(),
        filter_config: doc.to_string(),
        clusters: vec![("test_issuer".into(), 9)],
        routes: vec![],
        concurrency: 1,
        port: None,
    };
    match Envoy::try_start(&spec) {
        Ok(_) => panic!("Envoy started with a server scope outside the allowed set"),
        Err(log) => {
            assert!(
                log.contains("gateway `saas`, server `ops-console`: scope `billing.write` is not in the gateway's allowed_scopes"),
                "log does not name gateway, server and scope:\n{log}"
            );
            assert!(log.contains("configuration refused"), "{log}");
        }
    }
}

#[test]
fn envoy_refuses_unknown_fields_and_tool_scopes_outside_the_server() {
    for (label, edit, expect) in [
        (
            "unknown field",
            json!({"scopez": ["x"]}),
            "unknown field `scopez`",
        ),
        (
            "tool scope outside server",
            json!({"tools": {"update_ticket": ["accounts.read"]}}),
            "tool `update_ticket` needs `accounts.read`, which is not in the server's scopes",
        ),
    ] {
        let mut doc = gateway_doc("http://127.0.0.1:10000", "http://127.0.0.1:9");
        for (k, v) in edit.as_object().unwrap() {
            doc["gateways"][0]["servers"][1][k] = v.clone();
        }
        let spec = Spec {
            name: format!("refuse_{}", label.replace(' ', "_")),
            filter_config: doc.to_string(),
            clusters: vec![("test_issuer".into(), 9)],
            routes: vec![],
            concurrency: 1,
            port: None,
        };
        let log = Envoy::try_start(&spec)
            .err()
            .unwrap_or_else(|| panic!("{label}: Envoy started"));
        assert!(
            log.contains(expect),
            "{label}: log lacks `{expect}`:\n{log}"
        );
    }
}

#[test]
fn reject_foreign_scopes_turns_a_foreign_scope_into_401() {
    let s = Stack::start("reject_foreign_scopes", |doc| {
        doc["gateways"][0]["reject_foreign_scopes"] = json!(true);
    });
    let clean = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    assert_eq!(
        Client::new(&s.envoy.url(SUPPORT), Some(&clean))
            .initialize()
            .status,
        200
    );
    let foreign = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read offline_access");
    let r = Client::new(&s.envoy.url(SUPPORT), Some(&foreign)).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    let h = r.header("www-authenticate").unwrap();
    assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
    let line = s.envoy.wait_access_log(|l| l["reason"] == "foreign_scope");
    assert_eq!(line["foreign_scopes"], "offline_access");
}

#[test]
fn without_keys_governed_requests_get_503_and_never_reach_the_server() {
    let support = McpServer::start("support-assistant", "no_keys");
    let dead = free_port(); // nothing listens here: the JWKS fetch fails
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let doc = gateway_doc(&public_url, "http://127.0.0.1:9");
    let envoy = Envoy::start(&Spec {
        name: "no_keys".into(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), support.port),
            ("test_issuer".into(), dead),
            ("ops_console".into(), dead),
        ],
        routes: vec![("/support-assistant/".into(), "support_assistant".into())],
        concurrency: 1,
        port: Some(port),
    });
    let r = Client::new(&envoy.url(SUPPORT), Some("eyJhbGciOiJFUzI1NiJ9.e30.c2ln")).initialize();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(
        support.seen().is_empty(),
        "the server saw a request without a checked token"
    );
    // Metadata needs no keys and is still served.
    let prm = Client::get(
        &envoy.url("/.well-known/oauth-protected-resource/support-assistant/mcp"),
        None,
    );
    assert_eq!(prm.status, 200);
}

#[test]
fn inline_keys_need_no_fetch() {
    let issuer = scopegate_tests::issuer::Issuer::start();
    let support = McpServer::start("support-assistant", "inline_keys");
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut doc = gateway_doc(&public_url, &issuer.url);
    let jwks: serde_json::Value = reqwest::blocking::get(format!("{}/jwks", issuer.url))
        .unwrap()
        .json()
        .unwrap();
    doc["gateways"][0]["jwks"] = json!({ "inline": jwks });
    let envoy = Envoy::start(&Spec {
        name: "inline_keys".into(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), support.port),
            ("ops_console".into(), support.port),
        ],
        routes: vec![("/support-assistant/".into(), "support_assistant".into())],
        concurrency: 1,
        port: Some(port),
    });
    let token = issuer.token(&format!("{public_url}{SUPPORT}"), "tickets.read");
    assert_eq!(
        Client::new(&envoy.url(SUPPORT), Some(&token))
            .initialize()
            .status,
        200
    );
}

#[test]
fn a_routine_key_refresh_keeps_verified_tokens() {
    let s = Stack::start("routine_refresh", |doc| {
        doc["gateways"][0]["jwks"]["refresh_s"] = json!(1);
    });
    let token = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let verified = || {
        s.envoy
            .stat("wasmcustom.scopegate.jwt.verified")
            .unwrap_or(0)
    };
    assert_eq!(
        Client::new(&s.envoy.url(SUPPORT), Some(&token))
            .initialize()
            .status,
        200
    );
    let after_first = verified();
    let fetches = s.issuer.fetches();
    scopegate_tests::procs::wait_for(
        "two more JWKS refreshes",
        std::time::Duration::from_secs(20),
        || (s.issuer.fetches() >= fetches + 2).then_some(()),
    );
    assert_eq!(
        Client::new(&s.envoy.url(SUPPORT), Some(&token))
            .initialize()
            .status,
        200
    );
    assert_eq!(
        verified(),
        after_first,
        "an unchanged JWKS made the filter verify the token again"
    );
}
