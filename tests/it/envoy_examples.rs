//! The shipped Envoy bootstrap (`render envoy` of envoy/validate-mode.yaml) loads the built filter
//! and its document, as `envoy --mode validate` sees it.

use scopegate_tests::envoy::{ENVOY, WASM};
use scopegate_tests::{built, repo_root};
use std::process::Command;

fn validate(config: &std::path::Path) -> (bool, String) {
    built(WASM, "make wasm");
    let out = Command::new(built(ENVOY, "make venv"))
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .output()
        .expect("run envoy --mode validate");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_example_bootstrap_validates_with_the_filter_configured() {
    let (ok, log) = validate(&repo_root().join("envoy/envoy.yaml"));
    assert!(ok, "{log}");
    assert!(
        log.contains("configured 1 gateway(s), 2 server(s)"),
        "the filter did not configure:\n{log}"
    );
}

#[test]
fn validate_mode_catches_a_bad_document_before_deploying_it() {
    let text = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let mut boot: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let filters = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    let wasm = filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("the scopegate filter");
    let value = &mut wasm["typed_config"]["config"]["configuration"]["value"];
    let mut doc: serde_json::Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    assert_eq!(
        doc["gateways"][0]["servers"][1]["name"], "ops-console",
        "the example changed shape; update this test"
    );
    doc["gateways"][0]["servers"][1]["scopes"] =
        serde_json::json!(["tickets.write", "billing.write"]);
    *value = serde_json::Value::String(doc.to_string());
    let path = scopegate_tests::procs::log_dir("envoy_examples").join("bad.json");
    std::fs::write(&path, boot.to_string()).unwrap();
    let (ok, log) = validate(&path);
    assert!(
        !ok,
        "a document with a scope outside the allowed set validated:\n{log}"
    );
    assert!(
        log.contains("scope `billing.write` is not in the gateway's allowed_scopes"),
        "{log}"
    );
}
