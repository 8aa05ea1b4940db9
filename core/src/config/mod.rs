//! The config document as written by operators: gateways, their servers, filter and broker settings.
//!
//! This is the raw shape (YAML or JSON, same schema, unknown fields refused). `validate` turns it
//! into a [`crate::Policy`]; nothing else should read these structs for decisions.

mod broker;

pub use broker::{
    BrokerDoc, CimdDoc, ClientsDoc, ConsentDoc, PreregisteredClientDoc, RegistrationLimitsDoc,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The whole document: one or more gateways plus settings for the filter and the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub gateways: Vec<GatewayDoc>,
    #[serde(default)]
    pub filter: FilterDoc,
    /// Settings read by the broker only; the filter skips them unread (feature `broker`).
    #[serde(default)]
    #[cfg_attr(not(feature = "broker"), serde(deserialize_with = "skip_section"))]
    pub broker: Option<BrokerDoc>,
}

/// One auth boundary: one authorization server, client ID, resource, identity rule and allowed set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayDoc {
    pub name: String,
    /// The origin clients reach (`https://mcp.example.com`); each server's resource hangs off it.
    pub public_url: String,
    /// The `iss` of the access tokens clients present: the broker's issuer in broker mode, the
    /// external authorization server's in validate mode. It is also `authorization_servers[0]`.
    pub issuer: String,
    pub allowed_scopes: Vec<String>,
    /// Present in broker mode: the downstream authorization server the broker is a client of.
    #[serde(default)]
    pub downstream: Option<DownstreamDoc>,
    #[serde(default)]
    pub identity: IdentityDoc,
    /// Read by the broker only; the filter skips it unread (feature `broker`).
    #[serde(default)]
    #[cfg_attr(not(feature = "broker"), serde(deserialize_with = "skip_section"))]
    pub clients: ClientsDoc,
    /// Refuse (401) tokens carrying scopes outside the allowed set instead of dropping them.
    #[serde(default)]
    pub reject_foreign_scopes: bool,
    /// Where this gateway's signing keys come from; defaults to `filter.jwks`.
    #[serde(default)]
    pub jwks: Option<JwksDoc>,
    /// The server the root `/.well-known/oauth-protected-resource` names when there are several.
    #[serde(default)]
    pub default_server: Option<String>,
    /// What the broker's consent page shows and remembers. Read by the broker only.
    #[serde(default)]
    #[cfg_attr(not(feature = "broker"), serde(deserialize_with = "skip_section"))]
    pub consent: ConsentDoc,
    pub servers: Vec<ServerDoc>,
}

/// The downstream authorization server and the one confidential client the broker is there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamDoc {
    pub authorization_server: String,
    pub client_id: String,
    /// Name of the environment variable holding the client secret (never the secret itself).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Path of a file holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// The downstream audience (RFC 8707 `resource`) requested for the grants.
    #[serde(default)]
    pub resource: Option<String>,
    /// Extra scopes asked downstream on top of the server's subset (e.g. `openid offline_access`).
    #[serde(default)]
    pub extra_scopes: Vec<String>,
}

/// How a downstream identity becomes the gateway's subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDoc {
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

impl Default for IdentityDoc {
    fn default() -> Self {
        IdentityDoc {
            subject_claim: default_subject_claim(),
        }
    }
}

fn default_subject_claim() -> String {
    "sub".to_string()
}

/// One MCP server behind a gateway: an Envoy upstream cluster and the subset of scopes it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDoc {
    pub name: String,
    /// The Envoy upstream cluster whose requests this server governs.
    pub cluster: String,
    /// The MCP endpoint path; the server's resource is `public_url + path`.
    pub path: String,
    /// The subset of the gateway's allowed scopes this server may be granted.
    pub scopes: Vec<String>,
    /// The server's name on the consent and connected-apps pages (default: `name`). Broker only.
    #[serde(default)]
    #[cfg_attr(not(feature = "broker"), serde(deserialize_with = "skip_section"))]
    pub display_name: Option<String>,
    /// One sentence on what the server does, for the consent page. Broker only.
    #[serde(default)]
    #[cfg_attr(not(feature = "broker"), serde(deserialize_with = "skip_section"))]
    pub description: Option<String>,
    /// Scopes every request needs (default: none beyond a valid token).
    #[serde(default)]
    pub base_scopes: Vec<String>,
    /// Scopes per tool name for `tools/call`.
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<String>>,
    /// Scopes per JSON-RPC method (e.g. `resources/read`).
    #[serde(default)]
    pub methods: BTreeMap<String, Vec<String>>,
    /// Request budgets (429 with `Retry-After` once spent).
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Scopes per resource URI pattern for `resources/read`: an exact URI, a prefix ending in
    /// `*`, or a `{template}` (`{x}` matches within one path segment, `{+x}` across them).
    #[serde(default)]
    pub resources: BTreeMap<String, Vec<String>>,
    /// Scopes per prompt name for `prompts/get`.
    #[serde(default)]
    pub prompts: BTreeMap<String, Vec<String>>,
    /// What no token may ever reach through this server: refused, and hidden from listings.
    #[serde(default)]
    pub deny: DenyDoc,
    /// What `tools/list` and the other listings hide from a token.
    #[serde(default)]
    pub listings: ListingsDoc,
    /// Forward the client's own token upstream (for servers that re-validate it). Off by default:
    /// the MCP spec forbids token passthrough to upstream APIs.
    #[serde(default)]
    pub forward_client_token: bool,
}

/// Whose requests one window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKey {
    /// Each user (the gateway subject) has their own window.
    #[default]
    Subject,
    /// Each MCP client (`client_id`) has its own window.
    ClientId,
    /// One window for everyone using the server.
    Server,
}

/// One budget as written in the document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Only `tools/call` of this tool counts; absent: every request to the server counts.
    #[serde(default)]
    pub tool: Option<String>,
    pub requests: u32,
    pub per_seconds: u64,
    #[serde(default)]
    pub per: BudgetKey,
}

/// Entries no token may reach through a server, as written in the document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyDoc {
    /// JSON-RPC methods refused outright (e.g. `resources/subscribe`).
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    /// Resource URI patterns, in the same forms as `resources`.
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub prompts: Vec<String>,
}

/// Per-server listing settings, as written in the document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingsDoc {
    #[serde(default)]
    pub hide: Hide,
}

/// What a listing hides from a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hide {
    /// Only entries no token can ever reach here (denied, or outside the server's subset).
    /// Entries a step-up could reach stay visible, so incremental consent keeps working: the
    /// client calls, gets the 403 naming the scope, and re-authorizes.
    #[default]
    NeverGrantable,
    /// Also entries the token's current scopes do not grant.
    NotGranted,
}

/// Settings of the Envoy filter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDoc {
    #[serde(default)]
    pub jwks: Option<JwksDoc>,
    #[serde(default)]
    pub broker: Option<BrokerCallDoc>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds. Small on purpose: clients refresh on the 401.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// Largest request body read to classify a JSON-RPC message.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Upper bound on per-worker verified-token cache entries.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: usize,
    /// Largest listing response (`tools/list` and friends) read to filter it; larger ones pass
    /// untouched, or become a JSON-RPC error where they could show never-grantable entries.
    #[serde(default = "default_max_listing_bytes")]
    pub max_listing_bytes: usize,
    /// How per-tool and per-method decisions learn a POST's JSON-RPC calls.
    #[serde(default)]
    pub body_mode: BodyMode,
    /// Budgets counted by an Envoy rate limit service, across every proxy; absent: each Envoy
    /// counts on its own (N replicas allow N times a budget).
    #[serde(default)]
    pub rate_limit: Option<RateLimitDoc>,
}

/// Where budgets are counted: an `envoy.service.ratelimit.v3.RateLimitService` behind a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    /// The Envoy cluster (HTTP/2) of the rate limit service.
    pub cluster: String,
    /// The service's `domain` the budgets' descriptors live under.
    #[serde(default = "default_rate_limit_domain")]
    pub domain: String,
    #[serde(default = "default_rate_limit_timeout")]
    pub timeout_ms: u64,
    /// What a budgeted call gets when the service cannot answer.
    #[serde(default)]
    pub on_error: OnError,
}

/// A budget nobody can count: spent (`deny`, the default) or not counted (`allow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Deny,
    Allow,
}

fn default_rate_limit_domain() -> String {
    "scopegate".into()
}
fn default_rate_limit_timeout() -> u64 {
    100
}

/// How the filter learns the JSON-RPC calls of a POST before the message reaches the upstream.
///
/// Only `hold_headers` needs `allow_on_headers_stop_iteration`, which Istio's `WasmPlugin` and
/// Envoy Gateway cannot set; the default works with or without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyMode {
    /// Headers go on once the token is admitted (identity headers and credential set then); the
    /// body is held until the JSON-RPC message is complete, and a refusal is a local reply
    /// (Envoy resets the upstream stream before the message is sent).
    #[default]
    HoldBody,
    /// Headers are held until the body is complete, so a refused request never starts upstream.
    /// Needs `allow_on_headers_stop_iteration: true` in the wasm plugin config.
    HoldHeaders,
    /// Envoy's native `envoy.filters.http.mcp` (placed before scopegate) parses the body and
    /// writes the method and tool to dynamic metadata, read at header time; missing metadata
    /// is refused.
    McpMetadata,
}

impl BodyMode {
    /// The name as written in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyMode::HoldBody => "hold_body",
            BodyMode::HoldHeaders => "hold_headers",
            BodyMode::McpMetadata => "mcp_metadata",
        }
    }
}

impl Default for FilterDoc {
    fn default() -> Self {
        FilterDoc {
            jwks: None,
            broker: None,
            leeway_s: default_leeway(),
            max_body_bytes: default_max_body(),
            token_cache_entries: default_token_cache_entries(),
            body_mode: BodyMode::default(),
            max_listing_bytes: default_max_listing_bytes(),
            rate_limit: None,
        }
    }
}

fn default_leeway() -> u64 {
    5
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_max_listing_bytes() -> usize {
    256 * 1024
}
fn default_token_cache_entries() -> usize {
    // Each entry holds the token (about 1 KB) and its claims: 4,096 stay within a few MiB per worker.
    4096
}

/// Where signing keys come from: fetched through an Envoy cluster, or inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksDoc {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// `:authority` of the fetch; defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// An inline JWKS document (object), for deployments that pin keys.
    #[serde(default)]
    pub inline: Option<serde_json::Value>,
    #[serde(default = "default_jwks_refresh")]
    pub refresh_s: u64,
    /// At most one refetch per this many seconds when tokens name an unknown `kid`.
    #[serde(default = "default_unknown_kid_interval")]
    pub unknown_kid_refetch_s: u64,
    #[serde(default = "default_jwks_timeout")]
    pub timeout_ms: u64,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_unknown_kid_interval() -> u64 {
    30
}
fn default_jwks_timeout() -> u64 {
    2000
}

/// How the filter reaches the broker's internal listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerCallDoc {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_broker_path")]
    pub path: String,
    #[serde(default = "default_broker_timeout")]
    pub timeout_ms: u64,
    /// Where revoked grants are published (polled on the same cluster).
    #[serde(default = "default_revocations_path")]
    pub revocations_path: String,
    /// How often the filter polls revocations: a revoked grant stops working within about this.
    #[serde(default = "default_revocation_poll")]
    pub revocation_poll_s: u64,
}

fn default_revocations_path() -> String {
    crate::revocation::DEFAULT_PATH.to_string()
}
fn default_revocation_poll() -> u64 {
    crate::revocation::DEFAULT_POLL_S
}

fn default_broker_path() -> String {
    "/internal/token-exchange".to_string()
}
fn default_broker_timeout() -> u64 {
    500
}

/// A document that could not be read at all (syntax, type or unknown field), with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Dotted path to the offending field, e.g. `gateways[0].servers[1].scopez`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config: at `{}`: {}", self.path, self.message)
        }
    }
}

impl Document {
    /// Parses JSON, and YAML with the `yaml` feature. With `field-paths`, the text first becomes
    /// a generic JSON value, then the typed document is read from that value once (one typed
    /// deserializer for both formats) and errors name the field's path; without it (the filter,
    /// JSON only) the typed document is read straight from the text (smaller in the `.wasm` than
    /// going through a value) and errors give line and column.
    pub fn parse(text: &str) -> Result<Document, ParseError> {
        let syntax = |message: String| ParseError {
            path: String::new(),
            message,
        };
        #[cfg(feature = "field-paths")]
        {
            let value: serde_json::Value = if text.trim_start().starts_with('{') {
                serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
            } else {
                #[cfg(feature = "yaml")]
                {
                    serde_norway::from_str(text).map_err(|e| syntax(e.to_string()))?
                }
                #[cfg(not(feature = "yaml"))]
                return Err(syntax(NOT_JSON.to_string()));
            };
            serde_path_to_error::deserialize(value).map_err(|e| ParseError {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })
        }
        #[cfg(not(feature = "field-paths"))]
        {
            if !text.trim_start().starts_with('{') {
                return Err(syntax(NOT_JSON.to_string()));
            }
            serde_json::from_slice(text.as_bytes()).map_err(|e| syntax(e.to_string()))
        }
    }
}

/// What a JSON-only reader says about anything else.
#[cfg(not(feature = "yaml"))]
const NOT_JSON: &str =
    "the filter reads the document as JSON only (a JSON object); YAML is for the broker's file";

/// A section only the broker reads, in a build without the `broker` feature (the filter): any
/// well-formed JSON value is accepted and dropped, so its typed reader and checks stay out of the
/// `.wasm` (BENCHMARKS.md, "The module"). `scopegate-broker check` and the broker itself still
/// refuse a mistake in it, naming the field.
#[cfg(not(feature = "broker"))]
fn skip_section<'de, D: serde::Deserializer<'de>, T: Default>(d: D) -> Result<T, D::Error> {
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d)?;
    Ok(T::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_share_the_schema() {
        let yaml = "gateways:\n  - name: g\n    public_url: https://a.example\n    issuer: https://a.example\n    allowed_scopes: [x]\n    servers: []\n";
        let json = r#"{"gateways":[{"name":"g","public_url":"https://a.example","issuer":"https://a.example","allowed_scopes":["x"],"servers":[]}]}"#;
        let a = Document::parse(yaml).unwrap();
        let b = Document::parse(json).unwrap();
        assert_eq!(a.gateways[0].name, b.gateways[0].name);
        assert_eq!(a.filter.leeway_s, 5);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let yaml = "gateways:\n  - name: g\n    public_url: https://a.example\n    issuer: https://a.example\n    allowed_scopes: [x]\n    servers:\n      - name: s\n        cluster: c\n        path: /s/mcp\n        scopez: [x]\n        scopes: [x]\n";
        let err = Document::parse(yaml).unwrap_err();
        assert!(err.path.starts_with("gateways[0].servers[0]"), "{err}");
        assert!(err.message.contains("scopez"), "{err}");
    }

    #[test]
    fn body_mode_defaults_to_hold_body_and_names_bad_values() {
        let base = r#"{"gateways":[{"name":"g","public_url":"https://a.example","issuer":"https://a.example","allowed_scopes":["x"],"servers":[]}]"#;
        let doc = Document::parse(&format!("{base}}}")).unwrap();
        assert_eq!(doc.filter.body_mode, BodyMode::HoldBody);
        for (text, mode) in [
            ("hold_body", BodyMode::HoldBody),
            ("hold_headers", BodyMode::HoldHeaders),
            ("mcp_metadata", BodyMode::McpMetadata),
        ] {
            let d =
                Document::parse(&format!(r#"{base},"filter":{{"body_mode":"{text}"}}}}"#)).unwrap();
            assert_eq!(d.filter.body_mode, mode);
            assert_eq!(mode.as_str(), text);
        }
        let err =
            Document::parse(&format!(r#"{base},"filter":{{"body_mode":"peek"}}}}"#)).unwrap_err();
        assert_eq!(err.path, "filter.body_mode", "{err}");
        assert!(err.message.contains("hold_body"), "{err}");
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = Document::parse(r#"{"gateways": [{"name": 3}]}"#).unwrap_err();
        assert_eq!(err.path, "gateways[0].name");
    }
}
