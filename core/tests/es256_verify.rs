//! ES256 through the per-key tables: tokens from independent signers (p256's RFC 6979 signing,
//! jwt-simple's), edge-case signatures, and jwt-simple's own verifier as the reference.

// Helpers outside #[test] functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::panic)]

use jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair, ES256PublicKey,
};
use jwt_simple::claims::Claims;
use jwt_simple::common::VerificationOptions;
use jwt_simple::reexports::coarsetime::{Duration, UnixTimeStamp};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use jwt_simple::JWTError;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::ops::Reduce;
use p256::{FieldBytes, Scalar};
use scopegate_core::es256::{self, KeyTable};
use scopegate_core::jwks::KeySet;
use scopegate_core::jwt::{verify, TokenError, VerifyOptions};
use serde_json::{json, Map, Value};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://auth.example.com";
/// The order of P-256's group, big-endian.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// A deterministic key: `seed` as the private scalar (1 is the generator itself).
fn signing_key(seed: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[24..].copy_from_slice(&seed.to_be_bytes());
    SigningKey::from_slice(&bytes).unwrap()
}

/// The largest private scalar, n - 1, whose public key is -G.
fn last_key() -> SigningKey {
    let scalar = -Scalar::ONE;
    SigningKey::from_bytes(&scalar.to_bytes()).unwrap()
}

fn jwk(key: &VerifyingKey, kid: &str) -> Value {
    let sec1 = key.to_sec1_bytes();
    json!({"kty": "EC", "crv": "P-256", "x": b64(&sec1[1..33]), "y": b64(&sec1[33..]), "kid": kid})
}

fn key_set(keys: &[Value]) -> KeySet {
    KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn payload(jti: u64) -> Value {
    json!({"iss": ISS, "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10, "jti": format!("t-{jti}")})
}

/// `header.payload` as signed text, and its signature by `key` (RFC 6979, SHA-256).
fn sign_raw(key: &SigningKey, header: &Value, payload: &Value) -> (String, Signature) {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig: Signature = key.sign(signed.as_bytes());
    (signed, sig)
}

fn token(signed: &str, sig: &[u8]) -> String {
    format!("{signed}.{}", b64(sig))
}

fn es256_header() -> Value {
    json!({"alg": "ES256", "kid": "p", "typ": "at+jwt"})
}

fn check(token: &str, keys: &KeySet) -> Result<(), TokenError> {
    verify(token, keys, &VerifyOptions::new(ISS, NOW)).map(|_| ())
}

/// What jwt-simple's ES256 verifier (the one `jwt::verify` used before the tables) makes of a
/// token, in `jwt::verify`'s terms, with the same neutralised clock.
fn jwt_simple_says(key: &ES256PublicKey, token: &str) -> Result<(), TokenError> {
    let options = VerificationOptions {
        accept_future: true,
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(0)),
        ..VerificationOptions::default()
    };
    match key.verify_token::<Map<String, Value>>(token, Some(options)) {
        Ok(_) => Ok(()),
        Err(e) => match e.downcast_ref::<JWTError>() {
            Some(JWTError::InvalidSignature) => Err(TokenError::BadSignature),
            _ => Err(TokenError::Malformed),
        },
    }
}

fn jwt_simple_key(key: &VerifyingKey) -> ES256PublicKey {
    ES256PublicKey::from_bytes(&key.to_sec1_bytes()).unwrap()
}

#[test]
fn tokens_signed_by_p256_verify_under_many_keys() {
    let keys = [
        signing_key(1),
        signing_key(2),
        signing_key(0xdead_beef),
        last_key(),
    ];
    for (k, key) in keys.iter().enumerate() {
        let set = key_set(&[jwk(key.verifying_key(), "p")]);
        for jti in 0..25 {
            let (signed, sig) = sign_raw(key, &es256_header(), &payload(jti));
            let t = token(&signed, &sig.to_bytes());
            assert_eq!(check(&t, &set), Ok(()), "key {k}, token {jti}");
        }
    }
}

#[test]
fn tokens_signed_by_jwt_simple_verify() {
    let pair = ES256KeyPair::generate().with_key_id("js");
    let jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
    let set = key_set(&[jwk]);
    for i in 0..25 {
        let mut claims = Claims::create(Duration::from_secs(600))
            .with_issuer(ISS)
            .with_jwt_id(format!("j-{i}"));
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
        claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
        let t = pair.sign(claims).unwrap();
        assert_eq!(check(&t, &set), Ok(()), "token {i}");
    }
}

#[test]
fn tampered_signature_or_payload_is_a_bad_signature() {
    let key = signing_key(7);
    let set = key_set(&[jwk(key.verifying_key(), "p")]);
    let (signed, sig) = sign_raw(&key, &es256_header(), &payload(1));
    let bytes = sig.to_bytes();
    for at in [0, 17, 31, 32, 50, 63] {
        let mut tampered = bytes.to_vec();
        tampered[at] ^= 0x01;
        let t = token(&signed, &tampered);
        assert_eq!(check(&t, &set), Err(TokenError::BadSignature), "byte {at}");
    }
    let (other, _) = sign_raw(&key, &es256_header(), &payload(2));
    let t = token(&other, &bytes);
    assert_eq!(check(&t, &set), Err(TokenError::BadSignature));
}

#[test]
fn another_key_under_the_same_kid_is_a_bad_signature() {
    let signer = signing_key(11);
    let set = key_set(&[jwk(signing_key(12).verifying_key(), "p")]);
    let (signed, sig) = sign_raw(&signer, &es256_header(), &payload(1));
    let t = token(&signed, &sig.to_bytes());
    assert_eq!(check(&t, &set), Err(TokenError::BadSignature));
}

#[test]
fn zero_or_out_of_range_scalars_are_bad_signatures() {
    let key = signing_key(5);
    let set = key_set(&[jwk(key.verifying_key(), "p")]);
    let reference = jwt_simple_key(key.verifying_key());
    let (signed, sig) = sign_raw(&key, &es256_header(), &payload(1));
    let (r, s) = {
        let b = sig.to_bytes();
        let (r, s) = b.split_at(32);
        (r.to_vec(), s.to_vec())
    };
    let mut n_plus_r = N;
    n_plus_r[31] = n_plus_r[31].wrapping_add(1); // n + 1: out of range, and = 1 mod n
    let cases: [(&[u8], &[u8]); 6] = [
        (&[0; 32], &s),
        (&r, &[0; 32]),
        (&N, &s),
        (&r, &N),
        (&[0xff; 32], &s),
        (&n_plus_r, &s),
    ];
    for (i, (r, s)) in cases.iter().enumerate() {
        let t = token(&signed, &[*r, *s].concat());
        assert_eq!(check(&t, &set), Err(TokenError::BadSignature), "case {i}");
        assert_eq!(
            jwt_simple_says(&reference, &t),
            Err(TokenError::BadSignature)
        );
    }
}

#[test]
fn high_s_is_accepted_as_p256_ecdsa_accepts_it() {
    let key = signing_key(9);
    let set = key_set(&[jwk(key.verifying_key(), "p")]);
    let (signed, sig) = sign_raw(&key, &es256_header(), &payload(1));
    let s = *sig.s();
    let flipped = Signature::from_scalars(sig.r().to_bytes(), (-s).to_bytes()).unwrap();
    // Exactly one of s and n - s is high; both are valid ECDSA signatures of the message.
    for candidate in [sig, flipped] {
        let t = token(&signed, &candidate.to_bytes());
        assert_eq!(check(&t, &set), Ok(()));
        assert_eq!(
            jwt_simple_says(&jwt_simple_key(key.verifying_key()), &t),
            Ok(())
        );
    }
}

#[test]
fn verify_prehashed_agrees_with_p256_on_valid_and_broken_signatures() {
    for seed in [1u64, 3, 0x1234_5678_9abc_def0] {
        let key = signing_key(seed);
        let table = KeyTable::new(key.verifying_key().as_affine());
        for m in 0..20u8 {
            let digest = hmac_sha256::Hash::hash(&[m; 40]);
            let sig: Signature = key.sign(&[m; 40]);
            let mut bytes = sig.to_bytes().to_vec();
            let reference = |b: &[u8]| {
                Signature::try_from(b)
                    .map(|s| key.verifying_key().verify_prehash(&digest, &s).is_ok())
                    .unwrap_or(false)
            };
            assert!(es256::verify_prehashed(&table, &digest, &bytes));
            assert!(reference(&bytes));
            bytes[usize::from(m) * 3 % 64] ^= 0x80;
            assert_eq!(
                es256::verify_prehashed(&table, &digest, &bytes),
                reference(&bytes)
            );
            assert!(!es256::verify_prehashed(&table, &digest, &bytes[..63]));
        }
    }
}

#[test]
fn a_digest_of_n_or_above_is_reduced_as_ecdsa_reduces_it() {
    // z = n + 5 must verify like z = 5: the hash is taken mod n.
    let key = signing_key(21);
    let table = KeyTable::new(key.verifying_key().as_affine());
    let mut above = N;
    above[31] += 5;
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(above));
    assert_eq!(z, Scalar::from(5u64));
    let mut five = [0u8; 32];
    five[31] = 5;
    let sig: Signature = PrehashSignerShim(&key).sign(&five);
    assert!(es256::verify_prehashed(&table, &above, &sig.to_bytes()));
    assert!(es256::verify_prehashed(&table, &five, &sig.to_bytes()));
}

/// p256's prehash signing, spelled once.
struct PrehashSignerShim<'a>(&'a SigningKey);

impl PrehashSignerShim<'_> {
    fn sign(&self, prehash: &[u8]) -> Signature {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        self.0.sign_prehash(prehash).unwrap()
    }
}

#[test]
fn headers_are_judged_as_jwt_simple_judged_them() {
    let key = signing_key(31);
    let set = key_set(&[jwk(key.verifying_key(), "p")]);
    let reference = jwt_simple_key(key.verifying_key());
    let headers = [
        json!({"alg": "ES256", "kid": "p"}),
        json!({"alg": "ES256", "kid": "p", "typ": "JWT"}),
        json!({"alg": "ES256", "kid": "p", "typ": "application/at+jwt"}),
        json!({"alg": "ES256", "kid": "p", "typ": "application/jwt"}),
        json!({"alg": "ES256", "kid": "p", "crit": []}),
        json!({"alg": "ES256", "kid": "p", "crit": ["exp"]}),
        json!({"alg": "ES256", "kid": "p", "crit": "exp"}),
        json!({"alg": "ES256", "kid": "p", "cty": 3}),
        json!({"alg": "ES256", "kid": "p", "jwk": {"kty": "EC"}}),
        json!({"alg": "ES256", "kid": "p", "x5c": ["MIIB"]}),
        json!({"alg": "ES256", "kid": "p", "x5c": "MIIB"}),
        json!({"alg": "ES256", "kid": "p", "x5t#S256": "abc"}),
        json!({"alg": "ES256", "kid": "p", "salt": "c2FsdA"}),
        json!({"alg": "ES256", "kid": "p", "salt": "@@"}),
        json!({"alg": "ES256", "kid": "p", "extra": {"any": true}}),
    ];
    for header in &headers {
        let (signed, sig) = sign_raw(&key, header, &payload(1));
        let t = token(&signed, &sig.to_bytes());
        assert_eq!(
            check(&t, &set),
            jwt_simple_says(&reference, &t),
            "header {header}"
        );
    }
    // Payloads that are not claims: after a good signature, malformed, as before.
    for text in ["[]", "{\"exp\": \"soon\"}", "not json"] {
        let signed = format!(
            "{}.{}",
            b64(es256_header().to_string().as_bytes()),
            b64(text.as_bytes())
        );
        let sig: Signature = key.sign(signed.as_bytes());
        let t = token(&signed, &sig.to_bytes());
        assert_eq!(check(&t, &set), Err(TokenError::Malformed), "{text}");
        assert_eq!(jwt_simple_says(&reference, &t), Err(TokenError::Malformed));
    }
}
