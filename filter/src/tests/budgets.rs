//! Request budgets in shared data: counted per subject, refused with the time to retry once
//! spent, retried on a lost compare-and-swap, and refused when the window cannot be read.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use super::{document, policy};
use crate::budgets::spend_all;
use crate::fake_host::{Fake, NOW};
use scopegate_core::budget::window_key;
use scopegate_core::decision::Grant;
use scopegate_core::mcp::Call;
use scopegate_core::Policy;

fn budgeted() -> Policy {
    let servers = r#"
      {"name": "support", "cluster": "support", "path": "/support/mcp", "scopes": ["tickets.read"],
       "budgets": [{"requests": 2, "per_seconds": 60},
                   {"tool": "search", "requests": 1, "per_seconds": 10}]}"#;
    policy(&document(servers, "", ""))
}

fn grant(subject: &str) -> Grant {
    Grant {
        subject: subject.into(),
        client_id: "agent".into(),
        scopes: "tickets.read".into(),
        forward_client_token: false,
        grant_id: None,
    }
}

fn call(tool: &str) -> Vec<Call> {
    vec![Call {
        method: "tools/call".into(),
        name: Some(tool.into()),
    }]
}

#[test]
fn a_budget_is_spent_per_subject_then_refused_until_its_window_ends() {
    let p = budgeted();
    let server = p.server(p.server_by_name("support").unwrap()).unwrap();
    let mut h = Fake::default();
    let alice = grant("alice");
    assert_eq!(spend_all(&mut h, server, &call("get"), &alice, NOW), Ok(()));
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &alice, NOW + 1),
        Ok(())
    );
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &alice, NOW + 20),
        Err(40),
        "spent: retry when the 60 s window ends"
    );
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &grant("bob"), NOW + 20),
        Ok(()),
        "bob has his own"
    );
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &alice, NOW + 60),
        Ok(())
    );
}

#[test]
fn a_tool_budget_counts_only_its_tool() {
    let p = budgeted();
    let server = p.server(p.server_by_name("support").unwrap()).unwrap();
    let mut h = Fake::default();
    let alice = grant("alice");
    assert_eq!(
        spend_all(&mut h, server, &call("search"), &alice, NOW),
        Ok(())
    );
    assert_eq!(
        spend_all(&mut h, server, &call("search"), &alice, NOW + 1),
        Err(9)
    );
    let search_key = window_key("support", 1, &server.budgets[1], &alice);
    assert!(h.shared_value(&search_key).is_some());
    // Budgets are spent in order: the server-wide one counted the refused call too.
    let all_key = window_key("support", 0, &server.budgets[0], &alice);
    let window = scopegate_core::budget::Window::decode(h.shared_value(&all_key).unwrap());
    assert_eq!(window.map(|w| w.count), Some(2));
}

#[test]
fn a_lost_compare_and_swap_is_retried_on_the_other_workers_window() {
    let p = budgeted();
    let server = p.server(p.server_by_name("support").unwrap()).unwrap();
    let mut h = Fake::default();
    let alice = grant("alice");
    let key = window_key("support", 0, &server.budgets[0], &alice);
    assert_eq!(spend_all(&mut h, server, &call("get"), &alice, NOW), Ok(()));
    // Another worker spends the window's last request between this one's read and write.
    h.races = vec![(key.clone(), format!("{NOW} 2").into_bytes())];
    let writes = h.times("set_shared_data");
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &alice, NOW),
        Err(60),
        "read again: the other worker's spend counts"
    );
    assert_eq!(h.times("set_shared_data"), writes + 1);
    assert_eq!(h.shared_value(&key), Some(format!("{NOW} 2").as_bytes()));
}

#[test]
fn an_unreadable_window_refuses_rather_than_counting_nothing() {
    let p = budgeted();
    let server = p.server(p.server_by_name("support").unwrap()).unwrap();
    let mut h = Fake::failing(&["shared_data"]);
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &grant("alice"), NOW),
        Err(1)
    );
    let mut h = Fake::failing(&["set_shared_data"]);
    assert_eq!(
        spend_all(&mut h, server, &call("get"), &grant("alice"), NOW),
        Err(1)
    );
}
