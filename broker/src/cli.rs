//! The broker's command line (`serve`, `check`, `render`), its help texts and exit codes; `render`'s
//! arguments become the renderers' plain options here.

use crate::render;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, the same for every subcommand.
pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  the document is invalid (check, render), or the broker failed while running (serve)
  2  usage error, or a file could not be read or written";

#[derive(Debug, Parser)]
#[command(
    name = "scopegate-broker",
    version,
    about = "scopegate's token broker: the authorization server MCP clients see, the keeper of \
             downstream grants, and the renderer of the proxy configuration for Envoy, Istio and \
             Envoy Gateway.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: the public listener (OAuth endpoints, reached through Envoy) and the
    /// internal one (token exchange, JWKS, stats; for the filter only).
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
    /// Validate a gateway document: print its errors (as Envoy would refuse it), or the
    /// effective scopes per server and its warnings.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The gateway document (YAML or JSON).
        file: String,
    },
    /// Print the proxy configuration for a gateway document: the one source of truth for each
    /// target. The document is validated first; an invalid one is refused with `check`'s errors.
    #[command(after_help = EXIT_CODES)]
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway document (YAML or JSON); its `broker` section configures the service.
    #[arg(long, value_name = "FILE")]
    pub config: String,
    /// Public listener address (overrides `broker.listen`; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Internal listener address (overrides `broker.internal_listen`; default 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    pub internal_listen: Option<String>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RenderTarget {
    /// A complete static Envoy bootstrap: listener, routes (MCP servers, OAuth endpoints,
    /// well-known paths), the scopegate filter, clusters, the access-log format.
    #[command(after_help = EXIT_CODES)]
    Envoy(EnvoyArgs),
    /// The rate limit service's configuration (envoyproxy/ratelimit YAML) for the document's
    /// budgets, when `filter.rate_limit` counts them across the fleet.
    #[command(name = "ratelimit", after_help = EXIT_CODES)]
    RateLimit(RateLimitArgs),
    /// Istio: a WasmPlugin (no server reads the body) or an EnvoyFilter delivering the filter by
    /// ECDS with the body flag; Telemetry; the broker's Deployment, Service, ServiceEntry,
    /// PeerAuthentication and AuthorizationPolicy.
    #[command(after_help = EXIT_CODES)]
    Istio(IstioArgs),
    /// Envoy Gateway: an EnvoyExtensionPolicy, the broker's Backend and HTTPRoutes, and an
    /// EnvoyPatchPolicy for the internal clusters and (where needed) the body flag.
    #[command(name = "envoy-gateway", after_help = EXIT_CODES)]
    EnvoyGateway(GatewayArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// What every target needs.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The gateway document (YAML or JSON).
    pub doc: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Where an upstream cluster named in the document lives: `CLUSTER=HOST:PORT` (repeatable).
    /// Every server's `cluster` and every JWKS cluster needs one, except the broker's internal
    /// cluster (`filter.broker.cluster`), which is the broker's internal address.
    #[arg(long = "upstream", value_name = "CLUSTER=HOST:PORT")]
    pub upstreams: Vec<String>,
    /// Set `allow_on_headers_stop_iteration: true` (and so, in a mesh, deliver the filter by
    /// EnvoyFilter/EnvoyPatchPolicy) even when the document does not need it (only
    /// `filter.body_mode: hold_headers` with per-tool or per-method rules does).
    #[arg(long)]
    pub body_flag: bool,
    /// Write the output to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnvoyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The filter's `.wasm`, a local path as Envoy will open it.
    #[arg(long, value_name = "PATH", default_value = render::DEFAULT_WASM_PATH)]
    pub wasm: String,
    /// Envoy's listener for MCP clients.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:10000")]
    pub listen: String,
    /// Envoy's admin listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// The broker's public listener (default: the document's `broker.listen`, else 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// The broker's internal listener (default: `broker.internal_listen`, else 127.0.0.1:8081).
    #[arg(long, value_name = "HOST:PORT")]
    pub broker_internal: Option<String>,
    /// Access-log file (default: Envoy's standard output).
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<String>,
    /// Answer CORS for browser-based clients whose origin starts with PREFIX (repeatable), e.g.
    /// `http://localhost:` for the MCP Inspector.
    #[arg(long = "cors-origin", value_name = "PREFIX")]
    pub cors_origins: Vec<String>,
    /// The rate limit service's gRPC address; required when the document has
    /// `filter.rate_limit` (its cluster is rendered over HTTP/2), refused otherwise.
    #[arg(long, value_name = "HOST:PORT")]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct RateLimitArgs {
    /// The gateway document (YAML or JSON).
    pub doc: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<String>,
}

/// Where the mesh fetches the filter from, and the broker's workload.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Namespace of the rendered objects (and of the broker's Service).
    #[arg(long, default_value = "scopegate")]
    pub namespace: String,
    /// The filter's image (`oci://registry/repo:tag`, as `make oci` pushes it) or an https URL of
    /// the `.wasm`.
    #[arg(
        long,
        value_name = "URL",
        default_value = "oci://registry.example.com/scopegate/filter:0.1.0"
    )]
    pub wasm_url: String,
    /// sha256 the proxy checks: of the `.wasm` for an https URL, the image's manifest digest
    /// (as `make oci` prints it, with or without `sha256:`) for an image.
    #[arg(long, value_name = "HEX")]
    pub wasm_sha256: Option<String>,
    /// The broker's container image.
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "registry.example.com/scopegate/broker:0.1.0"
    )]
    pub broker_image: String,
    /// The Secret holding the environment variables the document names (`*_env`); its keys are
    /// the variable names. Render only references it, never writes values.
    #[arg(long, value_name = "NAME", default_value = "scopegate-broker")]
    pub secret: String,
    /// The rate limit service's image (rendered with `filter.rate_limit`).
    #[arg(long, value_name = "IMAGE", default_value = render::DEFAULT_RATELIMIT_IMAGE)]
    pub ratelimit_image: String,
    /// An existing Redis for the rate limit service (`HOST:PORT`); without it a small Redis
    /// Deployment and Service are rendered.
    #[arg(long, value_name = "HOST:PORT")]
    pub redis_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct IstioArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Workload selector of the proxies that run the filter: `KEY=VALUE` (repeatable).
    #[arg(long = "selector", value_name = "KEY=VALUE", default_values_t = vec!["istio=ingressgateway".to_string()])]
    pub selectors: Vec<String>,
    /// Namespace of the selected proxies (the WasmPlugin/EnvoyFilter/Telemetry live there).
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    pub proxy_namespace: String,
    /// Where the EnvoyFilter inserts the filter: an ingress gateway or sidecars' inbound side.
    #[arg(long, value_enum, default_value = "gateway")]
    pub context: IstioContext,
    /// The Istio `Gateway` (`NAMESPACE/NAME`) the rendered VirtualService binds to.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "istio-system/mcp-gateway"
    )]
    pub gateway: String,
    /// The SPIFFE principal of the selected proxies, the only caller allowed on the broker's
    /// internal port.
    #[arg(
        long,
        value_name = "PRINCIPAL",
        default_value = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    )]
    pub proxy_principal: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IstioContext {
    Gateway,
    SidecarInbound,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The Gateway the policies attach to: `NAME`, in --namespace (Envoy Gateway's policies must
    /// live in their Gateway's namespace); repeatable.
    #[arg(long = "target-ref", value_name = "GATEWAY", default_values_t = vec!["mcp-edge".to_string()])]
    pub target_refs: Vec<String>,
    /// The Gateway listener (section name) whose Envoy listener gets the body flag.
    #[arg(long, value_name = "NAME", default_value = "http")]
    pub listener: String,
}

impl From<Format> for render::Format {
    fn from(f: Format) -> render::Format {
        match f {
            Format::Yaml => render::Format::Yaml,
            Format::Json => render::Format::Json,
        }
    }
}

impl From<IstioContext> for render::IstioContext {
    fn from(c: IstioContext) -> render::IstioContext {
        match c {
            IstioContext::Gateway => render::IstioContext::Gateway,
            IstioContext::SidecarInbound => render::IstioContext::SidecarInbound,
        }
    }
}

impl From<CommonArgs> for render::CommonOptions {
    fn from(a: CommonArgs) -> render::CommonOptions {
        render::CommonOptions {
            doc: a.doc,
            format: a.format.into(),
            upstreams: a.upstreams,
            body_flag: a.body_flag,
            output: a.output,
        }
    }
}

impl From<MeshArgs> for render::MeshOptions {
    fn from(a: MeshArgs) -> render::MeshOptions {
        render::MeshOptions {
            namespace: a.namespace,
            wasm_url: a.wasm_url,
            wasm_sha256: a.wasm_sha256,
            broker_image: a.broker_image,
            secret: a.secret,
            ratelimit_image: a.ratelimit_image,
            redis_url: a.redis_url,
        }
    }
}

impl From<RenderTarget> for render::Target {
    fn from(t: RenderTarget) -> render::Target {
        match t {
            RenderTarget::Envoy(a) => render::Target::Envoy(render::EnvoyOptions {
                common: a.common.into(),
                wasm: a.wasm,
                listen: a.listen,
                admin: a.admin,
                broker: a.broker,
                broker_internal: a.broker_internal,
                access_log: a.access_log,
                cors_origins: a.cors_origins,
                rate_limit: a.rate_limit,
            }),
            RenderTarget::RateLimit(a) => render::Target::RateLimit(render::RateLimitOptions {
                common: render::CommonOptions {
                    doc: a.doc,
                    format: a.format.into(),
                    upstreams: Vec::new(),
                    body_flag: false,
                    output: a.output,
                },
            }),
            RenderTarget::Istio(a) => render::Target::Istio(render::IstioOptions {
                common: a.common.into(),
                mesh: a.mesh.into(),
                selectors: a.selectors,
                proxy_namespace: a.proxy_namespace,
                context: a.context.into(),
                gateway: a.gateway,
                proxy_principal: a.proxy_principal,
            }),
            RenderTarget::EnvoyGateway(a) => render::Target::EnvoyGateway(render::GatewayOptions {
                common: a.common.into(),
                mesh: a.mesh.into(),
                target_refs: a.target_refs,
                listener: a.listener,
            }),
        }
    }
}
