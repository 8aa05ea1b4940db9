//! The cases: what sits in front of the upstream, and which tokens the load carries.

use super::request::Shape;

/// What sits in front of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoAuth,
    /// The scopegate filter; with `per_tool`, the called tool has its own scope (body is read);
    /// with `metadata`, in `body_mode: mcp_metadata` behind Envoy's `envoy.filters.http.mcp`
    /// (the native parser, scopegate's decision).
    Scopegate {
        per_tool: bool,
        metadata: bool,
    },
    /// Envoy's `jwt_authn` (with its JWT cache) + `rbac` on the scope claim; with `per_tool`,
    /// `envoy.filters.http.mcp` first and RBAC matching `params.name` as well: the native
    /// per-tool stack.
    JwtAuthn {
        per_tool: bool,
    },
    /// The scopegate filter in broker mode: the real broker issued the tokens, and the filter
    /// exchanges each grant once for its downstream credential, then serves from its caches.
    Brokered,
    /// A rung of the cost ladder (`bench/ladder`): a minimal wasm filter doing one thing more
    /// than the SDK floor, no auth (every request is forwarded).
    Ladder {
        rung: &'static str,
    },
}

/// Which tokens the load rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// A few ES256 tokens, reused: every request after the first few is a cache hit.
    Hit,
    /// More distinct RS256 tokens than any cache holds, sent in turn: every request is a miss.
    MissRs256,
    /// The same with ES256.
    MissEs256,
    /// Access tokens the real broker issued, one per grant, reused: token and exchange cache hits.
    Brokered,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Hit => "hit",
            Pool::MissRs256 => "miss-rs256",
            Pool::MissEs256 => "miss-es256",
            Pool::Brokered => "brokered",
        }
    }
}

pub struct Case {
    pub id: &'static str,
    /// The numbering: 1 no auth, 2 scopegate hits, 3 scopegate misses, 4 native,
    /// 5 the brokered path.
    pub number: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub pool: Pool,
    /// The native case with the same tokens and cache state, for the "vs native" ratio.
    pub native: Option<&'static str>,
    /// The request it sends.
    pub shape: Shape,
}

pub const FLOOR: &str = "envoy";

/// Case 5's id.
pub const BROKERED: &str = "brokered-hit";

pub const CASES: [Case; 17] = [
    Case {
        id: FLOOR,
        number: "1",
        label: "Envoy, no auth (the floor)",
        kind: Kind::NoAuth,
        pool: Pool::Hit,
        native: None,
        shape: Shape::ToolCall,
    },
    Case {
        id: "scopegate-hit",
        number: "2",
        label: "scopegate, token cache hits",
        kind: Kind::Scopegate { per_tool: false, metadata: false },
        pool: Pool::Hit,
        native: Some("jwt_authn-hit"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "scopegate-hit-tool",
        number: "2t",
        label: "scopegate, cache hits, per-tool scope (reads the body)",
        kind: Kind::Scopegate { per_tool: true, metadata: false },
        pool: Pool::Hit,
        native: Some("jwt_authn-hit"),
        shape: Shape::ToolCall,
    },
    Case {
        id: super::budgeted::ID,
        number: "2b",
        label:
            "scopegate, cache hits, per-tool scope and a budget counted by the rate limit service",
        kind: Kind::Scopegate {
            per_tool: true,
            metadata: false,
        },
        pool: Pool::Hit,
        native: Some("jwt_authn-hit"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "scopegate-miss-rs256",
        number: "3r",
        label: "scopegate, every request a cache miss, RS256",
        kind: Kind::Scopegate { per_tool: false, metadata: false },
        pool: Pool::MissRs256,
        native: Some("jwt_authn-miss-rs256"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "scopegate-miss-es256",
        number: "3e",
        label: "scopegate, every request a cache miss, ES256",
        kind: Kind::Scopegate { per_tool: false, metadata: false },
        pool: Pool::MissEs256,
        native: Some("jwt_authn-miss-es256"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "jwt_authn-hit",
        number: "4",
        label: "native jwt_authn + RBAC, JWT cache hits",
        kind: Kind::JwtAuthn { per_tool: false },
        pool: Pool::Hit,
        native: None,
        shape: Shape::ToolCall,
    },
    Case {
        id: "jwt_authn-miss-rs256",
        number: "4r",
        label: "native jwt_authn + RBAC, every request a miss, RS256",
        kind: Kind::JwtAuthn { per_tool: false },
        pool: Pool::MissRs256,
        native: None,
        shape: Shape::ToolCall,
    },
    Case {
        id: "jwt_authn-miss-es256",
        number: "4e",
        label: "native jwt_authn + RBAC, every request a miss, ES256",
        kind: Kind::JwtAuthn { per_tool: false },
        pool: Pool::MissEs256,
        native: None,
        shape: Shape::ToolCall,
    },
    Case {
        id: BROKERED,
        number: "5",
        label: "brokered path: scopegate in broker mode, token and exchange cache hits",
        kind: Kind::Brokered,
        pool: Pool::Brokered,
        native: Some("jwt_authn-hit"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "jwt_authn-tool",
        number: "4t",
        label: "native per-tool stack: envoy.filters.http.mcp + jwt_authn + RBAC on params.name and scope",
        kind: Kind::JwtAuthn { per_tool: true },
        pool: Pool::Hit,
        native: None,
        shape: Shape::ToolCall,
    },
    Case {
        id: "scopegate-hit-declared",
        number: "2d",
        label: "scopegate, per-tool, a 2026-07-28 request (Mcp-Method, Mcp-Name headers)",
        kind: Kind::Scopegate { per_tool: true, metadata: false },
        pool: Pool::Hit,
        native: Some("jwt_authn-tool"),
        shape: Shape::Declared,
    },
    Case {
        id: "scopegate-metadata-tool",
        number: "2m",
        label: "scopegate, per-tool, body_mode mcp_metadata (envoy.filters.http.mcp parses)",
        kind: Kind::Scopegate { per_tool: true, metadata: true },
        pool: Pool::Hit,
        native: Some("jwt_authn-tool"),
        shape: Shape::ToolCall,
    },
    Case {
        id: "envoy-list-json",
        number: "1lj",
        label: "Envoy, no auth, tools/list answered with 40 tools (JSON)",
        kind: Kind::NoAuth,
        pool: Pool::Hit,
        native: None,
        shape: Shape::ListJson,
    },
    Case {
        id: "scopegate-list-json",
        number: "2lj",
        label: "scopegate, tools/list of 40 tools, 10 hidden (JSON)",
        kind: Kind::Scopegate { per_tool: true, metadata: false },
        pool: Pool::Hit,
        native: None,
        shape: Shape::ListJson,
    },
    Case {
        id: "envoy-list-sse",
        number: "1ls",
        label: "Envoy, no auth, tools/list answered with 40 tools (SSE)",
        kind: Kind::NoAuth,
        pool: Pool::Hit,
        native: None,
        shape: Shape::ListSse,
    },
    Case {
        id: "scopegate-list-sse",
        number: "2ls",
        label: "scopegate, tools/list of 40 tools, 10 hidden (SSE)",
        kind: Kind::Scopegate { per_tool: true, metadata: false },
        pool: Pool::Hit,
        native: None,
        shape: Shape::ListSse,
    },
];

/// `--only ladder` selects every rung.
pub const LADDER_GROUP: &str = "ladder";

/// The ladder rung that is the SDK floor: the other rungs' added cost is measured from it.
pub const LADDER_FLOOR: &str = "ladder-floor";

/// The rung built from the floor with the unused callbacks removed from the module's exports.
pub const LADDER_FLOOR_EXPORTS: &str = "floor-exports";

const fn rung(
    id: &'static str,
    number: &'static str,
    rung: &'static str,
    label: &'static str,
) -> Case {
    Case {
        id,
        number,
        label,
        kind: Kind::Ladder { rung },
        pool: Pool::Hit,
        native: None,
        shape: Shape::ToolCall,
    }
}

/// The cost ladder (`bench/ladder`, BENCHMARKS.md): each rung the SDK floor plus one thing, all
/// with the hit pool's tokens (the floor's map lookup hits after the first request per token).
pub const LADDER: [Case; 13] = [
    rung(
        "ladder-empty",
        "L0",
        "empty",
        "empty filter (returns Continue)",
    ),
    rung(
        LADDER_FLOOR,
        "L1",
        "floor",
        "SDK floor: read `authorization` by name, look the token up in a map",
    ),
    rung(
        "ladder-floor-exports",
        "L1x",
        LADDER_FLOOR_EXPORTS,
        "the floor, unused callbacks removed from the exports",
    ),
    rung(
        "ladder-header-map",
        "L2",
        "header-map",
        "floor, reading the whole header map instead",
    ),
    rung(
        "ladder-cluster-name",
        "L3",
        "cluster-name",
        "floor + the `xds.cluster_name` property",
    ),
    rung(
        "ladder-set-headers",
        "L4",
        "set-headers",
        "floor + remove `authorization`, set 3 headers one by one",
    ),
    rung(
        "ladder-replace-map",
        "L5",
        "replace-map",
        "floor + read the whole map and replace it (one call each way)",
    ),
    rung(
        "ladder-state-1",
        "L6",
        "state-1",
        "floor + one filter-state write",
    ),
    rung(
        "ladder-state-8",
        "L7",
        "state-8",
        "floor + 8 filter-state writes",
    ),
    rung(
        "ladder-counter",
        "L8",
        "counter",
        "floor + one counter increment",
    ),
    rung(
        "ladder-body-buffer",
        "L9",
        "body-buffer",
        "floor + the body callback (Envoy buffers the body until it is complete)",
    ),
    rung(
        "ladder-body-read",
        "L10",
        "body-read",
        "L9 + the complete body copied into the VM once",
    ),
    rung(
        "ladder-body-parse",
        "L11",
        "body-parse",
        "L10 + scopegate's JSON-RPC reader on it (rpc_read::messages)",
    ),
];

/// Every case the harness knows: the table's, then the ladder's.
pub fn all() -> impl Iterator<Item = &'static Case> {
    CASES.iter().chain(LADDER.iter())
}

/// A request the auth must refuse (or, for the valid token, let through), and the status it
/// must get from each kind of auth.
pub struct Probe {
    pub what: &'static str,
    pub token: Option<String>,
    pub expect_scopegate: u16,
    pub expect_jwt_authn: u16,
}

impl Probe {
    pub fn expected(&self, kind: Kind) -> u16 {
        match kind {
            Kind::NoAuth | Kind::Ladder { .. } => 200,
            Kind::Scopegate { .. } | Kind::Brokered => self.expect_scopegate,
            Kind::JwtAuthn { .. } => self.expect_jwt_authn,
        }
    }
}
