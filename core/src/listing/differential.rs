//! A differential test of the listing filter against the serde path it replaced (a `Value`
//! parse, `retain`, re-serialisation), kept here to compare against: on generated and mutated
//! listings, JSON and SSE, both must give bodies that parse to the same values, and every
//! difference must be of a named kind.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use super::*;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::json;
use std::fmt;

use super::old;
use crate::mutation::{mutate, Rng};

/// An event's data as SSE joins it (`None` without `data:` lines), as both paths read it.
pub(super) fn event_data(lines: &[&str]) -> Option<String> {
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
    any.then_some(data)
}

// ---- What the differences may be. ----

/// A JSON value with every member of an object kept, repeated keys included (a `Value` keeps
/// the last), to find the keys that appear twice.
enum Multi {
    Object(Vec<(String, Multi)>),
    Array(Vec<Multi>),
    Leaf(Value),
}

impl<'de> Deserialize<'de> for Multi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MultiVisitor)
    }
}

struct MultiVisitor;

impl<'de> Visitor<'de> for MultiVisitor {
    type Value = Multi;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Multi, E> {
        Ok(Multi::Leaf(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Multi, E> {
        Ok(Multi::Leaf(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Multi, E> {
        Ok(Multi::Leaf(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Multi, E> {
        Ok(Multi::Leaf(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Multi, E> {
        Ok(Multi::Leaf(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Multi, E> {
        Ok(Multi::Leaf(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Multi, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(Multi::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Multi, A::Error> {
        let mut v = Vec::new();
        while let Some((k, x)) = map.next_entry::<String, Multi>()? {
            v.push((k, x));
        }
        Ok(Multi::Object(v))
    }
}

impl Multi {
    fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s Multi> + 's {
        let members: &[(String, Multi)] = match self {
            Multi::Object(m) => m,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Repeated keys in the awaited responses of `data`: (one that decides what is cut: `id`,
/// `result` or the list; entries naming themselves twice).
fn repeated(data: &[u8], pending: &[Pending]) -> (bool, usize) {
    let Ok(m) = serde_json::from_slice::<Multi>(data) else {
        return (false, 0);
    };
    let messages: Vec<&Multi> = match &m {
        Multi::Array(ms) => ms.iter().collect(),
        one => vec![one],
    };
    let (mut deciding, mut entries) = (false, 0);
    for msg in messages {
        let kind = msg.all("id").find_map(|id| match id {
            Multi::Leaf(v) => pending.iter().find(|p| &p.id == v).map(|p| p.kind),
            _ => None,
        });
        let Some(kind) = kind else { continue };
        let results: Vec<&Multi> = msg.all("result").collect();
        deciding |= msg.all("id").count() > 1 || results.len() > 1;
        for r in results {
            let lists: Vec<&Multi> = r.all(kind.field()).collect();
            deciding |= lists.len() > 1;
            for l in lists {
                if let Multi::Array(es) = l {
                    entries += es.iter().filter(|e| e.all(kind.key()).count() > 1).count();
                }
            }
        }
    }
    (deciding, entries)
}

/// serde_json refused `data` for what the walk only checks and skips: a number out of `f64`'s
/// range, or a lone UTF-16 surrogate escape in a string it does not decode.
fn refused_by_serde_only(data: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(data) {
        Ok(_) => false,
        Err(e) => {
            let e = e.to_string();
            ["number out of range", "surrogate", "hex escape"]
                .iter()
                .any(|why| e.contains(why))
        }
    }
}

/// An SSE event's data holds a batch with an awaited response: the old path passed it on
/// untouched (it looked for an `id` on the array), the new one filters it as a JSON batch.
fn batch_in_event(data: &[u8], pending: &[Pending]) -> bool {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(ms)) => ms.iter().any(|m| {
            m.get("id")
                .is_some_and(|id| pending.iter().any(|p| &p.id == id))
        }),
        _ => false,
    }
}

// ---- Inputs. ----

fn keep(_: ListKind, k: &str) -> bool {
    !k.contains("secret")
}

const KINDS: [ListKind; 4] = [
    ListKind::Tools,
    ListKind::Resources,
    ListKind::ResourceTemplates,
    ListKind::Prompts,
];

const NAMES: &[&str] = &[
    "\"get_ticket\"",
    "\"secret_admin\"",
    "\"se\\u0063ret\"",
    "\"ok\\n\\u00e9\"",
    "\"t://1\"",
    "\"secret://x\"",
    "null",
    "1",
    "{\"name\":\"secret\"}",
];

const IDS: &[&str] = &["7", "\"r1\"", "8", "7.0", "\"7\"", "null"];

/// A listing response (or another message) as a server might write it.
fn message(rng: &mut Rng, kind: ListKind) -> String {
    let sp = if rng.below(3) == 0 { " " } else { "" };
    let mut entries = Vec::new();
    for _ in 0..rng.below(6) {
        let mut members = vec![format!("\"{}\":{sp}{}", kind.key(), rng.pick(NAMES))];
        match rng.below(5) {
            0 => members.clear(),
            1 => members.push(
                r#""description":"d [,] {\"name\":\"x\"}","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}}"#.into(),
            ),
            2 => members.insert(0, r#""title":"T","annotations":{"readOnlyHint":true,"n":[1,2.5e3,-0]}"#.into()),
            // Named twice: a name that hides, and one that does not.
            3 if rng.below(4) == 0 => members.push(format!("\"{}\":\"secret_{}\"", kind.key(), rng.below(2))),
            3 if rng.below(4) == 0 => members.push(format!("\"{}\":\"shown\"", kind.key())),
            _ => {}
        }
        entries.push(match rng.below(12) {
            0 => "42".to_string(),
            1 => "[]".to_string(),
            _ => format!("{{{}}}", members.join(&format!(",{sp}"))),
        });
    }
    let list = format!("[{sp}{}{sp}]", entries.join(&format!("{sp},{sp}")));
    let mut result = vec![format!("\"{}\":{sp}{list}", kind.field())];
    if rng.below(2) == 0 {
        result.push("\"nextCursor\":\"c2\"".into());
    }
    if rng.below(4) == 0 {
        result.insert(0, "\"_meta\":{\"tools\":[{\"name\":\"secret\"}]}".into());
    }
    let result = format!("{{{}}}", result.join(","));
    let id = format!("\"id\":{sp}{}", rng.pick(IDS));
    let mut members = vec!["\"jsonrpc\":\"2.0\"".to_string(), id];
    match rng.below(8) {
        0 => members.push(r#""error":{"code":-32601,"message":"no"}"#.into()),
        1 => members[1] = r#""method":"notifications/tools/list_changed""#.into(),
        _ => members.push(format!("\"result\":{sp}{result}")),
    }
    if rng.below(20) == 0 {
        // A deciding key twice.
        let again = members[rng.below(members.len())].clone();
        members.push(again);
    }
    if rng.below(3) == 0 {
        members.reverse();
    }
    format!("{{{}}}", members.join(&format!(",{sp}")))
}

fn json_body(rng: &mut Rng, kind: ListKind) -> String {
    if rng.below(4) == 0 {
        let ms: Vec<String> = (0..1 + rng.below(3)).map(|_| message(rng, kind)).collect();
        format!("[{}]", ms.join(","))
    } else {
        message(rng, kind)
    }
}

fn sse_body(rng: &mut Rng, kind: ListKind) -> String {
    let nl = if rng.below(4) == 0 { "\r\n" } else { "\n" };
    let mut out = String::new();
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 => out.push_str(&format!("id: 0{nl}retry: 3000{nl}data:{nl}{nl}")),
            1 => out.push_str(&format!(
                "event: message{nl}data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}{nl}{nl}"
            )),
            _ => {
                let data = json_body(rng, kind);
                out.push_str(&format!("event: message{nl}id: 5{nl}"));
                if rng.below(4) == 0 {
                    // Over several data lines, cut where a comma joins two members.
                    for part in data.split_inclusive(",\"") {
                        out.push_str(&format!("data: {part}{nl}"));
                    }
                } else {
                    out.push_str(&format!("data: {data}{nl}"));
                }
                out.push_str(nl);
            }
        }
    }
    if rng.below(4) == 0 {
        out.push_str("data: {\"partial");
    }
    out
}

/// Pieces a mutation splices in: the tokens of JSON, SSE and listings.
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
    b"1e400",
    b"01",
    b"\"id\":7,",
    b"\"id\":",
    b"\"result\":",
    b"\"tools\":[],",
    b"\"prompts\":[{\"name\":\"secret\"}],",
    b"{\"name\":\"secret\"},",
    b"\"name\":\"secret\",",
    b"\"uri\":\"x\",",
    b"\"n\\u0061me\":\"a\",",
    b"\xff",
    b"\xc3\xa9",
    b" ",
    b"\n",
    b"\r",
    b"\n\n",
    b"data: ",
    b"[[[[[[[[",
];

// ---- The comparison. ----

#[derive(Default, Debug)]
struct Tally {
    same: usize,
    filtered: usize,
    both_refuse: usize,
    repeated_deciding: usize,
    repeated_entry: usize,
    serde_only: usize,
    batch_in_event: usize,
    lone_cr: usize,
}

fn pending_for(kind: ListKind) -> Vec<Pending> {
    vec![
        Pending { id: json!(7), kind },
        Pending {
            id: json!("r1"),
            kind,
        },
    ]
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn compare_json(b: &[u8], pending: &[Pending], t: &mut Tally) {
    let old = old::filter_json(b, pending, &keep);
    let new = filter_json(b, pending, &keep);
    match (old, new) {
        (Ok(o), Ok(n)) => {
            let (deciding, twice) = repeated(b, pending);
            assert!(!deciding, "read a repeated deciding key: {}", show(b));
            if twice > 0 && n.hidden != o.hidden {
                // Hidden here, kept by the old path when its last name was shown.
                assert!(
                    n.hidden > o.hidden && n.hidden <= o.hidden + twice,
                    "{}",
                    show(b)
                );
                t.repeated_entry += 1;
                return;
            }
            assert_eq!(
                (o.hidden, o.answered),
                (n.hidden, n.answered),
                "{}",
                show(b)
            );
            let parse = |f: &Filtered| -> Value {
                serde_json::from_slice(f.body.as_deref().unwrap_or(b)).unwrap()
            };
            assert_eq!(parse(&o), parse(&n), "{}", show(b));
            if n.hidden > 0 {
                t.filtered += 1;
            }
            t.same += 1;
        }
        (Err(_), Err(_)) => t.both_refuse += 1,
        (Ok(_), Err(_)) => {
            assert!(
                repeated(b, pending).0,
                "refused what the old path filtered: {}",
                show(b)
            );
            t.repeated_deciding += 1;
        }
        (Err(_), Ok(_)) => {
            assert!(
                refused_by_serde_only(b),
                "filtered what the old path refused: {}",
                show(b)
            );
            t.serde_only += 1;
        }
    }
}

/// An SSE body's events as a client reads them: the other lines, the data as a value when it
/// is JSON, and the data's text; the trailing incomplete event as its text.
type Event = (Vec<String>, Option<Value>, String);

fn events(body: &str) -> (Vec<Event>, String) {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for line in body.split_inclusive('\n') {
        if !line.trim_end_matches(['\n', '\r']).is_empty() || !line.ends_with('\n') {
            lines.push(line);
            continue;
        }
        let others = lines
            .iter()
            .filter(|l| !l.starts_with("data:"))
            .map(|l| l.to_string())
            .collect();
        let data = event_data(&lines).unwrap_or_default();
        out.push((others, serde_json::from_str(&data).ok(), data));
        lines.clear();
    }
    (out, lines.concat())
}

/// The named kind of difference an input event's data is of, tallied; false if none.
fn named(data: &str, pending: &[Pending], t: &mut Tally) -> bool {
    let (deciding, twice) = repeated(data.as_bytes(), pending);
    if deciding {
        t.repeated_deciding += 1;
    } else if twice > 0 {
        t.repeated_entry += 1;
    } else if batch_in_event(data.as_bytes(), pending) {
        t.batch_in_event += 1;
    } else if refused_by_serde_only(data.as_bytes()) {
        t.serde_only += 1;
    } else {
        return false;
    }
    true
}

/// Where the old and new SSE outputs differ, each differing event must be of a named kind
/// (judged on the input event's data).
fn compare_sse(b: &[u8], pending: &[Pending], t: &mut Tally) {
    let old = old::filter_sse(b, pending, &keep);
    let new = filter_sse(b, pending, &keep);
    // A lone CR ends a line for a client but not for either reader: refused now, whatever the
    // old path made of it.
    if std::str::from_utf8(b).is_ok_and(super::has_lone_cr) {
        assert!(new.is_err(), "a lone CR passed: {}", show(b));
        t.lone_cr += 1;
        return;
    }
    let input = std::str::from_utf8(b).map(events).ok();
    let any_named = |t: &mut Tally| {
        let evs = input.as_ref().map_or(&[][..], |(evs, _)| &evs[..]);
        evs.iter().any(|(_, _, data)| named(data, pending, t))
    };
    match (old, new) {
        (Ok(o), Ok(n)) => {
            let out =
                |f: &Filtered| String::from_utf8(f.body.clone().unwrap_or(b.to_vec())).unwrap();
            let (oe, ot) = events(&out(&o));
            let (ne, nt) = events(&out(&n));
            let (ie, _) = input.as_ref().unwrap();
            assert_eq!(ot, nt, "{}", show(b));
            assert_eq!((oe.len(), ne.len()), (ie.len(), ie.len()), "{}", show(b));
            let mut differ = false;
            for (i, ((oo, ov, od), (no, nv, nd))) in oe.iter().zip(&ne).enumerate() {
                let same = oo == no
                    && match (ov, nv) {
                        (Some(a), Some(b)) => a == b,
                        (None, None) => od == nd,
                        _ => false,
                    };
                if !same {
                    assert!(
                        named(&ie[i].2, pending, t),
                        "event {i} differs:\nold {od}\nnew {nd}\nin {}",
                        show(b)
                    );
                    differ = true;
                }
            }
            if !differ && (o.hidden, o.answered) != (n.hidden, n.answered) {
                assert!(any_named(t), "counts differ: {o:?} {n:?} {}", show(b));
                differ = true;
            }
            if !differ {
                t.same += 1;
                if n.hidden > 0 {
                    t.filtered += 1;
                }
            }
        }
        (Err(_), Err(_)) => t.both_refuse += 1,
        (Ok(_), Err(_)) => assert!(
            any_named(t),
            "refused what the old path filtered: {}",
            show(b)
        ),
        (Err(_), Ok(_)) => assert!(
            any_named(t),
            "filtered what the old path refused: {}",
            show(b)
        ),
    }
}

#[test]
fn agrees_with_the_serde_path_it_replaced() {
    let mut rng = Rng(0x5eed_115f_f00d_0002);
    let mut t = Tally::default();
    for sse in [false, true] {
        for i in 0..25_000 {
            let kind = KINDS[rng.below(4)];
            let mut b = if sse {
                sse_body(&mut rng, kind)
            } else {
                json_body(&mut rng, kind)
            }
            .into_bytes();
            // A quarter unmutated: well-formed listings of every shape.
            if i % 4 != 0 {
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, &mut b, PIECES);
                }
            }
            let pending = pending_for(kind);
            if sse {
                compare_sse(&b, &pending, &mut t);
            } else {
                compare_json(&b, &pending, &mut t);
            }
        }
    }
    println!("{t:?}");
    // The generator must reach every branch worth comparing.
    assert!(t.same > 10_000, "{t:?}");
    assert!(t.filtered > 3_000, "{t:?}");
    assert!(t.both_refuse > 3_000, "{t:?}");
    assert!(t.repeated_deciding > 10 && t.repeated_entry > 10, "{t:?}");
    assert!(t.serde_only > 10 && t.batch_in_event > 10, "{t:?}");
    assert!(t.lone_cr > 10, "{t:?}");
}
