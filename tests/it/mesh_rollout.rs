//! Mesh-wide rollout: the ECDS resource carrying scopegate's document is replaced while
//! requests flow. Envoy applies it without a restart, decisions follow the new document, no
//! request fails or passes unchecked, and a document that fails validation is rejected by
//! Envoy (`config_fail`) while the previous policy keeps enforcing.

use scopegate_tests::ecds::{Delivery, MeshStack};
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BILLING: &str = "/plain/mcp";

/// Version 1: the example without budgets (so counts depend on the document only).
fn v1(doc: &mut Value) {
    for s in doc["gateways"][0]["servers"]
        .as_array_mut()
        .expect("servers")
    {
        s.as_object_mut().expect("server").remove("budgets");
    }
}

/// Version 2: a server added (`billing`, on the upstream that was ungoverned) and a subset
/// narrowed (ops-console loses `admin.read`, and every request there needs `tickets.write`).
fn v2(base: &Value) -> Value {
    let mut doc = base.clone();
    v1(&mut doc);
    let servers = doc["gateways"][0]["servers"]
        .as_array_mut()
        .expect("servers");
    servers[1] = json!({"name": "ops-console", "cluster": "ops_console", "path": OPS,
        "scopes": ["tickets.write"], "base_scopes": ["tickets.write"],
        "tools": {"update_ticket": ["tickets.write"]}});
    servers.push(
        json!({"name": "billing", "cluster": "plain_upstream", "path": BILLING,
        "scopes": ["accounts.read"]}),
    );
    doc
}

/// What one request in the loop is, and what each document says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    /// ops-console `admin_report` with an `admin.read` token: allowed by v1, 403 by v2.
    AdminReport,
    /// support-assistant `get_account` with `tickets.read` only: 403 under both.
    GetAccountWithoutScope,
    /// support-assistant `list_tickets` with `tickets.read`: allowed under both.
    ListTickets,
    /// `/plain/mcp` without a token: ungoverned (200) under v1, 401 under v2.
    BillingWithoutToken,
}

/// Before the file is replaced, while Envoy picks it up, after it confirmed the reload.
const EPOCHS: [&str; 3] = ["before", "during", "after"];

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    allowed: u32,
    refused: u32,
    failed: u32,
}

#[test]
fn a_new_document_rolls_out_under_load_and_a_bad_one_is_rejected() {
    let s = MeshStack::start("mesh_rollout", Delivery::default(), v1);
    let admin = s.issuer.token(&s.resource(OPS), "admin.read");
    let reader = s.issuer.token(&s.resource(SUPPORT), "tickets.read");
    let billing = s.issuer.token(&s.resource(BILLING), "accounts.read");

    // Before: v1 decisions.
    let mut c = Client::new(&s.envoy.url(OPS), Some(&admin));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "v1 admin_report: {}", r.body);
    let r = Client::get(&s.envoy.url(BILLING), None);
    assert_eq!(r.status, 200, "v1 billing is ungoverned: {}", r.body);

    let epoch = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(u8, Case, u16)>>> = Arc::default();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (epoch, stop, results) = (epoch.clone(), stop.clone(), results.clone());
            let (ops, support, plain) =
                (s.envoy.url(OPS), s.envoy.url(SUPPORT), s.envoy.url(BILLING));
            let (admin, reader) = (admin.clone(), reader.clone());
            std::thread::spawn(move || {
                // One MCP session per server and thread, opened under v1 and kept across the swap.
                let mut admin_client = Client::new(&ops, Some(&admin));
                assert_eq!(admin_client.initialize().status, 200);
                let mut reader_client = Client::new(&support, Some(&reader));
                assert_eq!(reader_client.initialize().status, 200);
                let mut anonymous = Client::new(&plain, None);
                // Bounded: at most this many rounds, whatever happens to the main thread.
                for _ in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for case in [
                        Case::AdminReport,
                        Case::GetAccountWithoutScope,
                        Case::ListTickets,
                        Case::BillingWithoutToken,
                    ] {
                        let e = epoch.load(Ordering::SeqCst);
                        let (client, tool) = match case {
                            Case::AdminReport => (&mut admin_client, "admin_report"),
                            Case::GetAccountWithoutScope => (&mut reader_client, "get_account"),
                            Case::ListTickets => (&mut reader_client, "list_tickets"),
                            Case::BillingWithoutToken => (&mut anonymous, "x"),
                        };
                        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            client.call_tool(tool, json!({})).status
                        }))
                        .unwrap_or(0); // a connection error counts as failed
                        results.lock().expect("results").push((e, case, status));
                    }
                }
            })
        })
        .collect();

    // Let the loop run on v1, roll out v2, let it run on v2.
    let wait_rounds = |n: usize| {
        let start = results.lock().expect("results").len();
        scopegate_tests::procs::wait_for(
            "the client loop to make progress",
            Duration::from_secs(120),
            || (results.lock().expect("results").len() >= start + n).then_some(()),
        );
    };
    wait_rounds(80);
    let mut envoy = s.envoy;
    let reloads_before = envoy.discovery_stat("config_reload");
    epoch.store(1, Ordering::SeqCst);
    let applied = envoy.roll_out(&v2(&s_document(&s.public_url, &s.issuer.url)).to_string());
    epoch.store(2, Ordering::SeqCst);
    assert!(applied, "Envoy rejected v2:\n{}", envoy.envoy.log());
    assert!(envoy.discovery_stat("config_reload") > reloads_before);
    assert_eq!(envoy.applied_version().as_deref(), Some("2"));
    wait_rounds(160);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }

    let results = results.lock().expect("results").clone();
    let mut counts = [Counts::default(); 3];
    let mut by_case: BTreeMap<(Case, u8), BTreeMap<u16, u32>> = BTreeMap::new();
    for (e, case, status) in &results {
        let c = &mut counts[*e as usize];
        match status {
            200..=299 => c.allowed += 1,
            400..=499 => c.refused += 1,
            _ => c.failed += 1,
        }
        *by_case
            .entry((*case, *e))
            .or_default()
            .entry(*status)
            .or_default() += 1;
    }
    for (i, c) in counts.iter().enumerate() {
        println!(
            "live swap, {}: allowed {}, refused {}, failed {}",
            EPOCHS[i], c.allowed, c.refused, c.failed
        );
    }
    println!("by case and epoch (status -> count): {by_case:?}");
    let total: Vec<u32> = counts.iter().map(|c| c.failed).collect();
    assert_eq!(total, vec![0, 0, 0], "requests failed during the swap");
    for ((case, e), statuses) in &by_case {
        let allowed_ok = match (case, e) {
            (Case::GetAccountWithoutScope, _) => statuses.keys().all(|s| *s == 403),
            (Case::ListTickets, _) => statuses.keys().all(|s| *s == 200),
            (Case::AdminReport, 0) => statuses.keys().all(|s| *s == 200),
            (Case::AdminReport, 2) => statuses.keys().all(|s| *s == 403),
            (Case::AdminReport, _) => statuses.keys().all(|s| *s == 200 || *s == 403),
            (Case::BillingWithoutToken, 0) => statuses.keys().all(|s| *s == 200),
            (Case::BillingWithoutToken, 2) => statuses.keys().all(|s| *s == 401),
            (Case::BillingWithoutToken, _) => statuses.keys().all(|s| *s == 200 || *s == 401),
        };
        assert!(
            allowed_ok,
            "{case:?} in epoch {}: {statuses:?}",
            EPOCHS[*e as usize]
        );
    }
    assert!(counts[0].allowed > 0 && counts[2].refused > 0);
    // Per thread the requests are sequential, so the switch is one-way: no v1 decision for
    // admin_report after the first v2 one.
    let admin_seq: Vec<u16> = results
        .iter()
        .filter(|(_, c, _)| *c == Case::AdminReport)
        .map(|(_, _, s)| *s)
        .collect();
    let first_refusal = admin_seq
        .iter()
        .position(|s| *s == 403)
        .expect("a v2 refusal");
    let late_allows = admin_seq[first_refusal..]
        .iter()
        .filter(|s| **s == 200)
        .count();
    // Three threads interleave, so a request started just before the swap may finish after
    // another thread's first refusal; at most one per other thread.
    assert!(
        late_allows <= 2,
        "v1 decisions after v2 took over: {late_allows}"
    );

    // The refused tool calls never reached the MCP servers.
    for path in [OPS, SUPPORT] {
        let server = if path == OPS { &s.ops } else { &s.support };
        let refused_bodies = server
            .seen()
            .into_iter()
            .filter_map(|r| r["body"].as_str().map(str::to_string))
            .filter(|b| b.contains("get_account"))
            .count();
        assert_eq!(refused_bodies, 0, "{path}: a refused get_account arrived");
    }
    // The new server is governed: its own token works, identity set for the upstream.
    let r = Client::new(&envoy.url(BILLING), Some(&billing)).call_tool("x", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["headers"]["x-scopegate-scopes"],
        json!("accounts.read")
    );

    // A document that fails validation: Envoy rejects the update, v2 keeps enforcing.
    let fails_before = envoy.discovery_stat("config_fail");
    let mut bad = v2(&s_document(&s.public_url, &s.issuer.url));
    bad["gateways"][0]["servers"][0]["scopes"] = json!(["tickets.read", "billing.write"]);
    assert!(
        !envoy.roll_out(&bad.to_string()),
        "a bad document was applied"
    );
    assert_eq!(envoy.discovery_stat("config_fail"), fails_before + 1);
    // (Envoy 1.40's config dump then names the rejected version; what runs is v2, below.)
    assert!(
        envoy.envoy.log().contains("billing.write"),
        "the rejection names the scope"
    );
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 403, "v2 still enforces: {}", r.body);
    let r = Client::get(&envoy.url(BILLING), None);
    assert_eq!(r.status, 401, "v2 still governs billing: {}", r.body);
    let mut c = Client::new(&envoy.url(SUPPORT), Some(&reader));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool("list_tickets", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
}

fn s_document(public_url: &str, issuer: &str) -> Value {
    scopegate_tests::stack::gateway_doc(public_url, issuer)
}
