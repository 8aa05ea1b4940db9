//! Starts a real Envoy (from the repo's virtualenv) with the built scopegate `.wasm` in front of given clusters.

use crate::procs::{log_dir, Proc};
use crate::{built, free_port};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub const WASM: &str = "target/wasm32-wasip1/release/scopegate_filter.wasm";
pub const ENVOY: &str = ".venv/bin/envoy";

/// What to put in front of what.
pub struct Spec {
    pub name: String,
    /// The scopegate document, as the filter's plugin configuration.
    pub filter_config: String,
    /// Upstream clusters: name and loopback port.
    pub clusters: Vec<(String, u16)>,
    /// Route prefixes to clusters, first match wins.
    pub routes: Vec<(String, String)>,
    pub concurrency: u32,
    /// Listener port; picked when `None`. Set it when the document's `public_url` must name it.
    pub port: Option<u16>,
}

pub struct Envoy {
    pub proc: Proc,
    pub port: u16,
    pub admin_port: u16,
    pub access_log: PathBuf,
}

/// The access-log fields every test and the demo read: scopegate's filter state, one JSON object a line.
pub fn access_log_format() -> Value {
    let mut f = json!({
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(:PATH)%",
        "status": "%RESPONSE_CODE%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
    });
    for field in ["server", "decision", "reason", "record", "hidden"] {
        f[field] = json!(format!("%FILTER_STATE(wasm.scopegate_{field}:PLAIN)%"));
    }
    f
}

fn bootstrap(spec: &Spec, port: u16, admin_port: u16, access_log: &str) -> Value {
    let wasm = built(WASM, "make wasm");
    let clusters: Vec<Value> = spec
        .clusters
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                ]}]}
            })
        })
        .collect();
    let routes: Vec<Value> = spec
        .routes
        .iter()
        .map(|(prefix, cluster)| {
            json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "0s", "idle_timeout": "60s"}})
        })
        .collect();
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "mcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "mcp",
                        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": access_log,
                            "log_format": {"json_format": access_log_format()}
                        }}],
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": [
                            {"name": "envoy.filters.http.wasm", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                "config": {
                                    "name": "scopegate", "root_id": "scopegate",
                                    "vm_config": {"vm_id": "scopegate", "runtime": "envoy.wasm.runtime.v8",
                                        "code": {"local": {"filename": wasm.display().to_string()}}},
                                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                        "value": spec.filter_config},
                                    "allow_on_headers_stop_iteration": true,
                                    "failure_policy": "FAIL_RELOAD"
                                }
                            }},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

impl Envoy {
    /// Starts Envoy and waits until it serves; panics with Envoy's log if it does not.
    pub fn start(spec: &Spec) -> Envoy {
        match Envoy::try_start(spec) {
            Ok(e) => e,
            Err(log) => panic!("Envoy `{}` did not start:\n{log}", spec.name),
        }
    }

    /// As [`Envoy::start`], with `edit` applied to the bootstrap first (e.g. a cluster on a
    /// Unix socket).
    pub fn start_edited(spec: &Spec, edit: &dyn Fn(&mut Value)) -> Envoy {
        match Envoy::try_start_edited(spec, edit) {
            Ok(e) => e,
            Err(log) => panic!("Envoy `{}` did not start:\n{log}", spec.name),
        }
    }

    /// Starts Envoy; `Err(log)` if it exits (e.g. refuses the configuration).
    pub fn try_start(spec: &Spec) -> Result<Envoy, String> {
        Envoy::try_start_edited(spec, &|_| {})
    }

    fn try_start_edited(spec: &Spec, edit: &dyn Fn(&mut Value)) -> Result<Envoy, String> {
        let envoy = built(ENVOY, "make venv");
        let dir = log_dir(&spec.name);
        let port = spec.port.unwrap_or_else(free_port);
        let admin_port = free_port();
        let access_log = dir.join("access.log");
        let _ = std::fs::remove_file(&access_log);
        let config = dir.join("envoy.json");
        let mut boot = bootstrap(spec, port, admin_port, &access_log.display().to_string());
        edit(&mut boot);
        std::fs::write(&config, serde_json::to_string_pretty(&boot).unwrap()).unwrap();
        let mut cmd = Command::new(envoy);
        cmd.arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(spec.concurrency.to_string())
            .arg("--disable-hot-restart")
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .args(["--file-flush-interval-msec", "100"]);
        let mut proc = Proc::start("envoy", cmd, &dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if proc.try_exit().is_some() {
                return Err(proc.stderr());
            }
            let ready = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/ready"))
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.text().ok())
                .is_some_and(|t| t.trim() == "LIVE");
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in 30 s\n{}", proc.stderr()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Envoy {
            proc,
            port,
            admin_port,
            access_log,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A counter or gauge from `/stats`, by exact name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let text = reqwest::blocking::get(format!(
            "http://127.0.0.1:{}/stats?filter=^{}$",
            self.admin_port,
            regex_escape(name)
        ))
        .ok()?
        .text()
        .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The access log so far, one JSON object a line (waits briefly for the line of the last request).
    /// The access log's lines, each with its `record` (the filter's JSON audit record) spread
    /// into the line, so tests read `line["tool"]` whichever key carried it.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .map(spread_record)
            .collect()
    }

    /// Waits for an access-log line matching `pred` (Envoy flushes its access log every second or so).
    pub fn wait_access_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        crate::procs::wait_for("an access-log line", Duration::from_secs(15), || {
            self.access_log().into_iter().find(|v| pred(v))
        })
    }

    pub fn log(&self) -> String {
        self.proc.stderr()
    }
}

/// Points cluster `name` at a Unix domain socket (Envoy's `pipe` address) instead of a port.
pub fn cluster_on_socket(boot: &mut Value, name: &str, socket: &str) {
    if let Some(clusters) = boot["static_resources"]["clusters"].as_array_mut() {
        for c in clusters.iter_mut().filter(|c| c["name"] == name) {
            c["load_assignment"]["endpoints"] = json!([{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": socket}}}}
            ]}]);
        }
    }
}

/// Copies the fields of a line's `record` (a JSON object as text) into the line itself.
pub fn spread_record(mut line: Value) -> Value {
    let record = line["record"]
        .as_str()
        .and_then(|r| serde_json::from_str::<Value>(r).ok());
    if let (Some(Value::Object(fields)), Some(obj)) = (record, line.as_object_mut()) {
        for (k, v) in fields {
            obj.entry(k).or_insert(v);
        }
    }
    line
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
