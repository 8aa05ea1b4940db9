//! The audit record: filter state for access logs and one counter per decision, each counter
//! defined once; a host that refuses a write loses that write only.
#![cfg(test)] // declared in tests/mod.rs as `#[cfg(test)] mod …`: test code only

use crate::audit::{record, Stats};
use crate::fake_host::Fake;
use scopegate_core::decision::Audit;
use scopegate_core::Reason;

fn audit(reason: Reason) -> Audit {
    Audit {
        subject: Some("alice".into()),
        client_id: Some("agent".into()),
        ..Audit::new("support", reason)
    }
}

#[test]
fn a_decision_leaves_its_record_and_bumps_its_counter() {
    let mut h = Fake::default();
    let mut stats = Stats::default();
    record(&mut h, &mut stats, &audit(Reason::InsufficientScope), None);
    assert_eq!(h.filter_state["scopegate_decision"], "deny");
    assert_eq!(h.filter_state["scopegate_reason"], "insufficient_scope");
    assert_eq!(h.filter_state["scopegate_server"], "support");
    let json = h.record();
    assert_eq!(json["subject"], "alice");
    assert_eq!(json["reason"], "insufficient_scope");
    assert_eq!(h.count("scopegate.support.deny.insufficient_scope"), 1);

    // The counter is defined once; a cached record's JSON is written as given.
    record(&mut h, &mut stats, &audit(Reason::InsufficientScope), None);
    record(
        &mut h,
        &mut stats,
        &audit(Reason::Ok),
        Some(r#"{"cached":true}"#),
    );
    assert_eq!(h.count("scopegate.support.deny.insufficient_scope"), 2);
    assert_eq!(h.times("define_counter"), 2);
    assert_eq!(h.filter_state["scopegate_record"], r#"{"cached":true}"#);
}

#[test]
fn filter_wide_and_summed_counters() {
    let mut h = Fake::default();
    let mut stats = Stats::default();
    stats.count_global(&mut h, "jwt", "verified");
    stats.count_by(&mut h, "support", "listing", "hidden", 3);
    stats.count_by(&mut h, "support", "listing", "hidden", 0);
    stats.count_by(&mut h, "support", "listing", "hidden", 2);
    assert_eq!(h.count("scopegate.jwt.verified"), 1);
    assert_eq!(h.count("scopegate.support.listing.hidden"), 5);
    assert_eq!(
        h.times("increment_counter"),
        3,
        "adding zero is no host call"
    );
}

#[test]
fn a_counter_the_host_will_not_define_is_not_asked_for_again() {
    let mut h = Fake::failing(&["define_counter", "set_filter_state"]);
    let mut stats = Stats::default();
    record(&mut h, &mut stats, &audit(Reason::Ok), None);
    record(&mut h, &mut stats, &audit(Reason::Ok), None);
    assert_eq!(h.times("define_counter"), 1);
    assert_eq!(h.times("increment_counter"), 0);
    assert!(h.filter_state.is_empty());
}
