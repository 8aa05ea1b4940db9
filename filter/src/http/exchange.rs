//! The downstream credential of a brokered gateway: reused, waited for (parked on another
//! request's exchange for the same grant), or asked of the broker.

use super::request::Request;
use crate::credentials::Usable;
use crate::host::Host;
use crate::parking::Parked;
use crate::phase::{Decided, Phase};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, Target};
use scopegate_core::decision::Outcome;
use scopegate_core::exchange::{self, ExchangeError};
use std::rc::Rc;
use std::time::Duration;

impl<D: Host + Default> Request<D> {
    /// The credential to forward an allowed request with, when this worker has one. `Err` is
    /// what the callback returns instead: paused (the exchange or another request's is pending;
    /// the phase says which) or answered (a refusal, or failing closed).
    pub(super) fn downstream_credential<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
    ) -> Result<(Decided, Rc<Usable>), Action> {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, decided.server) else {
            return Err(self.fail_closed(h, "server vanished from the policy"));
        };
        let Outcome::Allow(grant) = &decided.decision.outcome else {
            return Err(self.fail_closed(h, "exchanging for a request that was not allowed"));
        };
        let Some(grant_id) = grant.grant_id.as_deref() else {
            let d = exchange::no_grant(target, &decided.decision.audit);
            return Err(self.reply(h, worker, &d));
        };
        if worker.revocations.borrow().is_revoked(grant_id) {
            let d = exchange::refusal(target, ExchangeError::DeadGrant, &decided.decision.audit);
            return Err(self.reply(h, worker, &d));
        }
        let cache_key = exchange::cache_key(grant_id, &target.server.name);
        let cached = worker.credentials.borrow_mut().get(h, &cache_key, self.now);
        if let Some(c) = cached {
            return Ok((decided, c));
        }
        // One exchange per grant at a time: later requests wait for the first one's answer.
        if worker.parking.borrow().is_exchanging(&cache_key) {
            let parked = Parked {
                decided,
                head: std::mem::take(&mut self.head),
                body: self.body,
                now: self.now,
            };
            worker
                .parking
                .borrow_mut()
                .park(&cache_key, self.id, parked);
            self.phase = Phase::AwaitingExchange;
            return Err(Action::Pause);
        }
        let Some(broker) = &policy.filter.broker else {
            return Err(self.fail_closed(h, "brokered gateway without filter.broker"));
        };
        // The client's token is read again only here, on a credential miss: the headers are
        // still held, and a hit never copies it.
        let authorization = match h.request_header("authorization") {
            Ok(a) => a,
            Err(e) => return Err(self.fail_closed(h, &format!("cannot read authorization: {e:?}"))),
        };
        let Ok(subject_token) = authorize::bearer_token(target, authorization.as_deref()) else {
            return Err(self.fail_closed(h, "the client's token is gone before the exchange"));
        };
        let body = exchange::request_body(subject_token, &target.server.resource);
        let call = h.dispatch(
            &broker.cluster,
            &[
                (":method", "POST"),
                (":path", broker.path.as_str()),
                (":authority", broker.authority.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
            Some(body.as_bytes()),
            Duration::from_millis(broker.timeout_ms),
        );
        match call {
            Ok(call) => {
                worker
                    .parking
                    .borrow_mut()
                    .start_exchange(cache_key.clone());
                self.phase = Phase::AwaitingCredential {
                    call,
                    cache_key,
                    decided,
                };
                Err(Action::Pause)
            }
            Err(e) => {
                log::warn!(
                    "cannot call the broker on cluster {}: {e:?}",
                    broker.cluster
                );
                let d =
                    exchange::refusal(target, ExchangeError::Unavailable, &decided.decision.audit);
                Err(self.reply(h, worker, &d))
            }
        }
    }
}
