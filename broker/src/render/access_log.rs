//! The access-log fields every target logs: the request, and scopegate's decision from filter state.

use serde_json::{Map, Value};

/// The filter-state fields the filter writes (`wasm.scopegate_<field>`): the three that access
/// logs filter on, `record`, the whole decision as one JSON object, and `hidden`, what the
/// listing filter did to a `tools/list` (and friends) response.
pub const SCOPEGATE_FIELDS: [&str; 5] = ["server", "decision", "reason", "record", "hidden"];

/// Field name to Envoy command operator, one JSON object a line.
pub fn fields() -> Map<String, Value> {
    let mut f = Map::new();
    for (k, v) in [
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(:PATH)%"),
        ("status", "%RESPONSE_CODE%"),
        ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ] {
        f.insert(k.into(), Value::String(v.into()));
    }
    for field in SCOPEGATE_FIELDS {
        f.insert(
            field.into(),
            Value::String(format!("%FILTER_STATE(wasm.scopegate_{field}:PLAIN)%")),
        );
    }
    f
}
