//! `scopegate-broker render istio|envoy-gateway`: the manifests parsed back, their kinds and API
//! versions, the delivery form chosen by the body mode (a plain `WasmPlugin`/
//! `EnvoyExtensionPolicy` unless `hold_headers` needs the flag; the native MCP filter first for
//! `mcp_metadata`), cluster names as each mesh spells them, never a fail-open setting, and every
//! embedded document valid by the core's rules.

use scopegate_tests::procs::log_dir;
use scopegate_tests::render::{assert_current, render};
use serde_json::{json, Value};

const NS: &str = "mcp";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The example document (broker mode) with or without per-tool rules, and with `filter.body_mode`
/// set when `mode` is given, written to a file.
fn doc_file(name: &str, tools: bool, mode: Option<&str>) -> String {
    let mut doc: Value = serde_norway::from_str(
        &std::fs::read_to_string(
            scopegate_tests::repo_root().join("examples/two-servers/scopegate.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    doc["gateways"][0]["public_url"] = json!("https://mcp.example.com");
    doc["gateways"][0]["issuer"] = json!("https://mcp.example.com");
    doc["gateways"][0]["downstream"]["authorization_server"] = json!("https://auth.example.com");
    if !tools {
        for s in doc["gateways"][0]["servers"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("tools");
        }
    }
    if let Some(mode) = mode {
        doc["filter"]["body_mode"] = json!(mode);
    }
    if mode == Some("mcp_metadata") {
        // The native filter's metadata carries no request id, so core refuses listing filters
        // (`deny`, `listings.hide: not_granted`) in this mode.
        for s in doc["gateways"][0]["servers"].as_array_mut().unwrap() {
            let s = s.as_object_mut().unwrap();
            s.remove("deny");
            s.remove("listings");
        }
    }
    let path = log_dir("render_mesh").join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path.display().to_string()
}

const UPSTREAMS: [&str; 4] = [
    "--upstream",
    "support_assistant=support-assistant.mcp.svc.cluster.local:8080",
    "--upstream",
    "ops_console=ops-console.mcp.svc.cluster.local:8080",
];

fn objects(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).expect("each document is YAML"))
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<(String, String)> {
    objs.iter()
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The objects of a kind, leaving out the stats-tags `EnvoyFilter` (a BOOTSTRAP patch every
/// Istio output carries, checked on its own in `istio_labels_the_filters_counters_for_prometheus`).
fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] != "scopegate-stats")
        .collect()
}

fn valid(text: &str) -> scopegate_core::policy::Policy {
    scopegate_core::validate::load(text)
        .unwrap_or_else(|e| panic!("embedded document invalid: {e}\n{text}"))
}

fn istio(doc: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "istio",
        doc,
        "--namespace",
        NS,
        "--wasm-url",
        "oci://registry.example.com/scopegate/filter:0.1.0",
        "--wasm-sha256",
        DIGEST,
    ];
    args.extend_from_slice(&UPSTREAMS);
    args.extend_from_slice(extra);
    objects(&render(&args))
}

#[test]
fn istio_hold_headers_delivers_the_filter_by_ecds_with_the_body_flag() {
    let objs = istio(&doc_file("istio_tools", true, Some("hold_headers")), &[]);
    assert!(
        find(&objs, "WasmPlugin").is_empty(),
        "a WasmPlugin cannot set the body flag"
    );
    let ef = find(&objs, "EnvoyFilter");
    assert_eq!(ef.len(), 1);
    assert_eq!(ef[0]["apiVersion"], "networking.istio.io/v1alpha3");
    let patches = ef[0]["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(
        patches.len(),
        2,
        "no native MCP filter outside mcp_metadata"
    );
    let ext = patches
        .iter()
        .find(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .expect("EXTENSION_CONFIG");
    let http = patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_FILTER")
        .expect("HTTP_FILTER");
    let value = &ext["patch"]["value"];
    assert_eq!(value["name"], "scopegate");
    assert_eq!(
        value["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let config = &value["typed_config"]["config"];
    assert_eq!(config["allow_on_headers_stop_iteration"], json!(true));
    assert_eq!(
        config["vm_config"]["code"]["remote"]["http_uri"]["uri"],
        "oci://registry.example.com/scopegate/filter:0.1.0"
    );
    assert_eq!(
        config["vm_config"]["code"]["remote"]["sha256"],
        DIGEST.trim_start_matches("sha256:")
    );
    assert_eq!(
        config["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    let embedded = config["configuration"]["value"].as_str().unwrap();
    assert!(
        embedded.trim_start().starts_with('{'),
        "the configuration is JSON text"
    );
    let policy = valid(embedded);
    let clusters: Vec<&str> = policy.servers.iter().map(|s| s.cluster.as_str()).collect();
    assert_eq!(
        clusters,
        [
            "outbound|8080||support-assistant.mcp.svc.cluster.local",
            "outbound|8080||ops-console.mcp.svc.cluster.local"
        ]
    );
    let doc: Value = serde_json::from_str(embedded).unwrap();
    let broker = "outbound|8081||scopegate-broker.mcp.svc.cluster.local";
    assert_eq!(doc["filter"]["broker"]["cluster"], broker);
    assert_eq!(doc["filter"]["jwks"]["cluster"], broker);
    assert_eq!(
        doc["filter"]["broker"]["authority"],
        "scopegate-broker.mcp.svc.cluster.local"
    );
    assert_eq!(http["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let discovery = &http["patch"]["value"]["config_discovery"];
    assert_eq!(
        http["patch"]["value"]["name"], value["name"],
        "the HTTP filter names the extension config"
    );
    assert_eq!(
        discovery["type_urls"],
        json!(["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"])
    );
    assert!(discovery["config_source"]["ads"].is_object());
}

#[test]
fn istio_labels_the_filters_counters_for_prometheus() {
    let doc = doc_file("istio_stats", true, None);
    let objs = istio(&doc, &[]);
    let stats: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "EnvoyFilter" && o["metadata"]["name"] == "scopegate-stats")
        .collect();
    assert_eq!(stats.len(), 1, "one stats-tags EnvoyFilter");
    let patch = &stats[0]["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "BOOTSTRAP");
    assert_eq!(patch["patch"]["operation"], "MERGE");
    let tags = patch["patch"]["value"]["stats_config"]["stats_tags"]
        .as_array()
        .expect("stats_tags");
    let names: Vec<&str> = tags.iter().filter_map(|t| t["tag_name"].as_str()).collect();
    assert_eq!(names, ["scopegate_server", "scopegate_reason"]);
    // The same extractors as `render envoy`, which the walkthrough's Envoy runs and the
    // dashboard check scrapes.
    let envoy: Value = serde_norway::from_str(&render(&[
        "envoy",
        &doc,
        "--upstream",
        "support_assistant=127.0.0.1:9101",
        "--upstream",
        "ops_console=127.0.0.1:9102",
    ]))
    .expect("render envoy prints YAML");
    assert_eq!(
        envoy["stats_config"]["stats_tags"],
        patch["patch"]["value"]["stats_config"]["stats_tags"]
    );
    let wp = find(&objs, "WasmPlugin");
    assert_eq!(
        stats[0]["spec"]["workloadSelector"]["labels"], wp[0]["spec"]["selector"]["matchLabels"],
        "the gateway's proxies, as the WasmPlugin selects them"
    );
}

#[test]
fn istio_without_body_rules_uses_a_wasmplugin_and_the_flag_can_be_forced() {
    let doc = doc_file("istio_plain", false, None);
    let objs = istio(&doc, &["--selector", "app=mcp-gateway"]);
    assert!(find(&objs, "EnvoyFilter").is_empty());
    let wp = find(&objs, "WasmPlugin");
    assert_eq!(wp.len(), 1);
    assert_eq!(wp[0]["apiVersion"], "extensions.istio.io/v1alpha1");
    let spec = &wp[0]["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        json!({"app": "mcp-gateway"})
    );
    assert_eq!(
        spec["url"],
        "oci://registry.example.com/scopegate/filter:0.1.0"
    );
    assert_eq!(spec["sha256"], DIGEST.trim_start_matches("sha256:"));
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    // Istio passes pluginConfig as JSON text: the same document must validate.
    let policy = valid(&spec["pluginConfig"].to_string());
    assert!(policy
        .servers
        .iter()
        .all(|s| s.cluster.starts_with("outbound|8080||")));

    let forced = istio(&doc, &["--body-flag"]);
    assert!(find(&forced, "WasmPlugin").is_empty());
    assert_eq!(
        find(&forced, "EnvoyFilter").len(),
        1,
        "--body-flag forces the ECDS form"
    );
}

#[test]
fn istio_renders_the_broker_workload_private_by_mtls_and_authorization_policy() {
    let objs = istio(&doc_file("istio_workload", true, None), &[]);
    let k = kinds(&objs);
    for want in [
        ("extensions.istio.io/v1alpha1", "WasmPlugin"),
        ("telemetry.istio.io/v1", "Telemetry"),
        ("networking.istio.io/v1", "VirtualService"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("security.istio.io/v1", "PeerAuthentication"),
        ("security.istio.io/v1", "AuthorizationPolicy"),
        ("networking.istio.io/v1", "ServiceEntry"),
    ] {
        assert!(
            k.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {k:?}"
        );
    }
    let cm = find(&objs, "ConfigMap")[0];
    valid(cm["data"]["scopegate.json"].as_str().unwrap());
    let dep = find(&objs, "Deployment")[0];
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["SAAS_CLIENT_SECRET", "SCOPEGATE_ENCRYPTION_KEY"]);
    for e in env {
        assert!(e.get("value").is_none(), "a secret value was rendered: {e}");
        assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "scopegate-broker");
    }
    assert_eq!(
        find(&objs, "PeerAuthentication")[0]["spec"]["mtls"]["mode"],
        "STRICT"
    );
    let ap = &find(&objs, "AuthorizationPolicy")[0]["spec"];
    assert_eq!(ap["action"], "ALLOW");
    let internal = ap["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to"][0]["operation"]["ports"] == json!(["8081"]))
        .expect("a rule for the internal port");
    assert_eq!(
        internal["from"][0]["source"]["principals"],
        json!(["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"])
    );
    let se = find(&objs, "ServiceEntry");
    assert!(
        se.iter()
            .any(|s| s["spec"]["hosts"] == json!(["auth.example.com"])),
        "{se:?}"
    );
    let tel = find(&objs, "Telemetry")[0];
    assert_eq!(
        tel["spec"]["accessLogging"][0]["providers"][0]["name"],
        "scopegate-json"
    );
}

fn envoy_gateway(doc: &str, wasm_url: &str) -> Vec<Value> {
    let mut args = vec![
        "envoy-gateway",
        doc,
        "--namespace",
        NS,
        "--wasm-url",
        wasm_url,
        "--wasm-sha256",
        DIGEST,
        "--target-ref",
        "mcp-edge",
    ];
    args.extend_from_slice(&UPSTREAMS);
    objects(&render(&args))
}

#[test]
fn envoy_gateway_hold_headers_extension_policy_patch_policy_and_backend() {
    let objs = envoy_gateway(
        &doc_file("eg_tools", true, Some("hold_headers")),
        "oci://registry.example.com/scopegate/filter:0.1.0",
    );
    let eep = find(&objs, "EnvoyExtensionPolicy");
    assert_eq!(eep.len(), 1);
    assert_eq!(eep[0]["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    let spec = &eep[0]["spec"];
    assert_eq!(
        spec["targetRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-edge"}])
    );
    let wasm = &spec["wasm"][0];
    assert_eq!(wasm["name"], "scopegate");
    assert_eq!(wasm["rootID"], "scopegate");
    assert_eq!(wasm["failOpen"], json!(false));
    assert_eq!(wasm["code"]["type"], "Image");
    assert_eq!(
        wasm["code"]["image"]["url"],
        "registry.example.com/scopegate/filter:0.1.0"
    );
    assert_eq!(
        wasm["code"]["image"]["sha256"],
        DIGEST.trim_start_matches("sha256:")
    );
    let policy = valid(&wasm["config"].to_string());
    let clusters: Vec<&str> = policy.servers.iter().map(|s| s.cluster.as_str()).collect();
    assert_eq!(
        clusters,
        [
            "httproute/mcp/support-assistant/rule/0",
            "httproute/mcp/ops-console/rule/0"
        ]
    );

    let epp = find(&objs, "EnvoyPatchPolicy");
    assert_eq!(epp.len(), 1);
    assert_eq!(epp[0]["spec"]["type"], "JSONPatch");
    let patches = epp[0]["spec"]["jsonPatches"].as_array().unwrap();
    let flag = patches
        .iter()
        .find(|p| p["type"] == "type.googleapis.com/envoy.config.listener.v3.Listener")
        .expect("the body flag patch");
    assert_eq!(flag["name"], "mcp/mcp-edge/http");
    assert_eq!(
        flag["operation"]["path"],
        "/allow_on_headers_stop_iteration"
    );
    assert_eq!(flag["operation"]["value"], json!(true));
    let cluster = patches
        .iter()
        .find(|p| p["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster")
        .expect("the broker's internal cluster");
    assert_eq!(cluster["name"], "scopegate_broker_internal");
    assert_eq!(
        cluster["operation"]["value"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            ["endpoint"]["address"]["socket_address"],
        json!({"address": "scopegate-broker.mcp.svc.cluster.local", "port_value": 8081})
    );
    let backend = find(&objs, "Backend");
    assert_eq!(backend.len(), 1);
    assert_eq!(
        backend[0]["spec"]["endpoints"][0]["fqdn"],
        json!({"hostname": "scopegate-broker.mcp.svc.cluster.local", "port": 8080})
    );
    let routes = find(&objs, "HTTPRoute");
    let names: Vec<&str> = routes
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["support-assistant", "ops-console", "scopegate-broker"]
    );
    assert_eq!(
        routes[0]["spec"]["rules"][0]["timeouts"]["request"], "0s",
        "SSE streams need no timeout"
    );
    let oauth: Vec<&str> = routes[2]["spec"]["rules"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"]["value"].as_str().unwrap())
        .collect();
    for p in [
        "/.well-known/oauth-authorization-server",
        "/register",
        "/authorize",
        "/token",
        "/callback",
        "/consent",
    ] {
        assert!(
            oauth.contains(&p),
            "{p} not routed to the broker: {oauth:?}"
        );
    }
}

#[test]
fn envoy_gateway_without_body_rules_needs_no_listener_patch() {
    let objs = envoy_gateway(
        &doc_file("eg_plain", false, None),
        "https://files.example.com/scopegate.wasm",
    );
    let wasm = &find(&objs, "EnvoyExtensionPolicy")[0]["spec"]["wasm"][0];
    assert_eq!(wasm["code"]["type"], "HTTP");
    assert_eq!(
        wasm["code"]["http"]["url"],
        "https://files.example.com/scopegate.wasm"
    );
    let epp = find(&objs, "EnvoyPatchPolicy");
    let patches = epp[0]["spec"]["jsonPatches"].as_array().unwrap();
    assert!(
        patches
            .iter()
            .all(|p| p["type"] != "type.googleapis.com/envoy.config.listener.v3.Listener"),
        "no body flag without body rules: {patches:?}"
    );
}

#[test]
fn istio_per_tool_scopes_in_the_default_hold_body_mode_use_a_plain_wasmplugin() {
    let objs = istio(&doc_file("istio_hold_body", true, None), &[]);
    assert!(
        find(&objs, "EnvoyFilter").is_empty(),
        "hold_body needs neither the flag nor a patch"
    );
    let wp = find(&objs, "WasmPlugin");
    assert_eq!(wp.len(), 1);
    assert_eq!(wp[0]["spec"]["failStrategy"], "FAIL_CLOSE");
    let policy = valid(&wp[0]["spec"]["pluginConfig"].to_string());
    assert!(
        policy.servers.iter().any(|s| !s.tools.is_empty()),
        "the per-tool rules are in the plugin's configuration"
    );
    assert_eq!(
        policy.filter.body_mode,
        scopegate_core::config::BodyMode::HoldBody
    );
}

#[test]
fn istio_mcp_metadata_inserts_the_native_filter_before_the_wasmplugin() {
    let doc = doc_file("istio_mcp_metadata", true, Some("mcp_metadata"));
    let objs = istio(&doc, &[]);
    let wp = find(&objs, "WasmPlugin");
    assert_eq!(wp.len(), 1, "mcp_metadata needs no body flag");
    assert_eq!(wp[0]["metadata"]["namespace"], "istio-system");
    let ef = find(&objs, "EnvoyFilter");
    assert_eq!(ef.len(), 1);
    assert_eq!(ef[0]["metadata"]["name"], "scopegate-mcp");
    let patches = ef[0]["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p["applyTo"], "HTTP_FILTER");
    assert_eq!(p["patch"]["operation"], "INSERT_BEFORE");
    // istiod names a WasmPlugin's filter `<namespace>.<name>`.
    assert_eq!(
        p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "istio-system.scopegate"
    );
    let native = &p["patch"]["value"];
    assert_eq!(native["name"], "envoy.filters.http.mcp");
    assert_eq!(native["typed_config"]["reject_duplicate_keys"], json!(true));
    assert_eq!(
        native["typed_config"]["max_request_body_size"],
        json!(65536)
    );

    // With the flag forced, the ECDS EnvoyFilter inserts the native filter before scopegate.
    let forced = istio(&doc, &["--body-flag"]);
    assert!(find(&forced, "WasmPlugin").is_empty());
    let ef = find(&forced, "EnvoyFilter");
    assert_eq!(ef.len(), 1);
    let patches = ef[0]["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 3);
    assert_eq!(
        patches[2]["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"], "scopegate",
        "after the patch that put scopegate in the chain"
    );
    assert_eq!(patches[2]["patch"]["value"], *native);
}

#[test]
fn envoy_gateway_default_hold_body_sets_no_flag_and_mcp_metadata_patches_the_native_filter_in() {
    let listener_patches = |objs: &[Value]| -> Vec<Value> {
        find(objs, "EnvoyPatchPolicy")
            .iter()
            .flat_map(|e| e["spec"]["jsonPatches"].as_array().unwrap().clone())
            .filter(|p| p["type"] == "type.googleapis.com/envoy.config.listener.v3.Listener")
            .collect()
    };
    let url = "oci://registry.example.com/scopegate/filter:0.1.0";
    let hold_body = envoy_gateway(&doc_file("eg_hold_body", true, None), url);
    assert_eq!(find(&hold_body, "EnvoyExtensionPolicy").len(), 1);
    assert!(
        listener_patches(&hold_body).is_empty(),
        "hold_body: the extension policy alone carries the filter"
    );

    let metadata = envoy_gateway(
        &doc_file("eg_mcp_metadata", true, Some("mcp_metadata")),
        url,
    );
    let patches = listener_patches(&metadata);
    assert_eq!(patches.len(), 1, "{patches:?}");
    let op = &patches[0]["operation"];
    assert_eq!(op["op"], "add");
    assert_eq!(
        op["jsonPath"],
        "..http_filters[?(@.typed_config.config.name=='scopegate')]"
    );
    assert_eq!(
        op["path"], "",
        "an add at scopegate's index inserts before it"
    );
    assert_eq!(op["value"]["name"], "envoy.filters.http.mcp");
    assert_eq!(
        op["value"]["typed_config"]["reject_duplicate_keys"],
        json!(true)
    );
}

#[test]
fn render_never_emits_a_fail_open_setting() {
    for (mode, tools) in [
        (None, false),
        (None, true),
        (Some("hold_headers"), true),
        (Some("mcp_metadata"), true),
    ] {
        let name = format!("fail_closed_{}_{tools}", mode.unwrap_or("default"));
        let doc = doc_file(&name, tools, mode);
        for objs in [
            istio(&doc, &[]),
            istio(&doc, &["--body-flag"]),
            envoy_gateway(&doc, "oci://registry.example.com/scopegate/filter:0.1.0"),
        ] {
            for wp in find(&objs, "WasmPlugin") {
                assert_eq!(wp["spec"]["failStrategy"], "FAIL_CLOSE", "{mode:?}");
            }
            for ef in find(&objs, "EnvoyFilter") {
                for p in ef["spec"]["configPatches"].as_array().unwrap() {
                    let config = &p["patch"]["value"]["typed_config"]["config"];
                    if config.is_object() {
                        assert_eq!(config["failure_policy"], "FAIL_RELOAD", "{mode:?}");
                        assert!(config.get("fail_open").is_none(), "{mode:?}");
                    }
                }
            }
            for eep in find(&objs, "EnvoyExtensionPolicy") {
                assert_eq!(eep["spec"]["wasm"][0]["failOpen"], json!(false), "{mode:?}");
            }
        }
    }
}

#[test]
fn the_checked_in_mesh_manifests_are_what_render_prints_now() {
    for rel in [
        "envoy/istio/scopegate.yaml",
        "envoy/envoy-gateway/scopegate.yaml",
    ] {
        let text = assert_current(rel, "make mesh-examples");
        for o in objects(&text) {
            assert!(
                o["apiVersion"].is_string() && o["kind"].is_string(),
                "{rel}: {o}"
            );
        }
    }
}
