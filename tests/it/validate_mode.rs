//! Validate mode end to end: a real Envoy with the built filter in front of the two example MCP
//! servers, tokens from a test issuer whose JWKS Envoy fetches through a cluster.

use scopegate_tests::issuer::{hs256_token, unsigned_token};
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::now;
use scopegate_tests::stack::{Stack, OPS, SUPPORT};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// One stack for the tests that only read; tests that need another document start their own.
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    // `render envoy` sets `allow_on_headers_stop_iteration` for `hold_headers`, so this stack
    // runs the mode that holds the headers (a refused call reaches the upstream not at all);
    // the default, `hold_body`, is covered through ECDS in `mesh_body_modes.rs`.
    STACK.get_or_init(|| {
        Stack::start("validate_mode", |doc| {
            doc["filter"] = json!({"body_mode": "hold_headers"})
        })
    })
}

fn prm_url(s: &Stack, path: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource{path}",
        s.public_url
    )
}

fn challenge(r: &Reply) -> String {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {} {}", r.status, r.body))
}

fn assert_invalid_token(r: &Reply, what: &str) {
    let s = stack();
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    let h = challenge(r);
    assert!(
        h.starts_with("Bearer error=\"invalid_token\""),
        "{what}: {h}"
    );
    assert!(
        h.contains(&format!("resource_metadata=\"{}\"", prm_url(s, SUPPORT))),
        "{what}: {h}"
    );
}

fn support_call(token: &str) -> Reply {
    let s = stack();
    Client::new(&s.envoy.url(SUPPORT), Some(token)).request("tools/list", json!({}), &[])
}

#[test]
fn protected_resource_metadata_for_both_servers_at_both_well_known_forms() {
    let s = stack();
    for (path, name, scopes) in [
        (
            SUPPORT,
            "support-assistant",
            json!(["tickets.read", "accounts.read"]),
        ),
        (OPS, "ops-console", json!(["tickets.write", "admin.read"])),
    ] {
        let r = Client::get(
            &s.envoy
                .url(&format!("/.well-known/oauth-protected-resource{path}")),
            None,
        );
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        let doc = r.json();
        assert_eq!(doc["resource"], json!(s.resource(path)), "{name}");
        assert_eq!(
            doc["authorization_servers"],
            json!([s.issuer.url]),
            "{name}"
        );
        assert_eq!(doc["scopes_supported"], scopes, "{name}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{name}");
    }
    // The root form names the gateway's default server.
    let r = Client::get(&s.envoy.url("/.well-known/oauth-protected-resource"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["resource"], json!(s.resource(SUPPORT)));
}

#[test]
fn no_token_gets_the_exact_challenge() {
    let s = stack();
    let r = Client::new(&s.envoy.url(SUPPORT), None).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"tickets.read accounts.read\"",
            prm_url(s, SUPPORT)
        )
    );
    let r = Client::new(&s.envoy.url(OPS), None).initialize();
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"tickets.write admin.read\"",
            prm_url(s, OPS)
        )
    );
}

#[test]
fn every_supported_algorithm_is_accepted() {
    let s = stack();
    for kid in ["rs256", "ps256", "es256", "eddsa"] {
        let token = s
            .issuer
            .sign(kid, s.issuer.claims(&s.resource(SUPPORT), "tickets.read"));
        let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
        let r = c.initialize();
        assert_eq!(r.status, 200, "{kid}: {}", r.body);
        assert!(c.session.is_some(), "{kid}: no session");
    }
}

#[test]
fn broken_tokens_are_invalid_token() {
    let s = stack();
    let resource = s.resource(SUPPORT);
    let good = s.issuer.claims(&resource, "tickets.read");

    let mut tampered = s.issuer.token(&resource, "tickets.read");
    let dot = tampered.rfind('.').unwrap();
    let sig: String = tampered[dot + 1..].chars().rev().collect();
    tampered.replace_range(dot + 1.., &sig);
    assert_invalid_token(&support_call(&tampered), "bad signature");

    let mut expired = good.clone();
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    assert_invalid_token(&support_call(&s.issuer.sign("es256", expired)), "expired");

    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(
        &support_call(&s.issuer.sign("es256", no_exp)),
        "missing exp",
    );

    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://evil.example.com");
    assert_invalid_token(
        &support_call(&s.issuer.sign("es256", other_issuer)),
        "wrong issuer",
    );

    assert_invalid_token(&support_call(&unsigned_token(&good)), "alg none");

    let pem = s.issuer.public_pem("rs256");
    assert_invalid_token(
        &support_call(&hs256_token(pem.as_bytes(), good.clone())),
        "HS256 keyed with the RSA public key",
    );

    assert_invalid_token(&support_call("not-a-jwt"), "garbage");
}

#[test]
fn a_token_for_one_server_is_refused_by_the_other() {
    let s = stack();
    let token = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read tickets.write");
    let r = Client::new(&s.envoy.url(OPS), Some(&token)).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    let h = challenge(&r);
    assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
    assert!(h.contains(&prm_url(s, OPS)), "{h}");
}

#[test]
fn allowed_call_reaches_the_server_with_identity_and_without_the_client_token() {
    let s = stack();
    let token = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool("get_account", json!({"account_id": "acme"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.tool_json();
    assert_eq!(
        seen["authorization"],
        Value::Null,
        "client token passed through: {seen}"
    );
    assert_eq!(seen["scopegate_subject"], json!("alice"));
    assert_eq!(seen["scopegate_client_id"], json!("test-client"));
    assert_eq!(
        seen["scopegate_scopes"],
        json!("tickets.read accounts.read")
    );
    // No request the server saw ever carried the token.
    for req in s.support.seen() {
        let text = req.to_string();
        assert!(
            !text.contains(&token),
            "upstream saw the client token: {text}"
        );
    }
}

/// The identity headers scopegate sets replace whatever the client sent under those names.
/// Other `x-scopegate-*` names are not scopegate's (README, "What the filter does with a
/// request") and pass through: the filter edits headers by name instead of reading the whole map.
#[test]
fn client_supplied_identity_headers_are_stripped() {
    let s = stack();
    let token = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.request(
        "tools/call",
        json!({"name": "list_tickets", "arguments": {}}),
        &[
            ("x-scopegate-subject", "root"),
            ("x-scopegate-client-id", "forged-client"),
            ("x-scopegate-scopes", "admin.read"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.tool_json();
    assert_eq!(seen["scopegate_subject"], json!("alice"));
    assert_eq!(seen["scopegate_scopes"], json!("tickets.read"));
    for req in s.support.seen() {
        let text = req.to_string();
        for forged in ["root", "forged-client", "admin.read"] {
            assert!(
                !text.contains(forged),
                "a client-supplied identity value reached upstream: {text}"
            );
        }
    }
}

#[test]
fn foreign_scopes_are_dropped_and_named_in_the_access_log() {
    let s = stack();
    let token = s.issuer.token(
        &s.resource(SUPPORT),
        "openid tickets.read offline_access billing.write",
    );
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool("list_tickets", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.tool_json()["scopegate_scopes"], json!("tickets.read"));
    let line = s.envoy.wait_access_log(|l| {
        l["tool"] == "list_tickets" && l["foreign_scopes"] == "openid offline_access billing.write"
    });
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["scopes"], "tickets.read");
}

#[test]
fn missing_tool_scope_gets_403_with_the_step_up_challenge_and_the_upstream_sees_nothing() {
    let s = stack();
    // ops-console grants tickets.write and admin.read; this token has only admin.read there.
    let token = s.issuer.token(&s.resource(OPS), "admin.read tickets.read");
    let mut c = Client::new(&s.envoy.url(OPS), Some(&token));
    assert_eq!(c.initialize().status, 200);
    s.ops.clear_seen();
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"tool `update_ticket` needs scope `tickets.write`\", resource_metadata=\"{}\", scope=\"tickets.write admin.read\"",
            prm_url(s, OPS)
        )
    );
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert!(
        s.ops.seen().is_empty(),
        "upstream saw the refused request: {:?}",
        s.ops.seen()
    );
    // The tool it may use passes.
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let line = s
        .envoy
        .wait_access_log(|l| l["tool"] == "update_ticket" && l["subject"] == "alice");
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["reason"], "insufficient_scope");
    assert_eq!(line["status"], 403);
}

#[test]
fn mcp_headers_must_match_the_body() {
    let s = stack();
    let token = s
        .issuer
        .token(&s.resource(SUPPORT), "tickets.read accounts.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.request(
        "tools/call",
        json!({"name": "list_tickets", "arguments": {}}),
        &[("mcp-method", "tools/call"), ("mcp-name", "get_account")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // A JSON-RPC error the SDKs accept: it answers the request's own id, never a null one.
    let v = r.json();
    assert!(v["id"].is_number(), "{}", r.body);
    assert_eq!(v["error"]["code"], -32020, "{}", r.body);
    let r = c.request(
        "tools/call",
        json!({"name": "list_tickets", "arguments": {}}),
        &[("mcp-method", "tools/call"), ("mcp-name", "list_tickets")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn sse_responses_arrive_intact() {
    let s = stack();
    let token = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    let r = c.request(
        "tools/call",
        json!({"name": "slow_count", "arguments": {"n": 3}, "_meta": {"progressToken": "p1"}}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    assert!(
        r.messages.len() >= 4,
        "expected 3 notifications and a result: {}",
        r.body
    );
    assert!(r.result().is_some(), "{}", r.body);
}

#[test]
fn ungoverned_traffic_passes_untouched() {
    let s = stack();
    let r = Client::get(
        &s.envoy.url("/plain/anything"),
        Some("opaque-upstream-credential"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json();
    assert_eq!(
        echo["headers"]["authorization"],
        json!("Bearer opaque-upstream-credential")
    );
    assert!(echo["headers"].get("x-scopegate-subject").is_none());
}

#[test]
fn decisions_are_counted_in_envoy_stats() {
    // An Envoy of its own, in front of the shared servers: its counters move only for what this
    // test sends (the shared Envoy's move for every test that runs at the same time).
    let s = stack();
    let (envoy, public_url) = s.own_envoy("validate_mode_counters", |doc| {
        doc["filter"] = json!({"body_mode": "hold_headers"})
    });
    let counter = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.scopegate.support-assistant.{name}"))
            .unwrap_or(0)
    };
    assert_eq!(counter("deny.no_token"), 0, "before any tokenless request");
    let r = Client::new(&envoy.url(SUPPORT), None).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        challenge(&r).contains(&format!(
            "resource_metadata=\"{public_url}/.well-known/oauth-protected-resource{SUPPORT}\""
        )),
        "{}",
        challenge(&r)
    );
    let n = scopegate_tests::procs::wait_for(
        "the no_token counter",
        std::time::Duration::from_secs(10),
        || Some(counter("deny.no_token")).filter(|n| *n > 0),
    );
    assert_eq!(n, 1, "one tokenless request, one no_token denial");
    // A token the filter admits moves the allow counter, and no_token stays where it was.
    let token = s
        .issuer
        .token(&format!("{public_url}{SUPPORT}"), "tickets.read");
    let r = Client::new(&envoy.url(SUPPORT), Some(&token)).initialize();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(counter("deny.no_token"), 1);
}

#[test]
fn a_rotated_key_is_accepted_after_refetch() {
    let s = stack();
    s.issuer.add_unpublished("ES256", "rotated-1");
    let token = s.issuer.sign(
        "rotated-1",
        s.issuer.claims(&s.resource(SUPPORT), "tickets.read"),
    );
    // Not yet published: unknown kid, refetch finds nothing, 401.
    assert_invalid_token(&support_call(&token), "unpublished key");
    s.issuer.publish("rotated-1");
    // The unknown-kid refetch is rate-limited to one a second in this document.
    let status = scopegate_tests::procs::wait_for(
        "the rotated key to be accepted",
        std::time::Duration::from_secs(15),
        || {
            let r = support_call(&token);
            (r.status != 401).then_some(r.status)
        },
    );
    assert_ne!(status, 503);
}

#[test]
fn a_spent_budget_is_429_with_retry_after_per_subject() {
    let s = stack();
    let mut claims = s
        .issuer
        .claims(&s.resource(OPS), "admin.read tickets.write");
    claims["sub"] = json!("budget-user");
    let token = s.issuer.sign("es256", claims);
    let mut c = Client::new(&s.envoy.url(OPS), Some(&token));
    assert_eq!(c.initialize().status, 200);
    for i in 0..3 {
        assert_eq!(
            c.call_tool("admin_report", json!({})).status,
            200,
            "call {i} is within the budget"
        );
    }
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // A JSON-RPC error for MCP clients (code -32011), with the HTTP status and Retry-After.
    assert_eq!(r.json()["error"]["code"], -32011, "{}", r.body);
    // Other tools are not counted, and another user has a budget of their own.
    assert_eq!(
        c.call_tool(
            "update_ticket",
            json!({"ticket_id": "T-9", "status": "open"})
        )
        .status,
        200
    );
    let other = s.issuer.token(&s.resource(OPS), "admin.read");
    let mut c2 = Client::new(&s.envoy.url(OPS), Some(&other));
    assert_eq!(c2.initialize().status, 200);
    assert_eq!(c2.call_tool("admin_report", json!({})).status, 200);
    let line = s
        .envoy
        .wait_access_log(|l| l["reason"] == "budget_exceeded");
    assert_eq!(line["status"], 429);
    assert_eq!(line["subject"], "budget-user");
}

/// A gateway whose identity rule reads `email`: the token's email is the subject upstream, on
/// the request that verifies the token and on the cached hits after it (a cached token keeps
/// only the claims the policy reads; `core::authorize::keep_read_claims`).
#[test]
fn the_identity_rules_claim_is_the_subject_on_the_miss_and_on_every_hit() {
    let s = Stack::start("validate_mode_subject_claim", |doc| {
        doc["gateways"][0]["identity"] = json!({"subject_claim": "email"})
    });
    let mut claims = s.issuer.claims(&s.resource(SUPPORT), "tickets.read");
    claims["email"] = json!("alice@example.com");
    claims["groups"] = json!(["staff", "oncall"]);
    claims["name"] = json!("Alice Example");
    let token = s.issuer.sign("es256", claims);
    let verified_before = s
        .envoy
        .stat("wasmcustom.scopegate.jwt.verified")
        .unwrap_or(0);
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    for call in 0..3 {
        let r = c.call_tool("list_tickets", json!({}));
        assert_eq!(r.status, 200, "call {call}: {}", r.body);
        assert_eq!(
            r.tool_json()["scopegate_subject"],
            json!("alice@example.com"),
            "call {call}"
        );
    }
    // Signatures are checked once per token: the calls after the first were cache hits.
    let verified = scopegate_tests::procs::wait_for(
        "the jwt.verified counter",
        std::time::Duration::from_secs(10),
        || {
            s.envoy
                .stat("wasmcustom.scopegate.jwt.verified")
                .filter(|n| *n > verified_before)
        },
    );
    assert_eq!(verified - verified_before, 1);

    // Under this rule a token without `email` has no subject.
    let token = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let r = Client::new(&s.envoy.url(SUPPORT), Some(&token)).request("tools/list", json!({}), &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(challenge(&r).starts_with("Bearer error=\"invalid_token\""));
}
