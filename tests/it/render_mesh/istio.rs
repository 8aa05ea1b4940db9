//! `render istio`: ECDS or a `WasmPlugin` by body mode, stats labels, the broker's workload.

use super::manifests::{doc_file, find, istio, kinds, valid, DIGEST};
use scopegate_tests::render::render;
use serde_json::{json, Value};

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
