//! Revoked grants, polled from the broker into shared data so every worker refuses their tokens.
//!
//! One worker per poll period (a lease in shared data) asks the broker's internal listener for
//! revocations since its cursor and merges them into one shared entry; each worker picks the entry
//! up on its tick, keeps a local copy for the request path (no host call there), and drops the
//! cached downstream credentials of newly revoked grants. A revoked grant's tokens are refused
//! within about `filter.broker.revocation_poll_s` plus a tick.

use crate::credentials::Credentials;
use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::exchange;
use scopegate_core::policy::BrokerCall;
use scopegate_core::revocation::{self, RevokedSet};
use scopegate_core::Policy;
use std::time::Duration;

const SHARED_KEY: &str = "scopegate.revocations";
const LEASE_KEY: &str = "scopegate.revocations.poll_due";

/// Compare-and-swap attempts at merging a poll's answer before giving up until the next poll.
const ATTEMPTS: usize = 8;

/// This worker's copy of the revoked set.
#[derive(Default)]
pub struct Revocations {
    set: RevokedSet,
    /// CAS of the shared entry the local copy came from.
    cas: Option<u32>,
}

impl Revocations {
    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.set.contains(grant_id)
    }

    /// On the root's tick: picks up the shared set, then polls the broker if this worker holds
    /// the lease. Returns the poll's callout token.
    pub fn tick(
        &mut self,
        h: &mut impl Host,
        policy: &Policy,
        credentials: &mut Credentials,
        now_ms: u64,
    ) -> Option<u32> {
        self.sync(h, policy, credentials);
        let broker = policy.filter.broker.as_ref()?;
        if !policy.gateways.iter().any(|g| g.brokered) {
            return None;
        }
        let period = broker.revocation_poll_s.saturating_mul(1000);
        if !crate::keys::claim(h, LEASE_KEY, now_ms, period) {
            return None;
        }
        match dispatch(h, broker, self.set.cursor) {
            Ok(token) => Some(token),
            Err(e) => {
                log::warn!(
                    "cannot poll revocations on cluster {}: {e:?}",
                    broker.cluster
                );
                None
            }
        }
    }

    /// The poll's answer: merged into the shared set (compare-and-swap, retried), then taken here.
    pub fn on_response(
        &mut self,
        h: &mut impl Host,
        policy: &Policy,
        credentials: &mut Credentials,
        body_size: usize,
    ) {
        let page = match h.call_response_status() {
            Some(200) => match h.call_response_body(body_size) {
                Ok(Some(body)) => revocation::parse_page(&body),
                Ok(None) => Err("empty revocations answer".to_string()),
                Err(e) => Err(format!("cannot read the revocations answer: {e:?}")),
            },
            Some(status) => Err(format!("revocations endpoint answered {status}")),
            None => Err("revocations poll failed (reset or timeout)".to_string()),
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        let now_s = h.now().as_secs();
        for _ in 0..ATTEMPTS {
            let (mut shared, cas) = match h.shared_data(SHARED_KEY) {
                Ok((Some(bytes), cas)) => (RevokedSet::decode(&bytes).unwrap_or_default(), cas),
                Ok((None, cas)) => (RevokedSet::default(), cas),
                Err(e) => {
                    log::warn!("cannot read shared revocations: {e:?}");
                    return;
                }
            };
            let added = shared.apply(&page, now_s);
            match h.set_shared_data(SHARED_KEY, shared.encode().as_bytes(), cas) {
                Ok(()) => {
                    if !added.is_empty() {
                        log::info!("{} grant(s) revoked", added.len());
                    }
                    self.sync(h, policy, credentials);
                    return;
                }
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    log::warn!("cannot share revocations: {e:?}");
                    return;
                }
            }
        }
        log::warn!("revocations not stored: shared entry kept changing");
    }

    /// Takes the shared set if it changed, dropping cached credentials of newly revoked grants.
    fn sync(&mut self, h: &mut impl Host, policy: &Policy, credentials: &mut Credentials) {
        let (bytes, cas) = match h.shared_data(SHARED_KEY) {
            Ok((Some(bytes), cas)) => (bytes, cas),
            Ok((None, _)) => return,
            Err(e) => {
                log::warn!("cannot read shared revocations: {e:?}");
                return;
            }
        };
        if cas == self.cas {
            return;
        }
        let Some(set) = RevokedSet::decode(&bytes) else {
            log::warn!("shared revocations are unreadable");
            return;
        };
        for grant_id in &set.added_since(&self.set) {
            for server in &policy.servers {
                credentials.forget(h, &exchange::cache_key(grant_id, &server.name));
            }
        }
        self.set = set;
        self.cas = cas;
    }
}

fn dispatch(h: &mut impl Host, broker: &BrokerCall, cursor: u64) -> Result<u32, Status> {
    let path = revocation::poll_path(&broker.revocations_path, cursor);
    h.dispatch(
        &broker.cluster,
        &[
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", broker.authority.as_str()),
            ("accept", "application/json"),
        ],
        None,
        Duration::from_millis(broker.timeout_ms),
    )
}
