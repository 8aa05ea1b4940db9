//! A differential test of the JWK importer ([`super::jwk`]) against the path it replaced
//! (jwt-simple 0.15's `from_jwk` on the re-serialized entry): over generated keys of each kind
//! and their mutations, both accept and refuse the same entries, and an accepted key verifies
//! exactly the tokens the old key would have.
//!
//! Both read the entry from the document's `Value`, so a repeated member reaches both as its
//! last value (serde_json keeps the last): duplicates are compared on that, as both see them.
//! No difference is allowed: the importer is exactly as strict as jwt-simple.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::sync::OnceLock;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair, ES256PublicKey, Ed25519KeyPair,
    Ed25519PublicKey, EdDSAKeyPairLike, PS256KeyPair, PS256PublicKey, RS256KeyPair, RS256PublicKey,
    RSAKeyPairLike,
};
use jwt_simple::claims::{Claims, NoCustomClaims};
use jwt_simple::prelude::{Duration, UnixTimeStamp};
use rsa::traits::PublicKeyParts;
use serde_json::Value;

use super::{jwk, Algorithm, Key, KeySet, PublicKey};
use crate::jwt::{verify, VerifyOptions};
use crate::mutation::{mutate, Rng};

mod mutations;
use mutations::mutations;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://auth.example.com";

/// What the replaced `parse_key` gave: the kid, the algorithm and the key's bytes as jwt-simple
/// exports them (RSA `n` then `e`, the P-256 point uncompressed, the Ed25519 point).
#[derive(Debug, PartialEq, Eq)]
struct Old {
    kid: Option<String>,
    alg: Algorithm,
    material: Vec<u8>,
}

/// The replaced path, kept here to compare against.
fn old(jwk: &Value) -> Option<Old> {
    let str_member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kty = str_member("kty")?;
    let alg = match (kty, str_member("crv"), str_member("alg")) {
        ("RSA", None, None | Some("RS256")) => Algorithm::Rs256,
        ("RSA", None, Some("PS256")) => Algorithm::Ps256,
        ("EC", Some("P-256"), _) => Algorithm::Es256,
        ("OKP", Some("Ed25519"), _) => Algorithm::EdDsa,
        _ => return None,
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return None,
    };
    let text = serde_json::to_string(jwk).ok()?;
    let material = match alg {
        Algorithm::Rs256 => {
            let c = RS256PublicKey::from_jwk(&text).ok()?.to_components();
            [c.n, c.e].concat()
        }
        Algorithm::Ps256 => {
            let c = PS256PublicKey::from_jwk(&text).ok()?.to_components();
            [c.n, c.e].concat()
        }
        Algorithm::Es256 => ES256PublicKey::from_jwk(&text)
            .ok()?
            .public_key()
            .to_bytes_uncompressed(),
        Algorithm::EdDsa => Ed25519PublicKey::from_jwk(&text).ok()?.to_bytes(),
    };
    // The old path also rebuilt the RSA key with the `rsa` crate, refusing what it refuses.
    if let Algorithm::Rs256 | Algorithm::Ps256 = alg {
        let n = rsa::BigUint::from_bytes_be(&material[..material.len() - 3]);
        rsa::RsaPublicKey::new(n, rsa::BigUint::from(65537u32)).ok()?;
    }
    Some(Old { kid, alg, material })
}

/// The RSA key's bytes as [`Old`] has them; `None` for P-256, whose table keeps no encoding.
fn new_material(key: &Key) -> Option<Vec<u8>> {
    let rsa = |k: &rsa::RsaPublicKey| [k.n().to_bytes_be(), k.e().to_bytes_be()].concat();
    match &key.public {
        PublicKey::Rs256(k) => Some(rsa(k.as_ref())),
        PublicKey::Ps256(k) => Some(rsa(k.as_ref())),
        PublicKey::Es256(_) => None,
        PublicKey::EdDsa(k) => Some(k.to_vec()),
    }
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn unb64(text: &str) -> Vec<u8> {
    let mut out = vec![0u8; text.len()];
    let len = Base64UrlSafeNoPadding::decode(&mut out, text, None)
        .unwrap()
        .len();
    out.truncate(len);
    out
}

fn claims() -> jwt_simple::claims::JWTClaims<NoCustomClaims> {
    let mut c = Claims::create(Duration::from_secs(600)).with_issuer(ISS);
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c
}

/// A key of one kind: its public JWK, and tokens (kid-less, so any kid may be mutated in)
/// signed by its private key and by another key of the same kind, per algorithm.
struct Kind {
    jwk: Value,
    tokens: Vec<(Algorithm, String, String)>,
}

impl Kind {
    fn tokens(&self, alg: Algorithm) -> (&str, &str) {
        let (_, own, other) = self.tokens.iter().find(|(a, ..)| *a == alg).unwrap();
        (own, other)
    }
}

fn kinds() -> &'static [Kind] {
    static KINDS: OnceLock<Vec<Kind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        // RSA generation is slow in debug builds: two moduli serve both RSA algorithms.
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let rsa_other = RS256KeyPair::generate(2048).unwrap();
        let pss = PS256KeyPair::from_der(&rsa.to_der().unwrap()).unwrap();
        let pss_other = PS256KeyPair::from_der(&rsa_other.to_der().unwrap()).unwrap();
        let rsa_tokens = vec![
            (
                Algorithm::Rs256,
                rsa.sign(claims()).unwrap(),
                rsa_other.sign(claims()).unwrap(),
            ),
            (
                Algorithm::Ps256,
                pss.sign(claims()).unwrap(),
                pss_other.sign(claims()).unwrap(),
            ),
        ];
        let es = ES256KeyPair::generate();
        let es_other = ES256KeyPair::generate();
        let ed = Ed25519KeyPair::generate();
        let ed_other = Ed25519KeyPair::generate();
        let parse = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
        vec![
            Kind {
                jwk: parse(rsa.public_key().to_jwk()),
                tokens: rsa_tokens.clone(),
            },
            Kind {
                jwk: parse(pss.public_key().to_jwk()),
                tokens: rsa_tokens,
            },
            Kind {
                jwk: parse(es.public_key().to_jwk()),
                tokens: vec![(
                    Algorithm::Es256,
                    es.sign(claims()).unwrap(),
                    es_other.sign(claims()).unwrap(),
                )],
            },
            Kind {
                jwk: parse(ed.public_key().to_jwk()),
                tokens: vec![(
                    Algorithm::EdDsa,
                    ed.sign(claims()).unwrap(),
                    ed_other.sign(claims()).unwrap(),
                )],
            },
        ]
    })
}

/// Both paths on one entry; returns whether it was accepted.
fn compare(kind: &Kind, original: &Old, entry: &Value, case: &str) -> bool {
    let was = old(entry);
    let now = jwk::parse_key(entry);
    assert_eq!(
        was.is_some(),
        now.is_some(),
        "{case}: jwt-simple {} it, the importer {} it: {entry}",
        if was.is_some() { "accepted" } else { "refused" },
        if now.is_some() { "accepted" } else { "refused" },
    );
    let (Some(was), Some(now)) = (was, now) else {
        return false;
    };
    assert_eq!(was.kid.as_deref(), now.kid(), "{case}: kid of {entry}");
    assert_eq!(was.alg, now.algorithm(), "{case}: algorithm of {entry}");
    if let Some(material) = new_material(&now) {
        assert_eq!(was.material, material, "{case}: key of {entry}");
    }
    let alg = now.algorithm();
    let keys = KeySet {
        keys: vec![now],
        skipped: 0,
    };
    let opts = VerifyOptions::new(ISS, NOW);
    let (own, other) = kind.tokens(alg);
    let same_key = was.material == original.material;
    assert_eq!(
        verify(own, &keys, &opts).is_ok(),
        same_key,
        "{case}: the key's own token, same key as generated: {same_key}: {entry}"
    );
    assert!(
        verify(other, &keys, &opts).is_err(),
        "{case}: another key's token verified with {entry}"
    );
    true
}

#[test]
fn the_importer_accepts_and_refuses_what_jwt_simple_did() {
    let mut accepted = 0;
    let mut refused = 0;
    for kind in kinds() {
        let base = kind.jwk.as_object().unwrap();
        let original = old(&kind.jwk).expect("jwt-simple reads its own export");
        assert!(compare(kind, &original, &kind.jwk, "as exported"));
        let all = mutations(base);
        for (case, entry) in &all {
            match compare(kind, &original, &Value::Object(entry.clone()), case) {
                true => accepted += 1,
                false => refused += 1,
            }
        }
        // Two or three named mutations at once.
        let mut rng = Rng(0x6a77_6b5f_6469_6666 ^ base.len() as u64);
        for round in 0..300 {
            let mut entry = base.clone();
            let mut cases = Vec::new();
            for _ in 0..2 + rng.below(2) {
                let (case, m) = rng.pick(&all);
                let changed: Vec<_> = m.iter().filter(|(k, v)| base.get(*k) != Some(v)).collect();
                for name in base.keys().filter(|k| !m.contains_key(*k)) {
                    entry.remove(name);
                }
                for (k, v) in changed {
                    entry.insert(k.clone(), v.clone());
                }
                cases.push(case.as_str());
            }
            let case = format!("round {round}: {}", cases.join(" + "));
            match compare(kind, &original, &Value::Object(entry), &case) {
                true => accepted += 1,
                false => refused += 1,
            }
        }
    }
    // Both outcomes are exercised, so a path that accepts or refuses everything would fail.
    assert!(
        accepted > 100 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_length_bound_is_jwt_simples() {
    for kind in kinds() {
        let all = mutations(kind.jwk.as_object().unwrap());
        let long = |target: &str| {
            let (_, m) = all.iter().find(|(case, _)| case == target).unwrap();
            assert_eq!(
                serde_json::to_string(m).unwrap().len(),
                target.split(' ').next().unwrap().parse::<usize>().unwrap()
            );
            jwk::parse_key(&Value::Object(m.clone())).is_some()
        };
        assert!(long("8192 bytes long") && !long("8193 bytes long"));
    }
}

#[test]
fn byte_mutations_of_the_entry_text_are_read_alike() {
    let pieces: &[&[u8]] = &[
        br#""verify""#,
        br#""sig""#,
        br#""enc""#,
        b"AQAB",
        b"=",
        b"+",
        b"/",
        b"A",
        br#","d":"AAAA""#,
        br#","alg":"RS256""#,
        br#","alg":"PS256""#,
        br#","alg":"Ed25519""#,
        br#","key_ops":[]"#,
        br#","kty":"EC""#,
        br#","crv":"P-256""#,
        br#","kid":"k""#,
        b"null",
        b"\\u0041",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for (k, kind) in kinds().iter().enumerate() {
        let original = old(&kind.jwk).unwrap();
        let text = serde_json::to_vec(&kind.jwk).unwrap();
        for seed in 1..=800u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k as u64);
            let mut body = text.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut body, pieces);
            }
            // What is not JSON never reaches either path: the document is refused first.
            let Ok(entry) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            let case = format!("kind {k}, seed {seed}: {}", String::from_utf8_lossy(&body));
            match compare(kind, &original, &entry, &case) {
                true => accepted += 1,
                false => refused += 1,
            }
        }
    }
    assert!(
        accepted > 50 && refused > 500,
        "{accepted} accepted, {refused} refused"
    );
}
