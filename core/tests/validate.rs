//! Validation of the config document: every refusal names gateway, server and scope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use scopegate_core::validate::{load, LoadError};

const BASE: &str = r#"
gateways:
  - name: saas
    public_url: https://mcp.example.com
    issuer: https://mcp.example.com
    allowed_scopes: [tickets.read, tickets.write, accounts.read, admin.read]
    jwks: { cluster: idp, path: /jwks }
    servers:
      - name: support-assistant
        cluster: support_assistant
        path: /support-assistant/mcp
        scopes: [tickets.read, accounts.read]
        tools: { get_account: [accounts.read] }
      - name: ops-console
        cluster: ops_console
        path: /ops-console/mcp
        scopes: [tickets.write, admin.read]
"#;

fn errors(doc: &str) -> Vec<String> {
    match load(doc) {
        Ok(_) => vec![],
        Err(LoadError::Invalid(es)) => es.iter().map(|e| e.to_string()).collect(),
        Err(e @ LoadError::Parse(_)) => vec![e.to_string()],
    }
}

fn assert_refused(doc: &str, needle: &str) {
    let es = errors(doc);
    assert!(
        es.iter().any(|e| e.contains(needle)),
        "expected an error containing {needle:?}, got {es:#?}"
    );
}

#[test]
fn the_example_is_valid_and_indexed() {
    let p = load(BASE).unwrap();
    let id = p.server_for_cluster("ops_console").unwrap();
    let s = p.server(id).unwrap();
    assert_eq!(s.resource, "https://mcp.example.com/ops-console/mcp");
    assert_eq!(
        s.metadata_url,
        "https://mcp.example.com/.well-known/oauth-protected-resource/ops-console/mcp"
    );
    assert_eq!(s.challenge_scope, "tickets.write admin.read");
    assert!(p.server_for_cluster("elsewhere").is_none());
    assert_eq!(
        p.server_for_resource("https://mcp.example.com/support-assistant/mcp"),
        p.server_by_name("support-assistant")
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn server_scope_outside_the_allowed_set() {
    let doc = BASE.replace(
        "scopes: [tickets.write, admin.read]",
        "scopes: [tickets.write, billing.write]",
    );
    assert_refused(&doc, "gateway `saas`, server `ops-console`: scope `billing.write` is not in the gateway's allowed_scopes");
    assert_refused(&doc, "gateways[0].servers[1].scopes");
}

#[test]
fn tool_scope_outside_the_server_subset() {
    let doc = BASE.replace("get_account: [accounts.read]", "get_account: [admin.read]");
    assert_refused(&doc, "server `support-assistant`: tool `get_account` needs `admin.read`, which is not in the server's scopes");
}

#[test]
fn base_scopes_must_be_within_the_subset() {
    let doc = BASE.replace(
        "        tools: { get_account: [accounts.read] }",
        "        base_scopes: [tickets.write]",
    );
    assert_refused(&doc, "base_scopes needs `tickets.write`");
}

#[test]
fn duplicates_are_refused() {
    let doc = BASE.replace("name: ops-console", "name: support-assistant");
    assert_refused(&doc, "duplicate server name `support-assistant`");
    let doc = BASE.replace("cluster: ops_console", "cluster: support_assistant");
    assert_refused(
        &doc,
        "cluster `support_assistant` is already governed by server `support-assistant`",
    );
    let doc = BASE.replace("path: /ops-console/mcp", "path: /support-assistant/mcp");
    assert_refused(&doc, "resource `https://mcp.example.com/support-assistant/mcp` is already server `support-assistant`'s");
    let doc = BASE.replace(
        "allowed_scopes: [tickets.read,",
        "allowed_scopes: [tickets.read, tickets.read,",
    );
    assert_refused(&doc, "scope `tickets.read` is listed twice");
}

#[test]
fn non_canonical_resource_urls_are_refused() {
    for (from, to, needle) in [
        (
            "public_url: https://mcp.example.com",
            "public_url: https://mcp.example.com/",
            "origin only",
        ),
        (
            "public_url: https://mcp.example.com",
            "public_url: https://MCP.example.com",
            "lower case",
        ),
        (
            "public_url: https://mcp.example.com",
            "public_url: https://mcp.example.com:443",
            "default port",
        ),
        (
            "public_url: https://mcp.example.com",
            "public_url: http://mcp.example.com",
            "https",
        ),
        (
            "path: /ops-console/mcp",
            "path: /ops-console/mcp/",
            "must not end with `/`",
        ),
        (
            "path: /ops-console/mcp",
            "path: /ops-console/../mcp",
            "dot segment",
        ),
        (
            "path: /ops-console/mcp",
            "path: ops-console/mcp",
            "must start with `/`",
        ),
    ] {
        assert_refused(&BASE.replace(from, to), needle);
    }
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let doc = BASE.replace(
        "        tools: { get_account: [accounts.read] }",
        "        tool: { get_account: [accounts.read] }",
    );
    let e = errors(&doc).join("\n");
    assert!(
        e.contains("gateways[0].servers[0]") && e.contains("unknown field `tool`"),
        "{e}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let doc = BASE
        .replace(
            "scopes: [tickets.write, admin.read]",
            "scopes: [billing.write]",
        )
        .replace("get_account: [accounts.read]", "get_account: [admin.read]");
    assert!(errors(&doc).len() >= 2, "{:?}", errors(&doc));
}

#[test]
fn brokered_gateways_need_the_broker_cluster_and_no_inline_secrets() {
    let doc = BASE.replace(
        "    jwks: { cluster: idp, path: /jwks }",
        "    jwks: { cluster: idp, path: /jwks }\n    downstream: { authorization_server: https://auth.example.com, client_id: c }",
    );
    assert_refused(&doc, "`filter.broker` is missing");
    let doc = BASE.replace(
        "    jwks: { cluster: idp, path: /jwks }",
        "    jwks: { cluster: idp, path: /jwks }\n    downstream: { authorization_server: https://auth.example.com, client_id: c, client_secret: hunter2 }",
    );
    assert_refused(&doc, "unknown field `client_secret`");
}

#[test]
fn keys_must_come_from_somewhere() {
    let doc = BASE.replace("    jwks: { cluster: idp, path: /jwks }\n", "");
    assert_refused(&doc, "no signing keys");
    let doc = BASE.replace(
        "jwks: { cluster: idp, path: /jwks }",
        "jwks: { inline: { keys: [] } }",
    );
    assert_refused(&doc, "inline JWKS is unusable");
}

#[test]
fn leeway_stays_small() {
    let doc = format!("{BASE}filter: {{ leeway_s: 600 }}\n");
    assert_refused(&doc, "leeway of 600s is too long");
}

#[test]
fn two_gateways_with_one_boundary_draw_a_warning() {
    let second = r#"
  - name: saas-ops
    public_url: https://ops.example.com
    issuer: https://mcp.example.com
    allowed_scopes: [admin.read]
    jwks: { cluster: idp, path: /jwks }
    servers:
      - { name: audit, cluster: audit, path: /audit/mcp, scopes: [admin.read] }
"#;
    let doc = BASE.to_string() + second;
    let p = load(&doc).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("`saas` and `saas-ops` share one auth boundary")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn root_metadata_names_the_default_or_only_server() {
    let p = load(BASE).unwrap();
    // Two servers, no default: the root form cannot name one.
    assert_eq!(
        p.prm_server(
            "/.well-known/oauth-protected-resource",
            Some("mcp.example.com")
        ),
        None
    );
    assert_eq!(
        p.prm_server(
            "/.well-known/oauth-protected-resource/ops-console/mcp",
            Some("mcp.example.com")
        ),
        p.server_by_name("ops-console")
    );
    let doc = BASE.replace(
        "    servers:\n",
        "    default_server: ops-console\n    servers:\n",
    );
    let p = load(&doc).unwrap();
    assert_eq!(
        p.prm_server(
            "/.well-known/oauth-protected-resource",
            Some("mcp.example.com")
        ),
        p.server_by_name("ops-console")
    );
    let doc = BASE.replace("    servers:\n", "    default_server: nope\n    servers:\n");
    assert_refused(
        &doc,
        "default_server `nope` is not a server of this gateway",
    );
}

#[test]
fn one_bad_server_scope_is_one_error() {
    let doc = BASE.replace(
        "scopes: [tickets.read, accounts.read]",
        "scopes: [tickets.read, accounts.read, billing.read]",
    );
    let es = errors(&doc);
    assert_eq!(es.len(), 1, "{es:#?}");
}

#[test]
fn mcp_metadata_cannot_filter_listings() {
    let listing_rules = "        deny: { tools: [export_accounts] }\n";
    let doc = BASE.replace(
        "        tools: { get_account: [accounts.read] }\n",
        &format!("        tools: {{ get_account: [accounts.read] }}\n{listing_rules}"),
    );
    assert!(errors(&doc).is_empty(), "{:?}", errors(&doc));
    let metadata = format!("{doc}filter: {{ body_mode: mcp_metadata }}\n");
    assert_refused(&metadata, "`mcp_metadata` cannot filter listings");
    assert_refused(&metadata, "support-assistant");
    let plain = format!("{BASE}filter: {{ body_mode: mcp_metadata }}\n");
    assert!(errors(&plain).is_empty(), "{:?}", errors(&plain));
}

#[test]
fn rate_limit_settings_are_checked_field_by_field() {
    let ok = format!("{BASE}filter: {{ rate_limit: {{ cluster: rls }} }}\n");
    let p = load(&ok).unwrap();
    let r = p.filter.rate_limit.clone().unwrap();
    assert_eq!(
        (r.cluster.as_str(), r.domain.as_str(), r.timeout_ms),
        ("rls", "scopegate", 100)
    );
    assert_eq!(r.on_error, scopegate_core::config::OnError::Deny);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(load(BASE).unwrap().filter.rate_limit.is_none());

    let bad =
        format!("{BASE}filter: {{ rate_limit: {{ cluster: '', domain: '', timeout_ms: 0 }} }}\n");
    assert_refused(&bad, "filter.rate_limit.cluster");
    assert_refused(&bad, "filter.rate_limit.domain");
    assert_refused(&bad, "filter.rate_limit.timeout_ms");
    let slow = format!("{BASE}filter: {{ rate_limit: {{ cluster: rls, timeout_ms: 10001 }} }}\n");
    assert_refused(&slow, "filter.rate_limit.timeout_ms");
    let typo = format!("{BASE}filter: {{ rate_limit: {{ cluster: rls, on_error: maybe }} }}\n");
    assert_refused(&typo, "on_error");
    let missing = format!("{BASE}filter: {{ rate_limit: {{ domain: d }} }}\n");
    assert_refused(&missing, "cluster");
    for shared in ["ops_console", "idp"] {
        let doc = format!("{BASE}filter: {{ rate_limit: {{ cluster: {shared} }} }}\n");
        assert_refused(&doc, "filter.rate_limit.cluster");
    }

    let open = format!("{BASE}filter: {{ rate_limit: {{ cluster: rls, on_error: allow }} }}\n");
    let p = load(&open).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("filter.rate_limit.on_error") && w.contains("uncounted")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_rate_limit_service_counts_whole_units_and_one_counter_per_path() {
    let budgets = |list: &str| {
        BASE.replace(
            "        scopes: [tickets.write, admin.read]\n",
            &format!("        scopes: [tickets.write, admin.read]\n        budgets: {list}\n"),
        )
    };
    let odd = budgets("[{ requests: 5, per_seconds: 30 }]");
    assert!(
        errors(&odd).is_empty(),
        "counted per proxy, any window works"
    );
    let odd = format!("{odd}filter: {{ rate_limit: {{ cluster: rls }} }}\n");
    assert_refused(&odd, "gateways[0].servers[1].budgets[0].per_seconds");
    let units = budgets(
        "[{ requests: 5, per_seconds: 1 }, { requests: 5, per_seconds: 60 }, { requests: 5, per_seconds: 3600, per: server }, { requests: 5, per_seconds: 86400, tool: x }]",
    );
    let units = format!("{units}filter: {{ rate_limit: {{ cluster: rls }} }}\n");
    assert!(errors(&units).is_empty(), "{:?}", errors(&units));

    let twice = budgets(
        "[{ tool: x, requests: 5, per_seconds: 60 }, { tool: x, requests: 9, per_seconds: 60, per: client_id }, { tool: x, requests: 7, per_seconds: 60 }]",
    );
    assert!(
        errors(&twice).is_empty(),
        "per proxy each budget has its own window"
    );
    let twice = format!("{twice}filter: {{ rate_limit: {{ cluster: rls }} }}\n");
    let es = errors(&twice);
    assert_eq!(es.len(), 1, "{es:#?}");
    assert!(
        es[0].contains("gateways[0].servers[1].budgets[2]") && es[0].contains("budgets[0]"),
        "{es:#?}"
    );
}
