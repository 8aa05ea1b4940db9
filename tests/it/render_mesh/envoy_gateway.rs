//! `render envoy-gateway`: the extension policy, the body flag's listener patch, the backend.

use super::manifests::{doc_file, envoy_gateway, find, valid, DIGEST};
use serde_json::{json, Value};

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
