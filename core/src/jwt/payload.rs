//! The token payload's claims, read member by member in one pass straight from the JSON text.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Map, Value};

/// A payload as jwt-simple's `JWTClaims` read it (with the claims it does not model in
/// `extra`), written out by hand: its derive, with `#[serde(flatten)]` for the custom claims,
/// buffered every other member in serde's private `Content` tree and then read that tree back,
/// which cost about 15 KB of the `.wasm` (BENCHMARKS.md, "The module"). Same members, types,
/// refusals and duplicates rule; `core/src/jwt/differential.rs` compares the two.
#[derive(Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct Payload {
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// Every audience, the string form included (an empty string stands for none); unsorted,
    /// possibly repeated.
    pub aud: Option<Vec<String>>,
    pub jti: Option<String>,
    /// Kept apart from `extra` (and added to it last) as jwt-simple modelled it.
    pub nonce: Option<String>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    pub scope: Option<Value>,
    pub scp: Option<Value>,
    pub grant_id: Option<String>,
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Payload {
    /// A map only: with a flattened member the derive read no other form (a plain one would
    /// also take a JSON array, member by position).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut p = Payload::default();
        // Each modelled member once, as the derive had it: a second one is refused even when
        // the first was `null` (read as absent), so `seen` tracks the members, not the values.
        let mut seen = [false; Member::MODELLED];
        while let Some(member) = map.next_key::<Member>()? {
            if let Some(i) = member.index() {
                if seen[i] {
                    return Err(A::Error::duplicate_field(member.name()));
                }
                seen[i] = true;
            }
            match member {
                Member::Iat => p.iat = Some(map.next_value::<Time>()?.0),
                Member::Exp => p.exp = Some(map.next_value::<Time>()?.0),
                Member::Nbf => p.nbf = Some(map.next_value::<Time>()?.0),
                Member::Iss => p.iss = map.next_value()?,
                Member::Sub => p.sub = map.next_value()?,
                Member::Aud => p.aud = Some(map.next_value::<Aud>()?.0),
                Member::Jti => p.jti = map.next_value()?,
                Member::Nonce => p.nonce = map.next_value()?,
                Member::ClientId => p.client_id = map.next_value()?,
                Member::Azp => p.azp = map.next_value()?,
                Member::Scope => p.scope = map.next_value()?,
                Member::Scp => p.scp = map.next_value()?,
                Member::GrantId => p.grant_id = map.next_value()?,
                Member::Other(name) => {
                    // A repeated unknown member: the last one stands, as in a `Map`.
                    p.extra.insert(name, map.next_value()?);
                }
            }
        }
        Ok(p)
    }
}

/// A payload member's name: one of the modelled claims, or any other (kept for `extra`).
enum Member {
    Iat,
    Exp,
    Nbf,
    Iss,
    Sub,
    Aud,
    Jti,
    Nonce,
    ClientId,
    Azp,
    Scope,
    Scp,
    GrantId,
    Other(String),
}

impl Member {
    const MODELLED: usize = 13;

    fn index(&self) -> Option<usize> {
        Some(match self {
            Member::Iat => 0,
            Member::Exp => 1,
            Member::Nbf => 2,
            Member::Iss => 3,
            Member::Sub => 4,
            Member::Aud => 5,
            Member::Jti => 6,
            Member::Nonce => 7,
            Member::ClientId => 8,
            Member::Azp => 9,
            Member::Scope => 10,
            Member::Scp => 11,
            Member::GrantId => 12,
            Member::Other(_) => return None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Member::Iat => "iat",
            Member::Exp => "exp",
            Member::Nbf => "nbf",
            Member::Iss => "iss",
            Member::Sub => "sub",
            Member::Aud => "aud",
            Member::Jti => "jti",
            Member::Nonce => "nonce",
            Member::ClientId => "client_id",
            Member::Azp => "azp",
            Member::Scope => "scope",
            Member::Scp => "scp",
            Member::GrantId => "grant_id",
            Member::Other(_) => "",
        }
    }
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(MemberVisitor)
    }
}

struct MemberVisitor;

impl Visitor<'_> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: Error>(self, name: &str) -> Result<Member, E> {
        Ok(match name {
            "iat" => Member::Iat,
            "exp" => Member::Exp,
            "nbf" => Member::Nbf,
            "iss" => Member::Iss,
            "sub" => Member::Sub,
            "aud" => Member::Aud,
            "jti" => Member::Jti,
            "nonce" => Member::Nonce,
            "client_id" => Member::ClientId,
            "azp" => Member::Azp,
            "scope" => Member::Scope,
            "scp" => Member::Scp,
            "grant_id" => Member::GrantId,
            other => Member::Other(other.to_owned()),
        })
    }
}

/// jwt-simple's `unix_timestamp`: a non-negative integer, or any number cast (saturating, NaN
/// as 0) to whole seconds; `null` and every other type are refused. Held, as it held them, as
/// coarsetime's 32.32 fixed point, which saturates at [`LATEST`].
struct Time(u64);

/// The latest time jwt-simple could hold (2106-02-07T06:28:15Z): a later one read as this.
const LATEST: u64 = u32::MAX as u64;

impl Time {
    fn at(secs: u64) -> Self {
        Time(secs.min(LATEST))
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(TimeVisitor)
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = Time;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unix timestamp")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Time, E> {
        u64::try_from(v)
            .map(Time::at)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Time, E> {
        Ok(Time::at(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Time, E> {
        Ok(Time::at(v as u64))
    }
}

/// jwt-simple's `audiences`: a string (one audience, or none when empty) or an array of
/// strings; `null` and every other type are refused.
struct Aud(Vec<String>);

impl<'de> Deserialize<'de> for Aud {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AudVisitor)
    }
}

struct AudVisitor;

impl<'de> Visitor<'de> for AudVisitor {
    type Value = Aud;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Audiences")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Aud, E> {
        Ok(Aud(if v.is_empty() {
            Vec::new()
        } else {
            vec![v.to_owned()]
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Aud, A::Error> {
        let mut all = Vec::new();
        while let Some(a) = seq.next_element()? {
            all.push(a);
        }
        Ok(Aud(all))
    }
}
