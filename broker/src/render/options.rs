//! What each render target is asked for: plain options, which the command line fills in.

/// The envoyproxy/ratelimit build rendered by default (it publishes images by commit: no release
/// has been tagged since v1.4.0; its units are second, minute, hour and day).
pub const DEFAULT_RATELIMIT_IMAGE: &str = "envoyproxy/ratelimit:f2fb1577";

/// How the objects are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// What every target needs.
#[derive(Debug)]
pub struct CommonOptions {
    /// The gateway document (YAML or JSON).
    pub doc: String,
    pub format: Format,
    /// `CLUSTER=HOST:PORT`: where an upstream cluster named in the document lives.
    pub upstreams: Vec<String>,
    /// Set `allow_on_headers_stop_iteration` even when the document does not need it.
    pub body_flag: bool,
    /// The file to write instead of standard output.
    pub output: Option<String>,
}

/// A static Envoy bootstrap.
#[derive(Debug)]
pub struct EnvoyOptions {
    pub common: CommonOptions,
    /// The filter's `.wasm`, a local path as Envoy will open it.
    pub wasm: String,
    pub listen: String,
    pub admin: String,
    /// The broker's public listener (default: the document's `broker.listen`).
    pub broker: Option<String>,
    /// The broker's internal listener (default: `broker.internal_listen`).
    pub broker_internal: Option<String>,
    /// Access-log file (default: Envoy's standard output).
    pub access_log: Option<String>,
    /// Origin prefixes answered for CORS.
    pub cors_origins: Vec<String>,
    /// The rate limit service's gRPC address (required with `filter.rate_limit`).
    pub rate_limit: Option<String>,
}

/// Where the mesh fetches the filter from, and the broker's workload.
#[derive(Debug)]
pub struct MeshOptions {
    pub namespace: String,
    pub wasm_url: String,
    pub wasm_sha256: Option<String>,
    pub broker_image: String,
    /// The Secret holding the environment variables the document names.
    pub secret: String,
    /// The rate limit service's image (with `filter.rate_limit`).
    pub ratelimit_image: String,
    /// An existing Redis the rate limit service counts in (`HOST:PORT`); absent: a small Redis
    /// is rendered next to it.
    pub redis_url: Option<String>,
}

/// Where Istio's EnvoyFilter inserts the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IstioContext {
    Gateway,
    SidecarInbound,
}

#[derive(Debug)]
pub struct IstioOptions {
    pub common: CommonOptions,
    pub mesh: MeshOptions,
    /// `KEY=VALUE` workload selectors of the proxies that run the filter.
    pub selectors: Vec<String>,
    pub proxy_namespace: String,
    pub context: IstioContext,
    /// The Istio `Gateway` (`NAMESPACE/NAME`) the VirtualService binds to.
    pub gateway: String,
    /// The SPIFFE principal of the selected proxies.
    pub proxy_principal: String,
}

/// Envoy Gateway.
#[derive(Debug)]
pub struct GatewayOptions {
    pub common: CommonOptions,
    pub mesh: MeshOptions,
    /// The Gateways the policies attach to.
    pub target_refs: Vec<String>,
    /// The Gateway listener whose Envoy listener gets the body flag.
    pub listener: String,
}

/// The rate limit service's own configuration.
#[derive(Debug)]
pub struct RateLimitOptions {
    pub common: CommonOptions,
}

/// One target and its options.
#[derive(Debug)]
pub enum Target {
    Envoy(EnvoyOptions),
    RateLimit(RateLimitOptions),
    Istio(IstioOptions),
    EnvoyGateway(GatewayOptions),
}
