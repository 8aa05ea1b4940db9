//! The broker's ES256 signing keys: kept encrypted in the store, rotated with overlap, served as JWKS.
//!
//! A new key is published `lead` seconds before it signs anything, so verifiers that cached the
//! JWKS have a chance to see it first; a replaced key stays published until every token it signed
//! has expired.

use crate::crypto::Sealer;
use crate::store::{KeyRow, Store};
use jwt_simple::prelude::*;
use scopegate_core::jwks::KeySet;
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};

/// What an access token says beyond the registered claims (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub scope: String,
    pub client_id: String,
    pub grant_id: String,
}

struct Live {
    kid: String,
    created_at: u64,
    pair: ES256KeyPair,
}

struct Ring {
    keys: Vec<Live>,
    jwks: Value,
    verifier: Option<KeySet>,
}

pub struct KeyRing {
    store: Arc<dyn Store>,
    sealer: Sealer,
    rotation_s: u64,
    token_ttl_s: u64,
    ring: RwLock<Ring>,
}

fn context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

impl KeyRing {
    pub fn load(
        store: Arc<dyn Store>,
        sealer: Sealer,
        rotation_s: u64,
        token_ttl_s: u64,
        now: u64,
    ) -> Result<KeyRing, String> {
        let ring = KeyRing {
            store,
            sealer,
            rotation_s,
            token_ttl_s,
            ring: RwLock::new(Ring {
                keys: Vec::new(),
                jwks: json!({"keys": []}),
                verifier: None,
            }),
        };
        ring.maintain(now)?;
        Ok(ring)
    }

    fn lead(&self) -> u64 {
        (self.rotation_s / 10).min(300)
    }

    /// Creates the next key when due, drops keys whose tokens have all expired, reloads the set.
    pub fn maintain(&self, now: u64) -> Result<(), String> {
        let rows = self.store.keys()?;
        let newest = rows.iter().map(|k| k.created_at).max();
        if newest.is_none_or(|t| now >= t + self.rotation_s.saturating_sub(self.lead())) {
            let pair = ES256KeyPair::generate();
            let kid = pair.public_key().jwk_thumbprint();
            let sealed = self.sealer.seal(&context(&kid), &pair.to_bytes())?;
            self.store.put_key(&KeyRow {
                kid: kid.clone(),
                private_key: sealed,
                created_at: now,
            })?;
            tracing::info!(kid = %kid, "signing key created");
        }
        let rows = self.store.keys()?;
        let mut live = Vec::new();
        for row in &rows {
            let bytes = self.sealer.open(&context(&row.kid), &row.private_key)?;
            let pair = ES256KeyPair::from_bytes(&bytes)
                .map_err(|e| format!("signing key {}: {e}", row.kid))?;
            live.push(Live {
                kid: row.kid.clone(),
                created_at: row.created_at,
                pair: pair.with_key_id(&row.kid),
            });
        }
        live.sort_by_key(|k| k.created_at);
        // A key is retired once a newer one has signed for longer than any token lives.
        let signer_since = self
            .signer_index(&live, now)
            .and_then(|i| live.get(i))
            .map(|k| k.created_at + self.lead());
        if let Some(since) = signer_since {
            let retire: Vec<String> = live
                .iter()
                .filter(|k| {
                    k.created_at + self.lead() < since && now > since + self.token_ttl_s + 60
                })
                .map(|k| k.kid.clone())
                .collect();
            for kid in &retire {
                self.store.delete_key(kid)?;
                tracing::info!(kid = %kid, "signing key retired");
            }
            live.retain(|k| !retire.contains(&k.kid));
        }
        let keys: Vec<Value> = live
            .iter()
            .filter_map(|k| serde_json::from_str::<Value>(&k.pair.public_key().to_jwk()).ok())
            .zip(live.iter())
            .map(|(mut jwk, k)| {
                jwk["kid"] = json!(k.kid);
                jwk["use"] = json!("sig");
                jwk["alg"] = json!("ES256");
                jwk
            })
            .collect();
        let jwks = json!({ "keys": keys });
        let verifier = KeySet::from_json(jwks.to_string().as_bytes()).ok();
        let mut ring = self
            .ring
            .write()
            .map_err(|_| "key ring lock poisoned".to_string())?;
        *ring = Ring {
            keys: live,
            jwks,
            verifier,
        };
        Ok(())
    }

    /// The newest key that has been published for `lead` seconds, else the oldest one.
    fn signer_index(&self, keys: &[Live], now: u64) -> Option<usize> {
        keys.iter()
            .rposition(|k| k.created_at + self.lead() <= now)
            .or(if keys.is_empty() { None } else { Some(0) })
    }

    pub fn sign(&self, claims: JWTClaims<AccessClaims>, now: u64) -> Result<String, String> {
        let ring = self
            .ring
            .read()
            .map_err(|_| "key ring lock poisoned".to_string())?;
        let key = self
            .signer_index(&ring.keys, now)
            .and_then(|i| ring.keys.get(i))
            .ok_or("no signing key")?;
        let opts = HeaderOptions {
            signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        key.pair
            .sign_with_options(claims, &opts)
            .map_err(|e| format!("signing failed: {e}"))
    }

    pub fn jwks(&self) -> Value {
        self.ring
            .read()
            .map(|r| r.jwks.clone())
            .unwrap_or_else(|_| json!({"keys": []}))
    }

    /// The same keys as a verifier for our own tokens (token exchange, revocation).
    pub fn verifier(&self) -> Option<KeySet> {
        self.ring.read().ok().and_then(|r| r.verifier.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Sqlite;

    fn claims() -> JWTClaims<AccessClaims> {
        Claims::with_custom_claims(
            AccessClaims {
                scope: "a".into(),
                client_id: "c".into(),
                grant_id: "g".into(),
            },
            Duration::from_secs(60),
        )
        .with_issuer("https://i.example")
    }

    fn kid(token: &str) -> String {
        jwt_simple::token::Token::decode_metadata(token)
            .unwrap()
            .key_id()
            .unwrap()
            .to_string()
    }

    #[test]
    fn rotation_publishes_first_then_signs_then_retires() {
        let store: Arc<dyn Store> = Arc::new(Sqlite::open(":memory:").unwrap());
        let sealer = Sealer::from_text(&"11".repeat(32)).unwrap();
        // rotation 1000 s (lead 100 s), tokens live 300 s.
        let ring = KeyRing::load(Arc::clone(&store), sealer, 1000, 300, 10_000).unwrap();
        let first = kid(&ring.sign(claims(), 10_000).unwrap());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 1);
        // Due: a second key is published but the first still signs.
        ring.maintain(10_900).unwrap();
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_eq!(kid(&ring.sign(claims(), 10_950).unwrap()), first);
        // After the lead the new key signs; the old one stays published for the token lifetime.
        let second = kid(&ring.sign(claims(), 11_000).unwrap());
        assert_ne!(second, first);
        ring.maintain(11_100).unwrap();
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        ring.maintain(11_400).unwrap();
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 1);
        assert_eq!(ring.jwks()["keys"][0]["kid"], json!(second));
        // The published set verifies what the current key signs.
        let keys = ring.verifier().unwrap();
        let t = ring.sign(claims(), 11_400).unwrap();
        assert!(scopegate_core::jwt::verify(
            &t,
            &keys,
            &scopegate_core::jwt::VerifyOptions::new(
                "https://i.example",
                crate::clock::Clock::now(&crate::clock::SystemClock)
            )
        )
        .is_ok());
    }
}
