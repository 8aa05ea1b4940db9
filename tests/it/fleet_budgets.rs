//! Budgets that hold across a fleet: counted by a rate limit service (the harness's stand-in for
//! envoyproxy/ratelimit, on a real Redis), not per Envoy. First the service alone, asked over
//! its gRPC API as Envoy asks it; then Envoys with the filter in front of the same servers.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use scopegate_tests::dashboard::{self, Rows, Scrape};
use scopegate_tests::ratelimit::RateLimitService;
use scopegate_tests::redis::Redis;

/// envoyproxy/ratelimit's configuration for one per-subject tool budget and one per-server
/// budget, in the shape `scopegate-broker render ratelimit` prints.
const SAMPLE: &str = r#"
domain: scopegate
descriptors:
  - key: gateway
    value: saas
    descriptors:
      - key: server
        value: ops-console
        descriptors:
          - key: budget
            value: "tool:admin_report:60s"
            descriptors:
              - key: subject
                rate_limit:
                  unit: minute
                  requests_per_unit: 3
          - key: budget
            value: "server:3600s"
            rate_limit:
              unit: hour
              requests_per_unit: 100
"#;

fn tool_budget(subject: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("gateway", "saas"),
        ("server", "ops-console"),
        ("budget", "tool:admin_report:60s"),
        ("subject", subject),
    ]
}

fn code(r: &RateLimitResponse) -> Code {
    Code::try_from(r.overall_code).unwrap_or(Code::Unknown)
}

/// Asks for `subject`'s tool budget and the server budget in one request, as the filter does.
fn ask(s: &RateLimitService, subject: &str) -> RateLimitResponse {
    let server = [
        ("gateway", "saas"),
        ("server", "ops-console"),
        ("budget", "server:3600s"),
    ];
    s.ask("scopegate", &[&tool_budget(subject), &server])
        .unwrap_or_else(|e| panic!("ShouldRateLimit: {e}\n{}", s.log()))
}

#[test]
fn the_service_counts_each_subject_in_redis() {
    let redis = Redis::start("fleet_budgets_service");
    let s = RateLimitService::start("fleet_budgets_service", SAMPLE, &redis.url());
    for i in 1..=3 {
        let r = ask(&s, "alice");
        assert_eq!(code(&r), Code::Ok, "call {i}: {r:?}");
        assert_eq!(r.statuses.len(), 2, "one status per descriptor");
        assert_eq!(r.statuses[0].limit_remaining, 3 - i, "call {i}: {r:?}");
        let limit = r.statuses[0].current_limit.as_ref().expect("current_limit");
        assert_eq!(limit.requests_per_unit, 3);
    }
    let r = ask(&s, "alice");
    assert_eq!(code(&r), Code::OverLimit, "{r:?}");
    assert_eq!(Code::try_from(r.statuses[0].code), Ok(Code::OverLimit));
    assert_eq!(
        Code::try_from(r.statuses[1].code),
        Ok(Code::Ok),
        "the server budget is its own counter"
    );
    let reset = r.statuses[0]
        .duration_until_reset
        .expect("OVER_LIMIT carries duration_until_reset");
    assert!(
        reset.seconds > 0 && reset.seconds <= 60 || reset.seconds == 0 && reset.nanos > 0,
        "within the 60 s window: {reset:?}"
    );

    // Another subject has a counter of its own; the server budget counted every call.
    let r = ask(&s, "bob");
    assert_eq!(code(&r), Code::Ok, "{r:?}");
    assert_eq!(r.statuses[0].limit_remaining, 2);
    assert_eq!(r.statuses[1].limit_remaining, 100 - 5, "{r:?}");

    // Descriptors no limit matches are under limit, as in envoyproxy/ratelimit: another tool,
    // another domain, a descriptor one entry short of the leaf.
    let other_tool = [
        ("gateway", "saas"),
        ("server", "ops-console"),
        ("budget", "tool:other:60s"),
        ("subject", "alice"),
    ];
    let short = &tool_budget("alice")[..3];
    let r = s.ask("scopegate", &[&other_tool, short]).expect("asked");
    assert_eq!(code(&r), Code::Ok, "{r:?}");
    let r = s.ask("elsewhere", &[&tool_budget("alice")]).expect("asked");
    assert_eq!(code(&r), Code::Ok, "{r:?}");
    // And alice is still over her budget.
    assert_eq!(code(&ask(&s, "alice")), Code::OverLimit);
}

#[test]
fn two_services_on_one_redis_share_the_counts() {
    let redis = Redis::start("fleet_budgets_two_services");
    let a = RateLimitService::start("fleet_budgets_two_services", SAMPLE, &redis.url());
    let b = RateLimitService::start("fleet_budgets_two_services", SAMPLE, &redis.url());
    let mut allowed = 0;
    for i in 0..8 {
        let s = if i % 2 == 0 { &a } else { &b };
        if code(&ask(s, "carol")) == Code::Ok {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "3 a minute in all, whichever service counted");
    assert_eq!(code(&ask(&a, "dave")), Code::Ok);
}

#[test]
fn the_service_refuses_to_answer_without_redis() {
    // What the filter's `on_error` is for: the counters cannot be read, and the service says so
    // (an error, not an answer) rather than letting every call through; once Redis is back it
    // counts again without a restart.
    let mut redis = Redis::start("fleet_budgets_no_redis");
    let s = RateLimitService::start("fleet_budgets_no_redis", SAMPLE, &redis.url());
    assert_eq!(code(&ask(&s, "erin")), Code::Ok);
    redis.stop_server();
    let err = s
        .ask("scopegate", &[&tool_budget("erin")])
        .expect_err("no answer without Redis");
    assert!(!err.is_empty());
    redis.start_server();
    let r = scopegate_tests::procs::wait_for(
        "the service to reach Redis again",
        std::time::Duration::from_secs(30),
        || s.ask("scopegate", &[&tool_budget("erin")]).ok(),
    );
    assert_eq!(code(&r), Code::Ok, "{r:?}");
}
// ---- Envoys with the filter, budgets counted by the service --------------------------------

use scopegate_tests::fleet::Fleet;
use scopegate_tests::mcp::{Client, Reply};
use scopegate_tests::stack::OPS;
use serde_json::{json, Value};

/// Five `admin_report` calls a minute per subject on ops-console, in `mode`, counted by the
/// service (a generous `timeout_ms`: a busy machine must not turn a slow answer into a refusal).
fn five_a_minute(mode: &'static str) -> impl Fn(&mut Value) {
    move |doc: &mut Value| {
        doc["filter"]["body_mode"] = json!(mode);
        doc["filter"]["rate_limit"]["timeout_ms"] = json!(2000);
        doc["gateways"][0]["servers"][1]["budgets"] =
            json!([{"tool": "admin_report", "requests": 5, "per_seconds": 60, "per": "subject"}]);
    }
}

/// `n` messages (`msg(k)`) from `subject`, each on a connection of its own, all at once,
/// spread over every Envoy of the fleet in turn (and so over their workers).
fn spread(f: &Fleet, subject: &str, n: usize, msg: fn(u64) -> Value) -> Vec<Reply> {
    let token = f.admin_token(subject);
    let urls: Vec<String> = f.envoys.iter().map(|e| e.url(OPS)).collect();
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let (url, token) = (urls[k % urls.len()].clone(), token.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&url, Some(&token));
                let r = c.initialize();
                assert_eq!(r.status, 200, "initialize: {}", r.body);
                c.post(&msg(k as u64 + 100), &[])
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

fn admin_report(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "admin_report", "arguments": {}}})
}

fn batch_with_admin_report(id: u64) -> Value {
    json!([admin_report(id), {"jsonrpc": "2.0", "id": id + 1000, "method": "tools/list"}])
}

/// How many messages naming `admin_report` ops-console received since the last clear.
fn admin_reports_seen(f: &Fleet) -> usize {
    f.ops
        .seen()
        .into_iter()
        .filter(|r| {
            r["body"]
                .as_str()
                .is_some_and(|b| b.contains("admin_report"))
        })
        .count()
}

/// A refusal for the budget: 429, `Retry-After` of at least a second and at most the window.
fn assert_over_budget(r: &Reply, what: &str) {
    assert_eq!(r.status, 429, "{what}: {}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no numeric Retry-After: {:?}", r.headers));
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
}

/// Over both Envoys and their workers, one subject gets exactly its five calls, the rest 429
/// with `Retry-After` and JSON-RPC -32011 carrying the call's id; another subject still gets
/// its five. Returns (allowed, refused) of the first subject's twelve calls.
fn budget_holds_across_two_envoys(f: &Fleet, mode: &str) -> (usize, usize) {
    f.ops.clear_seen();
    let replies = spread(f, "alice", 12, admin_report);
    let allowed = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status != 200).collect();
    assert_eq!(
        allowed,
        5,
        "{mode}: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &refused {
        assert_over_budget(r, mode);
        let m = r.json();
        assert_eq!(m["error"]["code"], json!(-32011), "{mode}: {}", r.body);
        // Every mode answers the request's id (mcp_metadata: as envoy.filters.http.mcp
        // recorded it).
        let id = m["id"].as_u64();
        assert!(
            id.is_some_and(|id| (100..112).contains(&id)),
            "{mode}: id: {}",
            r.body
        );
    }
    assert_eq!(
        admin_reports_seen(f),
        5,
        "{mode}: the refused calls never reached the server"
    );

    // Another subject's budget is its own.
    let replies = spread(f, "bob", 6, admin_report);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{mode}: bob: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{mode}: bob: {statuses:?}"
    );
    (allowed, refused.len())
}

#[test]
fn hold_body_budgets_hold_across_two_envoys_and_batches_count() {
    let mode = "hold_body";
    let f = Fleet::start(
        "fleet_budgets_hold_body",
        2,
        &five_a_minute(mode),
        &[&|_| {}, &|_| {}],
    );
    let (allowed, refused) = budget_holds_across_two_envoys(&f, mode);
    println!(
        "{mode}: two Envoys x 2 workers, 12 calls: {allowed} allowed, {refused} refused (429)"
    );

    // A batch holding a budgeted call counts once per batch, and is refused whole past the
    // budget. (The batches let through reach ops-console, whose rmcp server refuses a batch (415
    // here; the 2025-06-18 protocol has none): what counts is that the filter let them through.)
    f.ops.clear_seen();
    let replies = spread(&f, "carol", 7, batch_with_admin_report);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let over: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(over.len(), 2, "batches: {statuses:?}");
    for r in over {
        assert_over_budget(r, "batch");
    }
    assert_eq!(
        admin_reports_seen(&f),
        5,
        "batches that reached the server: {statuses:?}"
    );
    println!("{mode}: 7 batches each holding admin_report: {statuses:?}");
}

#[test]
fn hold_headers_budgets_hold_across_two_envoys() {
    let mode = "hold_headers";
    let f = Fleet::start(
        "fleet_budgets_hold_headers",
        2,
        &five_a_minute(mode),
        &[&|_| {}, &|_| {}],
    );
    let (allowed, refused) = budget_holds_across_two_envoys(&f, mode);
    println!(
        "{mode}: two Envoys x 2 workers, 12 calls: {allowed} allowed, {refused} refused (429)"
    );
}

#[test]
fn mcp_metadata_budgets_hold_across_two_envoys() {
    let mode = "mcp_metadata";
    let f = Fleet::start(
        "fleet_budgets_mcp_metadata",
        2,
        &five_a_minute(mode),
        &[&|_| {}, &|_| {}],
    );
    let (allowed, refused) = budget_holds_across_two_envoys(&f, mode);
    println!(
        "{mode}: two Envoys x 2 workers, 12 calls: {allowed} allowed, {refused} refused (429)"
    );
}

/// One `admin_report` call from `subject` through `envoy`, on a fresh session.
fn one_call(f: &Fleet, envoy: usize, subject: &str) -> Reply {
    let mut c = Client::new(&f.envoys[envoy].url(OPS), Some(&f.admin_token(subject)));
    assert_eq!(c.initialize().status, 200);
    c.call_tool("admin_report", json!({}))
}

const DENY: usize = 0;
const ALLOW: usize = 1;

/// With the service unable to answer: the `deny` Envoy refuses the call (the upstream never
/// sees it, the access log names the reason), the `allow` Envoy lets it through.
fn on_error_applies(f: &Fleet, fault: &str) -> String {
    let unavailable = || -> Vec<Value> {
        f.envoys[DENY]
            .access_log()
            .into_iter()
            .filter(|l| l["reason"] == "rate_limit_unavailable")
            .collect()
    };
    let before = unavailable().len();
    f.ops.clear_seen();
    let r = one_call(f, DENY, "alice");
    assert!(
        r.status != 200 && r.status != 429,
        "{fault}: deny: {} {}",
        r.status,
        r.body
    );
    assert_eq!(
        admin_reports_seen(f),
        0,
        "{fault}: the refused call reached the server"
    );
    let line = scopegate_tests::procs::wait_for(
        &format!("{fault}: the refusal's access-log line"),
        std::time::Duration::from_secs(15),
        || unavailable().get(before).cloned(),
    );
    assert_eq!(line["decision"], "deny", "{fault}: {line}");
    let r_allow = one_call(f, ALLOW, "alice");
    assert_eq!(r_allow.status, 200, "{fault}: allow: {}", r_allow.body);
    assert_eq!(admin_reports_seen(f), 1, "{fault}");
    format!(
        "{fault}: on_error deny -> {} (reason rate_limit_unavailable), allow -> 200",
        r.status
    )
}

/// The `deny` Envoy counts again once the service can, without a restart.
fn recovers(f: &Fleet, fault: &str) {
    let status = scopegate_tests::procs::wait_for(
        &format!("the budgeted call to pass again after {fault}"),
        std::time::Duration::from_secs(30),
        || {
            let r = one_call(f, DENY, "alice");
            (r.status == 200).then_some(r.status)
        },
    );
    assert_eq!(status, 200);
}

#[test]
fn when_the_service_cannot_count_on_error_decides() {
    let deny = |doc: &mut Value| doc["filter"]["rate_limit"]["on_error"] = json!("deny");
    let allow = |doc: &mut Value| doc["filter"]["rate_limit"]["on_error"] = json!("allow");
    let short_timeout = |doc: &mut Value| {
        five_a_minute("hold_body")(doc);
        doc["filter"]["rate_limit"]["timeout_ms"] = json!(1000);
    };
    let mut f = Fleet::start("fleet_budgets_faults", 1, &short_timeout, &[&deny, &allow]);
    assert_eq!(one_call(&f, DENY, "alice").status, 200);
    let mut seen = Vec::new();

    // The service stopped.
    f.ratelimit.stop_server();
    seen.push(on_error_applies(&f, "service stopped"));
    f.ratelimit.start_server(0);
    recovers(&f, "the service is back");

    // Redis stopped behind the service.
    f.redis.stop_server();
    seen.push(on_error_applies(&f, "Redis stopped"));
    f.redis.start_server();
    recovers(&f, "Redis is back");

    // A service slower than timeout_ms: the filter stops waiting (test-only --delay-ms).
    f.ratelimit.start_server(10_000);
    seen.push(on_error_applies(&f, "service slower than timeout_ms"));
    f.ratelimit.start_server(0);
    recovers(&f, "the service is fast again");

    // Through it all, budgets still hold: a subject that never called gets its five.
    for i in 0..5 {
        assert_eq!(one_call(&f, DENY, "bob").status, 200, "bob's call {i}");
    }
    assert_over_budget(
        &one_call(&f, ALLOW, "bob"),
        "bob's sixth, on the other Envoy",
    );
    for s in seen {
        println!("{s}");
    }

    // The dashboard's rate limit row queries what these two Envoys now export: refusals by
    // reason on the `deny` one, calls let through uncounted on the `allow` one.
    let envoys: Vec<String> = f.envoys.iter().map(|e| e.prometheus()).collect();
    let scrape = Scrape::parse(&[&envoys[DENY], &envoys[ALLOW]]);
    assert!(
        scrape.has("scopegate_rate_limit"),
        "no uncounted calls exported:\n{}",
        envoys[ALLOW]
    );
    let text = std::fs::read_to_string(dashboard::dashboard_path()).expect("the dashboard");
    let board: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let problems = dashboard::check_rows(&board, Rows::Fleet, &scrape);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
