//! Downstream credentials per grant and server: per worker, and in shared data so every worker of
//! this Envoy reuses one exchange for the credential's whole lifetime.

use crate::host::Host;
use crate::token_cache::WordHasher;
use scopegate_core::exchange::Credential;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

/// Per-worker entries kept before the map is emptied (the shared copy survives that).
const MAX_LOCAL: usize = 10_000;

/// A credential as the filter uses it: the whole `authorization` value, built once per worker
/// so a hit copies nothing.
pub struct Usable {
    pub authorization: Box<str>,
    pub reuse_until: u64,
}

impl Usable {
    fn of(c: &Credential) -> Rc<Usable> {
        Rc::new(Usable {
            authorization: format!("Bearer {}", c.access_token).into(),
            reuse_until: c.reuse_until,
        })
    }
}

/// Keyed by grant id (from a verified token) and server: a fast unkeyed hash will do
/// (`token_cache::WordHasher` says why).
#[derive(Default)]
pub struct Credentials {
    local: HashMap<String, Rc<Usable>, BuildHasherDefault<WordHasher>>,
}

impl Credentials {
    /// A usable credential, from this worker's map or else from shared data.
    pub fn get(&mut self, h: &mut impl Host, key: &str, now: u64) -> Option<Rc<Usable>> {
        if let Some(c) = self.local.get(key).filter(|c| now < c.reuse_until) {
            return Some(Rc::clone(c));
        }
        let shared = match h.shared_data(key) {
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
        Some(self.remember(key, &shared))
    }

    /// Keeps a fresh credential here and for the other workers.
    pub fn insert(&mut self, h: &mut impl Host, key: &str, credential: &Credential) -> Rc<Usable> {
        if let Err(e) = h.set_shared_data(key, credential.encode().as_bytes(), None) {
            log::warn!("cannot share a credential with other workers: {e:?}");
        }
        self.remember(key, credential)
    }

    /// Drops a credential here and for the other workers (its grant was revoked).
    pub fn forget(&mut self, h: &mut impl Host, key: &str) {
        self.local.remove(key);
        if let Ok((Some(v), _)) = h.shared_data(key) {
            if !v.is_empty() {
                if let Err(e) = h.set_shared_data(key, b"", None) {
                    log::warn!("cannot drop a shared credential: {e:?}");
                }
            }
        }
    }

    fn remember(&mut self, key: &str, credential: &Credential) -> Rc<Usable> {
        if self.local.len() >= MAX_LOCAL {
            self.local.clear();
        }
        let usable = Usable::of(credential);
        self.local.insert(key.to_string(), Rc::clone(&usable));
        usable
    }
}
