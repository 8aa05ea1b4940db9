//! `render envoy-gateway`: the filter as an `EnvoyExtensionPolicy`, routes for the servers and the
//! broker (`Backend`), and an `EnvoyPatchPolicy` for what the policy cannot say: the filter's own
//! clusters (the broker's internal listener, an external JWKS host) and the body flag.

use super::clusters::{self, ClusterRef, Role};
use super::envoy::broker_paths;
use super::istio::{bare_sha256, dns_label};
use super::options::GatewayOptions;
use super::workload::{self, broker_host, BROKER_NAME, INTERNAL_PORT, PUBLIC_PORT};
use super::{embedded, plugin, ratelimit, Endpoint, Input, RenderError, Rendered};
use serde_json::{json, Value};

const GATEWAY_API: &str = "gateway.networking.k8s.io";
const EG_API: &str = "gateway.envoyproxy.io/v1alpha1";

/// Envoy Gateway's name for the cluster of rule `rule` of an HTTPRoute.
pub fn route_cluster(namespace: &str, route: &str, rule: usize) -> String {
    format!("httproute/{namespace}/{route}/rule/{rule}")
}

pub fn render(input: &Input, a: &GatewayOptions) -> Result<Rendered, RenderError> {
    let ns = &a.mesh.namespace;
    let broker_internal = Endpoint {
        host: broker_host(ns),
        port: INTERNAL_PORT,
    };
    let rate_limit = ratelimit::service_endpoint(ns);
    let refs = clusters::resolve(input, &broker_internal, Some(&rate_limit))?;
    // Servers' clusters are the ones Envoy Gateway makes for their HTTPRoutes (one per server,
    // named after it); the filter's own clusters keep their names (the patch policy adds them).
    let doc = clusters::rename(&input.doc, &refs, |c| match &c.role {
        Role::Server { name, .. } => route_cluster(ns, name, 0),
        _ => c.name.clone(),
    });
    let configuration = embedded(&doc)?;
    let sha256 = bare_sha256(&a.mesh.wasm_sha256);
    let parent_refs: Vec<Value> = a
        .target_refs
        .iter()
        .map(|g| json!({"group": GATEWAY_API, "kind": "Gateway", "name": g}))
        .collect();
    let hostnames: Vec<String> = input
        .policy
        .gateways
        .iter()
        .filter_map(|g| {
            url::Url::parse(&g.public_url)
                .ok()?
                .host_str()
                .map(str::to_string)
        })
        .fold(Vec::new(), |mut v, h| {
            if !v.contains(&h) {
                v.push(h);
            }
            v
        });

    let code = match a.mesh.wasm_url.strip_prefix("oci://") {
        Some(image) => {
            let mut i = json!({"url": image});
            if let Some(s) = &sha256 {
                i["sha256"] = json!(s);
            }
            json!({"type": "Image", "image": i})
        }
        None => {
            let mut h = json!({"url": a.mesh.wasm_url});
            if let Some(s) = &sha256 {
                h["sha256"] = json!(s);
            }
            json!({"type": "HTTP", "http": h})
        }
    };
    let needs = input.needs();
    let body_flag = needs.body_flag;
    let native_mcp = needs.native_mcp_filter;
    let mut why = if body_flag {
        "The filter. body_mode hold_headers (or --body-flag) holds the request headers while the \
         body is read: the EnvoyPatchPolicy below sets allow_on_headers_stop_iteration, which \
         EnvoyExtensionPolicy cannot (needs EnvoyPatchPolicy enabled: \
         extensionApis.enableEnvoyPatchPolicy)."
            .to_string()
    } else if native_mcp {
        "The filter. body_mode mcp_metadata needs no body flag; the EnvoyPatchPolicy below puts \
         Envoy's native envoy.filters.http.mcp before it (needs extensionApis.enableEnvoyPatchPolicy)."
            .to_string()
    } else if needs.reads_body {
        "The filter. body_mode hold_body holds the body, never the headers, so the body flag is \
         not needed."
            .to_string()
    } else {
        "The filter. No server reads the request body, so the body flag is not needed.".to_string()
    };
    why.push_str(
        " failOpen stays false: true would let every request bypass the filter when its VM fails.",
    );
    let mut objects: Vec<(Option<String>, Value)> = vec![(
        Some(why),
        json!({
            "apiVersion": EG_API,
            "kind": "EnvoyExtensionPolicy",
            "metadata": {"name": plugin::NAME, "namespace": ns},
            "spec": {
                "targetRefs": parent_refs,
                "wasm": [{
                    "name": plugin::NAME,
                    "rootID": plugin::NAME,
                    "code": code,
                    "config": doc,
                    "failOpen": false,
                }],
            },
        }),
    )];

    for c in refs.iter() {
        if let Role::Server { name, path } = &c.role {
            objects.push((
                None,
                json!({
                    "apiVersion": format!("{GATEWAY_API}/v1"),
                    "kind": "HTTPRoute",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "parentRefs": parent_refs,
                        "hostnames": hostnames,
                        "rules": [{
                            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                            "backendRefs": [backend_ref(&c.endpoint, ns)],
                            // MCP streams (SSE) are long-lived.
                            "timeouts": {"request": "0s"},
                        }],
                    },
                }),
            ));
        }
    }
    let paths = broker_paths(input);
    if !paths.is_empty() {
        objects.push((
            Some("The broker's public listener, for its OAuth endpoints and metadata.".into()),
            json!({
                "apiVersion": EG_API,
                "kind": "Backend",
                "metadata": {"name": BROKER_NAME, "namespace": ns},
                "spec": {"endpoints": [{"fqdn": {"hostname": broker_host(ns), "port": PUBLIC_PORT}}]},
            }),
        ));
        let matches: Vec<Value> = paths
            .iter()
            .map(|p| json!({"path": {"type": "Exact", "value": p}}))
            .collect();
        objects.push((
            None,
            json!({
                "apiVersion": format!("{GATEWAY_API}/v1"),
                "kind": "HTTPRoute",
                "metadata": {"name": BROKER_NAME, "namespace": ns},
                "spec": {
                    "parentRefs": parent_refs,
                    "hostnames": hostnames,
                    "rules": [{
                        "matches": matches,
                        "backendRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": BROKER_NAME}],
                    }],
                },
            }),
        ));
    }

    for gw in &a.target_refs {
        let mut patches: Vec<Value> = refs
            .iter()
            .filter(|c| !matches!(c.role, Role::Server { .. }))
            .map(cluster_patch)
            .collect();
        if body_flag {
            patches.push(json!({
                "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": format!("{ns}/{gw}/{}", a.listener),
                "operation": {
                    "op": "add",
                    "jsonPath": format!("..http_filters[?(@.typed_config.config.name=='{}')].typed_config.config", plugin::NAME),
                    "path": "/allow_on_headers_stop_iteration",
                    "value": true,
                },
            }));
        }
        if native_mcp {
            // A JSON Patch `add` at an array index inserts before the element there: the pointer
            // of the scopegate filter puts the native filter just before it. Should the path not
            // match, the native filter is missing and scopegate refuses every governed POST.
            patches.push(json!({
                "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": format!("{ns}/{gw}/{}", a.listener),
                "operation": {
                    "op": "add",
                    "jsonPath": format!("..http_filters[?(@.typed_config.config.name=='{}')]", plugin::NAME),
                    "path": "",
                    "value": plugin::native_mcp_filter(input.policy.filter.max_body_bytes),
                },
            }));
        }
        if patches.is_empty() {
            continue;
        }
        objects.push((
            Some(format!(
                "What EnvoyExtensionPolicy cannot say, for Gateway `{gw}`: the filter's own clusters{}{}.",
                if body_flag { ", the body flag" } else { "" },
                if native_mcp { ", Envoy's native MCP filter before scopegate" } else { "" }
            )),
            json!({
                "apiVersion": EG_API,
                "kind": "EnvoyPatchPolicy",
                "metadata": {"name": format!("{}-{}", plugin::NAME, dns_label(gw)), "namespace": ns},
                "spec": {
                    "targetRef": {"group": GATEWAY_API, "kind": "Gateway", "name": gw},
                    "type": "JSONPatch",
                    "jsonPatches": patches,
                },
            }),
        ));
    }

    objects.extend(workload::broker_objects(&a.mesh, &configuration, &doc));
    objects.extend(ratelimit::objects(&a.mesh, &input.policy)?);
    Ok(Rendered {
        text: None,
        header: vec![format!(
            "Rendered by `scopegate-broker {}`: do not edit.",
            input.command
        )],
        objects,
    })
}

/// A Service reference from `--upstream`'s host: `svc`, or `svc.ns[.svc[.cluster.local]]` for a
/// Service in another namespace (which then needs a ReferenceGrant there).
fn backend_ref(ep: &Endpoint, ns: &str) -> Value {
    let mut labels = ep.host.split('.');
    let name = labels.next().unwrap_or(&ep.host);
    let mut r = json!({"name": name, "port": ep.port});
    if let Some(other) = labels.next().filter(|n| *n != ns) {
        r["namespace"] = json!(other);
    }
    r
}

/// Adds a cluster the filter calls (`dispatch_http_call` and `dispatch_grpc_call` need one by
/// name; the rate limit service's speaks HTTP/2).
fn cluster_patch(c: &ClusterRef) -> Value {
    let mut cluster = json!({
        "name": c.name,
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": c.endpoint.host, "port_value": c.endpoint.port,
            }}}}]}],
        },
    });
    if c.role == Role::RateLimit {
        cluster["typed_extension_protocol_options"] = clusters::http2_options();
    }
    if c.endpoint.port == 443 {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": c.endpoint.host,
            },
        });
    }
    json!({
        "type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": c.name,
        "operation": {"op": "add", "path": "", "value": cluster},
    })
}
