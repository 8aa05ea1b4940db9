//! The descriptors a request carries and the verdicts the service's answers give.

use super::proto::{decode_response, encode_request};
use super::verdict::{verdict, Failure, Verdict};
use super::*;

fn server(budgets: serde_json::Value) -> crate::Policy {
    let doc = serde_json::json!({
        "filter": {"rate_limit": {"cluster": "rls"}},
        "gateways": [{
            "name": "g", "public_url": "https://a.example", "issuer": "https://a.example",
            "allowed_scopes": ["tickets.read"], "jwks": {"cluster": "idp"},
            "servers": [{"name": "s", "cluster": "c", "path": "/s/mcp", "scopes": ["tickets.read"],
                         "budgets": budgets}]}]});
    crate::validate::load(&doc.to_string()).unwrap()
}

fn grant() -> Grant {
    Grant {
        subject: "alice".into(),
        client_id: "app".into(),
        scopes: String::new(),
        forward_client_token: false,
        grant_id: None,
    }
}

fn call(name: &str) -> Call {
    Call {
        method: "tools/call".into(),
        name: Some(name.into()),
    }
}

#[test]
fn each_budget_that_counts_the_call_is_one_descriptor_in_order() {
    let p = server(serde_json::json!([
        {"requests": 100, "per_seconds": 3600, "per": "server"},
        {"tool": "update_ticket", "requests": 2, "per_seconds": 60},
        {"tool": "other", "requests": 2, "per_seconds": 60},
        {"requests": 10, "per_seconds": 1, "per": "client_id"},
    ]));
    let asked = ask("d", "g", &p.servers[0], &[call("update_ticket")], &grant()).unwrap();
    let expected: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("gateway", "g"),
            ("server", "s"),
            ("budget", "server:3600s"),
        ],
        vec![
            ("gateway", "g"),
            ("server", "s"),
            ("budget", "tool:update_ticket:60s"),
            ("subject", "alice"),
        ],
        vec![
            ("gateway", "g"),
            ("server", "s"),
            ("budget", "server:1s"),
            ("client_id", "app"),
        ],
    ];
    assert_eq!(asked.message, encode_request("d", &expected));
    let windows = asked.windows;
    assert_eq!(windows, vec![3600, 60, 1]);
}

#[test]
fn calls_no_budget_counts_ask_nothing() {
    let p =
        server(serde_json::json!([{"tool": "update_ticket", "requests": 2, "per_seconds": 60}]));
    assert_eq!(
        ask("scopegate", "g", &p.servers[0], &[call("read")], &grant()),
        None
    );
    assert_eq!(ask("scopegate", "g", &p.servers[0], &[], &grant()), None);
    let asked = ask("d", "g", &p.servers[0], &[call("update_ticket")], &grant()).unwrap();
    let d: Vec<(&str, &str)> = vec![
        ("gateway", "g"),
        ("server", "s"),
        ("budget", "tool:update_ticket:60s"),
        ("subject", "alice"),
    ];
    assert_eq!(asked.message, encode_request("d", &[d]));
    assert_eq!(asked.windows, vec![60]);
}

#[test]
fn units_are_the_services_four() {
    assert_eq!(unit(1), Some("second"));
    assert_eq!(unit(60), Some("minute"));
    assert_eq!(unit(3600), Some("hour"));
    assert_eq!(unit(86400), Some("day"));
    assert_eq!(unit(30), None);
}

/// A response as the service encodes it: overall code, then (code, reset) per descriptor.
fn answer(overall: u8, statuses: &[(u8, Option<(u64, u32)>)]) -> Vec<u8> {
    let mut out = vec![0x08, overall];
    for (code, reset) in statuses {
        let mut s = vec![0x08, *code];
        if let Some((secs, nanos)) = reset {
            let d = [0x08, *secs as u8, 0x10, *nanos as u8];
            s.extend_from_slice(&[0x22, d.len() as u8]);
            s.extend_from_slice(&d);
        }
        out.extend_from_slice(&[0x12, s.len() as u8]);
        out.extend_from_slice(&s);
    }
    assert!(decode_response(&out).is_ok());
    out
}

#[test]
fn over_limit_waits_for_the_latest_reset_of_the_spent_budgets() {
    let a = answer(
        2,
        &[(1, Some((50, 0))), (2, Some((7, 1))), (2, Some((3, 0)))],
    );
    assert_eq!(
        verdict(0, &a, &[60, 60, 60]),
        Verdict::Exceeded { retry_after: 8 },
        "rounded up; an OK descriptor's reset does not count"
    );
    let zero = answer(2, &[(2, Some((0, 0)))]);
    assert_eq!(
        verdict(0, &zero, &[60]),
        Verdict::Exceeded { retry_after: 1 }
    );
}

#[test]
fn over_limit_without_reset_times_waits_a_window() {
    let a = answer(2, &[(1, None), (2, None)]);
    assert_eq!(
        verdict(0, &a, &[3600, 60]),
        Verdict::Exceeded { retry_after: 60 }
    );
    assert_eq!(
        verdict(0, &answer(2, &[]), &[60, 3600]),
        Verdict::Exceeded { retry_after: 3600 }
    );
}

#[test]
fn ok_goes_on_and_anything_else_is_unavailable() {
    assert_eq!(
        verdict(0, &answer(1, &[(1, None)]), &[60]),
        Verdict::Allowed
    );
    assert_eq!(
        verdict(14, &[], &[60]),
        Verdict::Unavailable(Failure::Status(14))
    );
    assert_eq!(
        verdict(0, &answer(0, &[]), &[60]),
        Verdict::Unavailable(Failure::Unknown)
    );
    assert_eq!(
        verdict(0, &[0x0a, 9], &[60]),
        Verdict::Unavailable(Failure::Malformed)
    );
    assert_eq!(
        verdict(0, &[], &[60]),
        Verdict::Unavailable(Failure::Unknown),
        "an empty message says UNKNOWN"
    );
}
