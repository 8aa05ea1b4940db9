//! `render istio`: the filter as a `WasmPlugin` or, when the body flag is needed, an `EnvoyFilter`
//! delivering it by ECDS; access logging; the broker's workload, kept private by mTLS and an
//! `AuthorizationPolicy`; the external hosts as `ServiceEntry`s.

use super::clusters::{self, ClusterRef, Role};
use super::envoy::broker_paths;
use super::options::{IstioContext, IstioOptions};
use super::workload::{self, broker_host, BROKER_NAME, INTERNAL_PORT, PUBLIC_PORT};
use super::{access_log, embedded, plugin, ratelimit, Endpoint, Input, RenderError, Rendered};
use serde_json::{json, Map, Value};

/// The access-log provider the `Telemetry` names (defined in the mesh config, see the snippet).
pub const ACCESS_LOG_PROVIDER: &str = "scopegate-json";

/// Istio's name for the cluster of a service port.
pub fn outbound(ep: &Endpoint) -> String {
    format!("outbound|{}||{}", ep.port, ep.host)
}

/// `sha256:<hex>` or `<hex>` as the bare hex both meshes want.
pub fn bare_sha256(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(|s| s.strip_prefix("sha256:").unwrap_or(s).to_string())
}

fn selector(a: &IstioOptions) -> Result<Map<String, Value>, RenderError> {
    let mut labels = Map::new();
    for s in &a.selectors {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| RenderError::Usage(format!("--selector `{s}` is not KEY=VALUE")))?;
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(labels)
}

pub fn render(input: &Input, a: &IstioOptions) -> Result<Rendered, RenderError> {
    let ns = &a.mesh.namespace;
    let broker_internal = Endpoint {
        host: broker_host(ns),
        port: INTERNAL_PORT,
    };
    let rate_limit = ratelimit::service_endpoint(ns);
    let refs = clusters::resolve(input, &broker_internal, Some(&rate_limit))?;
    let doc = clusters::rename(&input.doc, &refs, |c| outbound(&c.endpoint));
    let configuration = embedded(&doc)?;
    let labels = selector(a)?;
    let sha256 = bare_sha256(&a.mesh.wasm_sha256);
    let meta = |name: &str, namespace: &str| json!({"name": name, "namespace": namespace});

    let mut objects: Vec<(Option<String>, Value)> = Vec::new();
    let needs = input.needs();
    let max_body = input.policy.filter.max_body_bytes;
    if needs.body_flag {
        objects.extend(envoy_filter(
            a,
            &labels,
            &configuration,
            sha256.as_deref(),
            needs.native_mcp_filter.then_some(max_body),
        ));
    } else {
        let mut spec = json!({
            "selector": {"matchLabels": labels},
            "url": a.mesh.wasm_url,
            "pluginName": plugin::NAME,
            "phase": "AUTHN",
            "type": "HTTP",
            "failStrategy": "FAIL_CLOSE",
            "pluginConfig": doc,
        });
        if let Some(sum) = &sha256 {
            spec["sha256"] = json!(sum);
        }
        let why = if needs.native_mcp_filter {
            "The filter as a WasmPlugin: body_mode mcp_metadata decides on what Envoy's native \
             envoy.filters.http.mcp parsed (the EnvoyFilter below puts it first), so the request \
             headers are never held by scopegate and allow_on_headers_stop_iteration is not needed."
        } else if needs.reads_body {
            "The filter as a WasmPlugin: body_mode hold_body lets the headers go on and holds the \
             body until the JSON-RPC message is decided, so allow_on_headers_stop_iteration is not \
             needed (a refused message never reaches the MCP server)."
        } else {
            "The filter as a WasmPlugin: no server reads the request body, so the request \
             headers are never held and allow_on_headers_stop_iteration is not needed."
        };
        objects.push((
            Some(format!(
                "{why}\nIstio hands pluginConfig to the filter as JSON text. failStrategy stays \
                 FAIL_CLOSE: FAIL_OPEN would let every request bypass the filter when its VM fails."
            )),
            json!({
                "apiVersion": "extensions.istio.io/v1alpha1",
                "kind": "WasmPlugin",
                "metadata": meta(plugin::NAME, &a.proxy_namespace),
                "spec": spec,
            }),
        ));
        if needs.native_mcp_filter {
            objects.push(native_mcp_envoy_filter(a, &labels, max_body));
        }
    }

    let mesh_config = json!({"meshConfig": {"extensionProviders": [{
        "name": ACCESS_LOG_PROVIDER,
        "envoyFileAccessLog": {"path": "/dev/stdout", "logFormat": {"labels": access_log::fields()}},
    }]}});
    let snippet =
        serde_norway::to_string(&mesh_config).map_err(|e| RenderError::Usage(e.to_string()))?;
    objects.push((
        Some(format!(
            "Access logs with scopegate's decision: the Telemetry below names the provider \
             `{ACCESS_LOG_PROVIDER}`, which the mesh config defines (istioctl install / IstioOperator / \
             the istio ConfigMap):\n{snippet}"
        )),
        json!({
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": meta(plugin::NAME, &a.proxy_namespace),
            "spec": {
                "selector": {"matchLabels": labels},
                "accessLogging": [{"providers": [{"name": ACCESS_LOG_PROVIDER}]}],
            },
        }),
    ));

    objects.push(virtual_service(input, &refs, ns, &a.gateway));
    objects.extend(workload::broker_objects(&a.mesh, &configuration, &doc));
    objects.extend(ratelimit::objects(&a.mesh, &input.policy)?);
    objects.extend(private_broker(a, ns));
    objects.extend(external_hosts(&refs, &doc, ns));

    Ok(Rendered {
        text: None,
        header: vec![format!(
            "Rendered by `scopegate-broker {}`: do not edit.",
            input.command
        )],
        objects,
    })
}

/// The filter by ECDS: an `EXTENSION_CONFIG` holding the wasm filter with the body flag, and an
/// `HTTP_FILTER` entry before the router that points at it through `config_discovery`.
fn envoy_filter(
    a: &IstioOptions,
    labels: &Map<String, Value>,
    configuration: &str,
    sha256: Option<&str>,
    native_mcp: Option<usize>,
) -> Vec<(Option<String>, Value)> {
    let context = context(a);
    let config = plugin::plugin_config(
        plugin::NAME,
        plugin::remote_code(&a.mesh.wasm_url, sha256),
        configuration,
        true,
    );
    let mut patches = vec![
        json!({
            "applyTo": "EXTENSION_CONFIG",
            "patch": {
                "operation": "ADD",
                "value": {
                    "name": plugin::NAME,
                    "typed_config": {"@type": plugin::WASM_FILTER_TYPE, "config": config},
                },
            },
        }),
        json!({
            "applyTo": "HTTP_FILTER",
            "match": http_filter_match(context, "envoy.filters.http.router"),
            "patch": {
                "operation": "INSERT_BEFORE",
                "value": {
                    "name": plugin::NAME,
                    "config_discovery": {
                        "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                        "type_urls": [plugin::WASM_FILTER_TYPE],
                    },
                },
            },
        }),
    ];
    if let Some(max_body) = native_mcp {
        // Patches of one EnvoyFilter apply in order: scopegate is in the chain by now.
        patches.push(json!({
            "applyTo": "HTTP_FILTER",
            "match": http_filter_match(context, plugin::NAME),
            "patch": {"operation": "INSERT_BEFORE", "value": plugin::native_mcp_filter(max_body)},
        }));
    }
    vec![(
        Some(
            "The filter by ECDS with allow_on_headers_stop_iteration: true (body_mode hold_headers, \
             or --body-flag): the request headers are held while the body is read, and WasmPlugin \
             has no field for the flag. Istio's agent fetches the module (https or \
             oci://) and checks its sha256, as for a WasmPlugin. Needs proxies on Envoy 1.35+ \
             (older ones ignore the flag)."
                .into(),
        ),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": plugin::NAME, "namespace": a.proxy_namespace},
            "spec": {
                "workloadSelector": {"labels": labels},
                "configPatches": patches,
            },
        }),
    )]
}

fn context(a: &IstioOptions) -> &'static str {
    match a.context {
        IstioContext::Gateway => "GATEWAY",
        IstioContext::SidecarInbound => "SIDECAR_INBOUND",
    }
}

/// An `HTTP_FILTER` match on the HTTP connection manager's filter named `sub_filter`.
fn http_filter_match(context: &str, sub_filter: &str) -> Value {
    json!({
        "context": context,
        "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": sub_filter},
        }}},
    })
}

/// `mcp_metadata` with a `WasmPlugin`: an `EnvoyFilter` inserting Envoy's native MCP filter just
/// before the filter istiod generates for the plugin (named `<namespace>.<name>`). EnvoyFilter
/// patches apply to the listener istiod built, WasmPlugin filters included. If the match ever
/// fails (a renamed plugin), the native filter is missing and scopegate refuses every governed
/// POST (400): that misconfiguration fails closed.
fn native_mcp_envoy_filter(
    a: &IstioOptions,
    labels: &Map<String, Value>,
    max_body: usize,
) -> (Option<String>, Value) {
    let wasm_plugin_filter = format!("{}.{}", a.proxy_namespace, plugin::NAME);
    (
        Some(format!(
            "body_mode mcp_metadata: Envoy's native {} before the WasmPlugin's filter \
             `{wasm_plugin_filter}` (INSERT_BEFORE needs it in the chain; without the native filter \
             scopegate refuses every governed POST, it never lets one through). Needs proxies \
             whose Envoy has envoy.filters.http.mcp (1.38+).",
            plugin::NATIVE_MCP_FILTER
        )),
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": format!("{}-mcp", plugin::NAME), "namespace": a.proxy_namespace},
            "spec": {
                "workloadSelector": {"labels": labels},
                "configPatches": [{
                    "applyTo": "HTTP_FILTER",
                    "match": http_filter_match(context(a), &wasm_plugin_filter),
                    "patch": {"operation": "INSERT_BEFORE", "value": plugin::native_mcp_filter(max_body)},
                }],
            },
        }),
    )
}

/// Routes on the ingress gateway: the MCP servers (no timeout: SSE) and the broker's endpoints.
fn virtual_service(
    input: &Input,
    refs: &[ClusterRef],
    ns: &str,
    gateway: &str,
) -> (Option<String>, Value) {
    let mut hosts: Vec<String> = Vec::new();
    for g in &input.policy.gateways {
        if let Some(h) = url::Url::parse(&g.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    let mut http = Vec::new();
    for c in refs {
        if let Role::Server { path, .. } = &c.role {
            http.push(json!({
                "match": [{"uri": {"prefix": path}}],
                "route": [{"destination": {"host": c.endpoint.host, "port": {"number": c.endpoint.port}}}],
                "timeout": "0s",
            }));
        }
    }
    let paths = broker_paths(input);
    if !paths.is_empty() {
        let matches: Vec<Value> = paths.iter().map(|p| json!({"uri": {"exact": p}})).collect();
        http.push(json!({
            "match": matches,
            "route": [{"destination": {"host": broker_host(ns), "port": {"number": PUBLIC_PORT}}}],
        }));
    }
    (
        Some(
            "Routes on the ingress gateway (--gateway): the MCP servers and the broker's \
             endpoints. Protected-resource metadata needs no route: the filter answers it."
                .into(),
        ),
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": plugin::NAME, "namespace": ns},
            "spec": {"hosts": hosts, "gateways": [gateway], "http": http},
        }),
    )
}

/// mTLS only, and the internal port (token exchange, JWKS, stats) for the filter's proxies only.
fn private_broker(a: &IstioOptions, ns: &str) -> Vec<(Option<String>, Value)> {
    let sel = json!({"matchLabels": {"app.kubernetes.io/name": BROKER_NAME}});
    vec![
        (
            Some(
                "The broker accepts mesh mTLS only, so every caller has a verified identity."
                    .into(),
            ),
            json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": {"name": BROKER_NAME, "namespace": ns},
                "spec": {"selector": sel, "mtls": {"mode": "STRICT"}},
            }),
        ),
        (
            Some(format!(
                "The public port is open; the internal one only to the proxies running the filter \
                 ({}). Anything else is denied.",
                a.proxy_principal
            )),
            json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": BROKER_NAME, "namespace": ns},
                "spec": {
                    "selector": sel,
                    "action": "ALLOW",
                    "rules": [
                        {"to": [{"operation": {"ports": [PUBLIC_PORT.to_string()]}}]},
                        {
                            "from": [{"source": {"principals": [a.proxy_principal]}}],
                            "to": [{"operation": {"ports": [INTERNAL_PORT.to_string()]}}],
                        },
                    ],
                },
            }),
        ),
    ]
}

/// `ServiceEntry`s for hosts outside the mesh: the downstream authorization servers (the broker
/// calls them over TLS) and JWKS hosts (the filter calls them in plain HTTP through the cluster
/// `outbound|<port>||<host>`, which the entry creates; a `DestinationRule` originates TLS on 443).
fn external_hosts(refs: &[ClusterRef], doc: &Value, ns: &str) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    for (i, (host, port, tls)) in workload::downstream_hosts(doc).into_iter().enumerate() {
        if workload::in_cluster(&host) {
            continue;
        }
        out.push((
            if i == 0 { Some("The downstream authorization server, reached by the broker.".into()) } else { None },
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": format!("scopegate-downstream-{}", dns_label(&host)), "namespace": ns},
                "spec": {
                    "hosts": [host],
                    "location": "MESH_EXTERNAL",
                    "resolution": "DNS",
                    "ports": [{"number": port, "name": if tls { "tls" } else { "http" }, "protocol": if tls { "TLS" } else { "HTTP" }}],
                },
            }),
        ));
    }
    for c in refs
        .iter()
        .filter(|c| c.role == Role::Jwks && !c.broker_internal)
    {
        let ep = &c.endpoint;
        if workload::in_cluster(&ep.host) {
            continue;
        }
        let name = format!("scopegate-jwks-{}", dns_label(&ep.host));
        out.push((
            Some(format!(
                "The JWKS host, cluster `{}` in the embedded document.",
                outbound(ep)
            )),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "hosts": [ep.host],
                    "location": "MESH_EXTERNAL",
                    "resolution": "DNS",
                    "ports": [{"number": ep.port, "name": "http", "protocol": "HTTP"}],
                },
            }),
        ));
        if ep.port == 443 {
            out.push((
                None,
                json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "host": ep.host,
                        "trafficPolicy": {"portLevelSettings": [{
                            "port": {"number": 443},
                            "tls": {"mode": "SIMPLE", "sni": ep.host},
                        }]},
                    },
                }),
            ));
        }
    }
    out
}

/// A host name as a Kubernetes object name fragment.
pub fn dns_label(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_spells_clusters_outbound_port_host() {
        let ep = Endpoint {
            host: "ops-console.mcp.svc.cluster.local".into(),
            port: 8080,
        };
        assert_eq!(
            outbound(&ep),
            "outbound|8080||ops-console.mcp.svc.cluster.local"
        );
        assert_eq!(
            bare_sha256(&Some("sha256:ab".into())).as_deref(),
            Some("ab")
        );
        assert_eq!(bare_sha256(&Some("ab".into())).as_deref(), Some("ab"));
    }
}
