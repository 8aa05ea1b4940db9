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
use scopegate_core::trace_context;
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
        let trace = trace_context(h);
        let mut headers = vec![
            (":method", "POST"),
            (":path", broker.path.as_str()),
            (":authority", broker.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        headers.extend(trace.iter().map(|(k, v)| (*k, v.as_str())));
        let call = h.dispatch(
            &broker.cluster,
            &headers,
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

/// The request's trace context for a callout made on its behalf (core's
/// [`trace_context`](scopegate_core::trace_context) picks and checks it). Tracing is best
/// effort: a header that cannot be read is a callout without it, never a refusal.
pub(super) fn trace_context<H: Host>(h: &mut H) -> Vec<(&'static str, String)> {
    let mut read = |name: &str| h.request_header(name).ok().flatten();
    let envoy_span = read(trace_context::ENVOY_SPAN_HEADER);
    let client = read(trace_context::TRACEPARENT);
    let Some(parent) = trace_context::parent(envoy_span.as_deref(), client.as_deref()) else {
        return Vec::new();
    };
    let mut out = vec![(trace_context::TRACEPARENT, parent.to_string())];
    if let Some(state) = trace_context::tracestate(read(trace_context::TRACESTATE).as_deref()) {
        out.push((trace_context::TRACESTATE, state.to_string()));
    }
    out
}
