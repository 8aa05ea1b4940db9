//! The decoder against bytes Envoy 1.40 handed a filter for real requests, and hostile ones.
#![cfg(test)] // declared in native_metadata/mod.rs as `#[cfg(test)] mod tests;`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::*;
use crate::mcp::{from_metadata, Call, McpError, NATIVE_RESPONSE_METHOD};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `get_property(["metadata"])` in Envoy 1.40 behind `envoy.filters.http.mcp`, per request body.
/// `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"list_tickets","arguments":{"a":"b"}}}`
const TOOLS_CALL: &str = "0aa6010a16656e766f792e66696c746572732e687474702e6d6370128b010a240a06706172616d73121a2a180a160a046e616d65120e1a0c6c6973745f7469636b6574730a160a066d6574686f64120c1a0a746f6f6c732f63616c6c0a100a076a736f6e72706312051a03322e300a120a0673746174757312081a066d63705f6f6b0a140a0e69735f6d63705f72657175657374120220010a0f0a0269641209110000000000002440";
/// `{"jsonrpc":"2.0","id":"req-7","method":"resources/read","params":{"uri":"tickets://1"}}`
const RESOURCES_READ: &str = "0aa6010a16656e766f792e66696c746572732e687474702e6d6370128b010a100a076a736f6e72706312051a03322e300a120a0673746174757312081a066d63705f6f6b0a220a06706172616d7312182a160a140a03757269120d1a0b7469636b6574733a2f2f310a140a0e69735f6d63705f72657175657374120220010a1a0a066d6574686f6412101a0e7265736f75726365732f726561640a0d0a02696412071a057265712d37";
/// `{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"get_account"},"method":"tools/list"}`
/// with `reject_duplicate_keys: true`: let through, last key wins, a `passthrough_reason`.
const DUPLICATE_KEYS: &str = "0aac010a16656e766f792e66696c746572732e687474702e6d63701291010a100a076a736f6e72706312051a03322e300a140a0e69735f6d63705f72657175657374120220010a160a066d6574686f64120c1a0a746f6f6c732f6c6973740a120a0673746174757312081a066d63705f6f6b0a0f0a0269641209110000000000003f400a2a0a12706173737468726f7567685f726561736f6e12141a126d63705f6475706c69636174655f6b657973";
/// A tools/call (id 33, `params.name` "early") past `max_request_body_size`.
const TOO_LARGE: &str = "0ae5010a16656e766f792e66696c746572732e687474702e6d637012ca010a1d0a06706172616d7312132a110a0f0a046e616d6512071a056561726c790a2a0a12706173737468726f7567685f726561736f6e12141a126d63705f626f64795f746f6f5f6c617267650a0f0a02696412091100000000008040400a100a076a736f6e72706312051a03322e300a160a066d6574686f64120c1a0a746f6f6c732f63616c6c0a180a1269735f657863656564696e675f6c696d6974120220010a120a0673746174757312081a066d63705f6f6b0a140a0e69735f6d63705f7265717565737412022001";
/// `{"jsonrpc":"2.0","id":null,"method":"tools/list"}` (reading the namespace itself, or its
/// `id`, as proxy-wasm pairs fails with `SerializationFailure` for this one).
const NULL_ID: &str = "0a780a16656e766f792e66696c746572732e687474702e6d6370125e0a120a0673746174757312081a066d63705f6f6b0a100a076a736f6e72706312051a03322e300a080a026964120208000a140a0e69735f6d63705f72657175657374120220010a160a066d6574686f64120c1a0a746f6f6c732f6c697374";
/// `{"jsonrpc":"2.0","id":35,"result":{}}`
const RESPONSE: &str = "0a87010a16656e766f792e66696c746572732e687474702e6d6370126d0a0f0a02696412091100000000008041400a120a0673746174757312081a066d63705f6f6b0a1e0a066d6574686f6412141a125f5f6a736f6e7270635f726573706f6e73650a140a0e69735f6d63705f72657175657374120220010a100a076a736f6e72706312051a03322e30";
/// `hello`
const NOT_JSON: &str = "0a6d0a16656e766f792e66696c746572732e687474702e6d637012530a270a12706173737468726f7567685f726561736f6e12111a0f6d63705f6e6f745f6a736f6e7270630a120a0673746174757312081a066d63705f6f6b0a140a0e69735f6d63705f7265717565737412022000";
/// `{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/list"}` (the id rounded).
const BIG_ID: &str = "0a7f0a16656e766f792e66696c746572732e687474702e6d637012650a160a066d6574686f64120c1a0a746f6f6c732f6c6973740a120a0673746174757312081a066d63705f6f6b0a140a0e69735f6d63705f72657175657374120220010a0f0a026964120911e1639d31956ae5430a100a076a736f6e72706312051a03322e30";
/// `{"jsonrpc":"2.0","id":-3,"method":"tools/call","params":{"name":null}}`
const NULL_NAME: &str = "0a99010a16656e766f792e66696c746572732e687474702e6d6370127f0a160a066d6574686f64120c1a0a746f6f6c732f63616c6c0a120a0673746174757312081a066d63705f6f6b0a100a076a736f6e72706312051a03322e300a140a0e69735f6d63705f72657175657374120220010a180a06706172616d73120e2a0c0a0a0a046e616d65120208000a0f0a02696412091100000000000008c0";

const ALL: [&str; 9] = [
    TOOLS_CALL,
    RESOURCES_READ,
    DUPLICATE_KEYS,
    TOO_LARGE,
    NULL_ID,
    RESPONSE,
    NOT_JSON,
    BIG_ID,
    NULL_NAME,
];

fn read(hex: &str) -> NativeMetadata {
    decode(&unhex(hex)).unwrap()
}

fn call(method: &str, name: Option<&str>) -> Vec<Call> {
    vec![Call {
        method: method.into(),
        name: name.map(str::to_string),
    }]
}

#[test]
fn what_envoy_wrote_decides_as_the_six_reads_did() {
    let m = read(TOOLS_CALL);
    assert_eq!(
        m,
        NativeMetadata {
            method: Some("tools/call".into()),
            name: Some("list_tickets".into()),
            is_mcp_request: Some(true),
            id: Some(RequestId::Number(10)),
            ..NativeMetadata::default()
        }
    );
    assert_eq!(
        from_metadata(&m).unwrap(),
        call("tools/call", Some("list_tickets"))
    );

    let m = read(RESOURCES_READ);
    assert_eq!(m.id, Some(RequestId::Text("req-7".into())));
    assert_eq!(
        from_metadata(&m).unwrap(),
        call("resources/read", Some("tickets://1"))
    );

    let m = read(RESPONSE);
    assert_eq!(m.method.as_deref(), Some(NATIVE_RESPONSE_METHOD));
    assert_eq!(m.id, Some(RequestId::Number(35)));
    assert_eq!(from_metadata(&m).unwrap(), vec![]);

    let m = read(NULL_NAME);
    assert_eq!(m.id, Some(RequestId::Number(-3)));
    assert_eq!(from_metadata(&m).unwrap(), call("tools/call", None));

    let m = read(NULL_ID);
    assert_eq!(m.id, None);
    assert_eq!(from_metadata(&m).unwrap(), call("tools/list", None));
    // Rounded by the native filter: answering it would name another request.
    assert_eq!(read(BIG_ID).id, None);
}

#[test]
fn what_envoy_let_through_untrusted_is_refused_with_its_id() {
    let m = read(DUPLICATE_KEYS);
    assert_eq!(m.passthrough_reason.as_deref(), Some("mcp_duplicate_keys"));
    assert_eq!(m.id, Some(RequestId::Number(31)));
    assert_eq!(from_metadata(&m), Err(McpError::MetadataMissing));

    let m = read(TOO_LARGE);
    assert!(m.exceeding_limit);
    assert_eq!(m.name.as_deref(), Some("early"));
    assert_eq!(m.id, Some(RequestId::Number(33)));
    assert_eq!(from_metadata(&m), Err(McpError::MetadataMissing));

    let m = read(NOT_JSON);
    assert_eq!(m.is_mcp_request, Some(false));
    assert_eq!(from_metadata(&m), Err(McpError::MetadataMissing));
}

#[test]
fn no_namespace_is_nothing_recorded() {
    assert_eq!(decode(&[]).unwrap(), NativeMetadata::default());
    // Another filter's namespace only (`jwt_payload`), and typed metadata (field 2).
    let jwt = [
        len(1, b"jwt_payload"),
        len(2, &object(&[("sub", string("alice"))])),
    ]
    .concat();
    let other = [len(1, &jwt), len(2, &len(1, b"x"))].concat();
    assert_eq!(decode(&other).unwrap(), NativeMetadata::default());
    assert_eq!(
        from_metadata(&decode(&other).unwrap()),
        Err(McpError::MetadataMissing)
    );
}

// Hand-built messages, for what Envoy never writes.

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

fn string(s: &str) -> Vec<u8> {
    len(3, s.as_bytes())
}

fn boolean(b: bool) -> Vec<u8> {
    vec![4 << 3, u8::from(b)]
}

fn object(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(k, v)| len(1, &[len(1, k.as_bytes()), len(2, v)].concat()))
        .collect()
}

fn metadata(ns: &[(&str, Vec<u8>)]) -> Vec<u8> {
    len(
        1,
        &[
            len(1, MCP_METADATA_NAMESPACE.as_bytes()),
            len(2, &object(ns)),
        ]
        .concat(),
    )
}

fn good() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("method", string("tools/call")),
        (
            "params",
            len(5, &object(&[("name", string("get_account"))])),
        ),
        ("is_mcp_request", boolean(true)),
    ]
}

#[test]
fn hand_built_good_metadata_decodes() {
    let m = decode(&metadata(&good())).unwrap();
    assert_eq!(
        from_metadata(&m).unwrap(),
        call("tools/call", Some("get_account"))
    );
    // Deep nesting where nothing is read is skipped, not walked.
    let mut deep = string("x");
    for _ in 0..2000 {
        deep = len(5, &object(&[("a", deep)]));
    }
    let mut ns = good();
    ns.push(("arguments", deep.clone()));
    ns[1] = (
        "params",
        len(
            5,
            &object(&[("arguments", deep), ("name", string("get_account"))]),
        ),
    );
    assert_eq!(
        decode(&metadata(&ns)).unwrap().name.as_deref(),
        Some("get_account")
    );
}

#[test]
fn hostile_metadata_is_malformed() {
    let with = |key: &'static str, v: Vec<u8>| {
        let mut ns = good();
        ns.retain(|(k, _)| *k != key);
        ns.push((key, v));
        metadata(&ns)
    };
    let dup = |key: &'static str, v: Vec<u8>| {
        let mut ns = good();
        ns.push((key, v));
        metadata(&ns)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("method twice", dup("method", string("tools/list"))),
        ("is_mcp_request twice", dup("is_mcp_request", boolean(true))),
        ("params twice", dup("params", len(5, &object(&[])))),
        (
            "params.name twice",
            with(
                "params",
                len(5, &object(&[("name", string("a")), ("name", string("b"))])),
            ),
        ),
        (
            "method a number",
            with("method", vec![2 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        ("method a bool", with("method", boolean(true))),
        ("method as a varint string", with("method", vec![3 << 3, 5])),
        ("method not UTF-8", with("method", len(3, &[0xff, 0xfe]))),
        (
            "is_mcp_request a string",
            with("is_mcp_request", string("true")),
        ),
        (
            "is_mcp_request two",
            with("is_mcp_request", vec![4 << 3, 2]),
        ),
        (
            "is_exceeding_limit a string",
            with("is_exceeding_limit", string("no")),
        ),
        ("params a string", with("params", string("get_account"))),
        (
            "params.name a struct",
            with("params", len(5, &object(&[("name", len(5, &[]))]))),
        ),
        (
            "a value of two kinds",
            with("method", [string("tools/call"), boolean(true)].concat()),
        ),
        (
            "the namespace twice",
            [metadata(&good()), metadata(&good())].concat(),
        ),
        ("filter_metadata a varint", vec![1 << 3, 1]),
        ("a group", [metadata(&good()), vec![3]].concat()),
    ];
    for (what, bytes) in cases {
        assert_eq!(decode(&bytes), Err(Malformed), "{what}");
    }
    // Any passthrough_reason at all is untrusted, whatever its type.
    let m = decode(&with("passthrough_reason", boolean(false))).unwrap();
    assert_eq!(from_metadata(&m), Err(McpError::MetadataMissing));
}

#[test]
fn truncated_or_corrupted_bytes_never_panic_and_never_decode_short() {
    for hex in ALL {
        let bytes = unhex(hex);
        // Every prefix cuts the one outer field short.
        for n in 1..bytes.len() {
            assert_eq!(decode(&bytes[..n]), Err(Malformed), "{hex} cut at {n}");
        }
        // Every single-byte change either fails or still decodes to something; never panics.
        for i in 0..bytes.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = b;
                let _ = decode(&bad).map(|m| from_metadata(&m));
            }
        }
    }
}
