//! The files `make up` runs: examples/two-servers/envoy.yaml carries scopegate.yaml, as JSON, as
//! the filter's configuration (filter and broker read one document), and Envoy accepts it.

use scopegate_tests::envoy::{ENVOY, WASM};
use scopegate_tests::{built, repo_root};
use serde_json::Value;
use std::process::Command;

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("valid YAML")
}

#[test]
fn the_bootstrap_embeds_the_gateway_document_the_broker_reads() {
    let dir = repo_root().join("examples/two-servers");
    let envoy = yaml(&std::fs::read_to_string(dir.join("envoy.yaml")).unwrap());
    let doc = yaml(&std::fs::read_to_string(dir.join("scopegate.yaml")).unwrap());
    let filters = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let wasm = filters
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == "envoy.filters.http.wasm"))
        .expect("the scopegate filter in the bootstrap");
    let embedded = wasm["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("configuration value");
    // The filter reads JSON only: the embedded document is JSON text.
    let embedded: Value = serde_json::from_str(embedded)
        .unwrap_or_else(|e| panic!("envoy.yaml's configuration is not JSON: {e}"));
    assert_eq!(
        embedded, doc,
        "envoy.yaml's configuration is not scopegate.yaml"
    );
}

#[test]
fn envoy_accepts_the_example_bootstrap() {
    built(WASM, "make wasm");
    // The bootstrap logs to `.run/access.log` (where `make up` keeps its state); validation
    // opens that file, so the folder must exist even on a fresh clone.
    std::fs::create_dir_all(repo_root().join(".run")).expect("create .run/");
    let out = Command::new(built(ENVOY, "make venv"))
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg("examples/two-servers/envoy.yaml")
        .output()
        .expect("run envoy --mode validate");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("configured 1 gateway(s), 2 server(s)"),
        "{log}"
    );
}
