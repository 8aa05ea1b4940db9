//! Verified tokens, kept until their `exp`: claims per worker, and a bounded process-wide table of
//! which tokens are verified, so a token's signature is checked once per Envoy.
//!
//! Kept per worker rather than in shared data: shared data has no expiry or delete, so a
//! process-wide token cache would grow without bound under many distinct tokens. The per-worker
//! map is keyed by the token itself, hashed with a fast word hash: hashing a kilobyte-long JWT
//! with SHA-256 (or SipHash) on every request costs more in V8 than the rest of the lookup; the
//! digest is computed only on a miss, for the shared table. Each entry also keeps what the token
//! earned per server (`Admitted`), so a hit decides nothing again.

use crate::host::Host;
use scopegate_core::authorize::{Admission, Principal};
use scopegate_core::decision::Decision;
use scopegate_core::jwt::Claims;
use scopegate_core::policy::ServerId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    hmac_sha256::Hash::hash(token.as_bytes())
}

/// Slots of the process-wide "already verified" table in shared data. A fixed number of keys
/// bounds its memory (shared data has no delete); a collision only costs a verification.
const SHARED_SLOTS: u16 = 4096;

fn slot_key(d: &Digest) -> String {
    format!(
        "scopegate.verified.{}",
        u16::from_le_bytes([d[0], d[1]]) % SHARED_SLOTS
    )
}

/// Whether some worker of this Envoy verified this exact token against the same keys
/// (`generation` names the key set, so a key change invalidates every slot).
pub fn verified_elsewhere(h: &mut impl Host, d: &Digest, generation: u64) -> bool {
    match h.shared_data(&slot_key(d)) {
        Ok((Some(v), _)) => {
            v.len() == 40
                && v.get(..32) == Some(&d[..])
                && v.get(32..) == Some(&generation.to_le_bytes()[..])
        }
        _ => false,
    }
}

/// Tells the other workers this token verified.
pub fn share_verified(h: &mut impl Host, d: &Digest, generation: u64) {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(d);
    v.extend_from_slice(&generation.to_le_bytes());
    if let Err(e) = h.set_shared_data(&slot_key(d), &v, None) {
        log::warn!("cannot share a verification: {e:?}");
    }
}

/// A verified token: its claims, and what it earned on each server it was used for (a token is
/// normally bound to one audience, so this holds one entry).
pub struct Verified {
    pub claims: Rc<Claims>,
    admissions: RefCell<Vec<(ServerId, Rc<Admitted>)>>,
}

/// [`scopegate_core::authorize::Admission`] as the request path shares it.
pub struct Admitted {
    /// Shared with the held-body phases, which keep it per request.
    pub principal: Rc<Principal>,
    pub decision: Rc<Decision>,
    pub record: Rc<str>,
}

impl Verified {
    pub fn new(claims: Rc<Claims>) -> Verified {
        Verified {
            claims,
            admissions: RefCell::new(Vec::new()),
        }
    }

    pub fn admitted(&self, server: ServerId) -> Option<Rc<Admitted>> {
        self.admissions
            .borrow()
            .iter()
            .find(|(s, _)| *s == server)
            .map(|(_, a)| Rc::clone(a))
    }

    pub fn remember(&self, server: ServerId, admission: Admission) -> Rc<Admitted> {
        let admitted = Rc::new(Admitted {
            principal: Rc::new(admission.principal),
            decision: Rc::new(admission.decision),
            record: admission.record.into(),
        });
        let mut all = self.admissions.borrow_mut();
        // Bounded by the policy's servers; a token used on all of them is unusual.
        all.retain(|(s, _)| *s != server);
        all.push((server, Rc::clone(&admitted)));
        admitted
    }
}

pub struct TokenCache {
    entries: HashMap<Box<str>, Rc<Verified>, BuildHasherDefault<WordHasher>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// A cached verification still within its `exp` (+ leeway); the caller re-checks audience.
    pub fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Rc<Verified>> {
        self.entries
            .get(token)
            .filter(|v| v.claims.exp.saturating_add(leeway) > now)
            .cloned()
    }

    pub fn insert(
        &mut self,
        token: &str,
        claims: Rc<Claims>,
        now: u64,
        leeway: u64,
    ) -> Rc<Verified> {
        if self.entries.len() >= self.capacity {
            self.evict_expired(now, leeway);
        }
        if self.entries.len() >= self.capacity {
            // Full of live tokens: start over rather than track recency on the hot path.
            self.entries.clear();
        }
        let verified = Rc::new(Verified::new(claims));
        self.entries.insert(token.into(), Rc::clone(&verified));
        verified
    }

    pub fn evict_expired(&mut self, now: u64, leeway: u64) {
        self.entries
            .retain(|_, v| v.claims.exp.saturating_add(leeway) > now);
    }

    /// Forgets everything, e.g. when signing keys change (a revoked key must stop working).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A fast, unkeyed hash over 8-byte words (the FxHash construction) for the token cache.
///
/// SipHash, the standard map's keyed hash, costs more than everything else on a cache hit for a
/// kilobyte-long JWT. A keyed hash defends a map against keys chosen to collide; here only
/// tokens whose signature verified are ever inserted, and a client cannot choose those bytes,
/// so lookups of unverified tokens probe a map no attacker could have shaped.
#[derive(Default, Clone, Copy)]
pub struct WordHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(s: &str) -> u64 {
        BuildHasherDefault::<WordHasher>::default().hash_one(s)
    }

    #[test]
    fn every_byte_of_a_token_counts() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        let base = hash(token);
        for i in 0..token.len() {
            let mut t = token.as_bytes().to_vec();
            t[i] ^= 1;
            let changed = String::from_utf8(t).unwrap_or_default();
            assert_ne!(hash(&changed), base, "byte {i}");
        }
        // A prefix is not the same key (the str terminator is hashed too).
        assert_ne!(hash(&token[..token.len() - 1]), base);
        assert_eq!(hash(token), base);
    }

    #[test]
    fn the_cache_keeps_what_a_token_earned_per_server() {
        let claims = Rc::new(Claims {
            iss: "i".into(),
            sub: Some("alice".into()),
            aud: vec![],
            exp: 100,
            nbf: None,
            iat: None,
            jti: None,
            client_id: None,
            scopes: vec![],
            kid: None,
            alg: scopegate_core::jwks::Algorithm::Es256,
            grant_id: None,
            extra: Default::default(),
        });
        let mut cache = TokenCache::new(2);
        let v = cache.insert("a", Rc::clone(&claims), 10, 0);
        assert!(cache.get("a", 10, 0).is_some());
        assert!(cache.get("a", 100, 0).is_none(), "expired at exp");
        assert!(v.admitted(0).is_none());
        // Full of live tokens: starts over.
        cache.insert("b", Rc::clone(&claims), 10, 0);
        cache.insert("c", Rc::clone(&claims), 10, 0);
        assert!(cache.get("a", 10, 0).is_none());
        assert!(cache.get("c", 10, 0).is_some());
    }
}
