//! The broker's Prometheus `/metrics` on the internal listener, scraped after a whole flow:
//! registration, consent, code and refresh grants, a token exchange, a revocation, and the latency
//! histogram per route. The public listener does not serve it.

use scopegate_tests::broker::BrokerStack;
use scopegate_tests::oauth::{first_grant, post_form, refresh};
use scopegate_tests::stack::SUPPORT;

const CB: &str = "http://127.0.0.1:1/client/cb";

/// The value of the sample `name{labels}` (labels as Prometheus prints them, sorted).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_count_a_whole_flow() {
    let s = BrokerStack::start("broker_metrics", 300, None, |_| {});
    let resource = s.resource(SUPPORT);
    let (client, t) = first_grant(&s.issuer, CB, &resource);
    let access = t["access_token"].as_str().unwrap();
    let r = refresh(
        &s.issuer,
        &client,
        t["refresh_token"].as_str().unwrap(),
        &resource,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, body) = s.broker.exchange(access, &resource);
    assert_eq!(status, 200, "{body}");
    let (status, _) = s.broker.exchange("not.a.token", &resource);
    assert_eq!(status, 400);
    let revoked = post_form(
        &format!("{}/revoke", s.issuer),
        &[
            ("token", r.json()["refresh_token"].as_str().unwrap()),
            ("client_id", &client),
        ],
        None,
    );
    assert_eq!(revoked.status, 200);

    let m = reqwest::blocking::get(format!("{}/metrics", s.broker.internal)).unwrap();
    assert_eq!(m.status().as_u16(), 200);
    assert!(m
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = m.text().unwrap();
    let p = "scopegate_broker_";
    for (series, at_least) in [
        (format!(r#"{p}registrations_total{{gateway="saas"}}"#), 1.0),
        (format!(r#"{p}authorizations_total{{gateway="saas"}}"#), 1.0),
        (
            format!(r#"{p}consents_total{{decision="approve",gateway="saas"}}"#),
            1.0,
        ),
        (
            format!(r#"{p}token_grants_total{{gateway="saas",grant_type="authorization_code"}}"#),
            1.0,
        ),
        (
            format!(r#"{p}token_grants_total{{gateway="saas",grant_type="refresh_token"}}"#),
            1.0,
        ),
        (format!(r#"{p}token_exchanges_total{{outcome="ok"}}"#), 1.0),
        (
            format!(r#"{p}token_exchanges_total{{outcome="invalid_request"}}"#),
            1.0,
        ),
        (
            format!(r#"{p}revocations_total{{reason="revoked by the client"}}"#),
            1.0,
        ),
        (
            format!(
                r#"{p}request_duration_seconds_count{{listener="public",route="/token",status="200"}}"#
            ),
            2.0,
        ),
        (
            format!(
                r#"{p}request_duration_seconds_count{{listener="internal",route="/internal/token-exchange",status="200"}}"#
            ),
            1.0,
        ),
    ] {
        let v = sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= at_least, "{series} = {v}");
    }
    assert!(text.contains(&format!("{p}downstream_refreshes_total ")));
    // The JSON counters come from the same counters.
    assert_eq!(s.broker.stats()["token_exchanges"], 2);
    // Not on the public listener.
    let public = reqwest::blocking::get(format!("{}/metrics", s.issuer)).unwrap();
    assert_eq!(public.status().as_u16(), 404);
}
