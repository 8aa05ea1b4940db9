//! The state one Envoy worker's VM shares between its root context and its HTTP contexts.

use crate::audit::Stats;
use crate::credentials::Credentials;
use crate::keys::KeyStore;
use crate::token_cache::TokenCache;
use scopegate_core::Policy;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Worker {
    pub policy: Rc<Policy>,
    pub keys: RefCell<KeyStore>,
    pub tokens: RefCell<TokenCache>,
    pub stats: RefCell<Stats>,
    pub credentials: RefCell<Credentials>,
}

impl Worker {
    pub fn new(policy: Policy) -> Worker {
        let keys = KeyStore::new(&policy);
        let tokens = TokenCache::new(policy.filter.token_cache_entries);
        Worker {
            policy: Rc::new(policy),
            keys: RefCell::new(keys),
            tokens: RefCell::new(tokens),
            stats: RefCell::new(Stats::default()),
            credentials: RefCell::new(Credentials::default()),
        }
    }
}
