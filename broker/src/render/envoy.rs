//! `render envoy`: a complete static Envoy bootstrap for a gateway document.

use super::clusters::{self, ClusterRef};
use super::options::EnvoyOptions;
use super::{access_log, embedded, plugin, Endpoint, Input, RenderError, Rendered};
use scopegate_core::oauth::metadata as md;
use scopegate_core::policy::PRM_WELL_KNOWN;
use serde_json::{json, Value};

/// The cluster of the broker's public listener (the OAuth endpoints clients reach through Envoy).
pub const BROKER_PUBLIC_CLUSTER: &str = "scopegate_broker";
const DEFAULT_BROKER: &str = "127.0.0.1:8080";
const DEFAULT_BROKER_INTERNAL: &str = "127.0.0.1:8081";

pub fn render(input: &Input, a: &EnvoyOptions) -> Result<Rendered, RenderError> {
    let usage = |e: String| RenderError::Usage(e);
    let broker_doc = &input.doc["broker"];
    let addr =
        |flag: &Option<String>, field: &str, default: &str| -> Result<Endpoint, RenderError> {
            let text = flag
                .clone()
                .or_else(|| broker_doc[field].as_str().map(str::to_string))
                .unwrap_or_else(|| default.to_string());
            let mut ep = Endpoint::parse(&text).map_err(usage)?;
            // A broker listening on every interface is reached on loopback.
            if ep.host == "0.0.0.0" {
                ep.host = "127.0.0.1".into();
            }
            Ok(ep)
        };
    let broker_public = addr(&a.broker, "listen", DEFAULT_BROKER)?;
    let broker_internal = addr(
        &a.broker_internal,
        "internal_listen",
        DEFAULT_BROKER_INTERNAL,
    )?;
    let listen = Endpoint::parse(&a.listen).map_err(usage)?;
    let admin = Endpoint::parse(&a.admin).map_err(usage)?;

    let rate_limit = match (&input.policy.filter.rate_limit, &a.rate_limit) {
        (Some(_), Some(text)) => Some(Endpoint::parse(text).map_err(|e| usage(format!("--rate-limit: {e}")))?),
        (Some(r), None) => {
            return Err(usage(format!(
                "the document counts budgets in a rate limit service (`filter.rate_limit`, cluster `{}`): add --rate-limit HOST:PORT, the service's gRPC address",
                r.cluster
            )))
        }
        (None, Some(_)) => {
            return Err(usage(
                "--rate-limit: the document has no `filter.rate_limit` (its budgets are counted by each Envoy on its own); add the section or drop the option".into(),
            ))
        }
        (None, None) => None,
    };
    let refs = clusters::resolve(input, &broker_internal, rate_limit.as_ref())?;
    let configuration = embedded(&input.doc)?;
    let brokered = input.policy.gateways.iter().any(|g| g.brokered);

    let mut routes = Vec::new();
    for s in &input.policy.servers {
        // MCP streams (SSE) are long-lived: no route timeout, only an idle one.
        routes.push(json!({
            "match": {"prefix": s.path},
            "route": {"cluster": s.cluster, "timeout": "0s", "idle_timeout": "300s"},
        }));
    }
    // Protected-resource metadata is answered by the filter from configuration; the route only
    // makes the path known (anything the filter does not answer is a 404).
    routes.push(json!({
        "match": {"prefix": PRM_WELL_KNOWN},
        "direct_response": {"status": 404},
    }));
    if brokered {
        for path in broker_paths(input) {
            routes.push(json!({
                "match": {"path": path},
                "route": {"cluster": BROKER_PUBLIC_CLUSTER},
            }));
        }
    }

    let mut virtual_host = json!({"name": "mcp", "domains": ["*"], "routes": routes});
    let mut http_filters = Vec::new();
    if !a.cors_origins.is_empty() {
        // Browser-based clients (the MCP Inspector) fetch metadata, register and redeem codes
        // from the page: their preflights are answered before scopegate sees them.
        let origins: Vec<Value> = a
            .cors_origins
            .iter()
            .map(|o| json!({"prefix": o}))
            .collect();
        virtual_host["typed_per_filter_config"] = json!({
            "envoy.filters.http.cors": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
                "allow_origin_string_match": origins,
                "allow_methods": "GET, POST, DELETE, OPTIONS",
                "allow_headers": "authorization, content-type, accept, mcp-protocol-version, mcp-session-id, last-event-id, mcp-method, mcp-name",
                "expose_headers": "www-authenticate, mcp-session-id",
                "max_age": "600",
            }
        });
        http_filters.push(json!({
            "name": "envoy.filters.http.cors",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
        }));
    }
    if input.native_mcp() {
        // `mcp_metadata`: scopegate decides at header time on what this filter parsed.
        http_filters.push(plugin::native_mcp_filter(
            input.policy.filter.max_body_bytes,
        ));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": plugin::WASM_FILTER_TYPE,
            "config": plugin::plugin_config(
                plugin::NAME,
                plugin::local_code(&a.wasm),
                &configuration,
                input.body_flag(),
            ),
        },
    }));
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }));

    let access_log = match &a.access_log {
        Some(path) => json!({
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": {"json_format": access_log::fields()},
            }
        }),
        None => json!({
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": access_log::fields()},
            }
        }),
    };

    let mut cluster_defs: Vec<Value> = refs.iter().map(cluster).collect();
    if brokered {
        cluster_defs.push(cluster(&ClusterRef {
            name: BROKER_PUBLIC_CLUSTER.into(),
            role: clusters::Role::Broker,
            endpoint: broker_public,
            broker_internal: false,
        }));
    }
    if !refs.iter().any(|c| c.broker_internal) && brokered {
        return Err(RenderError::Usage(
            "a brokered gateway needs `filter.broker.cluster` (the broker's internal listener)"
                .into(),
        ));
    }

    let bootstrap = json!({
        "admin": {"address": socket_address(&admin)},
        "static_resources": {
            "listeners": [{
                "name": "mcp",
                "address": socket_address(&listen),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "mcp",
                        "access_log": [access_log],
                        "route_config": {"virtual_hosts": [virtual_host]},
                        "http_filters": http_filters,
                    }
                }]}],
            }],
            "clusters": cluster_defs,
        }
    });
    Ok(Rendered {
        text: None,
        header: vec![
            format!("Rendered by `scopegate-broker {}`: do not edit.", input.command),
            "The filter's `configuration` is the document as JSON; the broker reads the same document.".into(),
        ],
        objects: vec![(None, bootstrap)],
    })
}

/// Paths of the broker's public endpoints for every brokered gateway: RFC 8414 metadata (both
/// well-known spellings) and the OAuth endpoints under the issuer's path.
pub fn broker_paths(input: &Input) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in input.policy.gateways.iter().filter(|g| g.brokered) {
        let p = md::issuer_path(&g.issuer);
        let mut paths = md::well_known_paths(&g.issuer);
        for e in [
            md::AUTHORIZE,
            md::CONSENT,
            md::CALLBACK,
            md::APPS,
            md::APPS_WITHDRAW,
            md::TOKEN,
            md::REVOKE,
            md::REGISTER,
            md::JWKS,
        ] {
            paths.push(format!("{p}{e}"));
        }
        for path in paths {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

fn socket_address(ep: &Endpoint) -> Value {
    json!({"socket_address": {"address": ep.host, "port_value": ep.port}})
}

/// A cluster for one upstream: STATIC for an IP, STRICT_DNS for a name; TLS (with SNI) on 443;
/// HTTP/2 for the rate limit service (gRPC).
fn cluster(c: &ClusterRef) -> Value {
    let is_ip = c.endpoint.host.parse::<std::net::IpAddr>().is_ok();
    let mut out = json!({
        "name": c.name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(&c.endpoint)}}]}],
        },
    });
    if c.role == clusters::Role::RateLimit {
        out["typed_extension_protocol_options"] = clusters::http2_options();
    }
    if c.endpoint.port == 443 {
        out["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": c.endpoint.host,
            }
        });
    }
    out
}
