//! Listing filters: which entries of `tools/list` and friends a token sees, applied to JSON and SSE bodies.
//!
//! The filter adapter only buffers the response of a listing request and hands it here with
//! the request ids it waits for; everything else it streams untouched. Only the matching
//! response (by JSON-RPC `id`) is parsed and re-serialised; other SSE events keep their bytes.

use crate::catalog::EntryKind;
pub use crate::config::{Hide, ListingsDoc};
use crate::jsonrpc;
use crate::policy::Server;
use crate::reach::{access, Access};
use crate::scopes::ScopeSet;
use serde_json::Value;

/// The four listings, by the method that asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl ListKind {
    pub fn of(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            "prompts/list" => Some(ListKind::Prompts),
            _ => None,
        }
    }

    /// The member of `result` that holds the entries.
    fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The member of an entry that names it.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    fn entry(self) -> EntryKind {
        match self {
            ListKind::Tools => EntryKind::Tool,
            ListKind::Resources => EntryKind::Resource,
            ListKind::ResourceTemplates => EntryKind::ResourceTemplate,
            ListKind::Prompts => EntryKind::Prompt,
        }
    }
}

/// A listing request whose response is awaited.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: Value,
    pub kind: ListKind,
}

/// The listing requests in a request body (one message or a batch); empty when there are none.
pub fn pending(body: &[u8]) -> Vec<Pending> {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let one = |m: &Value| -> Option<Pending> {
        let kind = ListKind::of(m.get("method")?.as_str()?)?;
        let id = m.get("id").filter(|id| !id.is_null())?.clone();
        Some(Pending { id, kind })
    };
    match &parsed {
        Value::Array(ms) => ms.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}

/// Whether a token with `effective` scopes sees an entry.
pub fn visible(server: &Server, effective: ScopeSet, kind: ListKind, key: &str) -> bool {
    match access(server, kind.entry(), key) {
        Access::Never => false,
        Access::Needs(needs) => {
            server.hide == Hide::NeverGrantable || needs.is_subset_of(effective)
        }
    }
}

/// What filtering made of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The new body, or `None` when nothing was hidden (the original bytes stand).
    pub body: Option<Vec<u8>>,
    pub hidden: usize,
    /// How many of the awaited responses were found.
    pub answered: usize,
}

/// A listing response that cannot be filtered (not JSON, not UTF-8, a result without its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfilterable;

type Keep<'a> = &'a dyn Fn(ListKind, &str) -> bool;

/// Filters one JSON-RPC message if it answers an awaited request: `Ok(Some(hidden))`.
fn filter_message(
    msg: &mut Value,
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Option<usize>, Unfilterable> {
    let Some(p) = msg
        .get("id")
        .and_then(|id| pending.iter().find(|p| &p.id == id))
    else {
        return Ok(None);
    };
    // An error response lists nothing.
    let Some(result) = msg.get_mut("result") else {
        return Ok(Some(0));
    };
    let Some(Value::Array(entries)) = result.get_mut(p.kind.field()) else {
        return Err(Unfilterable);
    };
    let before = entries.len();
    // An entry without its name cannot be judged: hide it.
    entries.retain(|e| {
        e.get(p.kind.key())
            .and_then(Value::as_str)
            .is_some_and(|k| keep(p.kind, k))
    });
    Ok(Some(before - entries.len()))
}

/// Filters a JSON body (one response or a batch of them). `nextCursor` and every other member
/// of the result stay as they were.
pub fn filter_json(
    body: &[u8],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Filtered, Unfilterable> {
    let mut v: Value = serde_json::from_slice(body).map_err(|_| Unfilterable)?;
    let mut hidden = 0;
    let mut answered = 0;
    let messages: Vec<&mut Value> = match &mut v {
        Value::Array(ms) => ms.iter_mut().collect(),
        m => vec![m],
    };
    for m in messages {
        if let Some(h) = filter_message(m, pending, keep)? {
            hidden += h;
            answered += 1;
        }
    }
    let body = if hidden > 0 {
        Some(serde_json::to_vec(&v).map_err(|_| Unfilterable)?)
    } else {
        None
    };
    Ok(Filtered {
        body,
        hidden,
        answered,
    })
}

/// Filters an SSE body: only the complete events whose data answers an awaited request are
/// rewritten (their `id:`/`event:` lines kept); every other event, and a trailing incomplete
/// one, keeps its exact bytes.
pub fn filter_sse(
    body: &[u8],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Filtered, Unfilterable> {
    let text = std::str::from_utf8(body).map_err(|_| Unfilterable)?;
    let mut out = String::with_capacity(text.len());
    let mut hidden = 0;
    let mut answered = 0;
    let mut event: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if !bare.is_empty() || !line.ends_with('\n') {
            event.push(line);
            continue;
        }
        // A blank line ends the event.
        match filter_event(&event, pending, keep)? {
            Some((rewritten, h)) => {
                out.push_str(&rewritten);
                hidden += h;
                answered += 1;
            }
            None => event.iter().for_each(|l| out.push_str(l)),
        }
        out.push_str(line);
        event.clear();
    }
    event.iter().for_each(|l| out.push_str(l));
    Ok(Filtered {
        body: (hidden > 0).then(|| out.into_bytes()),
        hidden,
        answered,
    })
}

/// One event's lines (without the blank line): the rewritten lines and hidden count when it
/// answers an awaited request.
fn filter_event(
    lines: &[&str],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Option<(String, usize)>, Unfilterable> {
    let mut data = String::new();
    let mut any = false;
    for l in lines {
        let bare = l.trim_end_matches(['\n', '\r']);
        if let Some(d) = bare.strip_prefix("data:") {
            if any {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
            any = true;
        }
    }
    if !any {
        return Ok(None);
    }
    let Ok(mut msg) = serde_json::from_slice::<Value>(data.as_bytes()) else {
        return Ok(None);
    };
    let Some(h) = filter_message(&mut msg, pending, keep)? else {
        return Ok(None);
    };
    let mut out = String::new();
    let mut wrote = false;
    for l in lines {
        if l.starts_with("data:") {
            if !wrote {
                out.push_str("data: ");
                out.push_str(&msg.to_string());
                out.push('\n');
                wrote = true;
            }
        } else {
            out.push_str(l);
        }
    }
    Ok(Some((out, h)))
}

/// Filters a listing response by its content type (`text/event-stream` or JSON).
pub fn filter(
    sse: bool,
    body: &[u8],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Filtered, Unfilterable> {
    if sse {
        filter_sse(body, pending, keep)
    } else {
        filter_json(body, pending, keep)
    }
}

/// Whether a response that could not be filtered must be replaced rather than passed on.
///
/// Passing it untouched shows what the server listed. That is acceptable when every listed
/// entry is one a step-up could reach (only `hide: not_granted` would have hidden it); it is
/// not when the document denies entries outright, so then the client gets a JSON-RPC error.
pub fn must_replace_unfiltered(server: &Server) -> bool {
    server.catalog.denies_anything()
}

/// The JSON-RPC error that replaces an unfilterable listing, as JSON or as SSE events.
pub fn unfilterable_body(sse: bool, pending: &[Pending]) -> Vec<u8> {
    let message = "the gateway could not filter this listing";
    let errors: Vec<Value> = pending
        .iter()
        .map(|p| jsonrpc::error(&p.id, jsonrpc::LISTING_UNFILTERABLE, message, None))
        .collect();
    if sse {
        let mut out = String::new();
        for e in &errors {
            out.push_str("event: message\ndata: ");
            out.push_str(&e.to_string());
            out.push_str("\n\n");
        }
        return out.into_bytes();
    }
    match errors.as_slice() {
        [one] => one.to_string().into_bytes(),
        _ => Value::Array(errors).to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            out,
            "data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"prompts\":[]}}\n\r\n"
        );
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
}
