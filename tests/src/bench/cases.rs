//! The cases: what sits in front of the upstream, and which tokens the load carries.

/// What sits in front of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoAuth,
    /// The scopegate filter; with `per_tool`, the called tool has its own scope (body is read).
    Scopegate {
        per_tool: bool,
    },
    /// Envoy's `jwt_authn` (with its JWT cache) + `rbac` on the scope claim.
    JwtAuthn,
    /// The scopegate filter in broker mode: the real broker issued the tokens, and the filter
    /// exchanges each grant once for its downstream credential, then serves from its caches.
    Brokered,
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
}

pub const FLOOR: &str = "envoy";

/// Case 5's id.
pub const BROKERED: &str = "brokered-hit";

pub const CASES: [Case; 9] = [
    Case {
        id: FLOOR,
        number: "1",
        label: "Envoy, no auth (the floor)",
        kind: Kind::NoAuth,
        pool: Pool::Hit,
        native: None,
    },
    Case {
        id: "scopegate-hit",
        number: "2",
        label: "scopegate, token cache hits",
        kind: Kind::Scopegate { per_tool: false },
        pool: Pool::Hit,
        native: Some("jwt_authn-hit"),
    },
    Case {
        id: "scopegate-hit-tool",
        number: "2t",
        label: "scopegate, cache hits, per-tool scope (reads the body)",
        kind: Kind::Scopegate { per_tool: true },
        pool: Pool::Hit,
        native: Some("jwt_authn-hit"),
    },
    Case {
        id: "scopegate-miss-rs256",
        number: "3r",
        label: "scopegate, every request a cache miss, RS256",
        kind: Kind::Scopegate { per_tool: false },
        pool: Pool::MissRs256,
        native: Some("jwt_authn-miss-rs256"),
    },
    Case {
        id: "scopegate-miss-es256",
        number: "3e",
        label: "scopegate, every request a cache miss, ES256",
        kind: Kind::Scopegate { per_tool: false },
        pool: Pool::MissEs256,
        native: Some("jwt_authn-miss-es256"),
    },
    Case {
        id: "jwt_authn-hit",
        number: "4",
        label: "native jwt_authn + RBAC, JWT cache hits",
        kind: Kind::JwtAuthn,
        pool: Pool::Hit,
        native: None,
    },
    Case {
        id: "jwt_authn-miss-rs256",
        number: "4r",
        label: "native jwt_authn + RBAC, every request a miss, RS256",
        kind: Kind::JwtAuthn,
        pool: Pool::MissRs256,
        native: None,
    },
    Case {
        id: "jwt_authn-miss-es256",
        number: "4e",
        label: "native jwt_authn + RBAC, every request a miss, ES256",
        kind: Kind::JwtAuthn,
        pool: Pool::MissEs256,
        native: None,
    },
    Case {
        id: BROKERED,
        number: "5",
        label: "brokered path: scopegate in broker mode, token and exchange cache hits",
        kind: Kind::Brokered,
        pool: Pool::Brokered,
        native: Some("jwt_authn-hit"),
    },
];

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
            Kind::NoAuth => 200,
            Kind::Scopegate { .. } | Kind::Brokered => self.expect_scopegate,
            Kind::JwtAuthn => self.expect_jwt_authn,
        }
    }
}
