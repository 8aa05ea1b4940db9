//! The request-path rules, from bearer header to decision, without any host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use scopegate_core::authorize::{
    admission, admit, bad_request, bearer_credentials, bearer_token, decide, keep_read_claims,
    required_scopes, Target,
};
use scopegate_core::decision::Outcome;
use scopegate_core::jwks::Algorithm;
use scopegate_core::jwt::Claims;
use scopegate_core::mcp::Call;
use scopegate_core::validate::load;
use scopegate_core::Policy;

const DOC: &str = r#"
gateways:
  - name: saas
    public_url: https://mcp.example.com
    issuer: https://idp.example.com
    allowed_scopes: [tickets.read, tickets.write, accounts.read, admin.read]
    jwks: { cluster: idp }
    servers:
      - name: support-assistant
        cluster: support_assistant
        path: /support-assistant/mcp
        scopes: [tickets.read, accounts.read]
        base_scopes: [tickets.read]
        tools: { get_account: [accounts.read] }
      - name: ops-console
        cluster: ops_console
        path: /ops-console/mcp
        scopes: [tickets.write, admin.read]
        tools: { update_ticket: [tickets.write], admin_report: [admin.read] }
        methods: { resources/read: [admin.read] }
        forward_client_token: true
"#;

const NOW: u64 = 1_800_000_000;

fn policy() -> Policy {
    load(DOC).unwrap()
}

fn target<'a>(p: &'a Policy, name: &str) -> Target<'a> {
    Target::of(p, p.server_by_name(name).unwrap()).unwrap()
}

fn claims(aud: &str, scope: &str) -> Claims {
    Claims {
        iss: "https://idp.example.com".into(),
        sub: Some("alice".into()),
        aud: vec![format!("https://mcp.example.com{aud}")],
        exp: NOW + 60,
        nbf: None,
        iat: Some(NOW),
        jti: None,
        client_id: Some("claude".into()),
        scopes: scope.split(' ').map(str::to_string).collect(),
        kid: None,
        alg: Algorithm::Es256,
        grant_id: None,
        extra: Default::default(),
    }
}

fn call(method: &str, name: Option<&str>) -> Call {
    Call {
        method: method.into(),
        name: name.map(str::to_string),
    }
}

#[test]
fn bearer_parsing() {
    let p = policy();
    let t = target(&p, "support-assistant");
    assert_eq!(bearer_token(t, Some("Bearer abc")).unwrap(), "abc");
    assert_eq!(bearer_token(t, Some("bearer  abc ")).unwrap(), "abc");
    let d = bearer_token(t, None).unwrap_err();
    assert_eq!(d.status(), 401);
    assert_eq!(d.audit.reason, "no_token");
    let Outcome::Deny(deny) = &d.outcome else {
        panic!()
    };
    assert_eq!(
        deny.www_authenticate.as_deref(),
        Some("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/support-assistant/mcp\", scope=\"tickets.read accounts.read\"")
    );
    assert_eq!(
        bearer_token(t, Some("Basic dXNlcg=="))
            .unwrap_err()
            .audit
            .reason,
        "no_token"
    );
    assert_eq!(
        bearer_token(t, Some("Bearer a b"))
            .unwrap_err()
            .audit
            .reason,
        "malformed"
    );
}

#[test]
fn audience_binds_the_token_to_one_server() {
    let p = policy();
    let c = claims("/support-assistant/mcp", "tickets.read");
    assert!(admit(target(&p, "support-assistant"), &c, NOW, 5).is_ok());
    let d = admit(target(&p, "ops-console"), &c, NOW, 5).unwrap_err();
    assert_eq!(
        (d.status(), d.audit.reason.as_str()),
        (401, "wrong_audience")
    );
}

#[test]
fn cached_claims_expire_and_keep_their_issuer() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let c = claims("/support-assistant/mcp", "tickets.read");
    assert!(admit(t, &c, NOW + 64, 5).is_ok());
    assert_eq!(
        admit(t, &c, NOW + 65, 5).unwrap_err().audit.reason,
        "expired"
    );
    let mut other = c.clone();
    other.iss = "https://other.example.com".into();
    assert_eq!(
        admit(t, &other, NOW, 5).unwrap_err().audit.reason,
        "wrong_issuer"
    );
}

#[test]
fn effective_scopes_are_the_token_within_the_server_subset() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let c = claims(
        "/support-assistant/mcp",
        "openid tickets.read admin.read offline_access",
    );
    let principal = admit(t, &c, NOW, 5).unwrap();
    assert_eq!(
        p.gateways[0].scopes.render(principal.effective),
        "tickets.read"
    );
    assert_eq!(
        p.gateways[0].scopes.render(principal.granted),
        "tickets.read admin.read"
    );
    assert_eq!(principal.foreign, "openid offline_access");
    let d = decide(t, &principal, &[]);
    let Outcome::Allow(g) = &d.outcome else {
        panic!("{d:?}")
    };
    assert_eq!(g.scopes, "tickets.read");
    assert_eq!(g.subject, "alice");
    assert!(!g.forward_client_token);
    assert_eq!(d.audit.foreign_scopes, "openid offline_access");
}

#[test]
fn base_tool_and_method_scopes_add_up() {
    let p = policy();
    let support = p
        .server(p.server_by_name("support-assistant").unwrap())
        .unwrap();
    let ops = p.server(p.server_by_name("ops-console").unwrap()).unwrap();
    let idx = &p.gateways[0].scopes;
    assert_eq!(idx.render(required_scopes(support, &[])), "tickets.read");
    assert_eq!(
        idx.render(required_scopes(
            support,
            &[call("tools/call", Some("get_account"))]
        )),
        "tickets.read accounts.read"
    );
    assert_eq!(
        idx.render(required_scopes(
            support,
            &[call("tools/call", Some("unlisted"))]
        )),
        "tickets.read"
    );
    assert_eq!(
        idx.render(required_scopes(
            ops,
            &[
                call("tools/call", Some("update_ticket")),
                call("resources/read", Some("x://1"))
            ]
        )),
        "tickets.write admin.read"
    );
}

#[test]
fn missing_scope_is_403_with_needed_union_granted() {
    let p = policy();
    let t = target(&p, "ops-console");
    let principal = admit(
        t,
        &claims("/ops-console/mcp", "admin.read tickets.read"),
        NOW,
        5,
    )
    .unwrap();
    let d = decide(t, &principal, &[call("tools/call", Some("update_ticket"))]);
    assert_eq!(d.status(), 403);
    assert_eq!(d.audit.reason, "insufficient_scope");
    assert_eq!(d.audit.tool.as_deref(), Some("update_ticket"));
    let Outcome::Deny(deny) = &d.outcome else {
        panic!()
    };
    let h = deny.www_authenticate.as_deref().unwrap();
    assert!(h.starts_with("Bearer error=\"insufficient_scope\""), "{h}");
    assert!(h.ends_with("scope=\"tickets.write admin.read\""), "{h}");
    // The server opted in to receive the client's token.
    let ok = decide(t, &principal, &[call("tools/call", Some("admin_report"))]);
    let Outcome::Allow(g) = &ok.outcome else {
        panic!("{ok:?}")
    };
    assert!(g.forward_client_token);
}

#[test]
fn base_scopes_gate_every_request() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let principal = admit(
        t,
        &claims("/support-assistant/mcp", "accounts.read"),
        NOW,
        5,
    )
    .unwrap();
    assert_eq!(decide(t, &principal, &[]).status(), 403);
}

#[test]
fn subject_comes_from_the_identity_rule() {
    let doc = DOC.replace(
        "    jwks: { cluster: idp }",
        "    jwks: { cluster: idp }\n    identity: { subject_claim: email }",
    );
    let p = load(&doc).unwrap();
    let t = target(&p, "support-assistant");
    let mut c = claims("/support-assistant/mcp", "tickets.read");
    assert_eq!(admit(t, &c, NOW, 5).unwrap_err().audit.reason, "no_subject");
    c.extra.insert("email".into(), "alice@example.com".into());
    assert_eq!(admit(t, &c, NOW, 5).unwrap().subject, "alice@example.com");
}

#[test]
fn a_cached_token_keeps_only_the_claims_the_policy_reads() {
    let doc = DOC.replace(
        "    jwks: { cluster: idp }",
        "    jwks: { cluster: idp }\n    identity: { subject_claim: email }",
    );
    let p = load(&doc).unwrap();
    let mut c = claims("/support-assistant/mcp", "tickets.read");
    c.extra.insert("email".into(), "alice@example.com".into());
    c.extra
        .insert("groups".into(), serde_json::json!(["staff", "oncall"]));
    c.extra.insert("name".into(), "Alice".into());
    keep_read_claims(&p, &mut c);
    assert_eq!(c.extra.keys().collect::<Vec<_>>(), ["email"]);
    let t = target(&p, "support-assistant");
    assert_eq!(admit(t, &c, NOW, 5).unwrap().subject, "alice@example.com");

    // The default rule reads `sub`, a registered claim: nothing beyond the registered ones stays.
    let mut c = claims("/support-assistant/mcp", "tickets.read");
    c.extra.insert("email".into(), "alice@example.com".into());
    keep_read_claims(&policy(), &mut c);
    assert!(c.extra.is_empty());
    assert_eq!(c.sub.as_deref(), Some("alice"));
}

#[test]
fn reject_foreign_scopes_is_strict() {
    let doc = DOC.replace(
        "    jwks: { cluster: idp }",
        "    jwks: { cluster: idp }\n    reject_foreign_scopes: true",
    );
    let p = load(&doc).unwrap();
    let t = target(&p, "support-assistant");
    let d = admit(
        t,
        &claims("/support-assistant/mcp", "tickets.read openid"),
        NOW,
        5,
    )
    .unwrap_err();
    assert_eq!(
        (
            d.status(),
            d.audit.reason.as_str(),
            d.audit.foreign_scopes.as_str()
        ),
        (401, "foreign_scope", "openid")
    );
}

#[test]
fn identity_values_must_be_header_safe() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let mut c = claims("/support-assistant/mcp", "tickets.read");
    c.sub = Some("alice\r\nx-scopegate-scopes: admin.read".into());
    assert_eq!(admit(t, &c, NOW, 5).unwrap_err().audit.reason, "malformed");
}

#[test]
fn bad_request_body_is_a_json_rpc_error_without_null_members() {
    let p = policy();
    let d = bad_request(
        target(&p, "ops-console"),
        &scopegate_core::mcp::McpError::HeaderMismatch { header: "Mcp-Name" },
    );
    let Outcome::Deny(deny) = &d.outcome else {
        panic!("allowed")
    };
    assert_eq!(deny.status, 400);
    let body: serde_json::Value = serde_json::from_str(&deny.body).unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32020);
    assert!(body.get("id").is_none(), "{body}");
    assert!(!deny.body.contains("null"), "{}", deny.body);
}

#[test]
fn the_cache_lookup_key_is_the_token_bearer_parsing_accepts() {
    let p = policy();
    let t = target(&p, "support-assistant");
    for value in ["Bearer abc", "bearer  abc ", " BEARER abc", "Bearer a.b.c"] {
        assert_eq!(
            bearer_credentials(value),
            Some(bearer_token(t, Some(value)).unwrap()),
            "{value}"
        );
    }
    // Not a bearer value: nothing to look up. (A value with inner spaces may be looked up, but
    // no token the cache holds has one: bearer_token refused it before it was ever verified.)
    assert_eq!(bearer_credentials("Basic abc"), None);
    assert_eq!(bearer_credentials("Bearer"), None);
    assert!(bearer_token(t, Some("Bearer a b")).is_err());
}

#[test]
fn an_admission_is_admit_then_decide_on_the_token_alone() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let c = claims(
        "/support-assistant/mcp",
        "tickets.read accounts.read admin.read",
    );
    let a = admission(t, &c, NOW, 0).unwrap();
    let principal = admit(t, &c, NOW, 0).unwrap();
    assert_eq!(a.principal.subject, principal.subject);
    assert_eq!(a.principal.effective, principal.effective);
    let d = decide(t, &principal, &[]);
    assert_eq!(a.decision.is_allow(), d.is_allow());
    assert_eq!(a.decision.audit.scopes, d.audit.scopes);
    assert_eq!(
        a.record,
        scopegate_core::upstream::record_json(&a.decision.audit)
    );
    let record: serde_json::Value = serde_json::from_str(&a.record).unwrap();
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["subject"], "alice");
    // Without the base scope the token alone is refused: the admission carries the refusal.
    let weak = claims("/support-assistant/mcp", "accounts.read");
    let a = admission(t, &weak, NOW, 0).unwrap();
    assert_eq!(a.decision.status(), 403);
    assert_eq!(a.decision.audit.reason, "insufficient_scope");
    // A token admit refuses (wrong audience, expired) has no admission.
    let other = claims("/ops-console/mcp", "tickets.read");
    assert_eq!(admission(t, &other, NOW, 0).unwrap_err().status(), 401);
    assert_eq!(admission(t, &c, NOW + 61, 0).unwrap_err().status(), 401);
}
