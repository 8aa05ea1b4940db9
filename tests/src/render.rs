//! `scopegate-broker render`, run as a process, and Envoy started with the bootstrap it prints:
//! what the example, the demo and the brokered tests run (no hand-written twin).

use crate::envoy::{launch, Envoy, Launch, WASM};
use crate::procs::log_dir;
use crate::{built, free_port, repo_root};
use serde_json::Value;
use std::process::{Command, Output};

pub const BROKER_BIN: &str = "target/debug/scopegate-broker";

/// `scopegate-broker ARGS` from the repository root.
pub fn broker(args: &[&str]) -> Output {
    Command::new(built(BROKER_BIN, "make bins"))
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("run scopegate-broker")
}

/// `scopegate-broker render ARGS`: its standard output, or a panic with its standard error.
pub fn render(args: &[&str]) -> String {
    let mut all = vec!["render"];
    all.extend_from_slice(args);
    let out = broker(&all);
    assert!(
        out.status.success(),
        "scopegate-broker {} failed ({}):\n{}",
        all.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Where the rendered Envoy's upstreams listen on 127.0.0.1.
pub struct Upstreams<'a> {
    /// `(cluster, port)` for every server and JWKS cluster the document names.
    pub clusters: &'a [(&'a str, u16)],
    /// The broker's public and internal ports (broker mode).
    pub broker: Option<(u16, u16)>,
    /// The rate limit service's `HOST:PORT` (`filter.rate_limit`: `--rate-limit`).
    pub rate_limit: Option<&'a str>,
}

/// Renders the Envoy bootstrap for `doc` and starts Envoy with it on `port`; panics with
/// Envoy's log if it does not become ready.
pub fn start_envoy(name: &str, doc: &Value, up: &Upstreams, port: u16, concurrency: u32) -> Envoy {
    start_envoy_edited(name, doc, up, port, concurrency, &|_| {})
}

/// As [`start_envoy`], with `edit` applied to the rendered bootstrap first (e.g. a cluster moved
/// to a Unix socket).
pub fn start_envoy_edited(
    name: &str,
    doc: &Value,
    up: &Upstreams,
    port: u16,
    concurrency: u32,
    edit: &dyn Fn(&mut Value),
) -> Envoy {
    start_envoy_rendered_with(name, doc, up, port, concurrency, &[], edit)
}

/// As [`start_envoy_edited`], with more `render envoy` options (e.g. `--otlp-collector`).
pub fn start_envoy_rendered_with(
    name: &str,
    doc: &Value,
    up: &Upstreams,
    port: u16,
    concurrency: u32,
    options: &[&str],
    edit: &dyn Fn(&mut Value),
) -> Envoy {
    let dir = log_dir(name);
    let doc_path = dir.join("gateway.json");
    std::fs::write(&doc_path, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    let admin_port = free_port();
    let access_log = dir.join("access.log");
    let _ = std::fs::remove_file(&access_log);
    let config = dir.join("envoy.json");
    let wasm = built(WASM, "make wasm");
    let mut args: Vec<String> = vec![
        "envoy".into(),
        doc_path.display().to_string(),
        "--format".into(),
        "json".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--admin".into(),
        format!("127.0.0.1:{admin_port}"),
        "--wasm".into(),
        wasm.display().to_string(),
        "--access-log".into(),
        access_log.display().to_string(),
        "-o".into(),
        config.display().to_string(),
    ];
    for (cluster, p) in up.clusters {
        args.push("--upstream".into());
        args.push(format!("{cluster}=127.0.0.1:{p}"));
    }
    if let Some((public, internal)) = up.broker {
        args.push("--broker".into());
        args.push(format!("127.0.0.1:{public}"));
        args.push("--broker-internal".into());
        args.push(format!("127.0.0.1:{internal}"));
    }
    if let Some(address) = up.rate_limit {
        args.push("--rate-limit".into());
        args.push(address.into());
    }
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.extend_from_slice(options);
    render(&refs);
    let mut boot: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).expect("rendered JSON");
    edit(&mut boot);

    launch(&dir, &boot, port, &Launch::workers(concurrency))
        .unwrap_or_else(|log| panic!("Envoy `{name}` did not start: {log}"))
}

/// Checks that a checked-in file is exactly what the `render` command named in its first line
/// prints now (it says how to regenerate it otherwise); returns the file's text.
pub fn assert_current(rel: &str, regenerate: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(rel)).expect("the rendered file");
    let first = text.lines().next().unwrap_or_default();
    let command = first
        .strip_prefix("# Rendered by `scopegate-broker ")
        .and_then(|r| r.split_once('`'))
        .map(|(c, _)| c)
        .unwrap_or_else(|| panic!("{rel} does not say how it was rendered: {first}"));
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"render"), "{rel}: {command}");
    let now = render(&args[1..]);
    assert!(
        now == text,
        "{rel} is stale: run `{regenerate}` (render output differs)"
    );
    text
}
