//! Writes each decision where the mesh already looks: filter state for access logs, and stats counters.

use crate::host::Host;
use crate::token_cache::WordHasher;
use scopegate_core::decision::Audit;
use scopegate_core::upstream::{record_json, DECISION_KEY, REASON_KEY, RECORD_KEY, SERVER_KEY};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Counter ids, defined on first use (Envoy shows them as `wasmcustom.scopegate.…`). Looked up
/// by server name then (decision, reason) so the per-request lookup allocates nothing.
#[derive(Default)]
pub struct Stats {
    ids: Map<String, Map<(&'static str, &'static str), Option<u32>>>,
}

/// Keys are the policy's server names and the code's own labels: a fast unkeyed hash will do.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

impl Stats {
    fn counter(
        &mut self,
        h: &mut impl Host,
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
        let id = match h.define_counter(&name) {
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
    pub fn count_global(&mut self, h: &mut impl Host, group: &'static str, name: &'static str) {
        self.count(h, "", group, name);
    }

    /// Adds `n` to `scopegate.<server>.<group>.<name>` (e.g. entries hidden from a listing).
    pub fn count_by(
        &mut self,
        h: &mut impl Host,
        server: &str,
        group: &'static str,
        name: &'static str,
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        if let Some(id) = self.counter(h, server, group, name) {
            if let Err(e) = h.increment_counter(id, n) {
                log::warn!("cannot increment metric: {e:?}");
            }
        }
    }

    pub fn count(
        &mut self,
        h: &mut impl Host,
        server: &str,
        decision: &'static str,
        reason: &'static str,
    ) {
        if let Some(id) = self.counter(h, server, decision, reason) {
            if let Err(e) = h.increment_counter(id, 1) {
                log::warn!("cannot increment metric: {e:?}");
            }
        }
    }
}

/// Records the decision: four filter-state writes (the whole record as JSON, and the decision,
/// reason and server on their own for access-log filters) and one counter. `json` is the
/// record already serialised (a cached token's admission), if there is one.
pub fn record(h: &mut impl Host, stats: &mut Stats, audit: &Audit, json: Option<&str>) {
    let owned;
    let record = match json {
        Some(j) => j,
        None => {
            owned = record_json(audit);
            owned.as_str()
        }
    };
    let writes = [
        (RECORD_KEY, record),
        (DECISION_KEY, audit.decision),
        (REASON_KEY, audit.reason.as_str()),
        (SERVER_KEY, audit.server.as_str()),
    ];
    for (name, value) in writes {
        if value.is_empty() {
            continue;
        }
        if let Err(e) = h.set_filter_state(name, value) {
            log::warn!("cannot set filter state {name}: {e:?}");
        }
    }
    stats.count(h, &audit.server, audit.decision, audit.reason.as_str());
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
