//! `body_mode: mcp_metadata` against a fake host: what `envoy.filters.http.mcp` recorded read
//! in one property read, decided on, and refusals answering the recorded JSON-RPC `id`.
#![cfg(test)] // declared in http/mod.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::tests::worker;
use super::*;
use crate::fake_host::Fake;
use scopegate_core::mcp::MCP_METADATA_NAMESPACE;
use serde_json::Value;

/// One recorded value, as `google.protobuf.Value`.
pub(super) enum V<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
    Object(Vec<(&'a str, V<'a>)>),
}

fn len(field: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![field << 3 | 2];
    let mut n = body.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(body);
    out
}

fn value(v: &V<'_>) -> Vec<u8> {
    match v {
        V::Text(s) => len(3, s.as_bytes()),
        V::Number(n) => [&[2 << 3 | 1][..], &n.to_le_bytes()].concat(),
        V::Bool(b) => vec![4 << 3, u8::from(*b)],
        V::Object(fields) => len(5, &object(fields)),
    }
}

fn object(fields: &[(&str, V<'_>)]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(k, v)| len(1, &[len(1, k.as_bytes()), len(2, &value(v))].concat()))
        .collect()
}

/// The `metadata` property as Envoy serializes it (`envoy.config.core.v3.Metadata`), holding
/// `fields` under the native MCP filter's namespace.
pub(super) fn native_metadata(fields: &[(&str, V<'_>)]) -> Vec<u8> {
    let ns = [
        len(1, MCP_METADATA_NAMESPACE.as_bytes()),
        len(2, &object(fields)),
    ]
    .concat();
    len(1, &ns)
}

/// What the native filter records for `{"jsonrpc":"2.0","id":id,"method":"tools/call",
/// "params":{"name":tool}}`.
pub(super) fn recorded_tool_call(id: f64, tool: &str) -> Vec<u8> {
    native_metadata(&[
        ("id", V::Number(id)),
        ("is_mcp_request", V::Bool(true)),
        ("jsonrpc", V::Text("2.0")),
        ("method", V::Text("tools/call")),
        ("params", V::Object(vec![("name", V::Text(tool))])),
        ("status", V::Text("mcp_ok")),
    ])
}

fn post(metadata: Option<Vec<u8>>) -> Fake {
    let mut h = Fake::request("POST", "/support/mcp", "support", Some("Bearer tok"));
    if let Some(m) = metadata {
        h.properties.insert("metadata".into(), m);
    }
    h
}

fn reply_json(h: &Fake) -> Value {
    serde_json::from_str(&h.replies[0].2).unwrap()
}

#[test]
fn one_property_read_decides() {
    let w = worker("mcp_metadata", "support", "tickets.read accounts.read");
    let mut h = post(Some(recorded_tool_call(3.0, "get_account")));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Continue));
    assert!(h.replies.is_empty());
    assert_eq!(h.record()["tool"], "get_account");
    assert_eq!(
        h.properties_read
            .iter()
            .filter(|p| p.starts_with("metadata"))
            .collect::<Vec<_>>(),
        vec!["metadata"]
    );
}

#[test]
fn a_header_mismatch_answers_the_recorded_id() {
    let w = worker("mcp_metadata", "support", "tickets.read accounts.read");
    let mut h = post(Some(recorded_tool_call(14.0, "get_account")));
    h.headers.push(("mcp-name".into(), "list_tickets".into()));
    let mut r = Request::<Fake>::new(Some(w), 1);
    assert!(matches!(r.request_headers(&mut h, false), Action::Pause));
    assert_eq!(h.replies[0].0, 400);
    let body = reply_json(&h);
    assert_eq!(body["id"], 14);
    assert_eq!(body["error"]["code"], -32020);
}

#[test]
fn untrusted_metadata_is_refused_with_its_id_or_null() {
    let duplicate_keys = native_metadata(&[
        ("id", V::Text("req-31")),
        ("is_mcp_request", V::Bool(true)),
        ("method", V::Text("tools/list")),
        ("passthrough_reason", V::Text("mcp_duplicate_keys")),
    ]);
    let rounded = native_metadata(&[
        ("id", V::Number(12_345_678_901_234_567_890.0)),
        ("is_mcp_request", V::Bool(true)),
        ("is_exceeding_limit", V::Bool(true)),
        ("method", V::Text("tools/list")),
    ]);
    let broken = recorded_tool_call(5.0, "list_tickets")[..20].to_vec();
    for (metadata, id) in [
        (Some(duplicate_keys), Value::from("req-31")),
        (Some(rounded), Value::Null),
        (Some(broken), Value::Null),
        (None, Value::Null),
    ] {
        let w = worker("mcp_metadata", "support", "tickets.read accounts.read");
        let mut h = post(metadata);
        let mut r = Request::<Fake>::new(Some(w), 1);
        assert!(matches!(r.request_headers(&mut h, false), Action::Pause));
        assert_eq!(h.replies[0].0, 400);
        let body = reply_json(&h);
        assert_eq!(body["id"], id);
        assert_eq!(body["error"]["code"], -32600);
        assert_eq!(h.filter_state["scopegate_reason"], "mcp_metadata_missing");
    }
}
