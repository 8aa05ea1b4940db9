//! The pieces of an Envoy bootstrap the harnesses write by hand (the rendered ones come from
//! `scopegate-broker render`): one listener with its HTTP connection manager, static clusters,
//! routes and the Wasm filter, in one spelling.

use serde_json::{json, Value};
use std::path::Path;

pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// A bootstrap: admin on `admin_port`, one listener, `clusters`.
pub fn bootstrap(admin_port: u16, listener: Value, clusters: Vec<Value>) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [listener], "clusters": clusters}
    })
}

/// The HTTP connection manager of the one listener every harness writes: `routes` in one
/// virtual host for every domain, `http_filters` in order, and, when given, a file access log
/// with `format` as its JSON line.
pub struct Hcm<'a> {
    pub stat_prefix: &'a str,
    pub routes: Vec<Value>,
    pub http_filters: Vec<Value>,
    pub access_log: Option<(&'a Path, Value)>,
}

/// A listener named `name` on 127.0.0.1:`port` whose only network filter is `hcm`.
pub fn listener(name: &str, port: u16, hcm: Hcm) -> Value {
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": hcm.stat_prefix,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": hcm.routes}]},
        "http_filters": hcm.http_filters
    });
    if let Some((path, format)) = hcm.access_log {
        typed["access_log"] = json!([{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": {"json_format": format}
        }}]);
    }
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": typed
        }]}]
    })
}

/// A static cluster of one loopback endpoint.
pub fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
}

/// A prefix route to `cluster` with no overall timeout (MCP streams stay open) and a 60 s idle one.
pub fn route(prefix: &str, cluster: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "0s", "idle_timeout": "60s"}})
}

/// Envoy's router, the last HTTP filter.
pub fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// The Wasm HTTP filter as the harnesses configure scopegate (and the bench its ladder rungs):
/// V8, the module from a local file, `configuration` as its plugin configuration, the flag that
/// lets it hold headers, and `FAIL_RELOAD`.
pub fn wasm_filter(root_id: &str, wasm: &Path, configuration: &str) -> Value {
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": WASM_TYPE,
        "config": {
            "name": root_id, "root_id": root_id,
            "vm_config": {"vm_id": root_id, "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration},
            "allow_on_headers_stop_iteration": true,
            "failure_policy": "FAIL_RELOAD"
        }
    }})
}
