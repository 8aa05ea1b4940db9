//! Tests of the one-pass reader (`rpc_read`): the tricks a body may play, and a differential
//! test against the serde path it replaced (an untagged enum over derived structs).
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::*;
use crate::mutation::{mutate, Rng};
use serde_json::Value;

fn one(body: &str) -> Message<'_> {
    let mut ms = messages(body.as_bytes()).unwrap();
    assert_eq!(ms.len(), 1, "{body}");
    ms.remove(0)
}

fn refused(body: &[u8]) {
    assert_eq!(
        messages(body),
        Err(Unreadable),
        "{}",
        String::from_utf8_lossy(body)
    );
}

#[test]
fn reads_method_and_name_and_borrows_them() {
    let b = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"T-1","name":"other","method":"x"}}}"#;
    let m = one(b);
    assert_eq!(m.jsonrpc.as_deref(), Some("2.0"));
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    // `arguments` is skipped: its own `name` and `method` are not the call's.
    assert_eq!(m.name.as_deref(), Some("get_ticket"));
    assert!(matches!(m.method, Some(Cow::Borrowed(_))));
    assert!(matches!(m.name, Some(Cow::Borrowed(_))));
    let m =
        one(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"tickets://1"}}"#);
    assert_eq!(m.uri.as_deref(), Some("tickets://1"));
}

#[test]
fn escapes_are_read_as_json_reads_them() {
    // An escaped key is the same key; an escaped value is the same value.
    let m = one(
        r#"{"json\u0072pc":"2.0","meth\u006fd":"tools/call","params":{"n\u0061me":"get_\u0061ccount"}}"#,
    );
    assert_eq!(m.jsonrpc.as_deref(), Some("2.0"));
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    assert_eq!(m.name.as_deref(), Some("get_account"));
    // ... so an escaped second `method` is a duplicate.
    refused(br#"{"jsonrpc":"2.0","method":"tools/list","meth\u006fd":"tools/call"}"#);
}

#[test]
fn a_key_policy_reads_appears_once() {
    for b in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","method":null,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"a","uri":"b"}}"#,
        r#"[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"a","method":"b"}]"#,
    ] {
        refused(b.as_bytes());
    }
    // Keys policy never reads may repeat, as they could before.
    let m = one(
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a","arguments":{},"arguments":{}}}"#,
    );
    assert_eq!(m.name.as_deref(), Some("a"));
}

#[test]
fn batches_notifications_and_responses() {
    let b = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":7,"result":{"method":"x"}}]"#;
    let ms = messages(b).unwrap();
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[1].method.as_deref(), Some("notifications/initialized"));
    // A response has no method; its `result` is skipped.
    assert_eq!(ms[2].method, None);
    refused(b"[]");
    refused(b" [ ] ");
}

#[test]
fn messages_and_params_are_objects() {
    for b in [
        r#"["tools/call",{"name":"a"},"2.0"]"#,
        r#"[["tools/call",{"name":"a"},"2.0"]]"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":["a"]}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":"a"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":1}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":true}"#,
        r#"{"jsonrpc":"2.0","method":1}"#,
        r#"{"jsonrpc":2.0,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":{"x":1}}}"#,
        r#"[{"jsonrpc":"2.0","method":"ping"},1]"#,
        "null",
        "\"tools/call\"",
        "42",
    ] {
        refused(b.as_bytes());
    }
    // `params: null` is no params.
    assert_eq!(
        one(r#"{"jsonrpc":"2.0","method":"tools/call","params":null}"#).name,
        None
    );
}

#[test]
fn one_json_value_of_utf8_and_nothing_else() {
    for b in [
        &br#"{"jsonrpc":"2.0","method":"ping"} {"jsonrpc":"2.0","method":"ping"}"#[..],
        br#"{"jsonrpc":"2.0","method":"ping"}x"#,
        br#"{"jsonrpc":"2.0","method":"ping",}"#,
        br#"{"jsonrpc":"2.0","method":"ping"// comment
        }"#,
        br#"{'jsonrpc':'2.0'}"#,
        b"",
        b"   ",
        // Invalid UTF-8 anywhere, skipped parts included.
        b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"\xff\"}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"arguments\":{\"x\":\"\xc3\"}}}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/c\xe9ll\"}",
        b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}",
        // A lone surrogate escape is not a character.
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"\ud800"}}"#,
    ] {
        refused(b);
    }
    assert_eq!(
        one(" \n{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\r\n ")
            .method
            .as_deref(),
        Some("ping")
    );
}

#[test]
fn huge_and_deep_arguments_are_skipped_without_recursion() {
    let big = "x".repeat(2 << 20);
    let b = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{{"blob":"{big}","n":[1,2.5e10,-3,true,false,null]}},"name":"a"}}}}"#
    );
    assert_eq!(one(&b).name.as_deref(), Some("a"));
    // Far deeper than any recursion limit: skipping is iterative.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let b = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{deep},"name":"a"}}}}"#
    );
    assert_eq!(one(&b).name.as_deref(), Some("a"));
    // Unbalanced, it is still refused.
    let b = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{}}}}}"#,
        "[".repeat(1000)
    );
    refused(b.as_bytes());
}

// ---- The serde path this reader replaced, kept here to compare against. ----

mod old {
    use serde::Deserialize;
    use std::borrow::Cow;

    #[derive(Deserialize)]
    pub struct Message<'a> {
        #[serde(borrow, default)]
        pub method: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub params: Option<Params<'a>>,
        #[serde(borrow, default)]
        pub jsonrpc: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    pub struct Params<'a> {
        #[serde(borrow, default)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub uri: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Body<'a> {
        #[serde(borrow)]
        One(Message<'a>),
        #[serde(borrow)]
        Batch(Vec<Message<'a>>),
    }

    /// (jsonrpc, method, name, uri) per message, as the old path read them.
    pub type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    pub fn read(body: &[u8]) -> Option<Vec<Row>> {
        let ms = match serde_json::from_slice::<Body<'_>>(body).ok()? {
            Body::One(m) => vec![m],
            Body::Batch(ms) if !ms.is_empty() => ms,
            Body::Batch(_) => return None,
        };
        let s = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_string);
        Some(
            ms.iter()
                .map(|m| {
                    let p = m.params.as_ref();
                    (
                        s(&m.jsonrpc),
                        s(&m.method),
                        p.and_then(|p| s(&p.name)),
                        p.and_then(|p| s(&p.uri)),
                    )
                })
                .collect(),
        )
    }
}

fn new_rows(body: &[u8]) -> Option<Vec<old::Row>> {
    let s = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_string);
    messages(body).ok().map(|ms| {
        ms.iter()
            .map(|m| (s(&m.jsonrpc), s(&m.method), s(&m.name), s(&m.uri)))
            .collect()
    })
}

/// Where the old path accepted what the new one refuses on purpose: a message or `params`
/// in array form (serde's derived structs read a sequence as the fields in order, so
/// `["tools/call",{"name":"a"},"2.0"]` was a `tools/call` to the old path and is nonsense
/// to every MCP server).
fn array_form(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let ms: Vec<&Value> = match &v {
        Value::Array(ms) => ms.iter().collect(),
        m => vec![m],
    };
    ms.iter()
        .any(|m| !m.is_object() || m.get("params").is_some_and(Value::is_array))
}

/// Where the new path accepts what the old one refused: the old path built every value, so a
/// number out of `f64`'s range, a lone UTF-16 surrogate escape (`"\ud800"`) in a string, or
/// nesting past serde_json's recursion limit anywhere (in `arguments`, say) refused the body;
/// the new one skips what policy never reads (keys and the values it reads are still decoded
/// in full, so these refuse there).
fn only_in_skipped_values(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(_) => false,
        Err(e) => {
            let e = e.to_string();
            [
                "number out of range",
                "recursion limit exceeded",
                "surrogate",
                "hex escape",
            ]
            .iter()
            .any(|why| e.contains(why))
        }
    }
}

const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"T-1"}}}"#,
    r#"{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"tickets://1","_meta":{"progressToken":3}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"ping","params":null}]"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p","arguments":{"a":[1,2,{"b":null}]}}}"#,
    r#"{"params":{"arguments":{"q":"\u00e9\n"},"name":"t\u0061"},"method":"tools/call","jsonrpc":"2.0","id":3}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"abc"}}"#,
];

/// Pieces a mutation splices in: the tokens parser tricks are made of.
const PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u0061",
    b"\\ud800",
    b"null",
    b"true",
    b"1e400",
    b"-0.5e-3",
    b"01",
    b"\"method\":\"tools/call\",",
    b"\"method\":",
    b"\"params\":",
    b"\"params\":[\"a\"],",
    b"\"name\":\"admin\",",
    b"\"uri\":\"x\",",
    b"\"jsonrpc\":\"2.0\",",
    b"\"meth\\u006fd\":\"x\",",
    b"\xff",
    b"\xc3\xa9",
    b"\xef\xbb\xbf",
    b" ",
    b"\n",
    b"[[[[[[[[",
];

#[test]
fn agrees_with_the_serde_path_it_replaced() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let (mut same, mut both_refuse, mut stricter, mut lenient) = (0, 0, 0, 0);
    let mut inputs: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    // Batches of seeds, and seeds with a duplicate key appended inside, as extra starting points.
    inputs.push(format!("[{}]", SEEDS.join(",")).into_bytes());
    for i in 0..60_000 {
        let mut b = inputs[rng.below(inputs.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut b, PIECES);
        }
        let (old, new) = (old::read(&b), new_rows(&b));
        match (&old, &new) {
            (Some(o), Some(n)) => {
                assert_eq!(o, n, "{}", String::from_utf8_lossy(&b));
                same += 1;
                // Accepted mutants seed further mutation.
                if i % 7 == 0 && inputs.len() < 400 {
                    inputs.push(b);
                }
            }
            (None, None) => both_refuse += 1,
            (Some(_), None) => {
                assert!(
                    array_form(&b),
                    "refused what the old path read: {}",
                    String::from_utf8_lossy(&b)
                );
                stricter += 1;
            }
            (None, Some(_)) => {
                assert!(
                    only_in_skipped_values(&b),
                    "read what the old path refused: {}",
                    String::from_utf8_lossy(&b)
                );
                lenient += 1;
            }
        }
    }
    // The generator must reach every branch worth comparing.
    assert!(same > 3_000, "only {same} accepted by both");
    assert!(both_refuse > 3_000, "only {both_refuse} refused by both");
    println!(
        "same {same}, both refuse {both_refuse}, array form {stricter}, skipped values {lenient}"
    );
}
