//! `scopegate-broker render istio|envoy-gateway`: the manifests parsed back, their kinds and API
//! versions, the delivery form chosen by the body mode (a plain `WasmPlugin`/
//! `EnvoyExtensionPolicy` unless `hold_headers` needs the flag; the native MCP filter first for
//! `mcp_metadata`), cluster names as each mesh spells them, never a fail-open setting, and every
//! embedded document valid by the core's rules.

mod envoy_gateway;
mod istio;
mod manifests;

use manifests::{doc_file, envoy_gateway, find, istio, objects};
use scopegate_tests::render::assert_current;
use serde_json::json;

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
