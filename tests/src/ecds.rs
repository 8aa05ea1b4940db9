//! Envoy receiving scopegate the way a mesh delivers it: an ECDS extension config, in the shape
//! istiod generates for a `WasmPlugin`, served from a watched file and replaced live.
//!
//! What istiod does (istio/istio `pilot/pkg/model/extensions.go` and the wasm listener code,
//! checked 2026): the HTTP filter entry names the plugin `<namespace>.<name>` and points at
//! ECDS (`config_discovery`, type URLs Wasm and RBAC: istio-agent swaps in a deny-all RBAC when
//! a `FAIL_CLOSE` module cannot be fetched); the resource is a `TypedExtensionConfig` of that
//! name holding a Wasm `PluginConfig` with `root_id` = `pluginName`, the `pluginConfig` object
//! as JSON text in a `StringValue`, a VM config with runtime `envoy.wasm.runtime.v8`, the code
//! as a local file (istio-agent downloads remote modules and rewrites the source), the
//! environment variable `ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION`, no `vm_id`, and
//! `failure_policy` from `failStrategy` (`FAIL_CLOSE` -> `FAIL_CLOSED`, `FAIL_OPEN` ->
//! `FAIL_OPEN`, `FAIL_RELOAD` -> `FAIL_RELOAD`; the deprecated `fail_open` bool before 1.25).
//! It never sets `allow_on_headers_stop_iteration`. Here the config source is a watched file
//! instead of ADS, which is the only difference Envoy sees.

use crate::bootstrap::{self as b, WASM_TYPE};
use crate::envoy::{access_log_format, launch, wait_keys_loaded, Envoy, Launch, WASM};
use crate::issuer::Issuer;
use crate::procs::{log_dir, wait_for};
use crate::stack::{gateway_doc, start_echo, McpServer, OPS, SUPPORT};
use crate::{built, free_port};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
pub const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// The ECDS resource name, as istiod spells a `WasmPlugin` `scopegate` in namespace `mcp`.
pub const PLUGIN: &str = "mcp.scopegate";

/// `WasmPlugin.spec.failStrategy`.
#[derive(Clone, Copy, Debug)]
pub enum FailStrategy {
    FailClose,
    FailOpen,
    FailReload,
}

impl FailStrategy {
    /// The `PluginConfig.failure_policy` istiod writes for it (Istio 1.25 and later).
    pub fn failure_policy(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// How the plugin is delivered and what sits around it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Istio's `WasmPlugin` cannot set it; only an `EnvoyFilter`/ECDS patch can.
    pub allow_on_headers_stop_iteration: bool,
    /// Envoy's native `envoy.filters.http.mcp` before scopegate (for `body_mode: mcp_metadata`).
    pub native_mcp: bool,
    pub fail_strategy: FailStrategy,
}

impl Default for Delivery {
    /// What a `WasmPlugin` gets: no flag, no native filter, `FAIL_CLOSE` (Istio's default).
    fn default() -> Self {
        Delivery {
            allow_on_headers_stop_iteration: false,
            native_mcp: false,
            fail_strategy: FailStrategy::FailClose,
        }
    }
}

/// The ECDS resource istiod would send for the plugin, with `document` as its `pluginConfig`.
pub fn extension_config(document: &str, delivery: &Delivery, version: u64) -> Value {
    let wasm = built(WASM, "make wasm");
    let mut config = json!({
        "name": PLUGIN,
        "root_id": "scopegate",
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": wasm.display().to_string()}},
            "environment_variables": {"key_values": {
                "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": version.to_string()
            }}
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": document
        },
        "failure_policy": delivery.fail_strategy.failure_policy()
    });
    if delivery.allow_on_headers_stop_iteration {
        // What an EnvoyFilter patch adds; a WasmPlugin has no field for it.
        config["allow_on_headers_stop_iteration"] = json!(true);
    }
    json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": PLUGIN,
        "typed_config": {"@type": WASM_TYPE, "config": config}
    })
}

/// Writes the resource the way a careful control plane replaces a file: a temporary file
/// beside the watched directory, then one rename into it (Envoy never reads half a file).
fn write_resource(ecds_file: &Path, document: &str, delivery: &Delivery, version: u64) {
    let response = json!({
        "version_info": version.to_string(),
        "resources": [extension_config(document, delivery, version)]
    });
    let parent = ecds_file
        .parent()
        .and_then(Path::parent)
        .expect("the watched directory has a parent");
    let tmp = parent.join(format!("scopegate.json.{version}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_string_pretty(&response).expect("ECDS JSON"),
    )
    .expect("write the ECDS resource");
    std::fs::rename(&tmp, ecds_file).expect("rename the ECDS resource into place");
}

/// The native MCP filter as placed before scopegate: it holds the headers while it parses a
/// POST, rejects duplicate keys (so it and the MCP server cannot read different methods), and
/// writes what it parsed to dynamic metadata.
pub fn native_mcp_filter() -> Value {
    json!({
        "name": "envoy.filters.http.mcp",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
            "reject_duplicate_keys": true,
            "max_request_body_size": 65536
        }
    })
}

/// An upstream and the route prefix that reaches it.
pub struct Upstream {
    pub cluster: String,
    pub port: u16,
    pub prefix: String,
}

fn bootstrap(
    delivery: &Delivery,
    upstreams: &[Upstream],
    ecds_file: &Path,
    watched: &Path,
    port: u16,
    admin_port: u16,
    access_log: &Path,
) -> Value {
    let clusters = upstreams
        .iter()
        .map(|u| b::cluster(&u.cluster, u.port))
        .collect();
    let routes = upstreams
        .iter()
        .filter(|u| !u.prefix.is_empty())
        .map(|u| b::route(&u.prefix, &u.cluster))
        .collect();
    let mut filters = Vec::new();
    if delivery.native_mcp {
        filters.push(native_mcp_filter());
    }
    filters.push(json!({
        "name": PLUGIN,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": ecds_file.display().to_string(),
                    "watched_directory": {"path": watched.display().to_string()}
                },
                "resource_api_version": "V3"
            },
            "type_urls": [WASM_TYPE, RBAC_TYPE]
        }
    }));
    filters.push(b::router());
    let mut log_format = access_log_format();
    log_format["mcp_metadata"] = json!("%DYNAMIC_METADATA(envoy.filters.http.mcp)%");
    let hcm = b::Hcm {
        stat_prefix: "mcp",
        routes,
        http_filters: filters,
        access_log: Some((access_log, log_format)),
    };
    let mut boot = b::bootstrap(admin_port, b::listener("mcp", port, hcm), clusters);
    boot["node"] = json!({"id": "sidecar~127.0.0.1~scopegate-test.mcp~mcp.svc.cluster.local", "cluster": "scopegate-test.mcp"});
    boot
}

/// Envoy whose scopegate filter comes from an ECDS file that tests can replace.
pub struct MeshEnvoy {
    pub envoy: Envoy,
    pub delivery: Delivery,
    /// The file Envoy watches (through its directory).
    pub ecds_file: PathBuf,
    version: u64,
}

impl MeshEnvoy {
    /// Starts Envoy with `document` delivered through ECDS; waits until it serves.
    pub fn start(
        name: &str,
        document: &str,
        delivery: Delivery,
        upstreams: &[Upstream],
        port: u16,
        concurrency: u32,
    ) -> MeshEnvoy {
        let dir = log_dir(name);
        let watched = dir.join("ecds");
        let _ = std::fs::remove_dir_all(&watched);
        std::fs::create_dir_all(&watched).expect("ECDS directory");
        let ecds_file = watched.join("scopegate.json");
        let admin_port = free_port();
        let access_log = dir.join("access.log");
        let _ = std::fs::remove_file(&access_log);
        write_resource(&ecds_file, document, &delivery, 1);
        let boot = bootstrap(
            &delivery,
            upstreams,
            &ecds_file,
            &watched,
            port,
            admin_port,
            &access_log,
        );
        let how = Launch {
            ready_within: Duration::from_secs(60),
            ..Launch::workers(concurrency)
        };
        let envoy = launch(&dir, &boot, port, &how)
            .unwrap_or_else(|log| panic!("Envoy `{name}` did not start: {log}"));
        MeshEnvoy {
            envoy,
            delivery,
            ecds_file,
            version: 1,
        }
    }
    /// The counter `extension_config_discovery.http_filter.<plugin>.<name>` (0 when absent).
    pub fn discovery_stat(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!(
                "extension_config_discovery.http_filter.{PLUGIN}.{name}"
            ))
            .unwrap_or(0)
    }

    /// The `version_info` of the scopegate extension config Envoy runs (its config dump).
    pub fn applied_version(&self) -> Option<String> {
        let dump: Value = reqwest::blocking::get(format!(
            "http://127.0.0.1:{}/config_dump?resource=ecds_filters",
            self.envoy.admin_port
        ))
        .ok()?
        .json()
        .ok()?;
        dump["configs"]
            .as_array()?
            .iter()
            .find(|c| c["ecds_filter"]["name"] == PLUGIN)
            .and_then(|c| c["version_info"].as_str())
            .map(str::to_string)
    }

    /// Replaces the ECDS resource with `document` and waits until Envoy either runs it on every
    /// worker or rejected it (`config_fail` +1); returns whether it was applied.
    ///
    /// Envoy's config dump names the new version as soon as the main thread accepts it, before
    /// the workers have it; `config_reload` counts only once every worker runs it. So "applied"
    /// needs both, or requests sent right after could still meet the old document.
    pub fn roll_out(&mut self, document: &str) -> bool {
        let fails = self.discovery_stat("config_fail");
        let reloads = self.discovery_stat("config_reload");
        self.version += 1;
        write_resource(&self.ecds_file, document, &self.delivery, self.version);
        let version = self.version.to_string();
        wait_for(
            "Envoy to apply or reject the new extension config",
            Duration::from_secs(60),
            || {
                if self.discovery_stat("config_fail") > fails {
                    Some(false)
                } else if self.applied_version().as_deref() == Some(version.as_str())
                    && self.discovery_stat("config_reload") > reloads
                {
                    Some(true)
                } else {
                    None
                }
            },
        )
    }

    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }
}

/// The two-server example behind an ECDS-delivered scopegate, in validate mode.
pub struct MeshStack {
    pub issuer: Issuer,
    pub support: McpServer,
    pub ops: McpServer,
    pub echo_port: u16,
    pub envoy: MeshEnvoy,
    pub public_url: String,
}

impl MeshStack {
    /// Starts the stack with the example document, edited by `tweak`, as the plugin config.
    pub fn start(name: &str, delivery: Delivery, tweak: impl FnOnce(&mut Value)) -> MeshStack {
        let issuer = Issuer::start();
        let support = McpServer::start("support-assistant", name);
        let ops = McpServer::start("ops-console", name);
        let echo_port = start_echo();
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let mut doc = gateway_doc(&public_url, &issuer.url);
        tweak(&mut doc);
        let upstream = |cluster: &str, port: u16, prefix: &str| Upstream {
            cluster: cluster.into(),
            port,
            prefix: prefix.into(),
        };
        let envoy = MeshEnvoy::start(
            name,
            &doc.to_string(),
            delivery,
            &[
                upstream("support_assistant", support.port, "/support-assistant/"),
                upstream("ops_console", ops.port, "/ops-console/"),
                upstream("plain_upstream", echo_port, "/plain/"),
                upstream("test_issuer", issuer.port, ""),
            ],
            port,
            1,
        );
        let stack = MeshStack {
            issuer,
            support,
            ops,
            echo_port,
            envoy,
            public_url,
        };
        wait_keys_loaded(&stack.envoy.url(SUPPORT));
        stack
    }

    pub fn resource(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// The example document for this stack (what `start` delivered before any `tweak`).
    pub fn document(&self) -> Value {
        gateway_doc(&self.public_url, &self.issuer.url)
    }

    /// Requests to `path` the MCP server received, and which of them carried a complete body.
    pub fn seen(&self, path: &str) -> Vec<Value> {
        let server = if path == OPS {
            &self.ops
        } else {
            &self.support
        };
        server.seen()
    }
}
