//! The mesh tests' rendering: the example document, `render` run and parsed, lookups by kind.

use scopegate_tests::procs::log_dir;
use scopegate_tests::render::render;
use serde_json::{json, Value};

pub(super) const NS: &str = "mcp";
pub(super) const DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The example document (broker mode) with or without per-tool rules, and with `filter.body_mode`
/// set when `mode` is given, written to a file.
pub(super) fn doc_file(name: &str, tools: bool, mode: Option<&str>) -> String {
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

pub(super) const UPSTREAMS: [&str; 4] = [
    "--upstream",
    "support_assistant=support-assistant.mcp.svc.cluster.local:8080",
    "--upstream",
    "ops_console=ops-console.mcp.svc.cluster.local:8080",
];

pub(super) fn objects(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).expect("each document is YAML"))
        .collect()
}

pub(super) fn kinds(objs: &[Value]) -> Vec<(String, String)> {
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
pub(super) fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] != "scopegate-stats")
        .collect()
}

pub(super) fn valid(text: &str) -> scopegate_core::policy::Policy {
    scopegate_core::validate::load(text)
        .unwrap_or_else(|e| panic!("embedded document invalid: {e}\n{text}"))
}

pub(super) fn istio(doc: &str, extra: &[&str]) -> Vec<Value> {
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

pub(super) fn envoy_gateway(doc: &str, wasm_url: &str) -> Vec<Value> {
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
