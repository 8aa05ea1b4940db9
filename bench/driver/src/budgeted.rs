//! The budgeted case: the per-tool case with a budget on the called tool, counted by the rate
//! limit service (`filter.rate_limit`: the harness's stand-in for envoyproxy/ratelimit, on a
//! throw-away Redis), so every request adds the filter's gRPC call. Beside the per-tool case it
//! gives what counting budgets across a fleet adds per request.

use scopegate_tests::bootstrap as b;
use scopegate_tests::ratelimit::{RateLimitService, RELEASE_BIN};
use scopegate_tests::redis::Redis;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub const ID: &str = "scopegate-hit-budget";
/// The service's cluster in the case's document and bootstrap.
const CLUSTER: &str = "ratelimit";
/// A day's budget no run can spend: every request is counted, none refused.
const PER_DAY: u32 = 4_000_000_000;

/// The per-tool case's document with the budget, counted by the service.
pub fn doc(mut doc: Value) -> Value {
    doc["gateways"][0]["servers"][0]["budgets"] = json!([
        {"tool": super::request::TOOL, "requests": PER_DAY, "per_seconds": 86_400, "per": "subject"}
    ]);
    // The longest call the document allows: `on_error: deny` answers 503 to a call past its
    // timeout, and on a loaded machine the stand-in (one process, one Redis) sometimes took
    // longer than a second, which failed `make bench-quick`'s every-answer-is-200 check. A
    // timeout that never fires changes nothing a quiet run measures.
    doc["filter"]["rate_limit"] = json!({"cluster": CLUSTER, "timeout_ms": 10_000});
    doc
}

/// The service's configuration for [`doc`], in the shape `scopegate-broker render ratelimit`
/// prints (tests/it/render_rate_limit.rs checks that shape; the bench builds no broker binary
/// for it).
fn config(gateway: &str, server: &str) -> String {
    format!(
        "domain: scopegate\ndescriptors:\n  - key: gateway\n    value: {gateway}\n    descriptors:\n      - key: server\n        value: {server}\n        descriptors:\n          - key: budget\n            value: \"tool:{tool}:86400s\"\n            descriptors:\n              - key: subject\n                rate_limit: {{unit: day, requests_per_unit: {PER_DAY}}}\n",
        tool = super::request::TOOL
    )
}

struct Service {
    _redis: Redis,
    ratelimit: RateLimitService,
}

/// Redis and the service, started once for the whole run (a missing `redis-server` stops the
/// run with the harness's message: `make redis` installs it).
static SERVICE: OnceLock<Service> = OnceLock::new();

/// Adds the service's HTTP/2 cluster to the case's bootstrap, starting Redis and the service
/// the first time.
pub fn attach(boot: &mut Value, doc: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
    let (gateway, server) = (
        name(&doc["gateways"][0]),
        name(&doc["gateways"][0]["servers"][0]),
    );
    let service = SERVICE.get_or_init(|| {
        let redis = Redis::start("bench/ratelimit");
        let config = config(&gateway, &server);
        let ratelimit =
            RateLimitService::start_built(RELEASE_BIN, "bench/ratelimit", &config, &redis.url());
        Service {
            _redis: redis,
            ratelimit,
        }
    });
    let port = service.ratelimit.port;
    let mut cluster = b::cluster(CLUSTER, port);
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}
        }
    });
    boot["static_resources"]["clusters"]
        .as_array_mut()
        .ok_or("the bootstrap has no clusters")?
        .push(cluster);
    Ok(())
}
