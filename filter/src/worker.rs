//! The state one Envoy worker's VM shares between its root context and its HTTP contexts.

use crate::audit::Stats;
use crate::call_memo::CallMemo;
use crate::credentials::Credentials;
use crate::host::Host;
use crate::keys::KeyStore;
use crate::parking::Parking;
use crate::revocations::Revocations;
use crate::token_cache::TokenCache;
use scopegate_core::Policy;
use std::cell::RefCell;
use std::rc::Rc;

/// At most this many kept per-tool decisions per worker (`call_memo`).
pub const CALL_MEMO_ENTRIES: usize = 1024;

pub struct Worker {
    pub policy: Rc<Policy>,
    pub keys: RefCell<KeyStore>,
    pub tokens: RefCell<TokenCache>,
    /// The last single-call decision per admitted token and server (per-tool scopes).
    pub calls: RefCell<CallMemo>,
    pub stats: RefCell<Stats>,
    pub credentials: RefCell<Credentials>,
    /// `hold_headers` requests waiting for their body: context id -> since (ms).
    pub held: RefCell<std::collections::HashMap<u32, u64>>,
    pub revocations: RefCell<Revocations>,
    /// Requests parked on another request's broker exchange.
    pub parking: RefCell<Parking>,
}

impl Worker {
    pub fn new(policy: Policy) -> Worker {
        let keys = KeyStore::new(&policy);
        let tokens = TokenCache::new(policy.filter.token_cache_entries);
        // Bounded well below the token cache: each entry holds a decision (a few hundred bytes).
        let calls = CallMemo::new(policy.filter.token_cache_entries.min(CALL_MEMO_ENTRIES));
        Worker {
            policy: Rc::new(policy),
            keys: RefCell::new(keys),
            tokens: RefCell::new(tokens),
            calls: RefCell::new(calls),
            stats: RefCell::new(Stats::default()),
            credentials: RefCell::new(Credentials::default()),
            held: RefCell::default(),
            revocations: RefCell::new(Revocations::default()),
            parking: RefCell::default(),
        }
    }
}

impl Worker {
    /// Reads a JWKS fetch response and, if usable, makes it this worker's (and every worker's)
    /// keys. Verified tokens are forgotten: a key that left the set must stop working.
    pub fn install_fetched_keys(&self, h: &mut impl Host, source: usize, body_size: usize) {
        match crate::keys::read_response(h, body_size) {
            Ok(doc) => match self.keys.borrow_mut().install(h, source, &doc) {
                Ok(true) => {
                    self.tokens.borrow_mut().clear();
                    log::info!("loaded new signing keys for JWKS source {source}");
                }
                Ok(false) => log::debug!("JWKS source {source} unchanged"),
                Err(e) => log::warn!("JWKS source {source} unusable: {e}"),
            },
            Err(e) => log::warn!("JWKS source {source}: {e}"),
        }
    }
}
