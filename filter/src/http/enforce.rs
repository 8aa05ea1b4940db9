//! Applying a decision: a refusal is answered; an allow spends its budgets (`count`), gets the
//! downstream credential on brokered gateways, and edits the request for the upstream.

use super::count::Counting;
use super::request::Request;
use crate::audit;
use crate::host::Host;
use crate::phase::{AfterCount, Decided, Phase, Then};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::{Principal, Target};
use scopegate_core::decision::Outcome;
use scopegate_core::mcp::Call;
use scopegate_core::policy::ServerId;
use scopegate_core::upstream::{self, Authorization};
use std::rc::Rc;

impl<D: Host + Default> Request<D> {
    /// Applies an allow, fetching the downstream credential first on brokered gateways, or
    /// sends the refusal.
    pub(super) fn enforce<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
        calls: &[Call],
    ) -> Action {
        if !decided.decision.is_allow() {
            return self.reply(h, worker, &decided.decision);
        }
        // Budgets count calls: a held body is counted when it is decided.
        if let Then::HoldBody(_) = decided.then {
            return self.proceed(h, worker, decided);
        }
        match self.count_budgets(h, worker, decided, calls, AfterCount::Forward) {
            Counting::Go(decided) => self.proceed(h, worker, decided),
            Counting::Stop(action) => action,
        }
    }

    /// Forwards an allowed, counted request: with the downstream credential on brokered
    /// gateways (asked for first when this worker has none).
    pub(super) fn proceed<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
    ) -> Action {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, decided.server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        if !target.gateway.brokered {
            return self.forward(h, worker, decided, None);
        }
        match self.downstream_credential(h, worker, decided) {
            Ok((decided, credential)) => {
                self.forward(h, worker, decided, Some(&credential.authorization))
            }
            Err(action) => action,
        }
    }

    /// Edits the request for the upstream (`scopegate_core::upstream` says how): no client token
    /// (unless opted in), the downstream credential when there is one, and the identity headers.
    /// They depend on the token only, so `hold_body` sets them before the body is seen (the host
    /// refuses header changes later).
    pub(super) fn forward<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
        downstream: Option<&str>,
    ) -> Action {
        let Outcome::Allow(grant) = &decided.decision.outcome else {
            return self.fail_closed(h, "forwarding a request that was not allowed");
        };
        let edits = upstream::upstream_headers(grant, downstream);
        let auth = match edits.authorization {
            Authorization::Keep => Ok(()),
            Authorization::Remove => h.remove_request_header("authorization"),
            Authorization::Replace(v) => h.replace_request_header("authorization", v),
        };
        if auth.is_err() {
            return self.fail_closed(h, "cannot edit the authorization header");
        }
        // Setting replaces whatever the client sent under these names.
        for (name, value) in edits.identity {
            if h.replace_request_header(name, value).is_err() {
                return self.fail_closed(h, "cannot set the identity headers");
            }
        }
        let server = decided.server;
        match decided.then {
            Then::Finish(record) => {
                audit::record(
                    h,
                    &mut worker.stats.borrow_mut(),
                    &decided.decision.audit,
                    record.as_deref(),
                );
                self.phase = Phase::Done;
                Action::Continue
            }
            Then::HoldBody(principal) => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_sent_body(h, worker, server, &principal);
                }
                self.phase = Phase::HoldingBody { server, principal };
                // The headers go on; `on_http_request_body` holds the body.
                Action::Continue
            }
        }
    }

    /// `hold_headers`: the complete message decides; an allow then rewrites the held headers.
    pub(super) fn decide_held_headers<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        principal: &Rc<Principal>,
    ) -> Action {
        match self.decide_message(h, worker, server, principal) {
            Ok(m) => {
                let decided = Decided {
                    server,
                    decision: m.decision,
                    then: Then::Finish(m.record),
                };
                self.enforce(h, worker, decided, &m.calls)
            }
            Err(action) => action,
        }
    }
}
