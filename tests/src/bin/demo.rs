//! `make demo`: the two-server example end to end, brokered, every step printed.
//!
//! Starts the example identity provider (oidc-provider, logging the demo user in by itself), the
//! scopegate broker in front of it, the two example MCP servers and Envoy with the scopegate
//! filter, all on 127.0.0.1. Then runs the walkthrough client (examples/two-servers/client, built
//! on rmcp's OAuth client support) against Envoy, checks the broker's and Envoy's counters,
//! prints the access-log lines of the walk, stops everything, and exits 0 only if every step
//! behaved as expected.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::stack::{OPS, SUPPORT};
use scopegate_tests::walkthrough::{self, ACCESS_TTL_S, DOWNSTREAM_TTL_S};
use serde_json::{json, Value};
use std::time::Duration;

struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        if ok {
            println!("   \x1b[32m✓\x1b[0m {what}");
            self.passed += 1;
        } else {
            println!("   \x1b[31m✗ {what}\x1b[0m: {detail}");
            self.failed.push(what.to_string());
        }
    }
}

fn title(t: &str) {
    println!("\n\x1b[1m== {t}\x1b[0m");
}

fn field(line: &Value, name: &str) -> String {
    line[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("-")
        .to_string()
}

fn main() {
    println!(
        "scopegate demo: one gateway (`saas`), two MCP servers, each with its own subset of scopes"
    );
    println!("  gateway saas allows:        tickets.read tickets.write accounts.read admin.read");
    println!("  support-assistant asks for: tickets.read accounts.read");
    println!("  ops-console asks for:       tickets.write admin.read");

    title("Starting: oidc-provider (the SaaS identity provider), scopegate-broker, two rmcp MCP servers, Envoy 1.40 with scopegate.wasm");
    println!(
        "   short lifetimes so the walk sees them expire: client access tokens {ACCESS_TTL_S} s \
         (broker.access_token_ttl_s), downstream access tokens {DOWNSTREAM_TTL_S} s"
    );
    let s = Brokered::start_with("demo", DOWNSTREAM_TTL_S, None, 1, |doc| {
        doc["broker"]["access_token_ttl_s"] = json!(ACCESS_TTL_S);
        // As in the example document: ops-console lists only what the token grants.
        doc["gateways"][0]["servers"][1]["listings"] = json!({"hide": "not_granted"});
    });
    println!(
        "   identity provider  {}  (downstream, user `demo-user` logs in automatically)",
        s.stack.downstream_issuer
    );
    println!(
        "   broker             {} (public, behind Envoy)  {} (internal: token exchange, JWKS, stats)",
        s.stack.broker.public, s.stack.broker.internal
    );
    println!(
        "   Envoy              {}  (servers at {SUPPORT} and {OPS}; OAuth endpoints go to the broker)",
        s.public_url
    );
    // Lines Envoy logged while the filter fetched the broker's keys are not part of the walk.
    std::thread::sleep(Duration::from_millis(500));
    let skip_lines = s.envoy.access_log().len();

    title("The walkthrough client (rmcp) against Envoy");
    let out = walkthrough::run(&s.public_url, 120, true);
    let sum = out.summary.clone();

    let mut c = Checks {
        passed: sum["passed"].as_u64().unwrap_or(0) as usize,
        failed: sum["failures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| format!("walkthrough: {}", f.as_str().unwrap_or("?")))
                    .collect()
            })
            .unwrap_or_default(),
    };

    title("What the gateway and the broker counted");
    c.check(
        "the walkthrough finished with every check held and none skipped",
        out.success && sum["failed"] == json!(0) && sum["skipped"] == json!(0),
        &sum.to_string(),
    );
    c.check(
        "each client registered once (2 registrations) and authorized 4 times (one step-up, one remembered)",
        sum["registrations"] == json!(2) && sum["authorizations"] == json!(4),
        &sum.to_string(),
    );
    let refreshes = sum["refreshes"].as_u64().unwrap_or(0);
    c.check(
        &format!("expired client access tokens were refreshed ({refreshes} refresh_token grants)"),
        refreshes >= 1,
        &sum.to_string(),
    );
    let downstream_refreshes = s.broker_stat("downstream_refreshes");
    let renewals = sum["downstream_renewals"].as_u64().unwrap_or(0);
    c.check(
        &format!("the broker refreshed the expired downstream grant exactly once ({downstream_refreshes})"),
        downstream_refreshes == 1 && renewals == 1,
        &format!("downstream_refreshes={downstream_refreshes}, renewals seen by the server={renewals}"),
    );
    let exchanges = s.broker_stat("token_exchanges");
    let grants = sum["grants_used"].as_u64().unwrap_or(0);
    let calls = sum["tool_calls"].as_u64().unwrap_or(0);
    c.check(
        &format!(
            "the filter exchanged once per grant and credential lifetime: {exchanges} exchanges \
             for {grants} grants + {renewals} renewal over {calls} tool calls"
        ),
        grants == 4 && exchanges == grants + renewals,
        &format!("token_exchanges={exchanges}"),
    );
    for (name, what) in [
        (
            "wasmcustom.scopegate.ops-console.deny.insufficient_scope",
            "the 403 is counted in Envoy's stats",
        ),
        (
            "wasmcustom.scopegate.ops-console.deny.wrong_audience",
            "the audience refusal is counted in Envoy's stats",
        ),
    ] {
        let n = s.envoy.stat(name).unwrap_or(0);
        c.check(&format!("{what} ({name} = {n})"), n >= 1, &n.to_string());
    }

    title("Envoy's access log for the walk (scopegate's fields come from filter state)");
    std::thread::sleep(Duration::from_millis(1500));
    let lines = s.envoy.access_log();
    for line in lines.iter().skip(skip_lines) {
        let path = field(line, "path");
        let path = path.split('?').next().unwrap_or("-");
        if line["decision"].is_null() || field(line, "decision") == "-" {
            println!(
                "   {:<6} {:<58} {} -> {}",
                field(line, "method"),
                path,
                line["status"],
                field(line, "upstream_cluster")
            );
        } else {
            println!(
                "   {:<6} {:<58} {} server={} decision={} reason={} tool={} client={} scopes=\"{}\"",
                field(line, "method"),
                path,
                line["status"],
                field(line, "server"),
                field(line, "decision"),
                field(line, "reason"),
                field(line, "tool"),
                field(line, "client_id"),
                field(line, "scopes"),
            );
        }
    }
    c.check(
        "the access log has the walk's decisions",
        lines
            .iter()
            .skip(skip_lines)
            .any(|l| l["reason"] == json!("insufficient_scope")),
        "no insufficient_scope line",
    );

    drop(s);
    println!(
        "\n\x1b[1mdemo: {} steps passed, {} failed\x1b[0m (token exchanges: {exchanges}, downstream refreshes: {downstream_refreshes}, access-token refreshes: {refreshes}; logs in target/it-logs/demo/)",
        c.passed,
        c.failed.len()
    );
    if !c.failed.is_empty() {
        for f in &c.failed {
            println!("   failed: {f}");
        }
        std::process::exit(1);
    }
}
