//! `scopegate-broker render envoy`: the checked-in example bootstrap is its output, Envoy runs
//! what it prints (validate mode end to end), the bootstrap follows the body mode (the flag only
//! for `hold_headers`, the native MCP filter first for `mcp_metadata`), per-tool refusals hold in
//! the rendered default and `mcp_metadata` bootstraps, it refuses what `check` refuses, and
//! `--otlp-collector` adds Envoy's tracer (and hands its span to the filter).

use scopegate_tests::envoy::{ENVOY, WASM};
use scopegate_tests::issuer::Issuer;
use scopegate_tests::mcp::Client;
use scopegate_tests::render::{assert_current, broker, render, start_envoy, Upstreams};
use scopegate_tests::stack::{gateway_doc, McpServer, OPS, SUPPORT};
use scopegate_tests::{built, free_port, procs::log_dir, procs::wait_for, repo_root};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("valid YAML")
}

fn wasm_filter(bootstrap: &Value) -> Value {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == "envoy.filters.http.wasm"))
        .cloned()
        .expect("the scopegate filter in the bootstrap")
}

#[test]
fn the_example_bootstrap_is_exactly_what_render_prints_now() {
    assert_current("envoy/envoy.yaml", "make example-envoy");
    let text = assert_current("examples/two-servers/envoy.yaml", "make example-envoy");
    assert!(
        text.starts_with(
            "# Rendered by `scopegate-broker render envoy examples/two-servers/scopegate.yaml "
        ),
        "the example bootstrap renders the example document"
    );
    // The filter's configuration is the broker's document, as JSON text.
    let boot = yaml(&text);
    let config = wasm_filter(&boot)["typed_config"]["config"].clone();
    let embedded = config["configuration"]["value"].as_str().unwrap();
    let as_json: Value = serde_json::from_str(embedded).expect("the configuration is JSON text");
    let doc = yaml(
        &std::fs::read_to_string(repo_root().join("examples/two-servers/scopegate.yaml")).unwrap(),
    );
    assert_eq!(as_json, doc, "embedded configuration is not scopegate.yaml");
    assert_eq!(
        config["allow_on_headers_stop_iteration"],
        Value::Null,
        "the example's per-tool scopes use hold_body (the default), which needs no flag"
    );
    assert_eq!(
        filter_names(&boot),
        [
            "envoy.filters.http.cors",
            "envoy.filters.http.wasm",
            "envoy.filters.http.router"
        ]
    );
}

fn filter_names(bootstrap: &Value) -> Vec<String> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .expect("http_filters")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `render envoy` of `doc` (JSON) with the test upstreams, parsed.
fn rendered(name: &str, doc: &Value, extra: &[&str]) -> Value {
    let path = log_dir(name).join("doc.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let p = path.display().to_string();
    let mut args = vec![
        "envoy",
        &p,
        "--format",
        "json",
        "--upstream",
        "support_assistant=127.0.0.1:1",
        "--upstream",
        "ops_console=127.0.0.1:2",
        "--upstream",
        "test_issuer=127.0.0.1:3",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&render(&args)).expect("JSON bootstrap")
}

#[test]
fn the_bootstrap_follows_the_body_mode() {
    let mut doc = gateway_doc("http://127.0.0.1:1", "http://127.0.0.1:2");
    for (mode, flag, chain) in [
        (
            "hold_body",
            Value::Null,
            &["envoy.filters.http.wasm", "envoy.filters.http.router"][..],
        ),
        (
            "hold_headers",
            json!(true),
            &["envoy.filters.http.wasm", "envoy.filters.http.router"][..],
        ),
        (
            "mcp_metadata",
            Value::Null,
            &[
                "envoy.filters.http.mcp",
                "envoy.filters.http.wasm",
                "envoy.filters.http.router",
            ][..],
        ),
    ] {
        doc["filter"]["body_mode"] = json!(mode);
        let boot = rendered(&format!("render_envoy_mode_{mode}"), &doc, &[]);
        assert_eq!(
            wasm_filter(&boot)["typed_config"]["config"]["allow_on_headers_stop_iteration"],
            flag,
            "{mode}"
        );
        assert_eq!(filter_names(&boot), chain, "{mode}");
        let forced = rendered(
            &format!("render_envoy_forced_{mode}"),
            &doc,
            &["--body-flag"],
        );
        assert_eq!(
            wasm_filter(&forced)["typed_config"]["config"]["allow_on_headers_stop_iteration"],
            json!(true),
            "{mode} --body-flag"
        );
    }
    let boot = rendered("render_envoy_native", &doc, &[]);
    let native = &boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"];
    assert_eq!(
        native["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"
    );
    assert_eq!(native["reject_duplicate_keys"], json!(true));
    assert_eq!(native["max_request_body_size"], json!(65536));
}

#[test]
fn the_rendered_example_runs_in_envoy_validate_mode() {
    built(WASM, "make wasm");
    std::fs::create_dir_all(repo_root().join(".run")).unwrap();
    let out = Command::new(built(ENVOY, "make venv"))
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg("examples/two-servers/envoy.yaml")
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("configured 1 gateway(s), 2 server(s)"),
        "{log}"
    );
}

#[test]
fn envoy_runs_the_rendered_default_bootstrap_without_the_flag_prm_401_403_and_access_log() {
    let issuer = Issuer::start();
    let support = McpServer::start("support-assistant", "render_envoy");
    let ops = McpServer::start("ops-console", "render_envoy");
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let doc = gateway_doc(&public_url, &issuer.url);
    let envoy = start_envoy(
        "render_envoy",
        &doc,
        &Upstreams {
            clusters: &[
                ("support_assistant", support.port),
                ("ops_console", ops.port),
                ("test_issuer", issuer.port),
            ],
            broker: None,
            rate_limit: None,
        },
        port,
        1,
    );
    let boot: Value = serde_json::from_str(
        &std::fs::read_to_string(log_dir("render_envoy").join("envoy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        wasm_filter(&boot)["typed_config"]["config"]["allow_on_headers_stop_iteration"],
        Value::Null,
        "the default body mode (hold_body) renders no flag"
    );

    // Protected-resource metadata, answered by the filter from the embedded document.
    let r = Client::get(
        &envoy.url(&format!("/.well-known/oauth-protected-resource{SUPPORT}")),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["resource"],
        json!(format!("{public_url}{SUPPORT}"))
    );

    // No token: 401 with the server's subset.
    let r = Client::new(&envoy.url(SUPPORT), None).initialize();
    assert_eq!(r.status, 401, "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    assert!(
        challenge.contains("scope=\"tickets.read accounts.read\""),
        "{challenge}"
    );

    // Keys load; then a token allows its tool and the per-tool rule refuses another, whose
    // message never reaches the server although the flag is absent (hold_body holds the body).
    let token = issuer.token(&format!("{public_url}{OPS}"), "admin.read");
    let mut c = wait_for("the filter to load keys", Duration::from_secs(20), || {
        let mut c = Client::new(&envoy.url(OPS), Some(&token));
        (c.initialize().status == 200).then_some(c)
    });
    ops.clear_seen();
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let seen = ops.seen();
    assert!(
        messages(&seen).is_empty(),
        "a refused message reached the server: {seen:?}"
    );
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let got = messages(&ops.seen());
    assert_eq!(
        got.len(),
        1,
        "the allowed call reached the server once: {got:?}"
    );
    assert!(got[0].contains("admin_report"), "{got:?}");
    let line = envoy.wait_access_log(|l| l["tool"] == "update_ticket");
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["reason"], "insufficient_scope", "{line}");
    assert_eq!(line["server"], "ops-console", "{line}");
}

#[test]
fn envoy_runs_a_rendered_mcp_metadata_bootstrap_with_the_native_filter_first() {
    let name = "render_envoy_mcp_metadata";
    let issuer = Issuer::start();
    let support = McpServer::start("support-assistant", name);
    let ops = McpServer::start("ops-console", name);
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut doc = gateway_doc(&public_url, &issuer.url);
    doc["filter"]["body_mode"] = json!("mcp_metadata");
    let envoy = start_envoy(
        name,
        &doc,
        &Upstreams {
            clusters: &[
                ("support_assistant", support.port),
                ("ops_console", ops.port),
                ("test_issuer", issuer.port),
            ],
            broker: None,
            rate_limit: None,
        },
        port,
        1,
    );
    let boot: Value =
        serde_json::from_str(&std::fs::read_to_string(log_dir(name).join("envoy.json")).unwrap())
            .unwrap();
    assert_eq!(
        filter_names(&boot),
        [
            "envoy.filters.http.mcp",
            "envoy.filters.http.wasm",
            "envoy.filters.http.router"
        ]
    );

    let token = issuer.token(&format!("{public_url}{OPS}"), "admin.read");
    let mut c = wait_for("the filter to load keys", Duration::from_secs(20), || {
        let mut c = Client::new(&envoy.url(OPS), Some(&token));
        (c.initialize().status == 200).then_some(c)
    });
    ops.clear_seen();
    let r = c.call_tool(
        "update_ticket",
        json!({"ticket_id": "T-1", "status": "closed"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        ops.seen().is_empty(),
        "a refused call reached the server: {:?}",
        ops.seen()
    );
    let r = c.call_tool("admin_report", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = ops.seen();
    assert_eq!(seen.len(), 1, "the allowed call reached the server once");
    assert!(seen[0].to_string().contains("admin_report"), "{seen:?}");
    let line = envoy.wait_access_log(|l| l["tool"] == "update_ticket");
    assert_eq!(line["decision"], "deny", "{line}");
}

#[test]
fn render_refuses_an_invalid_document_with_the_errors_check_prints() {
    let dir = log_dir("render_envoy_invalid");
    let mut doc = gateway_doc("http://127.0.0.1:1", "http://127.0.0.1:2");
    doc["gateways"][0]["servers"][1]["scopes"] = json!(["tickets.write", "billing.write"]);
    let path = dir.join("bad.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let p = path.display().to_string();
    let check = broker(&["check", &p]);
    assert_eq!(check.status.code(), Some(1));
    let check_report = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check_report.contains("billing.write"), "{check_report}");
    for target in ["envoy", "istio", "envoy-gateway"] {
        let out = broker(&[
            "render",
            target,
            &p,
            "--upstream",
            "test_issuer=127.0.0.1:2",
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "render {target} of an invalid document"
        );
        assert!(
            out.stdout.is_empty(),
            "render {target} printed output for an invalid document"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&check_report),
            "render {target}:\n{err}\ncheck:\n{check_report}"
        );
    }
}

#[test]
fn a_cluster_without_an_address_is_a_usage_error_naming_it() {
    let dir = log_dir("render_envoy_usage");
    let path = dir.join("doc.json");
    std::fs::write(
        &path,
        gateway_doc("http://127.0.0.1:1", "http://127.0.0.1:2").to_string(),
    )
    .unwrap();
    let out = broker(&["render", "envoy", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster `support_assistant`") && err.contains("--upstream"),
        "{err}"
    );
}

#[test]
fn every_subcommand_has_help_with_the_exit_codes() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
        vec!["render", "--help"],
        vec!["render", "envoy", "--help"],
        vec!["render", "istio", "--help"],
        vec!["render", "envoy-gateway", "--help"],
    ] {
        let out = broker(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Exit codes:") && text.contains("2  usage error"),
            "{args:?}:\n{text}"
        );
    }
    let out = broker(&["serve"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "serve without --config is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// The JSON-RPC messages the server received: bodies that fully arrived (a request start whose
/// stream was reset keeps a `null` body).
fn messages(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter_map(|r| r["body"].as_str().map(str::to_string))
        .collect()
}

/// `--otlp-collector`: Envoy's OpenTelemetry tracer to an HTTP/2 collector cluster, Envoy's span
/// and the query-less path written ahead of scopegate's filter, the span header dropped before
/// the upstream, the trace id in the access log; Envoy accepts it (validate mode). Without the
/// option none of it is there; `--service-name` alone is refused.
#[test]
fn otlp_collector_adds_envoys_tracer_and_hands_its_span_to_the_filter() {
    let doc = gateway_doc("http://127.0.0.1:1", "http://127.0.0.1:3");
    let plain = rendered("render_envoy_traces", &doc, &[]);
    let hcm = |b: &Value| {
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            .clone()
    };
    assert_eq!(hcm(&plain)["tracing"], Value::Null);
    assert!(!filter_names(&plain).contains(&"envoy.filters.http.header_mutation".to_string()));

    let traced = rendered(
        "render_envoy_traces",
        &doc,
        &[
            "--otlp-collector",
            "127.0.0.1:4317",
            "--service-name",
            "edge",
        ],
    );
    let t = hcm(&traced);
    let provider = &t["tracing"]["provider"];
    assert_eq!(provider["name"], "envoy.tracers.opentelemetry");
    assert_eq!(provider["typed_config"]["service_name"], "edge");
    let cluster_name = provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap();
    let clusters = traced["static_resources"]["clusters"].as_array().unwrap();
    let collector = clusters
        .iter()
        .find(|c| c["name"] == cluster_name)
        .expect("the collector's cluster");
    assert_eq!(
        collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        4317
    );
    assert_eq!(
        collector["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"],
        json!({"http2_protocol_options": {}}),
        "OTLP/gRPC needs HTTP/2"
    );
    assert_eq!(
        filter_names(&traced),
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.wasm",
            "envoy.filters.http.router"
        ]
    );
    let mutations = t["http_filters"][0]["typed_config"]["mutations"]["request_mutations"].clone();
    assert_eq!(
        mutations[0]["append"]["header"],
        json!({"key": "x-scopegate-traceparent", "value": "00-%TRACE_ID%-%SPAN_ID%-01"})
    );
    assert_eq!(
        mutations[1]["append"]["header"],
        json!({"key": "x-envoy-original-path", "value": "%PATH(NQ)%"})
    );
    assert_eq!(
        t["route_config"]["virtual_hosts"][0]["request_headers_to_remove"],
        json!(["x-scopegate-traceparent"])
    );
    assert_eq!(
        t["access_log"][0]["typed_config"]["log_format"]["json_format"]["trace_id"],
        "%TRACE_ID%"
    );

    built(WASM, "make wasm");
    let dir = log_dir("render_envoy_traces");
    let path = dir.join("traced.json");
    std::fs::write(&path, traced.to_string()).unwrap();
    let out = Command::new(built(ENVOY, "make venv"))
        .current_dir(repo_root())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");

    let doc_path = dir.join("doc.json").display().to_string();
    let out = broker(&["render", "envoy", &doc_path, "--service-name", "edge"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp-collector"), "{err}");
}
