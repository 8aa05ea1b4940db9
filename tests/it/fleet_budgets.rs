//! Budgets that hold across a fleet: counted by a rate limit service (the harness's stand-in for
//! envoyproxy/ratelimit, on a real Redis), not per Envoy. First the service alone, asked over
//! its gRPC API as Envoy asks it; then Envoys with the filter in front of the same servers.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
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
