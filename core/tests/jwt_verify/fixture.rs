//! The tests' keys and token makers: a signer per algorithm, JWKS builders, the verify call.

use std::sync::OnceLock;

use jwt_simple::prelude::*;
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use scopegate_core::jwks::{Algorithm, KeySet};
use scopegate_core::jwt::{verify, Claims as Verified, TokenError, VerifyOptions};
use serde_json::{json, Map, Value};

pub(crate) const NOW: u64 = 1_800_000_000;
pub(crate) const ISS: &str = "https://auth.example.com";

pub(crate) type Custom = Map<String, Value>;

pub(crate) fn opts() -> VerifyOptions<'static> {
    VerifyOptions::new(ISS, NOW)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// Claims valid at NOW, from ISS, plus `extra`.
pub(crate) fn claims(extra: Value) -> JWTClaims<Custom> {
    let custom = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(600))
        .with_issuer(ISS)
        .with_subject("user-1");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c
}

pub(crate) enum Signer {
    Rs256(RS256KeyPair),
    Ps256(PS256KeyPair),
    Es256(ES256KeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    pub(crate) fn sign_typ(&self, c: JWTClaims<Custom>, typ: Option<&str>) -> String {
        let o = HeaderOptions {
            signature_type: typ.map(str::to_owned),
            ..Default::default()
        };
        match self {
            Signer::Rs256(k) => k.sign_with_options(c, &o),
            Signer::Ps256(k) => k.sign_with_options(c, &o),
            Signer::Es256(k) => k.sign_with_options(c, &o),
            Signer::Ed(k) => k.sign_with_options(c, &o),
        }
        .unwrap()
    }

    pub(crate) fn sign(&self, c: JWTClaims<Custom>) -> String {
        self.sign_typ(c, None)
    }

    /// The public JWK as a JSON value, so tests can edit members.
    pub(crate) fn jwk(&self) -> Value {
        let text = match self {
            Signer::Rs256(k) => k.public_key().to_jwk(),
            Signer::Ps256(k) => k.public_key().to_jwk(),
            Signer::Es256(k) => k.public_key().to_jwk(),
            Signer::Ed(k) => k.public_key().to_jwk(),
        };
        serde_json::from_str(&text).unwrap()
    }
}

/// An RSA JWK built from raw components, the way issuers publish them (often without `alg`).
pub(crate) fn rsa_jwk(n: &[u8], e: &[u8], kid: &str, alg: Option<&str>) -> Value {
    let mut jwk = json!({"kty": "RSA", "n": b64(n), "e": b64(e), "kid": kid, "use": "sig"});
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

pub(crate) fn jwks(keys: Vec<Value>) -> KeySet {
    KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

pub(crate) struct Fixture {
    pub(crate) rsa_der: Vec<u8>,
    pub(crate) rsa_pem_public: String,
    pub(crate) rsa_der_public: Vec<u8>,
    /// One signer per supported algorithm, kid = the algorithm name in lower case.
    pub(crate) signers: Vec<(Signer, Algorithm, &'static str)>,
    pub(crate) keys: KeySet,
}

pub(crate) fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // RSA generation is slow in debug builds: one modulus serves both RSA algorithms.
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let der = rsa.to_der().unwrap();
        let signers = vec![
            (
                Signer::Rs256(RS256KeyPair::from_der(&der).unwrap().with_key_id("rs256")),
                Algorithm::Rs256,
                "rs256",
            ),
            (
                Signer::Ps256(PS256KeyPair::from_der(&der).unwrap().with_key_id("ps256")),
                Algorithm::Ps256,
                "ps256",
            ),
            (
                Signer::Es256(ES256KeyPair::generate().with_key_id("es256")),
                Algorithm::Es256,
                "es256",
            ),
            (
                Signer::Ed(Ed25519KeyPair::generate().with_key_id("eddsa")),
                Algorithm::EdDsa,
                "eddsa",
            ),
        ];
        let keys = jwks(signers.iter().map(|(s, _, _)| s.jwk()).collect());
        Fixture {
            rsa_pem_public: rsa.public_key().to_pem().unwrap(),
            rsa_der_public: rsa.public_key().to_der().unwrap(),
            rsa_der: der,
            signers,
            keys,
        }
    })
}

pub(crate) fn signer(kid: &str) -> &'static Signer {
    &fx().signers.iter().find(|(_, _, k)| *k == kid).unwrap().0
}

pub(crate) fn ed() -> &'static Ed25519KeyPair {
    match signer("eddsa") {
        Signer::Ed(k) => k,
        _ => unreachable!(),
    }
}

/// A token with any header and payload bytes, validly signed by the fixture's Ed25519 key.
pub(crate) fn ed_raw(header: Value, payload: &[u8]) -> String {
    let msg = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = ed().key_pair().as_ref().sk.sign(msg.as_bytes(), None);
    format!("{msg}.{}", b64(sig.as_ref()))
}

pub(crate) fn ed_payload(payload: Value) -> String {
    ed_raw(
        json!({"alg": "EdDSA", "kid": "eddsa", "typ": "at+jwt"}),
        payload.to_string().as_bytes(),
    )
}

pub(crate) fn base_payload() -> Value {
    json!({"iss": ISS, "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10})
}

pub(crate) fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub(crate) fn check(token: &str) -> Result<Verified, TokenError> {
    verify(token, &fx().keys, &opts())
}

pub(crate) fn unsigned(header: Value, payload: Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}
