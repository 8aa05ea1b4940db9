//! Decodes the stream's dynamic metadata, as Envoy serializes it for a filter, down to what
//! `envoy.filters.http.mcp` recorded: one property read instead of one per key.
//!
//! The bytes are an `envoy.config.core.v3.Metadata` (`map<string, google.protobuf.Struct>
//! filter_metadata = 1`), each `Struct` a `map<string, Value> fields = 1`, each `Value` one of
//! `null_value = 1`, `double number_value = 2`, `string string_value = 3`, `bool bool_value = 4`,
//! `Struct struct_value = 5`, `ListValue list_value = 6`. Only the keys a decision reads are
//! decoded (a fixed depth: namespace, `params`, `params.name`/`params.uri`; nothing recurses).
//! Anything Envoy would never write (a duplicate key, a wrong type, a `Value` with two kinds,
//! broken wire bytes) is [`Malformed`], and the caller refuses the request.

use crate::mcp::{NativeMetadata, RequestId, MCP_METADATA_NAMESPACE};
pub use crate::proto_wire::Malformed;
use crate::proto_wire::{fields, Wire};

/// One `google.protobuf.Value`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind<'a> {
    Null,
    Number(f64),
    Text(&'a str),
    Bool(bool),
    Struct(&'a [u8]),
    List,
}

fn utf8(bytes: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(bytes).map_err(|_| Malformed)
}

fn value(bytes: &[u8]) -> Result<Kind<'_>, Malformed> {
    let mut kind = None;
    for field in fields(bytes) {
        let k = match field? {
            (1, Wire::Varint(_)) => Kind::Null,
            (2, Wire::Fixed64(bits)) => Kind::Number(f64::from_bits(bits)),
            (3, Wire::Bytes(s)) => Kind::Text(utf8(s)?),
            (4, Wire::Varint(b @ (0 | 1))) => Kind::Bool(b == 1),
            (5, Wire::Bytes(s)) => Kind::Struct(s),
            (6, Wire::Bytes(_)) => Kind::List,
            (1..=6, _) => return Err(Malformed),
            _ => continue,
        };
        // A oneof set twice reads as the last on the wire; Envoy never writes that.
        if kind.replace(k).is_some() {
            return Err(Malformed);
        }
    }
    Ok(kind.unwrap_or(Kind::Null))
}

/// A map entry (`key = 1`, `value = 2`): its key and its value's bytes.
fn entry(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (mut key, mut val) = (None, None);
    for field in fields(bytes) {
        match field? {
            (1, Wire::Bytes(k)) if key.is_none() => key = Some(k),
            (2, Wire::Bytes(v)) if val.is_none() => val = Some(v),
            (1 | 2, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok((key.unwrap_or_default(), val.unwrap_or_default()))
}

/// Calls `each` with every key and value of a `Struct`.
fn struct_fields<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(&'a [u8], Kind<'a>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    for field in fields(bytes) {
        match field? {
            (1, Wire::Bytes(e)) => {
                let (key, val) = entry(e)?;
                each(key, value(val)?)?;
            }
            (1, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(())
}

/// Sets `slot` once: a second value for the same key is malformed.
fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), Malformed> {
    match slot.replace(v) {
        Some(_) => Err(Malformed),
        None => Ok(()),
    }
}

/// A string, or nothing for a JSON `null`.
fn text(k: Kind<'_>) -> Result<Option<String>, Malformed> {
    match k {
        Kind::Text(s) => Ok(Some(s.to_string())),
        Kind::Null => Ok(None),
        _ => Err(Malformed),
    }
}

fn flag(k: Kind<'_>) -> Result<bool, Malformed> {
    match k {
        Kind::Bool(b) => Ok(b),
        _ => Err(Malformed),
    }
}

/// The largest integer a double holds exactly (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// The `id` as the client sent it, when the native filter kept it exactly: a string, or an
/// integer a double holds exactly. Anything else (a rounded big number, a fraction, `null`, an
/// object) answers `null`, as JSON-RPC does when the id cannot be determined.
fn request_id(k: Kind<'_>) -> Option<RequestId> {
    match k {
        Kind::Text(s) => Some(RequestId::Text(s.to_string())),
        Kind::Number(n) if n.fract() == 0.0 && n.abs() <= EXACT => {
            Some(RequestId::Number(n as i64))
        }
        _ => None,
    }
}

/// `params.name` and `params.uri`.
fn params(bytes: &[u8], m: &mut NativeMetadata) -> Result<(), Malformed> {
    let (mut name, mut uri) = (None, None);
    struct_fields(bytes, |key, k| match key {
        b"name" => once(&mut name, text(k)?),
        b"uri" => once(&mut uri, text(k)?),
        _ => Ok(()),
    })?;
    m.name = name.flatten();
    m.uri = uri.flatten();
    Ok(())
}

/// The namespace's `Struct`.
fn namespace(bytes: &[u8]) -> Result<NativeMetadata, Malformed> {
    let mut m = NativeMetadata::default();
    let (mut method, mut id, mut par, mut is_mcp, mut exceeding, mut passthrough) =
        (None, None, None, None, None, None);
    struct_fields(bytes, |key, k| match key {
        b"method" => once(&mut method, text(k)?),
        b"id" => once(&mut id, request_id(k)),
        b"params" => match k {
            Kind::Struct(s) => once(&mut par, Some(s)),
            Kind::Null => once(&mut par, None),
            _ => Err(Malformed),
        },
        b"is_mcp_request" => once(&mut is_mcp, flag(k)?),
        b"is_exceeding_limit" => once(&mut exceeding, flag(k)?),
        // Present at all means untrusted: any kind of value is a reason.
        b"passthrough_reason" => once(
            &mut passthrough,
            match k {
                Kind::Text(s) => s.to_string(),
                _ => String::new(),
            },
        ),
        _ => Ok(()),
    })?;
    if let Some(Some(p)) = par {
        params(p, &mut m)?;
    }
    m.method = method.flatten();
    m.id = id.flatten();
    m.is_mcp_request = is_mcp;
    m.exceeding_limit = exceeding.unwrap_or(false);
    m.passthrough_reason = passthrough;
    Ok(m)
}

/// What the native filter recorded, from the serialized dynamic metadata (the `metadata`
/// property); no namespace at all reads as nothing recorded, which `mcp::from_metadata`
/// refuses.
pub fn decode(metadata: &[u8]) -> Result<NativeMetadata, Malformed> {
    let mut ours = None;
    for field in fields(metadata) {
        match field? {
            (1, Wire::Bytes(e)) => {
                let (key, val) = entry(e)?;
                if key == MCP_METADATA_NAMESPACE.as_bytes() {
                    once(&mut ours, val)?;
                }
            }
            (1, _) => return Err(Malformed),
            // typed_filter_metadata and whatever comes later
            _ => {}
        }
    }
    match ours {
        Some(s) => namespace(s),
        None => Ok(NativeMetadata::default()),
    }
}

#[cfg(test)]
mod tests;
