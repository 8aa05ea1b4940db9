//! The body modes: which requests wait for a body, early refusals on `Mcp-*` headers, the
//! header/body agreement, and decisions on the native `mcp` filter's metadata.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use scopegate_core::authorize::{
    admission, admit, body_plan, decide, decide_body, decide_metadata, early_refusal, BodyPlan,
    Principal, Target,
};
use scopegate_core::config::BodyMode;
use scopegate_core::decision::{Decision, Outcome};
use scopegate_core::jwks::Algorithm;
use scopegate_core::jwt::Claims;
use scopegate_core::mcp::{self, NativeMetadata, HEADER_MISMATCH, INVALID_REQUEST};
use scopegate_core::validate::load;
use scopegate_core::Policy;
use serde_json::Value;

const DOC: &str = r#"{
  "gateways": [{
    "name": "saas",
    "public_url": "https://mcp.example.com",
    "issuer": "https://idp.example.com",
    "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
    "jwks": {"cluster": "idp"},
    "servers": [
      {"name": "support-assistant", "cluster": "support_assistant", "path": "/support-assistant/mcp",
       "scopes": ["tickets.read", "accounts.read"],
       "tools": {"get_account": ["accounts.read"]}},
      {"name": "plain", "cluster": "plain", "path": "/plain/mcp",
       "scopes": ["tickets.read"]}
    ]
  }],
  "filter": {"body_mode": "hold_body"}
}"#;

const NOW: u64 = 1_800_000_000;

fn policy() -> Policy {
    load(DOC).unwrap()
}

fn target<'a>(p: &'a Policy, name: &str) -> Target<'a> {
    Target::of(p, p.server_by_name(name).unwrap()).unwrap()
}

fn claims_for(t: Target<'_>, scope: &str) -> Claims {
    Claims {
        iss: "https://idp.example.com".into(),
        sub: Some("alice".into()),
        aud: vec![t.server.resource.clone()],
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

fn principal(t: Target<'_>, scope: &str) -> Principal {
    admit(t, &claims_for(t, scope), NOW, 5).unwrap()
}

fn jsonrpc_code(d: &Decision) -> i64 {
    let Outcome::Deny(deny) = &d.outcome else {
        panic!("expected a refusal, got {d:?}")
    };
    let v: Value = serde_json::from_str(&deny.body).unwrap();
    v["error"]["code"].as_i64().unwrap()
}

const GET_ACCOUNT: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account"}}"#;
const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

#[test]
fn the_default_mode_needs_no_flag_and_only_posts_to_ruled_servers_wait() {
    let p = policy();
    assert_eq!(p.filter.body_mode, BodyMode::HoldBody);
    assert!(p.warnings.iter().all(|w| !w.contains("body_mode")));
    let support = target(&p, "support-assistant").server;
    let plain = target(&p, "plain").server;
    assert_eq!(
        body_plan(support, BodyMode::HoldBody, true),
        BodyPlan::HoldBody
    );
    assert_eq!(
        body_plan(support, BodyMode::HoldHeaders, true),
        BodyPlan::HoldHeaders
    );
    assert_eq!(
        body_plan(support, BodyMode::McpMetadata, true),
        BodyPlan::FromMetadata
    );
    for mode in [
        BodyMode::HoldBody,
        BodyMode::HoldHeaders,
        BodyMode::McpMetadata,
    ] {
        assert_eq!(body_plan(support, mode, false), BodyPlan::DecideNow);
        assert_eq!(body_plan(plain, mode, true), BodyPlan::DecideNow);
    }
}

#[test]
fn hold_headers_warns_that_it_needs_the_flag() {
    let p = load(&DOC.replace("hold_body", "hold_headers")).unwrap();
    assert_eq!(p.filter.body_mode, BodyMode::HoldHeaders);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("allow_on_headers_stop_iteration")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn declared_headers_refuse_early_but_never_allow_alone() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let reader = principal(t, "tickets.read");
    let d = early_refusal(t, &reader, Some("tools/call"), Some("get_account")).unwrap();
    assert_eq!(d.status(), 403);
    assert_eq!(d.audit.tool.as_deref(), Some("get_account"));
    // Headers declaring an allowed call only let the headers through; the body still decides.
    assert!(early_refusal(t, &reader, Some("tools/list"), None).is_none());
    let (d, _) = decide_body(t, &reader, GET_ACCOUNT, None, None);
    assert_eq!(d.status(), 403);
    // No headers at all: nothing to refuse early.
    assert!(early_refusal(t, &reader, None, None).is_none());
    // Declared headers are judged with the base scopes; without them the token's own decision
    // (its admission) is what refuses.
    let p = load(&DOC.replace(
        r#""scopes": ["tickets.read", "accounts.read"],"#,
        r#""scopes": ["tickets.read", "accounts.read"], "base_scopes": ["tickets.read"],"#,
    ))
    .unwrap();
    let t = target(&p, "support-assistant");
    let stranger = principal(t, "accounts.read");
    let d = early_refusal(t, &stranger, Some("tools/list"), None).unwrap();
    assert_eq!(d.audit.reason, "insufficient_scope");
    assert!(early_refusal(t, &stranger, None, None).is_none());
    let admitted = admission(t, &claims_for(t, "accounts.read"), NOW, 5).unwrap();
    assert_eq!(admitted.decision.status(), 403);
}

/// `early_refusal` skips building the decision for an allowed declaration: it must refuse
/// exactly what `decide` refuses, with the same answer, for every kind of declared call.
#[test]
fn an_early_refusal_is_exactly_the_decision_on_the_declared_call() {
    let p = load(&DOC.replace(
        r#""tools": {"get_account": ["accounts.read"]}},"#,
        r#""tools": {"get_account": ["accounts.read"]}, "methods": {"prompts/get": ["accounts.read"]},
           "deny": {"tools": ["drop_tables"], "methods": ["logging/setLevel"]}},"#,
    ))
    .unwrap();
    let declared = [
        (Some("tools/call"), Some("get_account")),
        (Some("tools/call"), Some("get_ticket")),
        (Some("tools/call"), Some("drop_tables")),
        (Some("tools/call"), None),
        (Some("tools/list"), None),
        (Some("prompts/get"), Some("summary")),
        (Some("logging/setLevel"), None),
        (None, Some("get_account")),
        (Some(""), Some("")),
    ];
    let mut refused = 0;
    for server in ["support-assistant", "plain"] {
        let t = target(&p, server);
        for scopes in [
            "tickets.read",
            "accounts.read",
            "tickets.read accounts.read",
            "admin.read",
        ] {
            let principal = principal(t, scopes);
            for (method, name) in declared {
                let early = early_refusal(t, &principal, method, name);
                let calls = mcp::declared(method, name).unwrap_or_default();
                let decided = decide(t, &principal, &calls);
                match early {
                    None => assert!(decided.is_allow(), "{server} {scopes} {method:?} {name:?}"),
                    Some(d) => {
                        refused += 1;
                        assert!(!decided.is_allow());
                        assert_eq!(d.status(), decided.status());
                        assert_eq!(d.audit.reason, decided.audit.reason);
                        assert_eq!(d.outcome, decided.outcome);
                    }
                }
            }
        }
    }
    assert!(refused > 10, "the cases refuse something ({refused})");
}

#[test]
fn a_body_that_disagrees_with_its_headers_is_400_with_32020() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let both = principal(t, "tickets.read accounts.read");
    // Headers claim tools/list (allowed), the body calls a tool: never authorized on headers.
    let (d, _) = decide_body(t, &both, GET_ACCOUNT, Some("tools/list"), None);
    assert_eq!(d.status(), 400);
    assert_eq!(d.audit.reason, "mcp_header_mismatch");
    assert_eq!(jsonrpc_code(&d), HEADER_MISMATCH);
    let (d, _) = decide_body(
        t,
        &both,
        GET_ACCOUNT,
        Some("tools/call"),
        Some("list_tickets"),
    );
    assert_eq!(jsonrpc_code(&d), HEADER_MISMATCH);
    let (d, calls) = decide_body(
        t,
        &both,
        GET_ACCOUNT,
        Some("tools/call"),
        Some("get_account"),
    );
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(calls.len(), 1);
    let (d, _) = decide_body(t, &both, b"not json", None, None);
    assert_eq!(jsonrpc_code(&d), INVALID_REQUEST);
    let (d, _) = decide_body(t, &both, LIST, None, None);
    assert!(d.is_allow());
}

#[test]
fn native_metadata_decides_and_fails_closed() {
    let p = policy();
    let t = target(&p, "support-assistant");
    let reader = principal(t, "tickets.read");
    let meta = NativeMetadata {
        method: Some("tools/call".into()),
        name: Some("get_account".into()),
        is_mcp_request: Some(true),
        ..NativeMetadata::default()
    };
    let (d, calls) = decide_metadata(t, &reader, &meta, None, None);
    assert_eq!(d.status(), 403);
    assert_eq!(calls.len(), 1);
    let both = principal(t, "tickets.read accounts.read");
    assert!(decide_metadata(t, &both, &meta, None, None).0.is_allow());
    // The headers must agree with what the native filter parsed.
    let (d, _) = decide_metadata(t, &both, &meta, Some("tools/call"), Some("list_tickets"));
    assert_eq!(jsonrpc_code(&d), HEADER_MISMATCH);
    // Missing metadata (not parsed, over the native filter's limit) is refused, never passed.
    let (d, _) = decide_metadata(t, &both, &NativeMetadata::default(), None, None);
    assert_eq!(d.status(), 400);
    assert_eq!(d.audit.reason, "mcp_metadata_missing");
    let truncated = NativeMetadata {
        exceeding_limit: true,
        ..meta
    };
    assert_eq!(
        decide_metadata(t, &both, &truncated, None, None).0.status(),
        400
    );
}
