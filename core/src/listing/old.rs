//! The serde path the listing filter replaced (a `Value` parse, `retain`, re-serialisation),
//! kept for the differential test to compare against.
#![cfg(test)]

use super::{Filtered, Keep, Pending, Unfilterable};
use serde_json::Value;

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
    let Some(result) = msg.get_mut("result") else {
        return Ok(Some(0));
    };
    let Some(Value::Array(entries)) = result.get_mut(p.kind.field()) else {
        return Err(Unfilterable);
    };
    let before = entries.len();
    entries.retain(|e| {
        e.get(p.kind.key())
            .and_then(Value::as_str)
            .is_some_and(|k| keep(p.kind, k))
    });
    Ok(Some(before - entries.len()))
}

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

fn filter_event(
    lines: &[&str],
    pending: &[Pending],
    keep: Keep<'_>,
) -> Result<Option<(String, usize)>, Unfilterable> {
    let data = super::differential::event_data(lines);
    let Some(data) = data else {
        return Ok(None);
    };
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
