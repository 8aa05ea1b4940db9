//! The walkthrough client (rmcp's OAuth client support) against the whole product: 401,
//! discovery, registration, consent, tools, 403 and step-up, audience refusal, refresh with
//! rotation, downstream expiry. On a stack of its own so the broker's counters are its own. The
//! story moves most of what the Grafana dashboard (dashboards/scopegate.json) shows, so the
//! dashboard's queries are checked here against what Envoy and the broker then export.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::dashboard::{self, Rows, Scrape};
use scopegate_tests::walkthrough::{self, ACCESS_TTL_S, DOWNSTREAM_TTL_S};
use serde_json::json;

#[test]
fn the_walkthrough_client_completes_the_story() {
    let s = Brokered::start_with("walkthrough", DOWNSTREAM_TTL_S, None, 1, |doc| {
        doc["broker"]["access_token_ttl_s"] = json!(ACCESS_TTL_S);
        // As in the example document: ops-console lists only what the token grants.
        doc["gateways"][0]["servers"][1]["listings"] = json!({"hide": "not_granted"});
    });
    let out = walkthrough::run(&s.public_url, 120, false);
    let sum = &out.summary;
    assert!(
        out.success && sum["failed"] == json!(0),
        "the walkthrough failed: {}\n{}",
        sum["failures"],
        out.output
    );
    assert_eq!(sum["skipped"], json!(0), "{}", out.output);
    // One registration per MCP server connection; four grants: support-assistant's (and its
    // second, without a consent page: remembered), and ops-console's before and after the
    // step-up.
    assert_eq!(sum["registrations"], json!(2), "{}", out.output);
    assert_eq!(sum["authorizations"], json!(4), "{}", out.output);
    assert_eq!(sum["grants_used"], json!(4), "{}", out.output);
    assert!(sum["refreshes"].as_u64().unwrap_or(0) >= 1, "{sum}");
    assert_eq!(sum["downstream_renewals"], json!(1), "{sum}");
    // The broker refreshed the one expired downstream grant once, and the filter exchanged
    // once per grant and credential lifetime, however many calls were made.
    assert_eq!(s.broker_stat("downstream_refreshes"), 1);
    assert_eq!(
        s.broker_stat("token_exchanges"),
        sum["grants_used"].as_u64().unwrap_or(0) + 1,
        "{sum}"
    );
    assert!(sum["tool_calls"].as_u64().unwrap_or(0) > 5, "{sum}");

    // Every panel's query names metrics and labels this stack exports (Envoy through the stats
    // tags `render envoy` emits), so an imported dashboard shows data, not empty panels.
    let envoy = s.envoy.prometheus();
    let broker = s.stack.broker.metrics();
    let scrape = Scrape::parse(&[&envoy, &broker]);
    for metric in ["scopegate_allow", "scopegate_deny", "scopegate_listing"] {
        assert!(scrape.has(metric), "Envoy exports no {metric}:\n{envoy}");
    }
    let text = std::fs::read_to_string(dashboard::dashboard_path()).expect("the dashboard");
    let board: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let problems = dashboard::check_rows(&board, Rows::AllButFleet, &scrape);
    assert!(
        problems.is_empty(),
        "the dashboard's queries name what nobody exports:\n{}",
        problems.join("\n")
    );
}
