//! The built `.wasm` as Envoy loads it: only the callbacks listed in filter/exports.txt exported,
//! and a document in anything but JSON refused by name; the broker's own sections left to the broker.

use scopegate_tests::envoy::{Envoy, Spec, WASM};
use scopegate_tests::procs::log_dir;
use scopegate_tests::render::broker;
use scopegate_tests::stack::gateway_doc;
use scopegate_tests::{built, repo_root};
use scopegate_wasm_exports::{exports, parse_list};

#[test]
fn the_module_exports_exactly_the_listed_callbacks() {
    let module = std::fs::read(built(WASM, "make wasm")).unwrap();
    let listed =
        parse_list(&std::fs::read_to_string(repo_root().join("filter/exports.txt")).unwrap())
            .unwrap();
    let mut have: Vec<String> = exports(&module)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    have.sort();
    let mut want = listed.clone();
    want.sort();
    assert_eq!(
        have, want,
        "{WASM} does not export exactly filter/exports.txt: run `make wasm`"
    );
    // The phases scopegate uses (the integration tests exercise each of them).
    for phase in [
        "proxy_on_context_create",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_http_call_response",
        // The rate limit service's answer, or its failure: without them a budgeted request
        // waits for an answer Envoy cannot deliver.
        "proxy_on_grpc_receive",
        "proxy_on_grpc_close",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_delete",
    ] {
        assert!(listed.iter().any(|l| l == phase), "{phase} is not kept");
    }
    // The callbacks Envoy would otherwise enter on every request for nothing.
    for dropped in [
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_vm_start",
        "proxy_on_response_trailers",
    ] {
        assert!(!have.iter().any(|h| h == dropped), "{dropped} is exported");
    }
}

#[test]
fn envoy_refuses_a_yaml_document_and_says_json() {
    let doc = gateway_doc("http://127.0.0.1:10000", "http://127.0.0.1:9");
    let yaml = serde_norway::to_string(&doc).unwrap();
    let spec = Spec {
        name: "refuse_yaml".into(),
        filter_config: yaml,
        clusters: vec![("test_issuer".into(), 9)],
        routes: vec![],
        concurrency: 1,
        port: None,
    };
    let log = Envoy::try_start(&spec)
        .err()
        .expect("Envoy started with a YAML document");
    assert!(log.contains("JSON only"), "log does not say JSON:\n{log}");
    assert!(log.contains("configuration refused"), "{log}");
}

/// The filter skips the sections only the broker reads (`broker`, each gateway's `clients`) to
/// keep their readers out of the `.wasm`; a mistake there is refused by `scopegate-broker check`
/// (and the broker at start), named, while Envoy loads the same document.
#[test]
fn a_mistake_in_the_broker_sections_is_refused_by_check_not_by_envoy() {
    let mut doc = gateway_doc("http://127.0.0.1:10000", "http://127.0.0.1:9");
    doc["broker"] = serde_json::json!({"listen": "nowhere"});
    doc["gateways"][0]["clients"]["registration"] = serde_json::json!({"per_minute": 0});
    let spec = Spec {
        name: "broker_sections_skipped".into(),
        filter_config: doc.to_string(),
        clusters: vec![("test_issuer".into(), 9)],
        routes: vec![],
        concurrency: 1,
        port: None,
    };
    let envoy = Envoy::try_start(&spec)
        .unwrap_or_else(|log| panic!("Envoy refused the broker's sections:\n{log}"));
    drop(envoy);

    let path = log_dir("broker_sections_skipped").join("doc.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let check = broker(&["check", &path.display().to_string()]);
    let report = String::from_utf8_lossy(&check.stdout).to_string();
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("broker.listen"), "{report}");
    assert!(
        report.contains("gateways[0].clients.registration.per_minute"),
        "{report}"
    );
}
