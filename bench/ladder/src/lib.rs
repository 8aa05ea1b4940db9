//! The cost ladder: one minimal proxy-wasm filter whose plugin configuration names a rung, each
//! rung the SDK floor (read `authorization` by name, look the token up in a map) plus one thing.
//!
//! One module for every rung, so rungs differ only in the host calls they make per request;
//! `make bench` measures each in the same run as Envoy alone and scopegate (BENCHMARKS.md).
//! The `floor-exports` rung is this module with the unused callbacks' exports removed.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Filter-state writes in the `state-8` rung: as many as scopegate's audit record makes today.
pub const STATE_WRITES: usize = 8;

/// What a rung does on each request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rung {
    /// Returns Continue: the cost of a wasm filter that is there at all.
    Empty,
    /// Reads `authorization` by name and looks the token up in a map: the SDK floor.
    Floor,
    /// The floor, reading the whole header map instead of one header.
    HeaderMap,
    /// The floor plus the `xds.cluster_name` property.
    ClusterName,
    /// The floor plus removing `authorization` and setting three headers, one host call each.
    SetHeaders,
    /// The floor plus reading the whole map and writing it back changed (one call each way).
    ReplaceMap,
    /// The floor plus one filter-state write.
    State1,
    /// The floor plus [`STATE_WRITES`] filter-state writes.
    StateN,
    /// The floor plus one counter increment.
    Counter,
    /// The floor plus the request body callback, pausing until the body is complete (Envoy
    /// buffers it), as scopegate's body modes do.
    BodyBuffer,
    /// [`Rung::BodyBuffer`] plus the complete body copied into the VM once.
    BodyRead,
    /// [`Rung::BodyRead`] plus scopegate's JSON-RPC reader on the copy.
    BodyParse,
}

impl Rung {
    fn parse(name: &str) -> Option<Rung> {
        Some(match name.trim() {
            "empty" => Rung::Empty,
            // The stripped module runs the floor's code.
            "floor" | "floor-exports" => Rung::Floor,
            "header-map" => Rung::HeaderMap,
            "cluster-name" => Rung::ClusterName,
            "set-headers" => Rung::SetHeaders,
            "replace-map" => Rung::ReplaceMap,
            "state-1" => Rung::State1,
            "state-8" => Rung::StateN,
            "counter" => Rung::Counter,
            "body-buffer" => Rung::BodyBuffer,
            "body-read" => Rung::BodyRead,
            "body-parse" => Rung::BodyParse,
            _ => return None,
        })
    }
}

/// Tokens seen by this worker: the stand-in for scopegate's verified-token cache.
type Seen = Rc<RefCell<HashMap<String, u32>>>;

struct Root {
    rung: Rung,
    seen: Seen,
    counter: u32,
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { rung: Rung::Empty, seen: Rc::default(), counter: 0 })
    });
}}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let text = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        let Some(rung) = Rung::parse(&text) else {
            let _ = hostcalls::log(LogLevel::Error, &format!("ladder: unknown rung `{text}`"));
            return false;
        };
        self.rung = rung;
        if rung == Rung::Counter {
            match hostcalls::define_metric(MetricType::Counter, "ladder.requests") {
                Ok(id) => self.counter = id,
                Err(_) => return false,
            }
        }
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            rung: self.rung,
            seen: Rc::clone(&self.seen),
            counter: self.counter,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    rung: Rung,
    seen: Seen,
    counter: u32,
}

impl Request {
    /// The floor's lookup: a hit after the first request with a token.
    fn look_up(&self, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        let mut seen = self.seen.borrow_mut();
        if let Some(n) = seen.get_mut(token) {
            *n = n.wrapping_add(1);
            return true;
        }
        seen.insert(token.to_string(), 1);
        false
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.rung == Rung::Empty {
            return Action::Continue;
        }
        let headers = MapType::HttpRequestHeaders;
        if matches!(self.rung, Rung::HeaderMap | Rung::ReplaceMap) {
            let mut map = hostcalls::get_map(headers).unwrap_or_default();
            let token = map
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone());
            self.look_up(token.as_deref());
            if self.rung == Rung::ReplaceMap {
                map.retain(|(k, _)| k != "authorization");
                let mut out: Vec<(&str, &str)> =
                    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                out.extend(IDENTITY);
                let _ = hostcalls::set_map(headers, out);
            }
            return Action::Continue;
        }
        let token = hostcalls::get_map_value(headers, "authorization")
            .ok()
            .flatten();
        self.look_up(token.as_deref());
        match self.rung {
            Rung::ClusterName => {
                let _ = hostcalls::get_property(vec!["xds", "cluster_name"]);
            }
            Rung::SetHeaders => {
                let _ = hostcalls::set_map_value(headers, "authorization", None);
                for (k, v) in IDENTITY {
                    let _ = hostcalls::set_map_value(headers, k, Some(v));
                }
            }
            Rung::State1 => {
                let _ = hostcalls::set_property(vec!["ladder_decision"], Some(b"allow"));
            }
            Rung::StateN => {
                for name in &STATE_NAMES[..STATE_WRITES] {
                    let _ = hostcalls::set_property(vec![name], Some(b"allow"));
                }
            }
            Rung::Counter => {
                let _ = hostcalls::increment_metric(self.counter, 1);
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !matches!(
            self.rung,
            Rung::BodyBuffer | Rung::BodyRead | Rung::BodyParse
        ) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if self.rung == Rung::BodyBuffer {
            return Action::Continue;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if self.rung == Rung::BodyParse {
            let read = scopegate_core::rpc_read::messages(std::hint::black_box(&body));
            std::hint::black_box(read.map_or(0, |m| m.len()));
        }
        Action::Continue
    }
}

/// The three identity headers scopegate sets on an allowed request.
const IDENTITY: [(&str, &str); 3] = [
    ("x-scopegate-subject", "bench-user"),
    ("x-scopegate-client-id", "bench-client"),
    ("x-scopegate-scopes", "tickets.read accounts.read"),
];

const STATE_NAMES: [&str; 8] = [
    "ladder_server",
    "ladder_decision",
    "ladder_reason",
    "ladder_subject",
    "ladder_client_id",
    "ladder_scopes",
    "ladder_tool",
    "ladder_foreign_scopes",
];
