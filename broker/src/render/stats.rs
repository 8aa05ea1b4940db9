//! Envoy stats tags that turn the filter's counter names into Prometheus labels.
//!
//! A wasm filter can only name a counter (the ABI has no tags), so the filter writes
//! `wasmcustom.scopegate.<server>.<decision>.<reason>` and
//! `wasmcustom.scopegate.<server>.listing.<what>`. These extractors take the server and the last
//! part out of the name, so Prometheus sees one metric per decision (`scopegate_allow`,
//! `scopegate_deny`, `scopegate_listing`) labelled `scopegate_server` and `scopegate_reason`, which
//! is what the Grafana dashboard (dashboards/) queries. Filter-wide counters
//! (`wasmcustom.scopegate.jwt.verified`) have one part fewer and keep their names.

use serde_json::{json, Value};

/// The label naming the server a counter belongs to.
pub const SERVER_TAG: &str = "scopegate_server";
/// The label naming why (or, for listings, what) a counter counts.
pub const REASON_TAG: &str = "scopegate_reason";

/// The extractors, as Envoy's `stats_config.stats_tags` (the first group is cut from the name,
/// the second is the label's value).
pub fn stats_tags() -> Value {
    json!([
        {
            "tag_name": SERVER_TAG,
            "regex": r"^wasmcustom\.scopegate\.(([^.]+)\.)[^.]+\.[^.]+$",
        },
        {
            "tag_name": REASON_TAG,
            "regex": r"^wasmcustom\.scopegate\.[^.]+\.[^.]+(\.([^.]+))$",
        },
    ])
}

/// The bootstrap's `stats_config`: Envoy's own tags stay, scopegate's are added.
pub fn stats_config() -> Value {
    json!({"use_all_default_tags": true, "stats_tags": stats_tags()})
}
