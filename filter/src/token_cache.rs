//! Verified tokens, kept until their `exp`: claims per worker, and a bounded process-wide table of
//! which tokens are verified, so a token's signature is checked once per Envoy.
//!
//! Kept per worker rather than in shared data: shared data has no expiry or delete, so a
//! process-wide token cache would grow without bound under many distinct tokens. The per-worker
//! map is keyed by the token itself: hashing a kilobyte-long JWT with SHA-256 on every request
//! costs more in V8 than the map lookup; the digest is computed only on a miss, for the shared table.

use crate::host::Host;
use scopegate_core::jwt::Claims;
use std::collections::HashMap;
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

pub struct TokenCache {
    entries: HashMap<Box<str>, Rc<Claims>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// A cached verification still within its `exp` (+ leeway); the caller re-checks audience.
    pub fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Rc<Claims>> {
        self.entries
            .get(token)
            .filter(|c| c.exp.saturating_add(leeway) > now)
            .cloned()
    }

    pub fn insert(&mut self, token: &str, claims: Rc<Claims>, now: u64, leeway: u64) {
        if self.entries.len() >= self.capacity {
            self.evict_expired(now, leeway);
        }
        if self.entries.len() >= self.capacity {
            // Full of live tokens: start over rather than track recency on the hot path.
            self.entries.clear();
        }
        self.entries.insert(token.into(), claims);
    }

    pub fn evict_expired(&mut self, now: u64, leeway: u64) {
        self.entries
            .retain(|_, c| c.exp.saturating_add(leeway) > now);
    }

    /// Forgets everything, e.g. when signing keys change (a revoked key must stop working).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
