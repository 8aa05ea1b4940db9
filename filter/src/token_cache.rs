//! Verified tokens per worker, kept until their `exp`, so a token is verified once per worker.
//!
//! Kept per worker rather than in shared data: shared data has no expiry or delete, so a
//! process-wide token cache would grow without bound under many distinct tokens. Entries are
//! keyed by the token's SHA-256, not the token: a kilobyte-long JWT per entry would put
//! thousands of cached tokens well past the per-worker memory budget.

use scopegate_core::jwt::Claims;
use std::collections::HashMap;
use std::rc::Rc;

type Digest = [u8; 32];

fn digest(token: &str) -> Digest {
    hmac_sha256::Hash::hash(token.as_bytes())
}

pub struct TokenCache {
    entries: HashMap<Digest, Rc<Claims>>,
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
            .get(&digest(token))
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
        self.entries.insert(digest(token), claims);
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
