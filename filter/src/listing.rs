//! Holds a listing response (bounded) until it is complete, has core filter it, and records the effect.
//!
//! Only responses to `tools/list`, `resources/list`, `resources/templates/list` and
//! `prompts/list` requests are watched, and only on servers where something can be hidden;
//! every other response streams untouched. An SSE listing is released as soon as the awaited
//! responses are in it, so the rest of the stream flows.

use crate::audit::Stats;
use crate::host::Host;
use proxy_wasm::types::Action;
use scopegate_core::listing::{self, ListKind, Pending};
use scopegate_core::mcp::Call;
use scopegate_core::policy::Server;
use scopegate_core::scopes::ScopeSet;
use scopegate_core::Policy;

/// Filter-state name of the listing effect: the number of entries hidden, `over_bound` or
/// `unfilterable` (passed untouched), `over_bound_replaced` or `unfilterable_replaced`
/// (answered with a JSON-RPC error instead).
pub const HIDDEN_FIELD: &str = "scopegate_hidden";

/// A listing request whose response is being watched.
pub struct Watch {
    server: usize,
    effective: ScopeSet,
    pending: Vec<Pending>,
    stage: Stage,
}

enum Stage {
    Headers,
    Buffering {
        sse: bool,
    },
    /// Done with this response (filtered, or left alone): the rest streams.
    Passing,
    /// Replaced by an error: what the upstream still sends is dropped.
    Discarding,
}

impl Watch {
    /// A watch when the request holds listing calls and the server may hide something.
    pub fn new(
        server_id: usize,
        server: &Server,
        effective: ScopeSet,
        calls: &[Call],
        body: &[u8],
    ) -> Option<Watch> {
        if !server.reads_listings() || !calls.iter().any(|c| ListKind::of(&c.method).is_some()) {
            return None;
        }
        let pending = listing::pending(body);
        (!pending.is_empty()).then_some(Watch {
            server: server_id,
            effective,
            pending,
            stage: Stage::Headers,
        })
    }

    /// Response headers: watch only a 200 with a JSON or SSE body, whose length may change.
    pub fn on_headers(&mut self, h: &mut impl Host, policy: &Policy, stats: &mut Stats) -> Action {
        let mut header = |name: &str| match h.response_header(name) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("cannot read response header {name}: {e:?}");
                None
            }
        };
        let status = header(":status");
        let content_type = header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sse = content_type.starts_with("text/event-stream");
        if status.as_deref() != Some("200") || !(sse || content_type.contains("json")) {
            self.stage = Stage::Passing;
            return Action::Continue;
        }
        if let Err(e) = h.remove_response_header("content-length") {
            log::warn!("cannot drop content-length of a listing: {e:?}");
            self.stage = Stage::Passing;
            set_hidden(h, "unfilterable");
            stats.count(
                h,
                &server_name(policy, self.server),
                "listing",
                "unfilterable",
            );
            return Action::Continue;
        }
        self.stage = Stage::Buffering { sse };
        Action::Continue
    }

    /// Response body: buffer until complete (or, for SSE, until the awaited responses are in).
    pub fn on_body(
        &mut self,
        h: &mut impl Host,
        policy: &Policy,
        stats: &mut Stats,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        let sse = match self.stage {
            Stage::Headers | Stage::Passing => return Action::Continue,
            Stage::Discarding => {
                if size > 0 {
                    if let Err(e) = h.replace_response_body(size, b"") {
                        log::warn!("cannot drop the rest of a replaced listing: {e:?}");
                    }
                }
                return Action::Continue;
            }
            Stage::Buffering { sse } => sse,
        };
        let Some(server) = policy.server(self.server) else {
            self.stage = Stage::Passing;
            return Action::Continue;
        };
        if size > policy.filter.max_listing_bytes {
            return self.give_up(h, policy, stats, sse, size, Why::OverBound);
        }
        if !end_of_stream && (!sse || !ends_an_event(h, size)) {
            return Action::Pause;
        }
        let body = match h.response_body(0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                log::warn!("cannot read a listing response: {e:?}");
                return self.give_up(h, policy, stats, sse, size, Why::Unfilterable);
            }
        };
        let keep = |kind: ListKind, key: &str| listing::visible(server, self.effective, kind, key);
        let filtered = match listing::filter(sse, &body, &self.pending, &keep) {
            Ok(f) => f,
            Err(listing::Unfilterable) => {
                return self.give_up(h, policy, stats, sse, size, Why::Unfilterable)
            }
        };
        if !end_of_stream && filtered.answered < self.pending.len() {
            return Action::Pause;
        }
        if let Some(new) = &filtered.body {
            if let Err(e) = h.replace_response_body(size, new) {
                log::warn!("cannot replace a listing response: {e:?}");
                return self.give_up(h, policy, stats, sse, size, Why::Unfilterable);
            }
        }
        self.stage = Stage::Passing;
        self.record(h, policy, stats, filtered.hidden);
        Action::Continue
    }

    /// A listing that cannot be filtered: untouched where every entry is reachable by some
    /// step-up anyway, else replaced by a JSON-RPC error (see `listing::must_replace_unfiltered`).
    fn give_up(
        &mut self,
        h: &mut impl Host,
        policy: &Policy,
        stats: &mut Stats,
        sse: bool,
        size: usize,
        why: Why,
    ) -> Action {
        let Some(server) = policy.server(self.server) else {
            self.stage = Stage::Passing;
            return Action::Continue;
        };
        let name = server.name.as_str();
        stats.count(h, name, "listing", why.name());
        if !listing::must_replace_unfiltered(server) {
            self.stage = Stage::Passing;
            set_hidden(h, why.name());
            return Action::Continue;
        }
        let error = listing::unfilterable_body(sse, &self.pending);
        if let Err(e) = h.replace_response_body(size, &error) {
            // Never let the unfiltered listing through: end the stream instead.
            log::error!("cannot replace an unfilterable listing ({e:?}); resetting the stream");
            if let Err(e) = h.reset_response() {
                log::error!("cannot reset the stream: {e:?}");
            }
            self.stage = Stage::Discarding;
            return Action::Continue;
        }
        self.stage = Stage::Discarding;
        set_hidden(h, why.replaced());
        stats.count(h, name, "listing", "replaced");
        Action::Continue
    }

    fn record(&self, h: &mut impl Host, policy: &Policy, stats: &mut Stats, hidden: usize) {
        let name = policy.server(self.server).map_or("", |s| s.name.as_str());
        set_hidden(h, &hidden.to_string());
        stats.count(h, name, "listing", "filtered");
        stats.count_by(h, name, "listing", "hidden", hidden as u64);
    }
}

/// Why a listing was not filtered.
#[derive(Clone, Copy)]
enum Why {
    OverBound,
    Unfilterable,
}

impl Why {
    fn name(self) -> &'static str {
        match self {
            Why::OverBound => "over_bound",
            Why::Unfilterable => "unfilterable",
        }
    }

    fn replaced(self) -> &'static str {
        match self {
            Why::OverBound => "over_bound_replaced",
            Why::Unfilterable => "unfilterable_replaced",
        }
    }
}

fn server_name(policy: &Policy, id: usize) -> String {
    policy
        .server(id)
        .map_or_else(String::new, |s| s.name.clone())
}

/// Whether the buffered SSE body ends with a blank line, so its last event is complete: only
/// then is it worth parsing before the stream ends (a large event arrives in many chunks).
fn ends_an_event(h: &mut impl Host, size: usize) -> bool {
    let tail = size.min(4);
    match h.response_body(size - tail, tail) {
        Ok(Some(t)) => t.ends_with(b"\n\n") || t.ends_with(b"\r\n\r\n"),
        Ok(None) => false,
        Err(e) => {
            log::warn!("cannot read the end of a listing response: {e:?}");
            false
        }
    }
}

/// Records the listing filter's effect for the access log (`wasm.scopegate_hidden`).
fn set_hidden(h: &mut impl Host, value: &str) {
    if let Err(e) = h.set_filter_state(HIDDEN_FIELD, value) {
        log::warn!("cannot set filter state {HIDDEN_FIELD}: {e:?}");
    }
}
