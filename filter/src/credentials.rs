//! Downstream credentials per grant and server: per worker, and in shared data so every worker of
//! this Envoy reuses one exchange for the credential's whole lifetime.

use proxy_wasm::hostcalls;
use scopegate_core::exchange::Credential;
use std::collections::HashMap;

/// Per-worker entries kept before the map is emptied (the shared copy survives that).
const MAX_LOCAL: usize = 10_000;

#[derive(Default)]
pub struct Credentials {
    local: HashMap<String, Credential>,
}

impl Credentials {
    /// A usable credential, from this worker's map or else from shared data.
    pub fn get(&mut self, key: &str, now: u64) -> Option<Credential> {
        if let Some(c) = self.local.get(key).filter(|c| c.usable_at(now)) {
            return Some(c.clone());
        }
        let shared = match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), _)) => Credential::decode(&bytes),
            Ok((None, _)) => None,
            Err(e) => {
                log::warn!("cannot read a shared credential: {e:?}");
                None
            }
        }?;
        if !shared.usable_at(now) {
            return None;
        }
        self.remember(key, shared.clone());
        Some(shared)
    }

    /// Keeps a fresh credential here and for the other workers.
    pub fn insert(&mut self, key: &str, credential: &Credential) {
        if let Err(e) = hostcalls::set_shared_data(key, Some(credential.encode().as_bytes()), None)
        {
            log::warn!("cannot share a credential with other workers: {e:?}");
        }
        self.remember(key, credential.clone());
    }

    /// Drops a credential here and for the other workers (its grant was revoked).
    pub fn forget(&mut self, key: &str) {
        self.local.remove(key);
        if let Ok((Some(v), _)) = hostcalls::get_shared_data(key) {
            if !v.is_empty() {
                if let Err(e) = hostcalls::set_shared_data(key, Some(b""), None) {
                    log::warn!("cannot drop a shared credential: {e:?}");
                }
            }
        }
    }

    fn remember(&mut self, key: &str, credential: Credential) {
        if self.local.len() >= MAX_LOCAL {
            self.local.clear();
        }
        self.local.insert(key.to_string(), credential);
    }
}
