//! JWKS parsing (skipped keys, unusable sets, RSA algorithms, the cap) and re-decoding a token.

use super::fixture::*;
use jwt_simple::prelude::*;
use jwt_simple::reexports::ct_codecs::Base64UrlSafeNoPadding;
use scopegate_core::jwks::{Algorithm, JwksError, KeySet};
use scopegate_core::jwt::{verify, TokenError, VerifyOptions};
use serde_json::{json, Value};

#[test]
fn jwks_counts_skipped_keys() {
    let f = fx();
    let rsa = signer("rs256").jwk();
    let n = b64_decode(rsa["n"].as_str().unwrap());
    let mut weak_n = vec![0xC3u8; 128];
    weak_n[127] = 0x01;
    let mut huge_n = vec![0xC3u8; 1024];
    huge_n[1023] = 0x01;
    let mut enc = signer("es256").jwk();
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc-1");
    let mut private = serde_json::from_str::<Value>(&ed().to_jwk()).unwrap();
    private["kid"] = json!("private-1");
    let doc = json!({"keys": [
        rsa,
        rsa_jwk(&weak_n, &[1, 0, 1], "rsa-1024", Some("RS256")),
        rsa_jwk(&huge_n, &[1, 0, 1], "rsa-8192", None),
        rsa_jwk(&n, &[3], "rsa-e3", None),
        rsa_jwk(&n, &[1, 0, 1], "rsa-oaep", Some("RSA-OAEP")),
        enc,
        private,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
        {"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x25519"},
        {"kty": "OKP", "crv": "Ed25519", "x": "not base64!", "kid": "broken"},
        {"kid": "no-kty"},
        "not an object",
        signer("eddsa").jwk(),
    ]});
    let keys = KeySet::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.skipped(), 12);
    assert!(keys.contains_kid("rs256") && keys.contains_kid("eddsa"));
    for kid in [
        "rsa-1024",
        "rsa-8192",
        "rsa-e3",
        "rsa-oaep",
        "enc-1",
        "private-1",
        "hmac",
    ] {
        assert!(!keys.contains_kid(kid), "{kid} should be skipped");
    }
    assert_eq!(f.keys.len(), 4);
    assert_eq!(f.keys.skipped(), 0);
}

fn b64_decode(s: &str) -> Vec<u8> {
    use jwt_simple::reexports::ct_codecs::Decoder;
    Base64UrlSafeNoPadding::decode_to_vec(s, None).unwrap()
}

#[test]
fn jwks_without_usable_keys_or_not_a_jwks_is_an_error() {
    assert_eq!(
        KeySet::from_json(br#"{"keys":[]}"#).unwrap_err(),
        JwksError::NoUsableKeys { skipped: 0 }
    );
    let mut enc = signer("es256").jwk();
    enc["use"] = json!("enc");
    let only_enc = json!({"keys": [enc, {"kty": "oct", "k": "AA"}]}).to_string();
    assert_eq!(
        KeySet::from_json(only_enc.as_bytes()).unwrap_err(),
        JwksError::NoUsableKeys { skipped: 2 }
    );
    assert!(matches!(
        KeySet::from_json(b"<html>").unwrap_err(),
        JwksError::NotJson(_)
    ));
    for doc in [
        &br#"{}"#[..],
        br#"{"keys":{}}"#,
        br#"[]"#,
        br#"{"kty":"RSA"}"#,
    ] {
        assert_eq!(KeySet::from_json(doc).unwrap_err(), JwksError::NotAKeySet);
    }
    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(300 * 1024));
    assert!(matches!(
        KeySet::from_json(big.as_bytes()).unwrap_err(),
        JwksError::TooLarge { .. }
    ));
    for e in [
        JwksError::NotAKeySet,
        JwksError::NoUsableKeys { skipped: 3 },
        JwksError::TooLarge { len: 1 },
    ] {
        assert!(e.to_string().contains("JWKS"));
    }
}

#[test]
fn rsa_algorithm_comes_from_the_jwk() {
    let f = fx();
    let rsa = signer("rs256").jwk();
    let n = b64_decode(rsa["n"].as_str().unwrap());
    let keys = jwks(vec![
        rsa_jwk(&n, &[1, 0, 1], "plain", None),
        rsa_jwk(&n, &[1, 0, 1], "pss", Some("PS256")),
    ]);
    let algs: Vec<Algorithm> = keys.keys().iter().map(|k| k.algorithm()).collect();
    assert_eq!(algs, vec![Algorithm::Rs256, Algorithm::Ps256]);

    let rs = RS256KeyPair::from_der(&f.rsa_der)
        .unwrap()
        .with_key_id("plain");
    let got = verify(&rs.sign(claims(json!({}))).unwrap(), &keys, &opts()).unwrap();
    assert_eq!(got.alg, Algorithm::Rs256);
    let ps = PS256KeyPair::from_der(&f.rsa_der)
        .unwrap()
        .with_key_id("plain");
    assert_eq!(
        verify(&ps.sign(claims(json!({}))).unwrap(), &keys, &opts()),
        Err(TokenError::UnsupportedAlgorithm)
    );
    let ps = PS256KeyPair::from_der(&f.rsa_der)
        .unwrap()
        .with_key_id("pss");
    let got = verify(&ps.sign(claims(json!({}))).unwrap(), &keys, &opts()).unwrap();
    assert_eq!(got.alg, Algorithm::Ps256);
}

#[test]
fn rfc7517_example_set_parses() {
    // RFC 7517 appendix A.1: the EC key is for encryption, the RSA key for signatures.
    let doc = r#"{"keys":[
      {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
       "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"},
      {"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
       "e":"AQAB","alg":"RS256","kid":"2011-04-29"}]}"#;
    let keys = KeySet::from_json(doc.as_bytes()).unwrap();
    assert_eq!((keys.len(), keys.skipped()), (1, 1));
    assert!(keys.contains_kid("2011-04-29"));
    assert!(!keys.contains_kid("1"));
    // Same key with the EC entry marked for signatures: both usable.
    let keys = KeySet::from_json(doc.replace("\"enc\"", "\"sig\"").as_bytes()).unwrap();
    assert_eq!((keys.len(), keys.skipped()), (2, 0));
}

#[test]
fn jwks_entries_beyond_the_cap_are_skipped() {
    let one = signer("es256").jwk();
    let doc = json!({ "keys": vec![one; scopegate_core::jwks::MAX_KEYS + 3] }).to_string();
    let keys = KeySet::from_json(doc.as_bytes()).unwrap();
    assert_eq!(keys.len(), scopegate_core::jwks::MAX_KEYS);
    assert_eq!(keys.skipped(), 3);
}

#[test]
fn decode_verified_reads_the_same_claims_and_rechecks_time_and_issuer() {
    let token = signer("es256").sign(claims(serde_json::json!({"scope": "a b"})));
    let verified = check(&token).unwrap();
    let decoded = scopegate_core::jwt::decode_verified(&token, &opts()).unwrap();
    assert_eq!(decoded, verified);
    let late = VerifyOptions {
        now: verified.exp + 60,
        ..opts()
    };
    assert_eq!(
        scopegate_core::jwt::decode_verified(&token, &late),
        Err(TokenError::Expired)
    );
    let other = VerifyOptions {
        issuer: "https://other.example",
        ..opts()
    };
    assert_eq!(
        scopegate_core::jwt::decode_verified(&token, &other),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        scopegate_core::jwt::decode_verified("a.b", &opts()),
        Err(TokenError::Malformed)
    );
}
