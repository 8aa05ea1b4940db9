//! A token issuer under the tests' control: signs tokens with any claims (including broken ones)
//! and serves its JWKS over HTTP, so Envoy fetches keys through a real cluster.
//!
//! This is a stand-in only for the faults a real authorization server will not produce (no
//! `exp`, `alg: none`, HS256 keyed with the RSA public key, key rotation on demand). Tokens
//! from a real one (oidc-provider) are tested too, in `tests/real_authorization_server.rs`.

use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub enum Signer {
    Rs256(RS256KeyPair),
    Ps256(PS256KeyPair),
    Es256(ES256KeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    pub fn generate(alg: &str, kid: &str) -> Signer {
        match alg {
            "RS256" => Signer::Rs256(RS256KeyPair::generate(2048).unwrap().with_key_id(kid)),
            "PS256" => Signer::Ps256(PS256KeyPair::generate(2048).unwrap().with_key_id(kid)),
            "ES256" => Signer::Es256(ES256KeyPair::generate().with_key_id(kid)),
            "EdDSA" => Signer::Ed(Ed25519KeyPair::generate().with_key_id(kid)),
            other => panic!("no test signer for {other}"),
        }
    }

    /// An independent copy of the key pair (for signing on several threads), with key id `kid`.
    pub fn duplicate(&self, kid: &str) -> Signer {
        match self {
            Signer::Rs256(k) => Signer::Rs256(
                RS256KeyPair::from_der(&k.to_der().unwrap())
                    .unwrap()
                    .with_key_id(kid),
            ),
            Signer::Ps256(k) => Signer::Ps256(
                PS256KeyPair::from_der(&k.to_der().unwrap())
                    .unwrap()
                    .with_key_id(kid),
            ),
            Signer::Es256(k) => Signer::Es256(
                ES256KeyPair::from_bytes(&k.to_bytes())
                    .unwrap()
                    .with_key_id(kid),
            ),
            Signer::Ed(k) => Signer::Ed(
                Ed25519KeyPair::from_bytes(&k.to_bytes())
                    .unwrap()
                    .with_key_id(kid),
            ),
        }
    }

    fn sign(&self, claims: JWTClaims<Map<String, Value>>) -> String {
        let o = HeaderOptions {
            signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        match self {
            Signer::Rs256(k) => k.sign_with_options(claims, &o),
            Signer::Ps256(k) => k.sign_with_options(claims, &o),
            Signer::Es256(k) => k.sign_with_options(claims, &o),
            Signer::Ed(k) => k.sign_with_options(claims, &o),
        }
        .unwrap()
    }

    pub fn jwk(&self) -> Value {
        let text = match self {
            Signer::Rs256(k) => k.public_key().to_jwk(),
            Signer::Ps256(k) => k.public_key().to_jwk(),
            Signer::Es256(k) => k.public_key().to_jwk(),
            Signer::Ed(k) => k.public_key().to_jwk(),
        };
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["use"] = json!("sig");
        if let Signer::Ps256(_) = self {
            v["alg"] = json!("PS256");
        }
        v
    }

    /// The RSA public key as PEM, for the HS256 key-confusion attack.
    pub fn public_pem(&self) -> Option<String> {
        match self {
            Signer::Rs256(k) => k.public_key().to_pem().ok(),
            _ => None,
        }
    }
}

struct State {
    signers: BTreeMap<String, Signer>,
    published: Vec<String>,
    fetches: usize,
}

/// The issuer: `iss` = its URL, keys by `kid`, a JWKS at `/jwks`.
#[derive(Clone)]
pub struct Issuer {
    pub url: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Issuer {
    /// Starts serving on a fresh port with one published key per algorithm
    /// (`rs256`, `ps256`, `es256`, `eddsa`).
    pub fn start() -> Issuer {
        let mut signers = BTreeMap::new();
        for (alg, kid) in [
            ("RS256", "rs256"),
            ("PS256", "ps256"),
            ("ES256", "es256"),
            ("EdDSA", "eddsa"),
        ] {
            signers.insert(kid.to_string(), Signer::generate(alg, kid));
        }
        let published = signers.keys().cloned().collect();
        let state = Arc::new(Mutex::new(State {
            signers,
            published,
            fetches: 0,
        }));
        let served = Arc::clone(&state);
        let port = crate::serve_in_background(axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let s = Arc::clone(&served);
                async move {
                    let mut s = s.lock().unwrap();
                    s.fetches += 1;
                    let keys: Vec<Value> = s
                        .published
                        .iter()
                        .filter_map(|k| s.signers.get(k))
                        .map(Signer::jwk)
                        .collect();
                    axum::Json(json!({ "keys": keys }))
                }
            }),
        ));
        Issuer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
        }
    }

    /// Adds a key that is not yet in the JWKS (for rotation tests).
    pub fn add_unpublished(&self, alg: &str, kid: &str) {
        self.state
            .lock()
            .unwrap()
            .signers
            .insert(kid.to_string(), Signer::generate(alg, kid));
    }

    pub fn publish(&self, kid: &str) {
        let mut s = self.state.lock().unwrap();
        if !s.published.iter().any(|k| k == kid) {
            s.published.push(kid.to_string());
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }

    /// Signs `claims` (a JSON object; `exp` may be absent) with key `kid`.
    pub fn sign(&self, kid: &str, claims: Value) -> String {
        let parsed: JWTClaims<Map<String, Value>> = serde_json::from_value(claims).expect("claims");
        let s = self.state.lock().unwrap();
        s.signers
            .get(kid)
            .unwrap_or_else(|| panic!("no key {kid}"))
            .sign(parsed)
    }

    /// Signs each of `claims` with key `kid`, on every core: for benchmarks that need thousands
    /// of distinct tokens (RSA signing is slow in pure Rust).
    pub fn sign_many(&self, kid: &str, claims: Vec<Value>) -> Vec<String> {
        let signer = self
            .state
            .lock()
            .unwrap()
            .signers
            .get(kid)
            .map(|s| s.duplicate(kid))
            .unwrap_or_else(|| panic!("no key {kid}"));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = claims.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = claims
                .chunks(chunk)
                .map(|part| {
                    let signer = signer.duplicate(kid);
                    s.spawn(move || {
                        part.iter()
                            .map(|c| {
                                signer.sign(serde_json::from_value(c.clone()).expect("claims"))
                            })
                            .collect::<Vec<String>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("signing thread"))
                .collect()
        })
    }

    /// Typical good claims for `resource` with `scope`, valid for five minutes.
    pub fn claims(&self, resource: &str, scope: &str) -> Value {
        let now = crate::now();
        json!({
            "iss": self.url, "sub": "alice", "aud": resource, "scope": scope,
            "client_id": "test-client", "iat": now, "exp": now + 300, "jti": format!("j{}", rand_u64()),
        })
    }

    /// A good token: `kid` `es256` unless said otherwise.
    pub fn token(&self, resource: &str, scope: &str) -> String {
        self.sign("es256", self.claims(resource, scope))
    }

    pub fn public_pem(&self, kid: &str) -> String {
        self.state
            .lock()
            .unwrap()
            .signers
            .get(kid)
            .and_then(Signer::public_pem)
            .expect("an RSA key")
    }
}

/// An HS256 token keyed with `secret` (the key-confusion attack), and an unsigned `alg: none` one.
pub fn hs256_token(secret: &[u8], claims: Value) -> String {
    let parsed: JWTClaims<Map<String, Value>> = serde_json::from_value(claims).unwrap();
    HS256Key::from_bytes(secret)
        .with_key_id("rs256")
        .authenticate(parsed)
        .unwrap()
}

pub fn unsigned_token(claims: &Value) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b.encode(br#"{"alg":"none","typ":"JWT","kid":"rs256"}"#);
    let body = b.encode(claims.to_string());
    format!("{header}.{body}.")
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::now());
    h.finish()
}
