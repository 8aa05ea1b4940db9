//! Tests of the listing filter (`listing`): what is hidden and what stays byte for byte, the
//! responses it refuses, and SSE framing.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::*;
use serde_json::json;

fn keep_even(_: ListKind, k: &str) -> bool {
    !k.contains("secret")
}

fn p(id: Value, kind: ListKind) -> Vec<Pending> {
    vec![Pending { id, kind }]
}

#[test]
fn pending_reads_listing_requests_and_their_ids() {
    let b = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"x","method":"prompts/list"},{"jsonrpc":"2.0","id":3,"method":"tools/call"},{"jsonrpc":"2.0","method":"tools/list"}]"#;
    assert_eq!(
        pending(b),
        vec![
            Pending {
                id: json!(1),
                kind: ListKind::Tools
            },
            Pending {
                id: json!("x"),
                kind: ListKind::Prompts
            }
        ]
    );
    assert!(pending(b"nope").is_empty());
}

#[test]
fn json_listing_loses_hidden_entries_and_keeps_the_cursor() {
    let body = json!({"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a"},{"name":"secret_b"},{"noname":1}],"nextCursor":"c2"}});
    let f = filter_json(
        body.to_string().as_bytes(),
        &p(json!(7), ListKind::Tools),
        &keep_even,
    )
    .unwrap();
    assert_eq!(f.hidden, 2);
    assert_eq!(f.answered, 1);
    let out: Value = serde_json::from_slice(&f.body.unwrap()).unwrap();
    assert_eq!(out["result"]["tools"], json!([{"name":"a"}]));
    assert_eq!(out["result"]["nextCursor"], "c2");
    assert_eq!(out["id"], 7);
}

#[test]
fn other_ids_errors_and_clean_listings_are_left_alone() {
    let other = json!({"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"secret"}]}});
    let f = filter_json(
        other.to_string().as_bytes(),
        &p(json!(7), ListKind::Tools),
        &keep_even,
    )
    .unwrap();
    assert_eq!((f.body, f.answered), (None, 0));
    let err = json!({"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"x"}});
    let f = filter_json(
        err.to_string().as_bytes(),
        &p(json!(7), ListKind::Tools),
        &keep_even,
    )
    .unwrap();
    assert_eq!((f.body, f.answered), (None, 1));
    let bad = json!({"jsonrpc":"2.0","id":7,"result":{"tool":[]}});
    assert_eq!(
        filter_json(
            bad.to_string().as_bytes(),
            &p(json!(7), ListKind::Tools),
            &keep_even
        ),
        Err(Unfilterable)
    );
    assert_eq!(
        filter_json(b"{", &p(json!(7), ListKind::Tools), &keep_even),
        Err(Unfilterable)
    );
}

#[test]
fn sse_rewrites_only_the_matching_event() {
    let body = "id: 0\nretry: 3000\ndata:\n\n\
                event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n\
                event: message\nid: 5\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"r1\",\"result\":{\"resources\":[{\"uri\":\"t://1\"},{\"uri\":\"t://secret\"}],\"nextCursor\":\"n\"}}\n\n\
                data: {\"partial";
    let f = filter_sse(
        body.as_bytes(),
        &p(json!("r1"), ListKind::Resources),
        &keep_even,
    )
    .unwrap();
    assert_eq!((f.hidden, f.answered), (1, 1));
    let out = String::from_utf8(f.body.unwrap()).unwrap();
    assert!(out.starts_with("id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\nevent: message\nid: 5\ndata: "), "{out}");
    assert!(out.ends_with("\n\ndata: {\"partial"), "{out}");
    let msgs: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let r = msgs.iter().find(|m| m["id"] == "r1").unwrap();
    assert_eq!(r["result"]["resources"], json!([{"uri":"t://1"}]));
    assert_eq!(r["result"]["nextCursor"], "n");
}

#[test]
fn sse_with_crlf_and_multiline_data() {
    let body = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\r\ndata: \"result\":{\"prompts\":[{\"name\":\"secret\"}]}}\r\n\r\n";
    let f = filter_sse(body.as_bytes(), &p(json!(1), ListKind::Prompts), &keep_even).unwrap();
    assert_eq!(f.hidden, 1);
    let out = String::from_utf8(f.body.unwrap()).unwrap();
    // The joined data, filtered, on one line: the newline that joined it is a space.
    assert_eq!(
        out,
        "data: {\"jsonrpc\":\"2.0\",\"id\":1, \"result\":{\"prompts\":[]}}\n\r\n"
    );
}

/// SSE ends a line at CR, LF or CRLF. A lone CR would end a comment line for a client and let
/// a `data:` line through that this reader, splitting at LF, saw as part of the comment.
#[test]
fn sse_with_a_lone_cr_is_unfilterable() {
    let listing =
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"prompts\":[{\"name\":\"secret\"}]}}";
    for body in [
        format!(": c\r{listing}\n\n"),
        format!("event: message\r{listing}\r\r"),
        format!("{listing}\r\n\r"),
    ] {
        let f = filter_sse(body.as_bytes(), &p(json!(1), ListKind::Prompts), &keep_even);
        assert!(f.is_err(), "{body:?} must not pass unfiltered");
    }
    // CRLF alone is an ordinary line ending.
    let f = filter_sse(
        format!("{listing}\r\n\r\n").as_bytes(),
        &p(json!(1), ListKind::Prompts),
        &keep_even,
    )
    .unwrap();
    assert_eq!(f.hidden, 1);
}

#[test]
fn unfilterable_bodies_are_json_rpc_errors() {
    let b = unfilterable_body(false, &p(json!(3), ListKind::Tools));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["id"], 3);
    assert_eq!(v["error"]["code"], jsonrpc::LISTING_UNFILTERABLE);
    let s = String::from_utf8(unfilterable_body(true, &p(json!(3), ListKind::Tools))).unwrap();
    assert!(s.starts_with("event: message\ndata: {"), "{s}");
    assert!(s.ends_with("}\n\n"));
}

#[test]
fn the_default_hides_only_what_no_step_up_reaches() {
    let doc = json!({"gateways": [{
        "name": "g", "public_url": "https://a.example", "issuer": "https://a.example",
        "allowed_scopes": ["tickets.read", "tickets.write"],
        "jwks": {"cluster": "idp"},
        "servers": [
            {"name": "d", "cluster": "c1", "path": "/d/mcp", "scopes": ["tickets.read", "tickets.write"],
             "tools": {"update": ["tickets.write"]}, "deny": {"tools": ["nuke"]}},
            {"name": "g", "cluster": "c2", "path": "/g/mcp", "scopes": ["tickets.read", "tickets.write"],
             "tools": {"update": ["tickets.write"]}, "listings": {"hide": "not_granted"}},
            {"name": "plain", "cluster": "c3", "path": "/p/mcp", "scopes": ["tickets.read"]}]}]});
    let p = crate::validate::load(&doc.to_string()).unwrap();
    let read = p.gateways[0].scopes.set_of(&["tickets.read"]).unwrap();
    let (d, g, plain) = (&p.servers[0], &p.servers[1], &p.servers[2]);
    assert!(visible(d, read, ListKind::Tools, "update"));
    assert!(!visible(d, read, ListKind::Tools, "nuke"));
    assert!(!visible(g, read, ListKind::Tools, "update"));
    assert!(visible(g, read, ListKind::Tools, "other"));
    assert!(must_replace_unfiltered(d));
    assert!(!must_replace_unfiltered(g));
    // Nothing can be hidden: listings stream untouched and bodies are not read for them.
    assert!(!plain.reads_listings());
    assert!(!plain.needs_body());
}

/// A listing near the default bound is filtered whole; with `--release --nocapture` it also
/// prints what that costs natively (V8 runs the same code slower). Nothing timed is asserted.
#[test]
fn listing_cost() {
    let tools: Vec<Value> = (0..400)
        .map(|i| {
            let name = if i % 4 == 0 { format!("secret_{i}") } else { format!("tool_{i}") };
            json!({"name": name, "description": "x".repeat(300),
                   "inputSchema": {"type": "object", "properties": {"a": {"type": "string", "description": "y".repeat(200)}}}})
        })
        .collect();
    let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "c"}});
    let json_body = msg.to_string().into_bytes();
    let sse_body = format!("event: message\ndata: {msg}\n\n").into_bytes();
    let pending = p(json!(1), ListKind::Tools);
    for (what, sse, body) in [("json", false, &json_body), ("sse", true, &sse_body)] {
        let runs = 3;
        let start = std::time::Instant::now();
        let mut hidden = 0;
        for _ in 0..runs {
            hidden = filter(sse, body, &pending, &keep_even).unwrap().hidden;
        }
        let each = start.elapsed() / runs;
        println!(
            "{what}: {} bytes, {hidden} of 400 hidden: {each:?} per listing",
            body.len()
        );
        assert_eq!(hidden, 100);
    }
}

fn cut(body: &str, id: Value, kind: ListKind) -> Result<Filtered, Unfilterable> {
    filter_json(body.as_bytes(), &p(id, kind), &keep_even)
}

fn text(f: Filtered) -> String {
    String::from_utf8(f.body.unwrap()).unwrap()
}

#[test]
fn only_the_hidden_entries_bytes_go_with_their_commas() {
    // Whitespace, key order, escapes and numbers stay as the server wrote them.
    let body = "{ \"result\" : {\"tools\" : [ {\"name\":\"secret_0\"} , {\"name\":\"a\",\"n\":1.50} ,\n {\"name\":\"secret_1\"},{\"name\":\"b\\u0062\"} , {\"name\":\"secret_2\"} ] , \"nextCursor\":\"c\"}, \"id\" : 7 ,\"jsonrpc\":\"2.0\"}";
    let f = cut(body, json!(7), ListKind::Tools).unwrap();
    assert_eq!((f.hidden, f.answered), (3, 1));
    assert_eq!(
        text(f),
        "{ \"result\" : {\"tools\" : [ {\"name\":\"a\",\"n\":1.50},{\"name\":\"b\\u0062\"} ] , \"nextCursor\":\"c\"}, \"id\" : 7 ,\"jsonrpc\":\"2.0\"}"
    );
    // Every entry hidden: the list is left empty, its inner whitespace kept.
    let f = cut(
        r#"{"id":7,"result":{"tools":[ {"name":"secret"}, 1, {"name":"secret2"} ]}}"#,
        json!(7),
        ListKind::Tools,
    )
    .unwrap();
    assert_eq!(
        (f.hidden, text(f)),
        (3, r#"{"id":7,"result":{"tools":[  ]}}"#.into())
    );
    // Nothing hidden: no new body.
    let f = cut(
        r#"{"id":7,"result":{"tools":[{"name":"a"}]}}"#,
        json!(7),
        ListKind::Tools,
    )
    .unwrap();
    assert_eq!((f.body, f.answered), (None, 1));
}

#[test]
fn a_batch_is_filtered_per_awaited_response_and_ids_compare_as_values() {
    let body = r#"[{"id":1.0,"result":{"tools":[{"name":"secret"}]}},{"id":"1","result":{"tools":[{"name":"secret"}]}},{"id":1,"result":{"tools":[{"name":"secret"},{"name":"a"}]}},{"id":2,"result":{"prompts":[{"name":"secret"}]}},7,[]]"#;
    let pending = vec![
        Pending {
            id: json!(1),
            kind: ListKind::Tools,
        },
        Pending {
            id: json!(2),
            kind: ListKind::Prompts,
        },
    ];
    let f = filter_json(body.as_bytes(), &pending, &keep_even).unwrap();
    assert_eq!((f.hidden, f.answered), (2, 2));
    assert_eq!(
        text(f),
        r#"[{"id":1.0,"result":{"tools":[{"name":"secret"}]}},{"id":"1","result":{"tools":[{"name":"secret"}]}},{"id":1,"result":{"tools":[{"name":"a"}]}},{"id":2,"result":{"prompts":[]}},7,[]]"#
    );
}

#[test]
fn a_result_before_its_id_is_read_once_the_id_is_known() {
    let f = cut(
        r#"{"result":{"tools":[{"name":"a"},{"name":"secret"}]},"jsonrpc":"2.0","id":7}"#,
        json!(7),
        ListKind::Tools,
    )
    .unwrap();
    assert_eq!(
        text(f),
        r#"{"result":{"tools":[{"name":"a"}]},"jsonrpc":"2.0","id":7}"#
    );
    let f = cut(
        r#"{"result":{"tool":[]},"id":8}"#,
        json!(7),
        ListKind::Tools,
    )
    .unwrap();
    assert_eq!((f.body, f.answered), (None, 0));
    assert_eq!(
        cut(
            r#"{"result":{"tool":[]},"id":7}"#,
            json!(7),
            ListKind::Tools
        ),
        Err(Unfilterable)
    );
}

#[test]
fn keys_that_decide_what_is_cut_appear_once() {
    // Another client might read the first `id`, `result` or list: the one not judged.
    for body in [
        r#"{"id":8,"id":7,"result":{"tools":[{"name":"secret"}]}}"#,
        r#"{"id":7,"id":8,"result":{"tools":[{"name":"secret"}]}}"#,
        r#"{"id":7,"result":{"tools":[{"name":"secret"}]},"result":{"tools":[]}}"#,
        r#"{"id":7,"result":{"tools":[{"name":"secret"}],"tools":[]}}"#,
        r#"{"id":7,"result":{"tools":[],"t\u006fols":[{"name":"secret"}]}}"#,
    ] {
        assert_eq!(
            cut(body, json!(7), ListKind::Tools),
            Err(Unfilterable),
            "{body}"
        );
    }
    // In a response nobody awaits they do not matter.
    let f = cut(
        r#"{"id":8,"id":9,"result":{"tools":[1]},"result":2}"#,
        json!(7),
        ListKind::Tools,
    );
    assert_eq!(f.map(|f| f.answered), Ok(0));
    // An entry naming itself twice is hidden, whichever name a client reads.
    let f = cut(
        r#"{"id":7,"result":{"tools":[{"name":"a","name":"b"},{"name":"c","n\u0061me":"c"},{"name":"d"}]}}"#,
        json!(7),
        ListKind::Tools,
    )
    .unwrap();
    assert_eq!(f.hidden, 2);
    assert_eq!(text(f), r#"{"id":7,"result":{"tools":[{"name":"d"}]}}"#);
}

#[test]
fn json_that_is_not_json_is_unfilterable() {
    for body in [
        &br#"{"id":7,"result":{"tools":[{"name":"a"},]}}"#[..],
        br#"{"id":7,"result":{"tools":[{"name":"a"}]}} x"#,
        br#"{"id":7,"result":{"tools":[{"name":"a","d":01}]}}"#,
        br#"{"id":7,"result":{"tools":[{"name":"\ud800"}]}}"#,
        b"{\"id\":7,\"result\":{\"tools\":[{\"name\":\"a\",\"d\":\"\xff\"}]}}",
        b"\xef\xbb\xbf{\"id\":7,\"result\":{\"tools\":[]}}",
        b"",
    ] {
        assert_eq!(
            filter_json(body, &p(json!(7), ListKind::Tools), &keep_even),
            Err(Unfilterable),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn sse_batches_and_malformed_events() {
    // A batch in one event (allowed by MCP 2025-03-26) is filtered like a JSON batch.
    let body = "event: message\ndata: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"a\"}]}}]\n\n";
    let f = filter_sse(body.as_bytes(), &p(json!(1), ListKind::Tools), &keep_even).unwrap();
    assert_eq!((f.hidden, f.answered), (1, 1));
    assert_eq!(
        text(f),
        "event: message\ndata: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"}]}}]\n\n"
    );
    // Data that is not JSON is no response: its event keeps its bytes, even once cut into.
    let body = "data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}} trailing\n\n\
                data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n";
    let f = filter_sse(body.as_bytes(), &p(json!(1), ListKind::Tools), &keep_even).unwrap();
    assert_eq!((f.hidden, f.answered), (1, 1));
    assert_eq!(
        text(f),
        "data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}} trailing\n\n\
         data: {\"id\":1,\"result\":{\"tools\":[]}}\n\n"
    );
    // An awaited response without its list is unfilterable, in an event as in a body.
    let body = "data: {\"id\":1,\"result\":{}}\n\n";
    assert_eq!(
        filter_sse(body.as_bytes(), &p(json!(1), ListKind::Tools), &keep_even),
        Err(Unfilterable)
    );
}
