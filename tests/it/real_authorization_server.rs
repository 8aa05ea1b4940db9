//! Tokens from a real authorization server (oidc-provider), checked by the filter in a real Envoy.

use scopegate_tests::authz::Authz;
use scopegate_tests::envoy::{Envoy, Spec};
use scopegate_tests::free_port;
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::{gateway_doc, McpServer, OPS, SUPPORT};
use serde_json::json;

#[test]
fn oidc_provider_tokens_are_enforced_per_server() {
    let support = McpServer::start("support-assistant", "real_as");
    let ops = McpServer::start("ops-console", "real_as");
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let support_resource = format!("{public_url}{SUPPORT}");
    let ops_resource = format!("{public_url}{OPS}");
    let authz = Authz::start(
        "real_as",
        &json!({
            "clients": [{
                "client_id": "agent", "client_secret": "agent-secret-for-tests-only",
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid tickets.read tickets.write accounts.read admin.read"
            }],
            "resources": {
                support_resource.clone(): {"scope": "tickets.read accounts.read admin.read", "alg": "RS256"},
                ops_resource.clone(): {"scope": "tickets.write admin.read", "alg": "ES256"}
            }
        }),
    );
    let mut doc = gateway_doc(&public_url, &authz.url);
    doc["gateways"][0]["jwks"] = json!({"cluster": "authz", "path": "/jwks"});
    let envoy = Envoy::start(&Spec {
        name: "real_as".into(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), support.port),
            ("ops_console".into(), ops.port),
            ("authz".into(), authz.port),
        ],
        routes: vec![
            ("/support-assistant/".into(), "support_assistant".into()),
            ("/ops-console/".into(), "ops_console".into()),
        ],
        concurrency: 1,
        port: Some(port),
    });

    let issued = authz.client_credentials(
        "agent",
        "agent-secret-for-tests-only",
        &support_resource,
        "tickets.read accounts.read",
    );
    let token = issued["access_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&envoy.url(SUPPORT), Some(&token));
    let init = scopegate_tests::procs::wait_for(
        "keys from oidc-provider",
        std::time::Duration::from_secs(20),
        || {
            let r = c.initialize();
            (r.status != 503).then_some(r)
        },
    );
    assert_eq!(init.status, 200, "{}", init.body);
    let r = c.call_tool("get_account", json!({"account_id": "acme"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.tool_json()["scopegate_scopes"],
        json!("tickets.read accounts.read")
    );
    assert_eq!(r.tool_json()["authorization"], serde_json::Value::Null);

    // The same token at the other server: wrong audience.
    let r = Client::new(&envoy.url(OPS), Some(&token)).initialize();
    assert_eq!(r.status, 401, "{}", r.body);

    // An ops-console token (ES256) without tickets.write: 403 on update_ticket, admin_report passes.
    let issued = authz.client_credentials(
        "agent",
        "agent-secret-for-tests-only",
        &ops_resource,
        "admin.read",
    );
    let token = issued["access_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&envoy.url(OPS), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("scope=\"tickets.write admin.read\""));
    assert_eq!(c.call_tool("admin_report", json!({})).status, 200);
}
