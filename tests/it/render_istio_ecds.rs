//! What `render istio` prints, run in a real Envoy the way an Istio proxy gets it: the filter as
//! an ECDS resource (from a file here, by ADS in the mesh; the module made local as Istio's agent
//! does after fetching it), an HTTP filter entry pointing at it, and clusters named
//! `outbound|<port>||<host>` as the embedded document says. The `EnvoyFilter` form is taken as
//! rendered; the `WasmPlugin` form as istiod turns it into a Wasm filter config (name
//! `<namespace>.<name>`, `root_id` = `pluginName`, `pluginConfig` as JSON text, `FAIL_CLOSE` as
//! `FAIL_CLOSED`, no VM id), with the native MCP filter the `mcp_metadata` `EnvoyFilter` inserts
//! placed before it.

use scopegate_tests::bootstrap::{self as b, WASM_TYPE};
use scopegate_tests::envoy::{access_log_format, launch, Envoy, Launch, WASM};
use scopegate_tests::issuer::Issuer;
use scopegate_tests::mcp::Client;
use scopegate_tests::procs::{log_dir, wait_for};
use scopegate_tests::render::render;
use scopegate_tests::stack::{gateway_doc, McpServer, OPS, SUPPORT};
use scopegate_tests::{built, free_port};
use serde_json::{json, Value};
use std::time::Duration;
const SUPPORT_CLUSTER: &str = "outbound|8080||support-assistant.mcp.svc.cluster.local";
const OPS_CLUSTER: &str = "outbound|8080||ops-console.mcp.svc.cluster.local";
const IDP_CLUSTER: &str = "outbound|8080||idp.mcp.svc.cluster.local";

/// The upstreams, a document for them, and `render istio` of it, parsed.
struct Fixture {
    issuer: Issuer,
    support: McpServer,
    ops: McpServer,
    port: u16,
    public_url: String,
    objects: Vec<Value>,
}

fn fixture(name: &str, tweak: impl FnOnce(&mut Value)) -> Fixture {
    let dir = log_dir(name);
    let issuer = Issuer::start();
    let support = McpServer::start("support-assistant", name);
    let ops = McpServer::start("ops-console", name);
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut doc = gateway_doc(&public_url, &issuer.url);
    tweak(&mut doc);
    let doc_path = dir.join("gateway.json");
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    let text = render(&[
        "istio",
        &doc_path.display().to_string(),
        "--namespace",
        "mcp",
        "--upstream",
        "support_assistant=support-assistant.mcp.svc.cluster.local:8080",
        "--upstream",
        "ops_console=ops-console.mcp.svc.cluster.local:8080",
        "--upstream",
        "test_issuer=idp.mcp.svc.cluster.local:8080",
    ]);
    let objects = text
        .split("\n---\n")
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect();
    Fixture {
        issuer,
        support,
        ops,
        port,
        public_url,
        objects,
    }
}

/// Envoy whose only scopegate filter is `http_filter` (after `before`), configured by ECDS from a
/// file holding `extension` (its module made local); waits until the filter has configured itself.
fn start_envoy(
    name: &str,
    f: &Fixture,
    mut extension: Value,
    mut http_filter: Value,
    before: Vec<Value>,
) -> Envoy {
    let dir = log_dir(name);
    let wasm = built(WASM, "make wasm");
    extension["typed_config"]["config"]["vm_config"]["code"] =
        json!({"local": {"filename": wasm.display().to_string()}});
    extension["@type"] = json!("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig");
    let ecds_dir = dir.join("ecds");
    std::fs::create_dir_all(&ecds_dir).unwrap();
    let ecds_file = ecds_dir.join("scopegate.json");
    std::fs::write(
        &ecds_file,
        json!({"version_info": "1", "resources": [extension]}).to_string(),
    )
    .unwrap();
    // The mesh delivers the resource by ADS; here the same resource comes from the file.
    http_filter["config_discovery"]["config_source"] = json!({
        "path_config_source": {
            "path": ecds_file.display().to_string(),
            "watched_directory": {"path": ecds_dir.display().to_string()},
        },
        "resource_api_version": "V3",
    });
    let mut http_filters = before;
    http_filters.push(http_filter);
    http_filters.push(b::router());
    let hcm = b::Hcm {
        stat_prefix: "mcp",
        routes: vec![
            b::route(SUPPORT, SUPPORT_CLUSTER),
            b::route(OPS, OPS_CLUSTER),
        ],
        http_filters,
        access_log: Some((&dir.join("access.log"), access_log_format())),
    };
    let clusters = vec![
        b::cluster(SUPPORT_CLUSTER, f.support.port),
        b::cluster(OPS_CLUSTER, f.ops.port),
        b::cluster(IDP_CLUSTER, f.issuer.port),
    ];
    let mut boot = b::bootstrap(free_port(), b::listener("mcp", f.port, hcm), clusters);
    boot["node"] = json!({"id": name, "cluster": "scopegate-tests"});
    let envoy = launch(&dir, &boot, f.port, &Launch::workers(1))
        .unwrap_or_else(|log| panic!("Envoy `{name}` did not start: {log}"));
    // The filter configures itself from the ECDS resource before the listener goes live.
    wait_for(
        "the ECDS resource to configure scopegate",
        Duration::from_secs(30),
        || {
            envoy
                .log()
                .contains("configured 1 gateway(s), 2 server(s)")
                .then_some(())
        },
    );
    envoy
}

/// PRM and the 401 come from the embedded document; then a token for ops-console works once the
/// keys are fetched through the Istio-named cluster. Returns an initialized session.
fn first_requests(envoy: &Envoy, f: &Fixture, scope: &str) -> Client {
    let r = Client::get(
        &envoy.url(&format!("/.well-known/oauth-protected-resource{OPS}")),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["resource"],
        json!(format!("{}{OPS}", f.public_url))
    );
    let r = Client::new(&envoy.url(OPS), None).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    let token = f.issuer.token(&format!("{}{OPS}", f.public_url), scope);
    wait_for("the filter to load keys", Duration::from_secs(20), || {
        let mut c = Client::new(&envoy.url(OPS), Some(&token));
        (c.initialize().status == 200).then_some(c)
    })
}

#[test]
fn the_rendered_envoy_filter_configures_scopegate_by_ecds_and_enforces_per_tool_scopes() {
    let name = "render_istio_ecds";
    let f = fixture(name, |doc| {
        doc["filter"]["body_mode"] = json!("hold_headers");
    });
    let ef = f
        .objects
        .iter()
        .find(|o| o["kind"] == "EnvoyFilter")
        .expect("hold_headers with per-tool scopes: the EnvoyFilter form");
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    let patch = |apply: &str| {
        patches.iter().find(|p| p["applyTo"] == apply).unwrap()["patch"]["value"].clone()
    };
    let (extension, http_filter) = (patch("EXTENSION_CONFIG"), patch("HTTP_FILTER"));
    assert_eq!(
        http_filter["config_discovery"]["config_source"]["ads"],
        json!({})
    );
    assert_eq!(
        http_filter["config_discovery"]["type_urls"],
        json!([WASM_TYPE])
    );
    let envoy = start_envoy(name, &f, extension, http_filter, vec![]);
    // Envoy counts the load once every worker runs it, which can be just after it reports ready.
    let reloads = wait_for(
        "the ECDS load to reach every worker",
        Duration::from_secs(30),
        || {
            envoy
                .stat("extension_config_discovery.http_filter.scopegate.config_reload")
                .filter(|n| *n > 0)
        },
    );
    assert_eq!(reloads, 1, "the filter came by ECDS, once");
    let mut c = first_requests(&envoy, &f, "admin.read");
    // The per-tool rule, with the body flag render set: a refused call never reaches the server.
    f.ops.clear_seen();
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(f.ops.seen().is_empty(), "a refused call reached the server");
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(f.ops.seen().len(), 1);
    let line = envoy.wait_access_log(|l| l["tool"] == "update_ticket");
    assert_eq!(line["reason"], "insufficient_scope", "{line}");
}

/// The `WasmPlugin` as istiod turns it into an ECDS resource and an HTTP filter entry pointing
/// at it, plus the native MCP filter when the render inserts one before it (`mcp_metadata`).
fn start_wasmplugin(name: &str, f: &Fixture) -> Envoy {
    let wp = f
        .objects
        .iter()
        .find(|o| o["kind"] == "WasmPlugin")
        .expect("the WasmPlugin form");
    let spec = &wp["spec"];
    let resource = format!(
        "{}.{}",
        wp["metadata"]["namespace"].as_str().unwrap(),
        wp["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    let extension = json!({
        "name": resource,
        "typed_config": {"@type": WASM_TYPE, "config": {
            "name": resource,
            "root_id": spec["pluginName"],
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": spec["pluginConfig"].to_string(),
            },
            "vm_config": {"runtime": "envoy.wasm.runtime.v8"},
            "failure_policy": "FAIL_CLOSED",
        }},
    });
    let http_filter = json!({
        "name": resource,
        "config_discovery": {"config_source": {"ads": {}}, "type_urls": [WASM_TYPE]},
    });
    // An EnvoyFilter INSERT_BEFORE the plugin's filter, applied as istiod would.
    let mut before = Vec::new();
    let filters = f.objects.iter().filter(|o| o["kind"] == "EnvoyFilter");
    // The stats-tags BOOTSTRAP patch is no filter (tests/it/render_mesh.rs checks it).
    for ef in filters.filter(|o| o["metadata"]["name"] != "scopegate-stats") {
        for p in ef["spec"]["configPatches"].as_array().unwrap() {
            assert_eq!(p["patch"]["operation"], "INSERT_BEFORE");
            assert_eq!(
                p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                json!(resource),
                "the patch names the filter istiod generates"
            );
            before.push(p["patch"]["value"].clone());
        }
    }
    start_envoy(name, f, extension, http_filter, before)
}

#[test]
fn the_rendered_wasmplugin_holds_per_tool_refusals_in_the_default_hold_body_mode() {
    let name = "render_istio_wasmplugin";
    let f = fixture(name, |_| {});
    assert!(
        !f.objects
            .iter()
            .any(|o| o["kind"] == "EnvoyFilter" && o["metadata"]["name"] != "scopegate-stats"),
        "hold_body: no EnvoyFilter"
    );
    let envoy = start_wasmplugin(name, &f);
    let mut c = first_requests(&envoy, &f, "admin.read");
    f.ops.clear_seen();
    // Per-tool rule without the flag: the message of the refused call never reaches the server.
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let seen = f.ops.seen();
    assert!(
        messages(&seen).is_empty(),
        "a refused message reached the server: {seen:?}"
    );
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let got = messages(&f.ops.seen());
    assert_eq!(
        got.len(),
        1,
        "the allowed call reached the server once: {got:?}"
    );
    assert!(got[0].contains("admin_report"), "{got:?}");
    // A token for ops-console is refused by support-assistant: the audience is per server.
    let token = f
        .issuer
        .token(&format!("{}{OPS}", f.public_url), "admin.read");
    let r = Client::new(&envoy.url(SUPPORT), Some(&token)).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn the_rendered_wasmplugin_with_the_native_mcp_filter_enforces_mcp_metadata() {
    let name = "render_istio_mcp_metadata";
    let f = fixture(name, |doc| {
        doc["filter"]["body_mode"] = json!("mcp_metadata");
    });
    let envoy = start_wasmplugin(name, &f);
    let mut c = first_requests(&envoy, &f, "admin.read");
    f.ops.clear_seen();
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(f.ops.seen().is_empty(), "a refused call reached the server");
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(f.ops.seen().len(), 1, "the allowed call reached the server");
}

/// The JSON-RPC messages the server received: bodies that fully arrived (a request start whose
/// stream was reset keeps a `null` body).
fn messages(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter_map(|r| r["body"].as_str().map(str::to_string))
        .collect()
}
