//! Every manifest `render istio` and `render envoy-gateway` prints, for each body mode, checked
//! against the published schemas (tests/schemas/check-manifests.mjs: Kubernetes' kinds, Istio's
//! CRDs and the Gateway API from the npm `kubernetes-models` family; Envoy Gateway's own kinds by
//! the fields its API reference requires), and a wrong manifest refused by the same checker.

use scopegate_tests::procs::log_dir;
use scopegate_tests::render::render;
use scopegate_tests::repo_root;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = "manifest_schemas";
const UPSTREAMS: [&str; 4] = [
    "--upstream",
    "support_assistant=support-assistant.mcp.svc.cluster.local:8080",
    "--upstream",
    "ops_console=ops-console.mcp.svc.cluster.local:8080",
];

/// The checker's verdict on `files`.
fn check(files: &[PathBuf]) -> (bool, Value) {
    let script = repo_root().join("tests/schemas/check-manifests.mjs");
    assert!(
        repo_root()
            .join("tests/schemas/node_modules/kubernetes-models")
            .exists(),
        "the schemas are missing: run `make schemas` (npm ci in tests/schemas)"
    );
    let out = Command::new("node")
        .arg(&script)
        .args(files)
        .output()
        .expect("run node");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checker output ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

/// envoy/gateway.yaml with `filter.body_mode` set and a budget counted by the rate limit service
/// (so its workload, Redis and configuration are rendered too), as a JSON file.
fn document(mode: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("envoy/gateway.yaml")).unwrap();
    let mut doc: Value = serde_norway::from_str(&text).unwrap();
    doc["filter"]["body_mode"] = json!(mode);
    doc["filter"]["rate_limit"] = json!({"cluster": "scopegate_ratelimit"});
    doc["gateways"][0]["servers"][0]["budgets"] =
        json!([{"requests": 100, "per_seconds": 60, "per": "client_id"}]);
    let path = dir.join(format!("gateway-{mode}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

fn rendered(target: &str, doc: &Path, dir: &Path, mode: &str) -> PathBuf {
    let doc = doc.to_str().unwrap();
    let mut args = vec![target, doc, "--namespace", "mcp"];
    args.extend_from_slice(&UPSTREAMS);
    let path = dir.join(format!("{target}-{mode}.yaml"));
    std::fs::write(&path, render(&args)).unwrap();
    path
}

#[test]
fn every_rendered_manifest_passes_the_published_schemas_in_every_body_mode() {
    let dir = log_dir(DIR);
    for mode in ["hold_body", "hold_headers", "mcp_metadata"] {
        let doc = document(mode, &dir);
        let files = [
            rendered("istio", &doc, &dir, mode),
            rendered("envoy-gateway", &doc, &dir, mode),
        ];
        let (ok, v) = check(&files);
        let docs = v["documents"].as_array().unwrap();
        let failed: Vec<&Value> = docs
            .iter()
            .filter(|d| !d["errors"].as_array().unwrap().is_empty())
            .collect();
        assert!(ok && failed.is_empty(), "{mode}: {failed:#?}");
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        // Both outputs carry the filter and the broker's workload; each document had a schema.
        for kind in [
            "Deployment",
            "Service",
            "ConfigMap",
            "HTTPRoute",
            "EnvoyExtensionPolicy",
        ] {
            assert!(kinds.contains(&kind), "{mode}: no {kind} in {kinds:?}");
        }
        assert!(
            kinds.contains(&"WasmPlugin") || kinds.contains(&"EnvoyFilter"),
            "{mode}: no Istio filter in {kinds:?}"
        );
        assert!(docs.iter().all(|d| d["schema"].is_string()), "{mode}: {v}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.contains("image: envoyproxy/ratelimit:") && text.contains("image: redis:"),
                "{mode}: the rate limit service and its Redis were checked too"
            );
        }
    }
}

#[test]
fn the_checker_refuses_a_wrong_manifest_and_names_the_field() {
    // Its own directory: the other test writes the same documents at the same time.
    let dir = log_dir(DIR).join("wrong");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = document("hold_body", &dir);
    let good = std::fs::read_to_string(rendered("istio", &doc, &dir, "wrong")).unwrap();
    let eg = std::fs::read_to_string(rendered("envoy-gateway", &doc, &dir, "wrong")).unwrap();
    for (what, text, needle, field) in [
        (
            "an Istio enum",
            good.replacen("phase: AUTHN", "phase: AUTHENTICATE", 1),
            "phase: AUTHN",
            "spec/phase",
        ),
        (
            "a Kubernetes type",
            good.replacen("replicas: 1", "replicas: one", 1),
            "replicas: 1",
            "spec/replicas",
        ),
        (
            "an Envoy Gateway required field",
            eg.replacen("type: JSONPatch", "type: Merge", 1),
            "type: JSONPatch",
            "spec.type",
        ),
    ] {
        assert!(
            good.contains(needle) || eg.contains(needle),
            "the rendered manifest no longer has `{needle}`: pick another mistake"
        );
        let path = dir.join("wrong.yaml");
        std::fs::write(&path, text).unwrap();
        let (ok, v) = check(&[path]);
        assert!(!ok, "{what}: accepted");
        let errors = v["documents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["errors"].as_array().unwrap().clone())
            .map(|e| e.as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert!(
            errors.iter().any(|e| e.contains(field)),
            "{what}: {errors:?}"
        );
    }
    // A kind nobody publishes a schema for is an error, not a pass.
    let path = dir.join("unknown.yaml");
    std::fs::write(
        &path,
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: x}\n",
    )
    .unwrap();
    let (ok, v) = check(&[path]);
    assert!(!ok, "{v}");
    assert!(
        v.to_string()
            .contains("no schema for example.com/v1 Gadget"),
        "{v}"
    );
}
