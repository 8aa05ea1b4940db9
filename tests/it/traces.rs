//! Traces: Envoy (rendered with `--otlp-collector`) and the broker (`OTEL_EXPORTER_OTLP_ENDPOINT`)
//! export to a real OTLP receiver; one client request is one trace, from Envoy's span through the
//! filter's token exchange to the broker's downstream refresh; nothing secret is exported; a
//! broker without the variables starts no exporter; and the mesh targets' broker Deployment gets
//! the variables from `--otlp-collector`.

use scopegate_tests::broker::KEY;
use scopegate_tests::brokered::Brokered;
use scopegate_tests::downstream::CLIENT_SECRET;
use scopegate_tests::otlp::{render_tree, Receiver, Span};
use scopegate_tests::procs::wait_for;
use scopegate_tests::render::render;
use scopegate_tests::stack::SUPPORT;
use serde_json::{json, Value};
use std::time::Duration;

/// The downstream access token's lifetime: short, so the second request needs a refresh.
const TTL: u64 = 3;
const EXCHANGE: &str = "POST /internal/token-exchange";
const TOKEN: &str = "POST /token";
const REFRESH: &str = "downstream refresh";
/// The SDK's batch thread, as `/proc/PID/task/*/comm` shows it (15 characters).
const BATCH_THREAD: &str = "OpenTelemetry.T";

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the broker's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

fn downstream_token(c: &mut scopegate_tests::mcp::Client) -> String {
    let r = c.call_tool("get_account", json!({"account_id": "acme"}));
    assert_eq!(r.status, 200, "{}", r.body);
    r.tool_json()["authorization"]
        .as_str()
        .expect("a credential reached the server")
        .trim_start_matches("Bearer ")
        .to_string()
}

fn one<'a>(spans: &'a [Span], name: &str, service: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == name && s.service == service)
        .collect();
    assert_eq!(found.len(), 1, "one `{name}` span of {service}: {spans:#?}");
    found[0]
}

#[test]
fn one_trace_from_envoy_through_the_exchange_to_the_downstream_refresh() {
    let envoy_rx = Receiver::start();
    let broker_rx = Receiver::start();
    let collector = envoy_rx.address();
    let mut b = Brokered::start_rendered(
        "traces",
        TTL,
        None,
        1,
        |_| {},
        &["--otlp-collector", &collector],
        &|_| {},
    );
    let session = b.authorize(SUPPORT, None);
    let mut c = b.mcp(SUPPORT, &session);
    let first_downstream = downstream_token(&mut c);

    // No OTEL variables: no batch thread, and nothing sent on the way out either.
    let threads = thread_names(b.stack.broker.proc.pid());
    assert!(
        !threads.iter().any(|t| t.starts_with(BATCH_THREAD)),
        "a broker without OTEL_* runs an exporter thread: {threads:?}"
    );
    assert!(b.stack.broker.stop().success());
    assert_eq!(broker_rx.connections(), 0);
    assert!(
        !b.stack.broker.proc.stderr().contains("\"trace_id\""),
        "log lines name a trace the broker does not have"
    );

    b.stack.broker.restart_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &broker_rx.endpoint()),
        ("OTEL_SERVICE_NAME", "traces-broker"),
    ]);
    let threads = thread_names(b.stack.broker.proc.pid());
    assert!(
        threads.iter().any(|t| t.starts_with(BATCH_THREAD)),
        "{threads:?}"
    );
    // Wait out the downstream token: the next exchange refreshes it (what, not when, is asserted).
    std::thread::sleep(Duration::from_secs(TTL + 1));
    let second_downstream = downstream_token(&mut c);
    assert_ne!(
        second_downstream, first_downstream,
        "the grant was refreshed"
    );

    // A client that traces itself: its context reaches the broker's public listener through Envoy.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let refreshed: Value = reqwest::blocking::Client::new()
        .post(format!("{}/token", b.public_url))
        .header(
            "traceparent",
            format!("00-{client_trace}-00f067aa0ba902b7-01"),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &session.client_id),
            (
                "refresh_token",
                session.refresh_token.as_deref().expect("a refresh token"),
            ),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let new_refresh = refreshed["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();

    // Shutdown flushes the broker's last batch; Envoy flushes on its own schedule.
    assert!(b.stack.broker.stop().success());
    let broker_spans = wait_for("the broker's spans", Duration::from_secs(30), || {
        let s = broker_rx.spans();
        s.iter().any(|x| x.name == REFRESH).then_some(s)
    });
    let exchange = one(&broker_spans, EXCHANGE, "traces-broker").clone();
    let refresh = one(&broker_spans, REFRESH, "traces-broker").clone();
    let token = one(&broker_spans, TOKEN, "traces-broker").clone();
    let envoy_spans = wait_for("Envoy's spans", Duration::from_secs(60), || {
        let s = envoy_rx.spans();
        let ids = [&exchange.parent_span_id, &token.parent_span_id];
        ids.iter()
            .all(|id| s.iter().any(|x| &&x.span_id == id))
            .then_some(s)
    });
    let mut all = envoy_spans.clone();
    all.extend(broker_spans.iter().cloned());
    println!("{}", render_tree(&all, &exchange.trace_id));
    println!("{}", render_tree(&all, &token.trace_id));

    // The exchange continues Envoy's span for the MCP request (the filter passed it on).
    let envoy_request = envoy_spans
        .iter()
        .find(|s| s.span_id == exchange.parent_span_id)
        .unwrap();
    assert_eq!(envoy_request.trace_id, exchange.trace_id);
    assert_eq!(envoy_request.service, "scopegate-envoy");
    // The refresh the exchange waited on is its child, in the same trace.
    assert_eq!(refresh.parent_span_id, exchange.span_id);
    assert_eq!(refresh.trace_id, exchange.trace_id);
    assert_eq!(exchange.attr("gateway"), Some("saas"));
    assert_eq!(exchange.attr("server"), Some("support-assistant"));
    assert_eq!(exchange.attr("grant_status"), Some("refreshed"));
    assert_eq!(exchange.attr("http.response.status_code"), Some("200"));
    // `/token` continues the client's trace under Envoy's span (the router's `traceparent`).
    assert_eq!(token.trace_id, client_trace);
    let envoy_token = envoy_spans
        .iter()
        .find(|s| s.span_id == token.parent_span_id)
        .unwrap();
    assert_eq!(envoy_token.trace_id, client_trace);
    assert_eq!(token.attr("client_id"), Some(session.client_id.as_str()));

    // Envoy's spans name paths without their query (`/callback?code=…` holds a code).
    let urls: Vec<&str> = envoy_spans
        .iter()
        .filter_map(|s| s.attr("http.url"))
        .collect();
    assert!(urls.iter().any(|u| u.ends_with("/callback")), "{urls:?}");
    assert!(!urls.iter().any(|u| u.contains('?')), "{urls:?}");
    // Nothing secret in any exported attribute or event, from Envoy or the broker.
    let exported = envoy_rx.payload_text() + &broker_rx.payload_text();
    for (what, secret) in [
        ("the client's access token", session.access_token.as_str()),
        (
            "the client's refresh token",
            session.refresh_token.as_deref().unwrap(),
        ),
        ("the rotated refresh token", new_refresh.as_str()),
        ("the first downstream token", first_downstream.as_str()),
        ("the refreshed downstream token", second_downstream.as_str()),
        ("the downstream client secret", CLIENT_SECRET),
        ("the broker's encryption key", KEY),
    ] {
        assert!(!exported.contains(secret), "{what} was exported");
    }

    // The broker's log line for the refresh names the trace and span it happened in.
    let log = b.stack.broker.proc.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("downstream token refreshed"))
        .expect("the refresh was logged");
    assert!(
        line.contains(&format!("\"trace_id\":\"{}\"", exchange.trace_id)),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"span_id\":\"{}\"", exchange.span_id)),
        "{line}"
    );
}

/// The broker's container in a mesh target's output, by its Deployment.
fn broker_env(target: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        target,
        "envoy/gateway.yaml",
        "--namespace",
        "mcp",
        "--upstream",
        "support_assistant=support-assistant.mcp.svc.cluster.local:8080",
        "--upstream",
        "ops_console=ops-console.mcp.svc.cluster.local:8080",
    ];
    args.extend_from_slice(extra);
    let text = render(&args);
    let deployment = text
        .split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).expect("each document is YAML"))
        .find(|o| o["kind"] == "Deployment")
        .expect("the broker's Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn mesh_targets_point_the_brokers_deployment_at_the_collector() {
    for target in ["istio", "envoy-gateway"] {
        let plain = broker_env(target, &[]);
        assert!(
            !plain
                .iter()
                .any(|e| e["name"].as_str().unwrap_or_default().starts_with("OTEL_")),
            "{target}: {plain:?}"
        );
        let traced = broker_env(target, &["--otlp-collector", "otel.observability:4317"]);
        assert!(
            traced.contains(&json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel.observability:4317"})),
            "{target}: {traced:?}"
        );
        assert!(
            traced.contains(&json!({"name": "OTEL_SERVICE_NAME", "value": "scopegate-broker"})),
            "{target}: {traced:?}"
        );
    }
    let out = scopegate_tests::render::broker(&[
        "render",
        "istio",
        "envoy/gateway.yaml",
        "--otlp-collector",
        "no-port",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--otlp-collector"));
}
