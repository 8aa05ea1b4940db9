//! `render` with `filter.rate_limit`: the rate limit service's own configuration
//! (`render ratelimit`, envoyproxy/ratelimit's format, the descriptors nested as the filter sends
//! them), its HTTP/2 cluster in `render envoy` (`--rate-limit` required with the section, refused
//! without), and in the meshes its cluster, workload, Redis and configuration.

use scopegate_tests::procs::log_dir;
use scopegate_tests::render::{broker, render};
use serde_json::{json, Value};

const DIR: &str = "render_rate_limit";

/// A validate-mode document: `support` budgets a tool per subject and per client (one budget
/// descriptor, two counters) and every request per server; `plain` has no budget.
fn doc(rate_limit: Option<Value>) -> Value {
    let mut doc = json!({
        "gateways": [{
            "name": "saas",
            "public_url": "https://mcp.example.com",
            "issuer": "https://idp.example.com",
            "allowed_scopes": ["tickets.read"],
            "jwks": {"cluster": "idp", "path": "/jwks"},
            "servers": [
                {"name": "support", "cluster": "support", "path": "/support/mcp",
                 "scopes": ["tickets.read"],
                 "budgets": [
                     {"tool": "update_ticket", "requests": 2, "per_seconds": 60},
                     {"tool": "update_ticket", "requests": 5, "per_seconds": 60, "per": "client_id"},
                     {"requests": 100, "per_seconds": 3600, "per": "server"}
                 ]},
                {"name": "plain", "cluster": "plain", "path": "/plain/mcp", "scopes": ["tickets.read"]}
            ]
        }]
    });
    if let Some(r) = rate_limit {
        doc["filter"] = json!({"rate_limit": r});
    }
    doc
}

fn file(name: &str, doc: &Value) -> String {
    let path = log_dir(DIR).join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path.display().to_string()
}

fn objects(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).expect("each document is YAML"))
        .collect()
}

/// The rate limit service's configuration for `doc`, parsed.
fn ratelimit_config(doc: &str) -> Value {
    serde_norway::from_str(&render(&["ratelimit", doc])).unwrap()
}

#[test]
fn render_ratelimit_nests_gateway_server_budget_then_whose_counter() {
    let path = file(
        "counted",
        &doc(Some(json!({"cluster": "rls", "domain": "mcp"}))),
    );
    let limit = |unit: &str, n: u32| json!({"unit": unit, "requests_per_unit": n});
    assert_eq!(
        ratelimit_config(&path),
        json!({
            "domain": "mcp",
            "descriptors": [{
                "key": "gateway", "value": "saas",
                "descriptors": [{
                    "key": "server", "value": "support",
                    "descriptors": [
                        {"key": "budget", "value": "tool:update_ticket:60s", "descriptors": [
                            {"key": "subject", "rate_limit": limit("minute", 2)},
                            {"key": "client_id", "rate_limit": limit("minute", 5)}
                        ]},
                        {"key": "budget", "value": "server:3600s", "rate_limit": limit("hour", 100)}
                    ]
                }]
            }]
        })
    );
}

#[test]
fn render_ratelimit_without_the_section_says_budgets_are_counted_per_proxy() {
    let out = broker(&["render", "ratelimit", &file("per-proxy", &doc(None))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("filter.rate_limit") && err.contains("each Envoy"),
        "{err}"
    );
}

#[test]
fn validation_refuses_a_window_the_service_has_no_unit_for() {
    let mut d = doc(Some(json!({"cluster": "rls"})));
    d["gateways"][0]["servers"][0]["budgets"][0]["per_seconds"] = json!(30);
    let out = broker(&["render", "ratelimit", &file("odd-window", &d)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateways[0].servers[0].budgets[0].per_seconds"),
        "{err}"
    );
}

const ENVOY_UPSTREAMS: [&str; 4] = [
    "--upstream",
    "idp=127.0.0.1:9000",
    "--upstream",
    "support=127.0.0.1:9001",
];

fn render_envoy(doc: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["render", "envoy", doc, "--format", "json"];
    args.extend_from_slice(&ENVOY_UPSTREAMS);
    args.extend_from_slice(&["--upstream", "plain=127.0.0.1:9002"]);
    args.extend_from_slice(extra);
    broker(&args)
}

#[test]
fn render_envoy_adds_the_services_http2_cluster_and_asks_for_its_address() {
    let counted = file("envoy", &doc(Some(json!({"cluster": "rls"}))));
    let out = render_envoy(&counted, &["--rate-limit", "127.0.0.1:8089"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bootstrap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let rls = clusters.iter().find(|c| c["name"] == "rls").unwrap();
    assert_eq!(rls["type"], "STATIC");
    assert_eq!(
        rls["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"],
        json!({"address": "127.0.0.1", "port_value": 8089})
    );
    assert_eq!(
        rls["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"],
        json!({"http2_protocol_options": {}}),
        "gRPC needs HTTP/2"
    );
    let support = clusters.iter().find(|c| c["name"] == "support").unwrap();
    assert!(support.get("typed_extension_protocol_options").is_none());

    let missing = render_envoy(&counted, &[]);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("--rate-limit HOST:PORT"), "{err}");

    let per_proxy = file("envoy-per-proxy", &doc(None));
    let refused = render_envoy(&per_proxy, &["--rate-limit", "127.0.0.1:8089"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--rate-limit") && err.contains("no `filter.rate_limit`"),
        "{err}"
    );
}

const MESH_UPSTREAMS: [&str; 6] = [
    "--upstream",
    "idp=idp.example.com:443",
    "--upstream",
    "support=support.mcp.svc.cluster.local:8080",
    "--upstream",
    "plain=plain.mcp.svc.cluster.local:8080",
];

fn mesh(target: &str, doc: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![target, doc, "--namespace", "mcp"];
    args.extend_from_slice(&MESH_UPSTREAMS);
    args.extend_from_slice(extra);
    objects(&render(&args))
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// The document a mesh embeds, from the object carrying the filter.
fn embedded(objects: &[Value]) -> Value {
    for o in objects {
        for config in [&o["spec"]["pluginConfig"], &o["spec"]["wasm"][0]["config"]] {
            if config.is_object() {
                return config.clone();
            }
        }
    }
    panic!("no embedded document in {objects:#?}")
}

#[test]
fn meshes_render_the_service_its_redis_and_its_configuration_next_to_the_broker() {
    let path = file("mesh", &doc(Some(json!({"cluster": "rls"}))));
    for target in ["istio", "envoy-gateway"] {
        let objs = mesh(target, &path, &[]);
        let deployment = named(&objs, "Deployment", "scopegate-ratelimit").unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert!(container["image"]
            .as_str()
            .unwrap()
            .starts_with("envoyproxy/ratelimit:"));
        let env: Vec<(&str, &str)> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        assert!(env.contains(&(
            "REDIS_URL",
            "scopegate-ratelimit-redis.mcp.svc.cluster.local:6379"
        )));
        let service = named(&objs, "Service", "scopegate-ratelimit").unwrap();
        assert_eq!(service["spec"]["ports"][0]["appProtocol"], "grpc");
        assert!(named(&objs, "Deployment", "scopegate-ratelimit-redis").is_some());
        assert!(named(&objs, "Service", "scopegate-ratelimit-redis").is_some());
        // The ConfigMap is `render ratelimit`'s output.
        let config_map = named(&objs, "ConfigMap", "scopegate-ratelimit").unwrap();
        let config: Value =
            serde_norway::from_str(config_map["data"]["scopegate.yaml"].as_str().unwrap()).unwrap();
        assert_eq!(config, ratelimit_config(&path), "{target}");
        // The filter's cluster for the service, as each mesh spells it.
        let cluster = embedded(&objs)["filter"]["rate_limit"]["cluster"].clone();
        if target == "istio" {
            assert_eq!(
                cluster,
                "outbound|8081||scopegate-ratelimit.mcp.svc.cluster.local"
            );
        } else {
            assert_eq!(cluster, "rls");
            let patch = objs
                .iter()
                .find(|o| o["kind"] == "EnvoyPatchPolicy")
                .unwrap();
            let added = patch["spec"]["jsonPatches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "rls")
                .unwrap();
            let value = &added["operation"]["value"];
            assert_eq!(
                value["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                    ["socket_address"],
                json!({"address": "scopegate-ratelimit.mcp.svc.cluster.local", "port_value": 8081})
            );
            assert!(value["typed_extension_protocol_options"].is_object());
        }

        // An existing Redis instead of the rendered one.
        let objs = mesh(
            target,
            &path,
            &["--redis-url", "redis.cache.svc.cluster.local:6379"],
        );
        assert!(named(&objs, "Deployment", "scopegate-ratelimit-redis").is_none());
        let deployment = named(&objs, "Deployment", "scopegate-ratelimit").unwrap();
        assert!(deployment
            .to_string()
            .contains("redis.cache.svc.cluster.local:6379"));
    }
    // Without the section there is no service to render.
    let per_proxy = file("mesh-per-proxy", &doc(None));
    let objs = mesh("istio", &per_proxy, &[]);
    assert!(named(&objs, "Deployment", "scopegate-ratelimit").is_none());
}
