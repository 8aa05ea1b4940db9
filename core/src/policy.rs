//! The validated, indexed form of the document that every decision reads.
//!
//! Built once per configuration by [`crate::validate`]; lookups on the request path are a hash
//! probe by cluster, and everything derivable (resource URLs, PRM bodies, challenge scopes) is
//! computed here rather than per request.

use crate::config::{BodyMode, Document};
use crate::scopes::{ScopeIndex, ScopeSet};
use std::collections::{BTreeMap, HashMap};

pub type GatewayId = usize;
pub type ServerId = usize;
pub type JwksSourceId = usize;

/// The well-known prefix of RFC 9728 protected-resource metadata.
pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A validated document: gateways, their servers and the filter's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub gateways: Vec<Gateway>,
    pub servers: Vec<Server>,
    pub jwks_sources: Vec<JwksSource>,
    pub filter: FilterSettings,
    /// Things that work but deserve a look (e.g. two gateways that could be one).
    pub warnings: Vec<String>,
    /// The document it came from, for the broker's settings.
    pub document: Document,
    by_cluster: HashMap<String, ServerId>,
    by_prm_path: HashMap<String, Vec<ServerId>>,
}

/// One auth boundary.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub name: String,
    pub public_url: String,
    pub issuer: String,
    pub scopes: ScopeIndex,
    pub reject_foreign_scopes: bool,
    /// Whether the broker holds the downstream grant (broker mode) or tokens are only validated.
    pub brokered: bool,
    pub jwks_source: JwksSourceId,
    pub servers: Vec<ServerId>,
    /// The server the root PRM URL describes: the only one, or `default_server`.
    pub root_server: Option<ServerId>,
    pub subject_claim: String,
}

/// One MCP server behind a gateway.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub gateway: GatewayId,
    pub cluster: String,
    pub path: String,
    /// `public_url + path`: the RFC 8707 resource and the token audience.
    pub resource: String,
    /// Where this server's RFC 9728 document lives (path-suffixed form).
    pub metadata_url: String,
    /// The subset of the gateway's allowed scopes this server may be granted.
    pub scopes: ScopeSet,
    pub base_scopes: ScopeSet,
    pub tools: BTreeMap<String, ScopeSet>,
    pub methods: BTreeMap<String, ScopeSet>,
    pub budgets: Vec<crate::config::Budget>,
    /// Per-resource and per-prompt scopes and the deny lists.
    pub catalog: crate::catalog::Catalog,
    /// What listings hide from a token.
    pub hide: crate::config::Hide,
    pub forward_client_token: bool,
    /// The `scope` parameter of a plain 401 challenge: the server's subset, space-separated.
    pub challenge_scope: String,
    /// The RFC 9728 document, serialised once.
    pub prm_json: String,
}

impl Server {
    /// Whether a POST must be read to decide: only when some method or tool has its own scopes
    /// or its own budget.
    pub fn needs_body(&self) -> bool {
        !self.tools.is_empty()
            || !self.methods.is_empty()
            || self.budgets.iter().any(|b| b.tool.is_some())
            || self.reads_listings()
            || !self.catalog.resources.is_empty()
            || !self.catalog.prompts.is_empty()
            || !self.catalog.deny_methods.is_empty()
    }

    /// Whether listing responses may need filtering here, so listing requests must be read
    /// (their method and id) and their responses buffered; otherwise they stream untouched.
    pub fn reads_listings(&self) -> bool {
        self.hide == crate::config::Hide::NotGranted || self.catalog.denies_anything()
    }
}

/// What a document needs from the proxy around the filter, given its body mode: the one
/// answer every way of deploying the filter (static Envoy, Istio, Envoy Gateway) follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyNeeds {
    /// Some server reads a POST's body (per-tool or per-method rules, tool budgets).
    pub reads_body: bool,
    /// `allow_on_headers_stop_iteration: true` in the wasm plugin config: only `hold_headers`
    /// holds the request headers while a body is read, and without the flag Envoy would never
    /// hand that body over.
    pub body_flag: bool,
    /// Envoy's native `envoy.filters.http.mcp` placed before scopegate: `mcp_metadata` decides
    /// on the metadata it writes (and refuses governed POSTs that carry none).
    pub native_mcp_filter: bool,
}

/// Where a gateway's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    pub location: JwksLocation,
    pub refresh_s: u64,
    pub unknown_kid_refetch_s: u64,
    pub timeout_ms: u64,
    /// Shared-data key under which the fetched document is kept, the same on every worker.
    pub shared_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    Fetch {
        cluster: String,
        path: String,
        authority: String,
    },
    /// The inline JWKS document, serialised.
    Inline(String),
}

/// How the filter reaches the broker's internal listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerCall {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub revocations_path: String,
    pub revocation_poll_s: u64,
}

/// The filter's own knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSettings {
    pub leeway_s: u64,
    pub max_body_bytes: usize,
    pub token_cache_entries: usize,
    pub max_listing_bytes: usize,
    pub broker: Option<BrokerCall>,
    pub body_mode: crate::config::BodyMode,
    /// Present: budgets are counted by the rate limit service, not in shared data.
    pub rate_limit: Option<RateLimitCall>,
}

/// How the filter reaches the rate limit service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitCall {
    pub cluster: String,
    /// The cluster as a serialized `GrpcService`: what Envoy's gRPC call is given.
    pub grpc_service: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub on_error: crate::config::OnError,
}

impl Policy {
    pub(crate) fn new(
        document: Document,
        gateways: Vec<Gateway>,
        servers: Vec<Server>,
        jwks_sources: Vec<JwksSource>,
        filter: FilterSettings,
        warnings: Vec<String>,
    ) -> Policy {
        let by_cluster = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.cluster.clone(), i))
            .collect();
        let mut by_prm_path: HashMap<String, Vec<ServerId>> = HashMap::new();
        for (i, s) in servers.iter().enumerate() {
            by_prm_path
                .entry(format!("{PRM_WELL_KNOWN}{}", s.path))
                .or_default()
                .push(i);
        }
        Policy {
            gateways,
            servers,
            jwks_sources,
            filter,
            warnings,
            document,
            by_cluster,
            by_prm_path,
        }
    }

    /// What the proxy must provide for this document: nothing unless some server reads a POST's
    /// body (per-tool or per-method rules), and then what its `filter.body_mode` relies on.
    /// `hold_body` (the default) needs neither the flag nor another filter.
    pub fn proxy_needs(&self) -> ProxyNeeds {
        if !self.servers.iter().any(Server::needs_body) {
            return ProxyNeeds::default();
        }
        ProxyNeeds {
            reads_body: true,
            body_flag: self.filter.body_mode == BodyMode::HoldHeaders,
            native_mcp_filter: self.filter.body_mode == BodyMode::McpMetadata,
        }
    }

    pub fn server(&self, id: ServerId) -> Option<&Server> {
        self.servers.get(id)
    }

    pub fn gateway(&self, id: GatewayId) -> Option<&Gateway> {
        self.gateways.get(id)
    }

    pub fn gateway_of(&self, server: &Server) -> Option<&Gateway> {
        self.gateways.get(server.gateway)
    }

    /// The server governing an Envoy upstream cluster, if any: other clusters pass untouched.
    pub fn server_for_cluster(&self, cluster: &str) -> Option<ServerId> {
        self.by_cluster.get(cluster).copied()
    }

    pub fn server_by_name(&self, name: &str) -> Option<ServerId> {
        self.servers.iter().position(|s| s.name == name)
    }

    /// The server whose resource is exactly `resource` (broker: RFC 8707 `resource` parameter).
    pub fn server_for_resource(&self, resource: &str) -> Option<ServerId> {
        self.servers.iter().position(|s| s.resource == resource)
    }

    /// The server whose protected-resource metadata a request path asks for, if any.
    ///
    /// `authority` disambiguates when gateways on different hosts use the same path, and picks
    /// the gateway for the root form; it never goes into the document (URLs come from config).
    pub fn prm_server(&self, path: &str, authority: Option<&str>) -> Option<ServerId> {
        let path = path.split('?').next().unwrap_or(path);
        if path == PRM_WELL_KNOWN || path == "/.well-known/oauth-protected-resource/" {
            // Prefer the gateway on the requested host; a lone gateway answers whatever the host.
            let only = |by_host: bool| {
                let mut roots = self
                    .gateways
                    .iter()
                    .filter(|g| {
                        !by_host || authority.is_none_or(|a| authority_matches(&g.public_url, a))
                    })
                    .filter_map(|g| g.root_server);
                let first = roots.next();
                if roots.next().is_none() {
                    first
                } else {
                    None
                }
            };
            return only(true).or_else(|| only(false));
        }
        let candidates = self.by_prm_path.get(path)?;
        if let [only] = candidates.as_slice() {
            return Some(*only);
        }
        let authority = authority?;
        candidates.iter().copied().find(|id| {
            self.servers
                .get(*id)
                .and_then(|s| self.gateways.get(s.gateway))
                .is_some_and(|g| authority_matches(&g.public_url, authority))
        })
    }
}

/// Whether a request's `:authority` names the host of `public_url` (port optional on the request).
fn authority_matches(public_url: &str, authority: &str) -> bool {
    let configured = public_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(public_url);
    if configured.eq_ignore_ascii_case(authority) {
        return true;
    }
    crate::url::authority_host(configured) == crate::url::authority_host(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = r#"{"gateways":[{"name":"g","public_url":"https://mcp.example.com","issuer":"https://idp.example.com","allowed_scopes":["a","b"],"jwks":{"cluster":"idp","path":"/jwks"},"servers":[{"name":"s","cluster":"c","path":"/s/mcp","scopes":["a"]}]}]MODE}"#;

    fn needs(tools: bool, mode: Option<&str>) -> ProxyNeeds {
        let mut doc = PLAIN.replace(
            "MODE",
            &mode
                .map(|m| format!(r#","filter":{{"body_mode":"{m}"}}"#))
                .unwrap_or_default(),
        );
        if tools {
            doc = doc.replace(
                r#""scopes":["a"]}"#,
                r#""scopes":["a","b"],"tools":{"t":["b"]}}"#,
            );
        }
        crate::validate::load(&doc).unwrap().proxy_needs()
    }

    #[test]
    fn without_body_rules_no_mode_needs_anything_from_the_proxy() {
        for mode in [
            None,
            Some("hold_body"),
            Some("hold_headers"),
            Some("mcp_metadata"),
        ] {
            assert_eq!(needs(false, mode), ProxyNeeds::default(), "{mode:?}");
        }
    }

    #[test]
    fn with_body_rules_each_mode_needs_what_it_relies_on() {
        let nothing = ProxyNeeds {
            reads_body: true,
            ..ProxyNeeds::default()
        };
        assert_eq!(needs(true, None), nothing, "hold_body is the default");
        assert_eq!(needs(true, Some("hold_body")), nothing);
        assert_eq!(
            needs(true, Some("hold_headers")),
            ProxyNeeds {
                reads_body: true,
                body_flag: true,
                native_mcp_filter: false
            }
        );
        assert_eq!(
            needs(true, Some("mcp_metadata")),
            ProxyNeeds {
                reads_body: true,
                body_flag: false,
                native_mcp_filter: true
            }
        );
    }

    #[test]
    fn a_tool_budget_alone_reads_the_body() {
        let doc = PLAIN
            .replace("MODE", r#","filter":{"body_mode":"hold_headers"}"#)
            .replace(
                r#""scopes":["a"]}"#,
                r#""scopes":["a"],"budgets":[{"tool":"t","requests":1,"per_seconds":60}]}"#,
            );
        assert!(crate::validate::load(&doc).unwrap().proxy_needs().body_flag);
    }
}
