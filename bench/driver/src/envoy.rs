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
    /// The scopegate filter (this `.wasm`) with this document.
    Scopegate {
        doc: String,
        wasm: PathBuf,
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
    /// `jwt_authn` (issuer, audience, remote JWKS, cache) then `rbac` requiring [`REQUIRED_SCOPE`].
    JwtAuthn {
        issuer: String,
        audience: String,
    },
}

/// The scopegate document: one gateway, one server governing the upstream cluster. With
/// `per_tool`, the tool the bench calls gets its own scope, so the filter reads the body.
pub fn scopegate_doc(
    public_url: &str,
    issuer: &str,
    per_tool: bool,
    cache_entries: usize,
) -> Value {
    let mut server = json!({
        "name": "bench", "cluster": UPSTREAM_CLUSTER, "path": super::request::PATH,
        "scopes": ["tickets.read", "accounts.read"],
        "base_scopes": [REQUIRED_SCOPE],
    });
    if per_tool {
        server["tools"] = json!({ super::request::TOOL: [REQUIRED_SCOPE] });
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
        "filter": {"token_cache_entries": cache_entries}
    })
}

fn http_filters(auth: &Auth, issuer_port: u16, cache_entries: usize) -> Vec<Value> {
    let router = b::router();
    match auth {
        Auth::None => vec![router],
        Auth::Scopegate { doc, wasm } | Auth::Brokered { doc, wasm, .. } => {
            vec![b::wasm_filter("scopegate", wasm, doc), router]
        }
        // Configured as scopegate is (same flags), so rungs and the filter compare like for like.
        Auth::Ladder { rung, wasm } => vec![b::wasm_filter("ladder", wasm, rung), router],
        Auth::JwtAuthn { issuer, audience } => vec![
            json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
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
            }}),
            json!({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": {"scope": {
                    "permissions": [{"any": true}],
                    "principals": [{"sourced_metadata": {"metadata_matcher": {
                        "filter": "envoy.filters.http.jwt_authn",
                        "path": [{"key": "jwt_payload"}, {"key": "scope"}],
                        "value": {"list_match": {"one_of": {"string_match": {"exact": REQUIRED_SCOPE}}}}
                    }}}]
                }}}
            }}),
            router,
        ],
    }
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
