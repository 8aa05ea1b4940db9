//! Where a request stands between Envoy's callbacks, and what it carries from one to the next.
//!
//! Each waiting state names what it waits for. The types sit below both `http` (which moves a
//! request through them) and `parking` (which keeps a parked request's state for its wake-up).

use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::authorize::Principal;
use scopegate_core::decision::Decision;
use scopegate_core::mcp::RequestId;
use scopegate_core::policy::ServerId;
use std::rc::Rc;

pub enum Phase {
    /// Headers not seen yet.
    Start,
    /// Not governed, or already allowed: nothing more to do.
    Done,
    /// A local reply was sent; later callbacks must not forward anything.
    Replied,
    /// A token named an unknown `kid`; waiting for the JWKS refetch (callout `call`).
    AwaitingKeys {
        call: u32,
        source: usize,
        server: ServerId,
    },
    /// `hold_headers`: the token was admitted; the headers are held until the JSON-RPC body is
    /// complete (needs `allow_on_headers_stop_iteration`).
    HoldingHeaders {
        server: ServerId,
        principal: Rc<Principal>,
    },
    /// `hold_body`: the headers went upstream with identity and credential; the body is held
    /// until the JSON-RPC message is complete, then decided (a refusal resets the upstream).
    HoldingBody {
        server: ServerId,
        principal: Rc<Principal>,
    },
    /// Allowed so far; waiting for the rate limit service to count the request's budgets (gRPC
    /// call `call`, this request's own). `windows` are the budgets' lengths, in the order asked.
    AwaitingRateLimit {
        call: u32,
        windows: Vec<u64>,
        decided: Decided,
        after: AfterCount,
    },
    /// Allowed so far; waiting for the broker's downstream credential (callout `call`).
    AwaitingCredential {
        call: u32,
        cache_key: String,
        decided: Decided,
    },
    /// Another request of this worker is exchanging for the same grant: this one is parked
    /// (`crate::parking`) and resumed (or refused) from that request's callback, in this
    /// request's context, when the credential arrives or the exchange fails.
    AwaitingExchange,
}

/// A decision on a governed server and what follows it once allowed: what enforcing it, and
/// forwarding the request, need (kept whole while the request waits for a credential).
pub struct Decided {
    pub server: ServerId,
    pub decision: Rc<Decision>,
    pub then: Then,
}

/// What follows once a request's budgets are counted.
#[derive(Clone, Copy)]
pub enum AfterCount {
    /// The headers are still held: the downstream credential (brokered gateways), then forward.
    Forward,
    /// `hold_body`: the headers went upstream already; record the decision, let the body go.
    Release,
}

/// What follows once the request headers are rewritten for the upstream.
pub enum Then {
    /// The decision was final: record it, and let the request go. Carries the record's JSON
    /// when the token cache already has it.
    Finish(Option<Rc<str>>),
    /// `hold_body`: the token's decision only; the body is decided when complete.
    HoldBody(Rc<Principal>),
}

/// What the headers told us that later phases need. Only the headers a decision needs are read
/// (by name, one host call each): the whole map is never copied into the VM.
#[derive(Default)]
pub struct Head {
    /// Read only when needed (servers that read bodies, JSON-RPC refusals).
    pub is_post: Option<bool>,
    pub end_of_stream: bool,
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
    /// The JSON-RPC `id` `envoy.filters.http.mcp` recorded (`mcp_metadata`), for a refusal's
    /// answer: that mode never reads the body itself.
    pub rpc_id: Option<RequestId>,
}

/// Body bytes buffered so far, tracked in every phase (bodies may arrive while keys load).
#[derive(Default, Clone, Copy)]
pub struct BodySeen {
    pub size: usize,
    pub complete: bool,
}

impl Head {
    /// Reads `:method` once.
    pub fn read_is_post(&mut self, h: &mut impl Host) -> Result<bool, Status> {
        if let Some(is_post) = self.is_post {
            return Ok(is_post);
        }
        let is_post = h.request_header(":method")?.as_deref() == Some("POST");
        self.is_post = Some(is_post);
        Ok(is_post)
    }

    /// The 2026-07-28 `Mcp-Method` and `Mcp-Name` headers.
    pub fn read_mcp_headers(&mut self, h: &mut impl Host) -> Result<(), Status> {
        self.mcp_method = h.request_header("mcp-method")?;
        self.mcp_name = h.request_header("mcp-name")?;
        Ok(())
    }
}
