//! Reads a JSON-RPC request body in one pass: each message's `jsonrpc`, `method` and the
//! `params.name`/`params.uri` that policy decides on, borrowed from the body; the rest (`id`,
//! `arguments`, `_meta`) is skipped without being built.
//!
//! Messages and `params` must be JSON objects; a key policy reads may appear once per object
//! (a server that reads the first of two `method`s would run another call than the one
//! decided); the whole body must be UTF-8 and one JSON value.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One message, as far as policy reads it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub jsonrpc: Option<Cow<'a, str>>,
    /// Absent (or `null`) in a response the client sends back.
    pub method: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
}

/// The body is not one JSON-RPC message or a non-empty batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// The messages of a body: one object, or a non-empty array of objects (a batch).
pub fn messages(body: &[u8]) -> Result<Vec<Message<'_>>, Unreadable> {
    // Checked once up front, so the parser borrows strings without re-validating them.
    let text = std::str::from_utf8(body).map_err(|_| Unreadable)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let out = de.deserialize_any(BodyVisitor).map_err(|_| Unreadable)?;
    de.end().map_err(|_| Unreadable)?;
    if out.is_empty() {
        return Err(Unreadable);
    }
    Ok(out)
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Vec<Message<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(vec![MessageVisitor.visit_map(map)?])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(m) = seq.next_element::<Message<'de>>()? {
            out.push(m);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

/// The keys policy reads; every other key's value is skipped.
enum Key {
    Jsonrpc,
    Method,
    Params,
    Name,
    Uri,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match k {
            "jsonrpc" => Key::Jsonrpc,
            "method" => Key::Method,
            "params" => Key::Params,
            "name" => Key::Name,
            "uri" => Key::Uri,
            _ => Key::Other,
        })
    }
}

/// A string value, borrowed unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
}

/// Reads one read key's value (a string or `null`), refusing a second occurrence of the key.
fn once<'de, A: MapAccess<'de>>(
    seen: &mut bool,
    map: &mut A,
) -> Result<Option<Cow<'de, str>>, A::Error> {
    if std::mem::replace(seen, true) {
        return Err(de::Error::custom("duplicate key"));
    }
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = Message::default();
        let (mut jsonrpc, mut method, mut params) = (false, false, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Jsonrpc => m.jsonrpc = once(&mut jsonrpc, &mut map)?,
                Key::Method => m.method = once(&mut method, &mut map)?,
                Key::Params => {
                    if std::mem::replace(&mut params, true) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    if let Some(p) = map.next_value::<Option<Params<'de>>>()? {
                        (m.name, m.uri) = (p.name, p.uri);
                    }
                }
                Key::Name | Key::Uri | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(m)
    }
}

/// `params`, as far as policy reads it: an object, `arguments` and the rest skipped.
struct Params<'a> {
    name: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Params<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ParamsVisitor)
    }
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a params object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = Params {
            name: None,
            uri: None,
        };
        let (mut name, mut uri) = (false, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Name => p.name = once(&mut name, &mut map)?,
                Key::Uri => p.uri = once(&mut uri, &mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests;
