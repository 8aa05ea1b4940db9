//! Signatures and keys: every algorithm, tampering, unknown or mismatched keys, `alg` confusion.

use super::fixture::*;
use jwt_simple::prelude::*;
use scopegate_core::jwks::Algorithm;
use scopegate_core::jwt::{verify, TokenError};
use serde_json::{json, Value};

#[test]
fn every_supported_algorithm_verifies() {
    for (s, alg, kid) in &fx().signers {
        let token = s.sign(claims(json!({"scope": "tickets.read"})));
        let got = check(&token).unwrap_or_else(|e| panic!("{kid}: {e:?}"));
        assert_eq!(got.alg, *alg, "{kid}");
        assert_eq!(got.kid.as_deref(), Some(*kid));
        assert_eq!(got.iss, ISS);
        assert_eq!(got.sub.as_deref(), Some("user-1"));
        assert_eq!(got.exp, NOW + 600);
        assert_eq!(got.iat, Some(NOW - 10));
        assert_eq!(got.nbf, Some(NOW - 10));
        assert_eq!(got.scopes, vec!["tickets.read"]);
    }
}

#[test]
fn tampered_payload_is_a_bad_signature() {
    for (s, _, kid) in &fx().signers {
        let token = s.sign(claims(json!({"scope": "tickets.read"})));
        let forged = s.sign(claims(json!({"scope": "tickets.read admin.read"})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = forged.split('.').nth(1).unwrap();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(check(&tampered), Err(TokenError::BadSignature), "{kid}");
    }
}

#[test]
fn altered_or_truncated_signature_is_a_bad_signature() {
    for (s, _, kid) in &fx().signers {
        let token = s.sign(claims(json!({})));
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut flipped = sig.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{head}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(check(&flipped), Err(TokenError::BadSignature), "{kid}");
        // Dropping leading characters keeps the encoding canonical: only the length is wrong.
        let truncated = format!("{head}.{}", &sig[4..]);
        assert_eq!(check(&truncated), Err(TokenError::BadSignature), "{kid}");
    }
}

#[test]
fn token_signed_by_a_key_outside_the_set_fails() {
    let stranger = ES256KeyPair::generate().with_key_id("es256");
    let token = stranger.sign(claims(json!({}))).unwrap();
    assert_eq!(check(&token), Err(TokenError::BadSignature));
}

#[test]
fn unknown_kid_is_reported_with_the_kid() {
    let stranger = ES256KeyPair::generate().with_key_id("rotated-2027");
    let token = stranger.sign(claims(json!({}))).unwrap();
    assert_eq!(
        check(&token),
        Err(TokenError::UnknownKid("rotated-2027".into()))
    );
    assert!(!fx().keys.contains_kid("rotated-2027"));
}

#[test]
fn kid_of_a_key_with_another_algorithm_is_refused() {
    // ES256 signature presented under the RSA key's kid.
    let es = ES256KeyPair::generate().with_key_id("rs256");
    let token = es.sign(claims(json!({}))).unwrap();
    assert_eq!(check(&token), Err(TokenError::UnsupportedAlgorithm));
    // The same RSA modulus published for RS256 must not verify PS256, and vice versa.
    let der = &fx().rsa_der;
    let ps = PS256KeyPair::from_der(der).unwrap().with_key_id("rs256");
    let token = ps.sign(claims(json!({}))).unwrap();
    assert_eq!(check(&token), Err(TokenError::UnsupportedAlgorithm));
    let rs = RS256KeyPair::from_der(der).unwrap().with_key_id("ps256");
    let token = rs.sign(claims(json!({}))).unwrap();
    assert_eq!(check(&token), Err(TokenError::UnsupportedAlgorithm));
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        for header in [json!({"alg": alg}), json!({"alg": alg, "kid": "rs256"})] {
            let token = unsigned(header, base_payload());
            assert_eq!(
                check(&token),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }
}

#[test]
fn algorithms_outside_the_supported_set_are_refused() {
    let der = &fx().rsa_der;
    let c = || claims(json!({}));
    let tokens = [
        RS384KeyPair::from_der(der)
            .unwrap()
            .with_key_id("rs256")
            .sign(c()),
        RS512KeyPair::from_der(der).unwrap().sign(c()),
        PS384KeyPair::from_der(der)
            .unwrap()
            .with_key_id("ps256")
            .sign(c()),
        ES384KeyPair::generate().with_key_id("es256").sign(c()),
        ES256kKeyPair::generate().sign(c()),
    ];
    for token in tokens {
        assert_eq!(
            check(&token.unwrap()),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }
    // Their keys are skipped, not fatal.
    let es384 = serde_json::from_str::<Value>(&ES384KeyPair::generate().public_key().to_jwk());
    let rs512 =
        serde_json::from_str::<Value>(&RS512KeyPair::from_der(der).unwrap().public_key().to_jwk());
    let keys = jwks(vec![es384.unwrap(), rs512.unwrap(), signer("es256").jwk()]);
    assert_eq!((keys.len(), keys.skipped()), (1, 2));
}

#[test]
fn hmac_signed_with_the_public_key_bytes_is_refused() {
    let f = fx();
    for secret in [f.rsa_pem_public.as_bytes(), &f.rsa_der_public[..]] {
        for kid in [Some("rs256"), None] {
            let c = || claims(json!({}));
            let tokens = [
                with_kid(HS256Key::from_bytes(secret), kid).authenticate(c()),
                with_kid_384(HS384Key::from_bytes(secret), kid).authenticate(c()),
                with_kid_512(HS512Key::from_bytes(secret), kid).authenticate(c()),
            ];
            for token in tokens {
                assert_eq!(
                    check(&token.unwrap()),
                    Err(TokenError::UnsupportedAlgorithm)
                );
            }
        }
    }
}

fn with_kid(k: HS256Key, kid: Option<&str>) -> HS256Key {
    kid.map_or(k.clone(), |kid| k.with_key_id(kid))
}
fn with_kid_384(k: HS384Key, kid: Option<&str>) -> HS384Key {
    kid.map_or(k.clone(), |kid| k.with_key_id(kid))
}
fn with_kid_512(k: HS512Key, kid: Option<&str>) -> HS512Key {
    kid.map_or(k.clone(), |kid| k.with_key_id(kid))
}

#[test]
fn without_kid_the_keys_of_the_header_algorithm_are_tried() {
    let a = ES256KeyPair::generate();
    let b = ES256KeyPair::generate();
    let ed = Ed25519KeyPair::generate();
    let public = |text: String| serde_json::from_str::<Value>(&text).unwrap();
    let keys = jwks(vec![
        public(ed.public_key().to_jwk()),
        public(a.public_key().to_jwk()),
        public(b.public_key().to_jwk()),
    ]);
    let token = b.sign(claims(json!({}))).unwrap();
    let got = verify(&token, &keys, &opts()).unwrap();
    assert_eq!(got.alg, Algorithm::Es256);
    assert_eq!(got.kid, None);
    // An expired token is reported as expired, not as "no key".
    let mut old = claims(json!({}));
    old.expires_at = Some(UnixTimeStamp::from_secs(NOW - 100));
    let token = a.sign(old).unwrap();
    assert_eq!(verify(&token, &keys, &opts()), Err(TokenError::Expired));
    // A key of the right algorithm but not in the set.
    let stranger = ES256KeyPair::generate().sign(claims(json!({}))).unwrap();
    assert_eq!(
        verify(&stranger, &keys, &opts()),
        Err(TokenError::NoMatchingKey)
    );
    // No key of the header's algorithm at all.
    let rs = RS256KeyPair::from_der(&fx().rsa_der).unwrap();
    assert_eq!(
        verify(&rs.sign(claims(json!({}))).unwrap(), &keys, &opts()),
        Err(TokenError::NoMatchingKey)
    );
}
