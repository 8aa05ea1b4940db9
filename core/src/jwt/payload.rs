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
        let mut seen = [false; Claim::ALL.len()];
        while let Some(member) = map.next_key::<Member>()? {
            let claim = match member {
                Member::Claim(claim) => claim,
                Member::Other(name) => {
                    // A repeated unknown member: the last one stands, as in a `Map`.
                    p.extra.insert(name, map.next_value()?);
                    continue;
                }
            };
            let Some(once) = seen.get_mut(claim as usize) else {
                return Err(A::Error::custom("claim out of range"));
            };
            if std::mem::replace(once, true) {
                return Err(A::Error::duplicate_field(claim.name()));
            }
            match claim {
                Claim::Iat => p.iat = Some(map.next_value::<Time>()?.0),
                Claim::Exp => p.exp = Some(map.next_value::<Time>()?.0),
                Claim::Nbf => p.nbf = Some(map.next_value::<Time>()?.0),
                Claim::Iss => p.iss = map.next_value()?,
                Claim::Sub => p.sub = map.next_value()?,
                Claim::Aud => p.aud = Some(map.next_value::<Aud>()?.0),
                Claim::Jti => p.jti = map.next_value()?,
                Claim::Nonce => p.nonce = map.next_value()?,
                Claim::ClientId => p.client_id = map.next_value()?,
                Claim::Azp => p.azp = map.next_value()?,
                Claim::Scope => p.scope = map.next_value()?,
                Claim::Scp => p.scp = map.next_value()?,
                Claim::GrantId => p.grant_id = map.next_value()?,
            }
        }
        Ok(p)
    }
}

/// A payload member's name: one of the modelled claims, or any other (kept for `extra`).
enum Member {
    Claim(Claim),
    Other(String),
}

/// The claims read into fields of their own; the discriminant is the claim's slot in `seen`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
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
}

impl Claim {
    /// Every modelled claim with its member name: the one table the reader and its duplicate
    /// errors both use.
    const ALL: [(Claim, &'static str); 13] = [
        (Claim::Iat, "iat"),
        (Claim::Exp, "exp"),
        (Claim::Nbf, "nbf"),
        (Claim::Iss, "iss"),
        (Claim::Sub, "sub"),
        (Claim::Aud, "aud"),
        (Claim::Jti, "jti"),
        (Claim::Nonce, "nonce"),
        (Claim::ClientId, "client_id"),
        (Claim::Azp, "azp"),
        (Claim::Scope, "scope"),
        (Claim::Scp, "scp"),
        (Claim::GrantId, "grant_id"),
    ];

    fn named(name: &str) -> Option<Claim> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("", |(_, n)| n)
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
        Ok(Claim::named(name).map_or_else(|| Member::Other(name.to_owned()), Member::Claim))
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

#[cfg(test)]
mod tests {
    use super::Claim;

    #[test]
    fn every_claim_has_one_name_and_its_own_slot() {
        for (i, (claim, name)) in Claim::ALL.iter().enumerate() {
            assert_eq!(*claim as usize, i, "{name}: slot");
            assert!(Claim::named(name) == Some(*claim), "{name}: read back");
            assert_eq!(claim.name(), *name);
        }
        assert!(
            Claim::named("Iat").is_none(),
            "member names are case-sensitive"
        );
    }
}
