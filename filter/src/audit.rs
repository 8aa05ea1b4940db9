//! Writes each decision where the mesh already looks: filter state for access logs, and stats counters.

use crate::host;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use scopegate_core::decision::Audit;
use std::collections::HashMap;

/// Filter-state names, read in access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub const FIELDS: [&str; 8] = [
    "scopegate_server",
    "scopegate_decision",
    "scopegate_reason",
    "scopegate_subject",
    "scopegate_client_id",
    "scopegate_scopes",
    "scopegate_tool",
    "scopegate_foreign_scopes",
];

/// Counter ids, defined on first use (Envoy shows them as `wasmcustom.scopegate.…`). Looked up
/// by server name then (decision, reason) so the per-request lookup allocates nothing.
#[derive(Default)]
pub struct Stats {
    ids: HashMap<String, HashMap<(&'static str, &'static str), Option<u32>>>,
}

impl Stats {
    fn counter(
        &mut self,
        server: &str,
        decision: &'static str,
        reason: &'static str,
    ) -> Option<u32> {
        if let Some(id) = self
            .ids
            .get(server)
            .and_then(|m| m.get(&(decision, reason)))
        {
            return *id;
        }
        let name = if server.is_empty() {
            format!("scopegate.{decision}.{reason}")
        } else {
            format!("scopegate.{server}.{decision}.{reason}")
        };
        let id = match hostcalls::define_metric(MetricType::Counter, &name) {
            Ok(id) => Some(id),
            Err(e) => {
                log::warn!("cannot define metric {name}: {e:?}");
                None
            }
        };
        self.ids
            .entry(server.to_string())
            .or_default()
            .insert((decision, reason), id);
        id
    }

    /// Bumps a filter-wide counter `scopegate.<group>.<name>` (e.g. `scopegate.jwt.verified`).
    pub fn count_global(&mut self, group: &'static str, name: &'static str) {
        self.count_named("", group, name);
    }

    pub fn count(&mut self, server: &str, decision: &'static str, reason: &'static str) {
        self.count_named(server, decision, reason);
    }

    /// Adds `n` to `scopegate.<server>.<group>.<name>` (e.g. entries hidden from a listing).
    pub fn count_by(&mut self, server: &str, group: &'static str, name: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(id) = self.counter(server, group, name) {
            if let Err(e) = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX)) {
                log::warn!("cannot increment metric: {e:?}");
            }
        }
    }

    fn count_named(&mut self, server: &str, decision: &'static str, reason: &'static str) {
        if let Some(id) = self.counter(server, decision, reason) {
            if let Err(e) = hostcalls::increment_metric(id, 1) {
                log::warn!("cannot increment metric: {e:?}");
            }
        }
    }
}

/// Records the decision in filter state and stats.
pub fn record(stats: &mut Stats, audit: &Audit) {
    let values: [Option<&str>; 8] = [
        Some(audit.server.as_str()),
        Some(audit.decision),
        Some(audit.reason),
        audit.subject.as_deref(),
        audit.client_id.as_deref(),
        Some(audit.scopes.as_str()),
        audit.tool.as_deref(),
        Some(audit.foreign_scopes.as_str()),
    ];
    for (name, value) in FIELDS.iter().zip(values) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            host::set_filter_state(name, v);
        }
    }
    stats.count(&audit.server, audit.decision, audit.reason);
    if audit.decision == "deny" {
        log::info!(
            "deny server={} reason={} subject={} client_id={} tool={}",
            audit.server,
            audit.reason,
            audit.subject.as_deref().unwrap_or("-"),
            audit.client_id.as_deref().unwrap_or("-"),
            audit.tool.as_deref().unwrap_or("-"),
        );
    }
}
