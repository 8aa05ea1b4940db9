//! A cold burst on a brokered gateway: concurrent first requests for one grant wait for one
//! exchange per Envoy worker at most (the filter coalesces in-flight exchanges). Alone in its
//! test binary so the broker's counters see only this test's traffic.

use scopegate_tests::brokered::{Brokered, Session};
use scopegate_tests::mcp::Client;
use scopegate_tests::stack::OPS;
use std::sync::{Arc, Barrier};

/// Opens `per_grant` connections for each session at once and initializes them all together.
fn burst(s: &Brokered, sessions: &[Session], per_grant: usize) {
    let url = s.envoy.url(OPS);
    let n = sessions.len() * per_grant;
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = sessions
        .iter()
        .flat_map(|session| std::iter::repeat_n(session.access_token.clone(), per_grant))
        .map(|token| {
            let (url, start) = (url.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut c = Client::new(&url, Some(&token));
                start.wait();
                let r = c.initialize();
                assert_eq!(r.status, 200, "{}", r.body);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

#[test]
fn a_cold_burst_makes_at_most_one_exchange_per_grant_and_worker() {
    let workers = 2;
    let s = Brokered::start("brokered_burst", 300, None, workers);
    // Each registration and authorization is a grant of its own.
    let mixed: Vec<Session> = (0..4)
        .map(|_| s.authorize(OPS, Some("admin.read")))
        .collect();
    let single = s.authorize(OPS, Some("admin.read"));
    assert_eq!(s.broker_stat("token_exchanges"), 0, "nothing exchanged yet");

    // 16 connections over 4 grants, all at once.
    burst(&s, &mixed, 4);
    let mixed_exchanges = s.broker_stat("token_exchanges");
    eprintln!(
        "cold burst, 16 connections over 4 grants, {workers} workers: {mixed_exchanges} exchanges"
    );
    assert!(
        (4..=4 * u64::from(workers)).contains(&mixed_exchanges),
        "4 grants over {workers} workers: between 4 and {} exchanges, got {mixed_exchanges}",
        4 * workers
    );

    // 16 connections for one grant, all at once.
    burst(&s, std::slice::from_ref(&single), 16);
    let single_exchanges = s.broker_stat("token_exchanges") - mixed_exchanges;
    eprintln!(
        "cold burst, 16 connections for 1 grant, {workers} workers: {single_exchanges} exchanges"
    );
    assert!(
        (1..=u64::from(workers)).contains(&single_exchanges),
        "one grant over {workers} workers: at most {workers} exchanges, got {single_exchanges}"
    );
}
