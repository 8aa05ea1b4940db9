//! Listing filters: which entries of `tools/list` and friends a token sees, applied to JSON and SSE bodies.
//!
//! The filter adapter only buffers the response of a listing request and hands it here with
//! the request ids it waits for; everything else it streams untouched. The body is walked once
//! (`walk`) and the new one is the old one without the hidden entries' bytes: nothing
//! is parsed into a tree or re-serialised, and other SSE events keep their bytes.

mod walk;

use crate::catalog::EntryKind;
pub use crate::config::{Hide, ListingsDoc};
use crate::json_scan::{Malformed, Scan};
use crate::jsonrpc;
use crate::policy::Server;
use crate::reach::{access, Access};
use crate::scopes::ScopeSet;
use serde_json::Value;
use walk::{Cuts, Walk};

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
    pub(crate) fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The member of an entry that names it.
    pub(crate) fn key(self) -> &'static str {
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

pub(crate) type Keep<'a> = &'a dyn Fn(ListKind, &str) -> bool;

/// Filters a JSON body (one response or a batch of them). `nextCursor` and every other member
/// of the result stay as they were: the new body is the old one without the hidden entries'
/// bytes (and the commas that joined them).
pub fn filter_json(
    body: &[u8],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Filtered, Unfilterable> {
    let text = std::str::from_utf8(body).map_err(|_| Unfilterable)?;
    let mut cuts = Cuts::new(text);
    let mut walk = Walk {
        pending,
        keep,
        unfilterable: false,
    };
    walk.body(&mut Scan::new(text, 0), &mut cuts)
        .map_err(|_| Unfilterable)?;
    if walk.unfilterable {
        return Err(Unfilterable);
    }
    let (hidden, answered) = (cuts.hidden, cuts.answered);
    Ok(Filtered {
        body: cuts.finish(),
        hidden,
        answered,
    })
}

/// Filters an SSE body: only the complete events whose data answers an awaited request are
/// changed (their other lines kept); every other event, and a trailing incomplete one, keeps
/// its exact bytes. Data that is not JSON is not a response: its event stays as it was.
pub fn filter_sse(
    body: &[u8],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Filtered, Unfilterable> {
    let text = std::str::from_utf8(body).map_err(|_| Unfilterable)?;
    // SSE also ends a line at a lone CR. This reader splits at LF only, so such a body could
    // hide a `data:` line from it that a client reads (`: c\rdata: {listing}`): not filtered
    // means not passed.
    if has_lone_cr(text) {
        return Err(Unfilterable);
    }
    let mut cuts = Cuts::new(text);
    let mut walk = Walk {
        pending,
        keep,
        unfilterable: false,
    };
    let (mut event_start, mut at) = (0, 0);
    for line in text.split_inclusive('\n') {
        let line_start = at;
        at += line.len();
        if line.ends_with('\n') && line.trim_end_matches(['\n', '\r']).is_empty() {
            // A blank line ends the event.
            filter_event(text, event_start..line_start, &mut walk, &mut cuts)?;
            event_start = at;
        }
    }
    let (hidden, answered) = (cuts.hidden, cuts.answered);
    Ok(Filtered {
        body: cuts.finish(),
        hidden,
        answered,
    })
}

/// Whether a CR ends a line on its own (not as part of CRLF).
fn has_lone_cr(text: &str) -> bool {
    // `match_indices` on a char searches word-at-a-time (memchr): a byte-by-byte loop over an
    // 8 KB listing cost about 190,000 instructions in V8.
    let b = text.as_bytes();
    text.match_indices('\r')
        .any(|(i, _)| b.get(i + 1) != Some(&b'\n'))
}

/// One complete event (`range` of `text`, without its blank line). Its data, the `data:`
/// lines' values joined by newlines, is walked in place when it is one line (as servers send
/// it); data over several lines is joined, filtered, and written back as one line.
fn filter_event<'a>(
    text: &'a str,
    range: std::ops::Range<usize>,
    walk: &mut Walk<'_, '_>,
    cuts: &mut Cuts<'a>,
) -> Result<(), Unfilterable> {
    let event = text.get(range.clone()).ok_or(Unfilterable)?;
    let mut data_lines = 0;
    let mut data = 0..0;
    let mut at = range.start;
    for line in event.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(d) = bare.strip_prefix("data:") {
            data_lines += 1;
            data = at + 5 + usize::from(d.starts_with(' '))..at + bare.len();
        }
        at += line.len();
    }
    if data_lines == 0 {
        return Ok(());
    }
    if data_lines > 1 {
        return filter_joined(event, range, walk, cuts);
    }
    let mark = cuts.mark();
    let until = text.get(..data.end).ok_or(Unfilterable)?;
    walk.unfilterable = false;
    match walk.body(&mut Scan::new(until, data.start), cuts) {
        Err(Malformed) => {
            cuts.reset(mark);
            Ok(())
        }
        Ok(()) if walk.unfilterable => Err(Unfilterable),
        Ok(()) => Ok(()),
    }
}

/// An event whose data spans several `data:` lines: filtered as the joined data and, when
/// something was hidden, rewritten with it on its first `data:` line (the newlines that joined
/// the lines are whitespace between JSON tokens, so they become spaces).
fn filter_joined<'a>(
    event: &str,
    range: std::ops::Range<usize>,
    walk: &mut Walk<'_, '_>,
    cuts: &mut Cuts<'a>,
) -> Result<(), Unfilterable> {
    let mut data = String::new();
    let mut any = false;
    for line in event.split_inclusive('\n') {
        if let Some(d) = line.trim_end_matches(['\n', '\r']).strip_prefix("data:") {
            if std::mem::replace(&mut any, true) {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    let mut inner = Cuts::new(&data);
    walk.unfilterable = false;
    match walk.body(&mut Scan::new(&data, 0), &mut inner) {
        Err(Malformed) => return Ok(()),
        Ok(()) if walk.unfilterable => return Err(Unfilterable),
        Ok(()) => {}
    }
    let (hidden, answered) = (inner.hidden, inner.answered);
    cuts.answered += answered;
    let Some(filtered) = inner.finish() else {
        return Ok(());
    };
    let filtered = String::from_utf8(filtered).map_err(|_| Unfilterable)?;
    let mut out = String::with_capacity(event.len());
    let mut wrote = false;
    for line in event.split_inclusive('\n') {
        if !line.starts_with("data:") {
            out.push_str(line);
        } else if !std::mem::replace(&mut wrote, true) {
            out.push_str("data: ");
            out.push_str(&filtered.replace('\n', " "));
            out.push('\n');
        }
    }
    cuts.hidden += hidden;
    if cuts.replace(range.start, range.end, &out) {
        Ok(())
    } else {
        Err(Unfilterable)
    }
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
mod tests;

#[cfg(test)]
mod differential;

#[cfg(test)]
mod old;
