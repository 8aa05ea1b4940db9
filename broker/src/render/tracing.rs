//! `render envoy --otlp-collector`: Envoy's OpenTelemetry tracer (OTLP/gRPC to a collector), and
//! its active span handed to scopegate's filter so the broker's spans join Envoy's trace.

use super::{Endpoint, RenderError};
use scopegate_core::trace_context::ENVOY_SPAN_HEADER;
use serde_json::{json, Value};

/// The collector's cluster (HTTP/2: OTLP/gRPC).
pub const COLLECTOR_CLUSTER: &str = "opentelemetry_collector";
/// The service name Envoy's spans carry when `--service-name` is not given.
pub const DEFAULT_SERVICE_NAME: &str = "scopegate-envoy";

/// Where Envoy sends its spans, and under which service name.
pub struct Tracing {
    pub collector: Endpoint,
    pub service_name: String,
}

impl Tracing {
    pub fn from_options(
        collector: Option<&str>,
        service_name: Option<&str>,
    ) -> Result<Option<Tracing>, RenderError> {
        match (collector, service_name) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(RenderError::Usage(
                "--service-name needs --otlp-collector (the collector Envoy's spans go to)".into(),
            )),
            (Some(c), name) => Ok(Some(Tracing {
                collector: Endpoint::parse(c)
                    .map_err(|e| RenderError::Usage(format!("--otlp-collector: {e}")))?,
                service_name: name.unwrap_or(DEFAULT_SERVICE_NAME).to_string(),
            })),
        }
    }

    /// The HTTP connection manager's `tracing` block.
    pub fn hcm_tracing(&self) -> Value {
        json!({
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "1s"},
                    "service_name": self.service_name,
                }
            }
        })
    }

    /// Ahead of scopegate's filter: Envoy's active span as a `traceparent` value, and the path
    /// its span reports without the query. Envoy writes
    /// `traceparent` itself only on the upstream request, after every filter has run, so without
    /// this a callout made while the request waits (the broker's token exchange) cannot name
    /// Envoy's span as its parent.
    pub fn span_header_filter() -> Value {
        json!({
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"request_mutations": [
                    {"append": {
                        "header": {"key": ENVOY_SPAN_HEADER, "value": "00-%TRACE_ID%-%SPAN_ID%-01"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }},
                    // The span's `http.url` tag is built from this header when present: the path
                    // without its query, which on `/callback` holds the authorization code and
                    // elsewhere a client's `state`.
                    {"append": {
                        "header": {"key": "x-envoy-original-path", "value": "%PATH(NQ)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }},
                ]},
            }
        })
    }

    /// The collector's cluster: HTTP/2, as gRPC needs.
    pub fn collector_cluster(&self, mut cluster: Value) -> Value {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        });
        cluster
    }
}

/// The span header is for the filter only: the router drops it before any upstream sees it.
pub fn strip_span_header(virtual_host: &mut Value) {
    virtual_host["request_headers_to_remove"] = json!([ENVOY_SPAN_HEADER]);
}
