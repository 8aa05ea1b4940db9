//! Advisory locks: our own keys, a grant's key, and the lock held while refreshing a grant.

use super::sql::Conn;
use crate::store::RefreshLock;
use sha2::{Digest, Sha256};

/// Advisory-lock keys of our own (grant keys are hashes, far from these by chance only; the
/// two-key form would be cleaner but `pg_try_advisory_lock(bigint)` is what the grants use).
pub(super) const MIGRATION_LOCK: i64 = 0x7363_6f70_6567_0001;
pub(super) const REVOCATIONS_LOCK: i64 = 0x7363_6f70_6567_0002;

/// The advisory-lock key of a grant: the first 8 bytes of SHA-256 of its id.
pub(super) fn lock_key(grant_id: &str) -> i64 {
    let d = Sha256::digest(grant_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// A grant's advisory lock, held by one pooled session until dropped.
pub(super) struct AdvisoryLock {
    pub(super) conn: Option<Conn>,
    pub(super) key: i64,
}

impl RefreshLock for AdvisoryLock {}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        // The sync client must not block a tokio worker: unlock on the blocking pool when there
        // is a runtime. If the unlock fails the session is broken, and its end releases the lock.
        let mut unlock = move || {
            if let Err(e) = conn.execute("SELECT pg_advisory_unlock($1)", &[&key]) {
                tracing::warn!(error = %e, "refresh lock: unlock failed; the session's end releases it");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(unlock)),
            Err(_) => unlock(),
        }
    }
}
