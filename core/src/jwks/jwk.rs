//! One public JWK, checked as jwt-simple 0.15's `from_jwk` checks it and built into its verifier.

use std::io;
use std::sync::Arc;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};

use super::{Algorithm, Key, PublicKey};
use crate::es256::KeyTable;

/// jwt-simple's `MAX_JWK_LENGTH`: it read the entry as compact JSON text, refused beyond this.
const MAX_JWK_LEN: usize = 8192;
/// Largest RSA modulus read, in bytes, plus one for a sign byte (jwt-simple's bound).
const MAX_MODULUS_LEN: usize = 512 + 1;
const MIN_MODULUS_BITS: usize = 2048;
const MAX_MODULUS_BITS: usize = 4096;
/// The only RSA public exponent accepted, 65537, spelled the one canonical way.
const RSA_EXPONENT_B64: &str = "AQAB";
const RSA_EXPONENT: [u8; 3] = [1, 0, 1];
/// jwt-simple's PSS salt length: the digest's (superboring's `RsaPssSaltlen::DIGEST_LENGTH`).
const PSS_SALT_LEN: usize = 32;

/// Members jwt-simple read as strings when present: another type refuses the whole JWK.
const STRING_MEMBERS: [&str; 17] = [
    "kty", "crv", "alg", "use", "kid", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "pub",
    "priv",
];
/// Key material of any key type: only the key's own public members may appear.
const MATERIAL_MEMBERS: [&str; 15] = [
    "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k", "pub", "priv",
];

/// What one algorithm's JWK must look like (jwt-simple's `JwkDescriptor` for a public
/// signature key).
struct Descriptor {
    crv: Option<&'static str>,
    /// `alg` values accepted: the algorithm's name and its aliases.
    algs: &'static [&'static str],
    public_members: &'static [&'static str],
}

impl Algorithm {
    fn descriptor(self) -> Descriptor {
        match self {
            Algorithm::Rs256 => Descriptor {
                crv: None,
                algs: &["RS256"],
                public_members: &["n", "e"],
            },
            Algorithm::Ps256 => Descriptor {
                crv: None,
                algs: &["PS256"],
                public_members: &["n", "e"],
            },
            Algorithm::Es256 => Descriptor {
                crv: Some("P-256"),
                algs: &["ES256"],
                public_members: &["crv", "x", "y"],
            },
            Algorithm::EdDsa => Descriptor {
                crv: Some("Ed25519"),
                algs: &["EdDSA", "Ed25519"],
                public_members: &["crv", "x"],
            },
        }
    }
}

/// Picks the algorithm from the JWK's own members, checks the JWK against it, and builds the
/// verifier. `None` for anything unusable: the caller counts it as skipped.
pub(super) fn parse_key(jwk: &Value) -> Option<Key> {
    let members = jwk.as_object()?;
    let str_member = |name: &str| members.get(name).and_then(Value::as_str);
    let alg = match (str_member("kty")?, str_member("crv"), str_member("alg")) {
        // An RSA JWK without `alg` is RS256: the one RSA algorithm every issuer supports.
        ("RSA", None, None | Some("RS256")) => Algorithm::Rs256,
        ("RSA", None, Some("PS256")) => Algorithm::Ps256,
        ("EC", Some("P-256"), _) => Algorithm::Es256,
        ("OKP", Some("Ed25519"), _) => Algorithm::EdDsa,
        _ => return None,
    };
    if !well_formed(members, &alg.descriptor()) {
        return None;
    }
    let material = |name: &str| str_member(name).unwrap_or_default();
    let public = match alg {
        Algorithm::Rs256 => PublicKey::Rs256(rsa::pkcs1v15::VerifyingKey::new(rsa_key(
            material("n"),
            material("e"),
        )?)),
        Algorithm::Ps256 => PublicKey::Ps256(rsa::pss::VerifyingKey::new_with_salt_len(
            rsa_key(material("n"), material("e"))?,
            PSS_SALT_LEN,
        )),
        Algorithm::Es256 => {
            let mut point = [0u8; 65];
            point[0] = 0x04; // SEC 1 uncompressed: x then y
            let (x, y) = point[1..].split_at_mut(32);
            if !decode_fixed(material("x"), x) || !decode_fixed(material("y"), y) {
                return None;
            }
            // Refuses a coordinate not below p and a point off the curve; the identity has no
            // uncompressed encoding.
            let key = p256::PublicKey::from_sec1_bytes(&point).ok()?;
            PublicKey::Es256(Arc::new(KeyTable::new(key.as_affine())))
        }
        Algorithm::EdDsa => {
            let mut x = [0u8; ed25519_compact::PublicKey::BYTES];
            if !decode_fixed(material("x"), &mut x) {
                return None;
            }
            let key = ed25519_compact::PublicKey::from_slice(&x).ok()?;
            // Parsing checks only the length: this refuses non-canonical and small-order points.
            key.validate().ok()?;
            PublicKey::EdDsa(key)
        }
    };
    let kid = str_member("kid").map(str::to_owned);
    Some(Key { kid, alg, public })
}

/// The checks jwt-simple's `Jwk::parse` made before reading key material.
fn well_formed(members: &Map<String, Value>, descriptor: &Descriptor) -> bool {
    if !fits(members) {
        return false;
    }
    for (name, value) in members {
        let typed = match name.as_str() {
            "key_ops" => value
                .as_array()
                .is_some_and(|ops| ops.iter().all(Value::is_string)),
            name if STRING_MEMBERS.contains(&name) => value.is_string(),
            _ => true,
        };
        let foreign = MATERIAL_MEMBERS.contains(&name.as_str())
            && !descriptor.public_members.contains(&name.as_str());
        if !typed || foreign {
            return false;
        }
    }
    let str_member = |name: &str| members.get(name).and_then(Value::as_str);
    let present = |name: &&str| members.contains_key(*name);
    descriptor.public_members.iter().all(present)
        && str_member("crv") == descriptor.crv
        && str_member("alg").is_none_or(|alg| descriptor.algs.contains(&alg))
        && str_member("use").is_none_or(|key_use| key_use == "sig")
        // A public signature key may only `verify`, listed once; an empty list is allowed.
        && members
            .get("key_ops")
            .and_then(Value::as_array)
            .is_none_or(|ops| ops.len() <= 1 && ops.iter().all(|op| op == "verify"))
}

/// Whether the entry's compact JSON text is within jwt-simple's bound, counted without
/// building the text.
fn fits(members: &Map<String, Value>) -> bool {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            if self.0 > MAX_JWK_LEN {
                return Err(io::Error::other("JWK too long"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Count(0), members).is_ok()
}

/// The RSA key of a JWK's `n` and `e`: 2048 to 4096 bits, odd, e = 65537.
fn rsa_key(n_b64: &str, e_b64: &str) -> Option<RsaPublicKey> {
    let n = rsa_modulus(n_b64)?;
    if e_b64 != RSA_EXPONENT_B64 {
        return None;
    }
    let top = n.first()?;
    let bits = (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
    let odd = n.last().is_some_and(|low| low & 1 == 1);
    if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) || !odd {
        return None;
    }
    RsaPublicKey::new(
        BigUint::from_bytes_be(&n),
        BigUint::from_bytes_be(&RSA_EXPONENT),
    )
    .ok()
}

/// The modulus without leading zeros. The one sign byte Java's `BigInteger` writes (PayPal,
/// Yahoo) is accepted; any other leading zero is refused, as is an empty modulus.
fn rsa_modulus(b64: &str) -> Option<Vec<u8>> {
    let max_b64_len = Base64UrlSafeNoPadding::encoded_len(MAX_MODULUS_LEN).ok()?;
    if b64.len() > max_b64_len {
        return None;
    }
    let mut buf = vec![0u8; MAX_MODULUS_LEN];
    let len = Base64UrlSafeNoPadding::decode(&mut buf, b64, None)
        .ok()?
        .len();
    buf.truncate(len);
    if let [0, top, ..] = buf[..] {
        if top & 0x80 != 0 {
            buf.remove(0);
        }
    }
    buf.first().is_some_and(|&top| top != 0).then_some(buf)
}

/// Decodes a fixed-size value, accepting only its canonical unpadded base64url encoding.
fn decode_fixed(b64: &str, out: &mut [u8]) -> bool {
    let expected = out.len();
    Base64UrlSafeNoPadding::encoded_len(expected).is_ok_and(|len| len == b64.len())
        && Base64UrlSafeNoPadding::decode(out, b64, None)
            .is_ok_and(|decoded| decoded.len() == expected)
}
