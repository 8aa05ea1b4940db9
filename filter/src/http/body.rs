//! A held request body: where a body callback finds the request, and the message decided once
//! complete (the verdict alone when `hold_body` already sent the headers).

use super::count::Counting;
use super::request::Request;
use crate::call_memo::Kept;
use crate::hold_watch;
use crate::host::Host;
use crate::listing::Watch;
use crate::phase::{AfterCount, Decided, Phase, Then};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, Principal, Target};
use scopegate_core::decision::Decision;
use scopegate_core::mcp::Call;
use scopegate_core::policy::ServerId;
use scopegate_core::upstream;
use std::rc::Rc;

/// A held message, decided.
pub(super) struct DecidedMessage {
    pub(super) decision: Rc<Decision>,
    /// The decision's record as JSON, when it was kept (or just made) for the next request.
    pub(super) record: Option<Rc<str>>,
    pub(super) calls: Vec<Call>,
}

/// Whether the request headers already went upstream when the body is decided.
#[derive(Clone, Copy)]
pub(super) enum HeadersSent {
    /// `hold_headers`: still held, so an allow rewrites them.
    No,
    /// `hold_body`: sent with identity and credential; only the verdict remains.
    Yes,
}

/// Where a body callback finds the request.
pub(super) enum Held {
    /// Not governed, or already decided: the body flows.
    Nothing,
    /// Refused, or a callout is pending: keep the body.
    Waiting,
    /// A held message to decide once complete.
    Body(ServerId, Rc<Principal>, HeadersSent),
}

impl<D: Host + Default> Request<D> {
    pub(super) fn held(&self, worker: &Worker) -> Held {
        match &self.phase {
            Phase::Done | Phase::Start => Held::Nothing,
            Phase::Replied
            | Phase::AwaitingKeys { .. }
            | Phase::AwaitingRateLimit { .. }
            | Phase::AwaitingCredential { .. }
            | Phase::AwaitingExchange => Held::Waiting,
            Phase::HoldingHeaders { server, principal } => {
                // A body callback came, so the flag is set: the watch can stop.
                hold_watch::release(worker, self.id);
                Held::Body(*server, Rc::clone(principal), HeadersSent::No)
            }
            Phase::HoldingBody { server, principal } => {
                Held::Body(*server, Rc::clone(principal), HeadersSent::Yes)
            }
        }
    }

    /// Reads the complete message and decides it (or takes the decision kept for the same
    /// token, server and single call); an allow that holds listing calls starts the response
    /// watch. `Err` is the action of a request that failed closed.
    pub(super) fn decide_message<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        principal: &Rc<Principal>,
    ) -> Result<DecidedMessage, Action> {
        let Some(target) = Target::of(&worker.policy, server) else {
            return Err(self.fail_closed(h, "server vanished from the policy"));
        };
        let body = if self.body.size == 0 {
            Vec::new()
        } else {
            match h.request_body(self.body.size) {
                Ok(b) => b.unwrap_or_default(),
                Err(e) => {
                    return Err(self.fail_closed(h, &format!("cannot read the request body: {e:?}")))
                }
            }
        };
        let (method, name) = (
            self.head.mcp_method.as_deref(),
            self.head.mcp_name.as_deref(),
        );
        let calls = match authorize::body_calls(target, &body, method, name) {
            Ok(calls) => calls,
            Err(refusal) => {
                return Ok(DecidedMessage {
                    decision: Rc::new(*refusal),
                    record: None,
                    calls: Vec::new(),
                })
            }
        };
        let decided = match calls.as_slice() {
            [call] => {
                let kept = worker.calls.borrow().get(principal, server, call);
                let kept = kept.unwrap_or_else(|| {
                    let decision = authorize::decide(target, principal, &calls);
                    let record = upstream::record_json(&decision.audit).into();
                    let kept = Kept {
                        decision: Rc::new(decision),
                        record,
                    };
                    worker
                        .calls
                        .borrow_mut()
                        .keep(principal, server, call, &kept);
                    kept
                });
                DecidedMessage {
                    decision: kept.decision,
                    record: Some(kept.record),
                    calls,
                }
            }
            _ => DecidedMessage {
                decision: Rc::new(authorize::decide(target, principal, &calls)),
                record: None,
                calls,
            },
        };
        if decided.decision.is_allow() {
            self.listing = Watch::new(
                server,
                target.server,
                principal.effective,
                &decided.calls,
                &body,
            );
        }
        Ok(decided)
    }

    /// `hold_body`: headers, identity and credential are upstream already; the complete message
    /// is let through or refused.
    pub(super) fn decide_sent_body<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        principal: &Rc<Principal>,
    ) -> Action {
        let DecidedMessage {
            decision,
            record,
            calls,
        } = match self.decide_message(h, worker, server, principal) {
            Ok(d) => d,
            Err(action) => return action,
        };
        if !decision.is_allow() {
            return self.reply(h, worker, &decision);
        }
        let decided = Decided {
            server,
            decision,
            then: Then::Finish(record),
        };
        match self.count_budgets(h, worker, decided, &calls, AfterCount::Release) {
            Counting::Go(decided) => self.release(h, worker, &decided),
            Counting::Stop(action) => action,
        }
    }
}
