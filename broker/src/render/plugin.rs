//! The wasm `PluginConfig` (Envoy's `envoy.extensions.wasm.v3.PluginConfig`) the Envoy bootstrap and
//! Istio's ECDS entry share.

use serde_json::{json, Value};

pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
/// The plugin's name and root id (the filter registers its root context under it).
pub const NAME: &str = "scopegate";

/// `code`: a `vm_config.code` (local file or remote fetch); `configuration`: the document as JSON
/// text; `body_flag`: `allow_on_headers_stop_iteration`. A trapped VM is recreated
/// (`FAIL_RELOAD`) rather than failing every later request; the filter itself refuses (503)
/// what it cannot check.
pub fn plugin_config(name: &str, code: Value, configuration: &str, body_flag: bool) -> Value {
    let mut config = json!({
        "name": name,
        "root_id": NAME,
        "vm_config": {
            "vm_id": NAME,
            "runtime": "envoy.wasm.runtime.v8",
            "code": code,
        },
        "configuration": {"@type": STRING_VALUE_TYPE, "value": configuration},
        "failure_policy": "FAIL_RELOAD",
    });
    if body_flag {
        config["allow_on_headers_stop_iteration"] = json!(true);
    }
    config
}

/// The filter as a local file.
pub fn local_code(path: &str) -> Value {
    json!({"local": {"filename": path}})
}

/// The filter fetched by the proxy (in Istio, by its agent, which also understands `oci://`).
pub fn remote_code(url: &str, sha256: Option<&str>) -> Value {
    let mut remote = json!({
        // Istio's agent fetches the module itself; the cluster is never used (istiod writes "_").
        "http_uri": {"uri": url, "timeout": "30s", "cluster": "_"},
    });
    if let Some(sum) = sha256 {
        remote["sha256"] = json!(sum);
    }
    json!({ "remote": remote })
}

/// The name of Envoy's native MCP filter, which `body_mode: mcp_metadata` reads.
pub const NATIVE_MCP_FILTER: &str = "envoy.filters.http.mcp";

/// Envoy's native MCP filter as it must precede scopegate (`body_mode: mcp_metadata`): it holds
/// the headers while it parses a POST and writes the message to dynamic metadata. Duplicate keys
/// are rejected so it and the MCP server cannot read different methods; its body limit is the
/// document's `filter.max_body_bytes`, the bound scopegate's own body modes read up to.
pub fn native_mcp_filter(max_body_bytes: usize) -> Value {
    json!({
        "name": NATIVE_MCP_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
            "reject_duplicate_keys": true,
            "max_request_body_size": max_body_bytes,
        },
    })
}
