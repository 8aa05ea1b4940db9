//! The shipped Envoy bootstrap loads the built filter and its document, as `envoy --mode validate` sees it.

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
    let bad = text.replace(
        r#""scopes": ["tickets.write", "admin.read"]"#,
        r#""scopes": ["tickets.write", "billing.write"]"#,
    );
    assert_ne!(bad, text, "the example changed shape; update this test");
    let path = scopegate_tests::procs::log_dir("envoy_examples").join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
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
