//! Envoy for each case: the same listener, route and upstream cluster, with no auth filter,
//! the scopegate filter, or Envoy's own `jwt_authn` + `rbac`. No access log (it would cost the
//! same in every case and blur the difference), logs at `warn`, one worker.

use scopegate_tests::bootstrap as b;
use scopegate_tests::envoy::{launch, Envoy, Launch};
use scopegate_tests::free_port;
use scopegate_tests::procs::log_dir;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The upstream cluster the bench server governs.
pub const UPSTREAM_CLUSTER: &str = "bench_upstream";
/// The cluster through which the filter and `jwt_authn` fetch the issuer's JWKS.
pub const ISSUER_CLUSTER: &str = "test_issuer";
/// The broker's public and internal listeners (case 5), named as in `tests/src/brokered.rs`.
pub const BROKER_CLUSTER: &str = "scopegate_broker";
pub const BROKER_INTERNAL_CLUSTER: &str = "scopegate_broker_internal";
/// The scope every request needs, checked by scopegate (`base_scopes`) and by RBAC.
pub const REQUIRED_SCOPE: &str = "tickets.read";
/// HTTP connection manager stat prefix (`http.bench.downstream_rq_2xx`, …).
pub const STAT_PREFIX: &str = "bench";

/// Which auth sits in front of the upstream.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// The scopegate filter (this `.wasm`) with this document; with `native_mcp`, Envoy's
    /// `envoy.filters.http.mcp` before it (`body_mode: mcp_metadata`).
    Scopegate {
        doc: String,
        wasm: PathBuf,
        native_mcp: bool,
    },
    /// The scopegate filter in broker mode with the broker's document: the governed path still
    /// goes to the bench upstream; everything else (the OAuth endpoints) to the broker's public
    /// listener, and the filter reaches the broker's internal one (as in `tests/src/brokered.rs`).
    Brokered {
        doc: String,
        wasm: PathBuf,
        broker_port: u16,
        internal_port: u16,
    },
    /// A cost-ladder build (`bench/ladder`), its plugin configuration naming the rung.
    Ladder {
        rung: String,
        wasm: PathBuf,
    },
    /// `jwt_authn` (issuer, audience, remote JWKS, cache) then `rbac` requiring [`REQUIRED_SCOPE`];
    /// with `per_tool`, `envoy.filters.http.mcp` first, and RBAC also matching the called tool
    /// (`params.name` in the mcp filter's metadata): the native per-tool stack.
    JwtAuthn {
        issuer: String,
        audience: String,
        per_tool: bool,
    },
}

/// What the bench document rules beyond the base scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// The tool the bench calls gets its own scope, so the filter reads the body.
    pub per_tool: bool,
    /// The upstream listing's `admin_` tools need `admin.read` (the bench tokens lack it), and
    /// listings hide what a token cannot call.
    pub listing: bool,
    /// `body_mode: mcp_metadata`: the decision reads `envoy.filters.http.mcp`'s metadata.
    pub metadata: bool,
}

/// The scopegate document: one gateway, one server governing the upstream cluster.
pub fn scopegate_doc(public_url: &str, issuer: &str, rules: Rules, cache_entries: usize) -> Value {
    let mut server = json!({
        "name": "bench", "cluster": UPSTREAM_CLUSTER, "path": super::request::PATH,
        "scopes": ["tickets.read", "accounts.read"],
        "base_scopes": [REQUIRED_SCOPE],
    });
    if rules.per_tool {
        server["tools"] = json!({ super::request::TOOL: [REQUIRED_SCOPE] });
    }
    if rules.listing {
        for i in 0..super::upstream::LISTED_TOOLS {
            let name = super::upstream::listed_tool(i);
            if name.starts_with("admin_") {
                server["tools"][name] = json!(["admin.read"]);
            }
        }
        server["scopes"] = json!(["tickets.read", "accounts.read", "admin.read"]);
        server["listings"] = json!({"hide": "not_granted"});
    }
    let mut filter = json!({"token_cache_entries": cache_entries});
    if rules.metadata {
        filter["body_mode"] = json!("mcp_metadata");
    }
    json!({
        "gateways": [{
            "name": "bench",
            "public_url": public_url,
            "issuer": issuer,
            "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
            "jwks": {"cluster": ISSUER_CLUSTER, "path": "/jwks"},
            "servers": [server]
        }],
        "filter": filter
    })
}

fn http_filters(auth: &Auth, issuer_port: u16, cache_entries: usize) -> Vec<Value> {
    let router = b::router();
    match auth {
        Auth::None => vec![router],
        Auth::Scopegate {
            doc,
            wasm,
            native_mcp: true,
        } => vec![
            native_mcp_filter(),
            b::wasm_filter("scopegate", wasm, doc),
            router,
        ],
        Auth::Scopegate { doc, wasm, .. } | Auth::Brokered { doc, wasm, .. } => {
            vec![b::wasm_filter("scopegate", wasm, doc), router]
        }
        // Configured as scopegate is (same flags), so rungs and the filter compare like for like.
        Auth::Ladder { rung, wasm } => vec![b::wasm_filter("ladder", wasm, rung), router],
        Auth::JwtAuthn {
            issuer,
            audience,
            per_tool,
        } => {
            let jwt_authn = json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"issuer": {
                    "issuer": issuer,
                    "audiences": [audience],
                    "remote_jwks": {
                        "http_uri": {"uri": format!("http://127.0.0.1:{issuer_port}/jwks"),
                                     "cluster": ISSUER_CLUSTER, "timeout": "5s"},
                        "cache_duration": "3600s",
                        "async_fetch": {"fast_listener": false}
                    },
                    "payload_in_metadata": "jwt_payload",
                    "normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]},
                    // Same capacity as scopegate's token cache.
                    "jwt_cache_config": {"jwt_cache_size": cache_entries}
                }},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "issuer"}}]
            }});
            // The scope claim, as `jwt_authn` left it in metadata.
            let scope = json!({"sourced_metadata": {"metadata_matcher": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": "jwt_payload"}, {"key": "scope"}],
                "value": {"list_match": {"one_of": {"string_match": {"exact": REQUIRED_SCOPE}}}}
            }}});
            // Per tool: the call must be `tools/call` of the bench's tool, as the mcp filter
            // parsed it (the same rule as scopegate's `tools: {get_ticket: [tickets.read]}`).
            let permission = if *per_tool {
                let mcp = |path: &[&str], value: &str| {
                    let path: Vec<Value> = path.iter().map(|k| json!({"key": k})).collect();
                    json!({"sourced_metadata": {"metadata_matcher": {
                        "filter": NATIVE_MCP, "path": path,
                        "value": {"string_match": {"exact": value}}
                    }}})
                };
                json!({"and_rules": {"rules": [
                    mcp(&["method"], "tools/call"),
                    mcp(&["params", "name"], super::request::TOOL),
                ]}})
            } else {
                json!({"any": true})
            };
            let rbac = json!({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": {"scope": {
                    "permissions": [permission],
                    "principals": [scope]
                }}}
            }});
            if *per_tool {
                vec![native_mcp_filter(), jwt_authn, rbac, router]
            } else {
                vec![jwt_authn, rbac, router]
            }
        }
    }
}

const NATIVE_MCP: &str = "envoy.filters.http.mcp";

/// Envoy's native MCP filter, as `render` places it before scopegate for `mcp_metadata`.
fn native_mcp_filter() -> Value {
    json!({"name": NATIVE_MCP, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
        "reject_duplicate_keys": true,
        "max_request_body_size": 65536
    }})
}

/// The bootstrap for one case.
pub fn bootstrap(
    auth: &Auth,
    port: u16,
    admin_port: u16,
    upstream_port: u16,
    issuer_port: u16,
    cache_entries: usize,
) -> Value {
    let mut routes =
        vec![json!({"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM_CLUSTER}})];
    let mut clusters = vec![
        b::cluster(UPSTREAM_CLUSTER, upstream_port),
        b::cluster(ISSUER_CLUSTER, issuer_port),
    ];
    if let Auth::Brokered {
        broker_port,
        internal_port,
        ..
    } = auth
    {
        routes = vec![
            json!({"match": {"prefix": super::request::PATH}, "route": {"cluster": UPSTREAM_CLUSTER}}),
            json!({"match": {"prefix": "/"}, "route": {"cluster": BROKER_CLUSTER}}),
        ];
        clusters.push(b::cluster(BROKER_CLUSTER, *broker_port));
        clusters.push(b::cluster(BROKER_INTERNAL_CLUSTER, *internal_port));
    }
    // No access log: it would cost the same in every case and blur the difference.
    let hcm = b::Hcm {
        stat_prefix: STAT_PREFIX,
        routes,
        http_filters: http_filters(auth, issuer_port, cache_entries),
        access_log: None,
    };
    b::bootstrap(admin_port, b::listener("bench", port, hcm), clusters)
}

/// Starts Envoy with `boot` on `port` (the listener port is fixed for the whole run: the
/// tokens' audience names it), one worker; waits until it is live.
pub fn start(name: &str, boot: &Value, port: u16) -> Result<Envoy, String> {
    start_under(name, boot, port, &[], Duration::from_secs(30))
}

/// [`start`], with Envoy run under `wrapper` (e.g. valgrind: `bench-instructions`), which may
/// need longer than 30 s to go live.
pub fn start_under(
    name: &str,
    boot: &Value,
    port: u16,
    wrapper: &[String],
    live_within: Duration,
) -> Result<Envoy, String> {
    let how = Launch {
        concurrency: 1,
        quiet: true,
        wrapper: wrapper.to_vec(),
        ready_within: live_within,
        // The driver's release build aborts on panic, which skips the harness's exit hook: have
        // the kernel stop Envoy when the driver goes away, whatever way it goes.
        die_with_starter: true,
    };
    launch(&log_dir(&format!("bench/{name}")), boot, port, &how)
        .map_err(|log| format!("Envoy `{name}` did not start: {log}"))
}

/// A free port for the admin listener.
pub fn admin_port() -> u16 {
    free_port()
}
