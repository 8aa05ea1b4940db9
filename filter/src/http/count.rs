//! An allowed request's budgets: spent from this Envoy's shared data, or (with
//! `filter.rate_limit`) asked of the rate limit service in one gRPC call of the request's own,
//! and what a budget nobody could count gets (`on_error`).

use super::request::Request;
use crate::audit;
use crate::budgets;
use crate::host::Host;
use crate::phase::{AfterCount, Decided, Phase, Then};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::Target;
use scopegate_core::budget;
use scopegate_core::config::OnError;
use scopegate_core::decision::Outcome;
use scopegate_core::mcp::Call;
use scopegate_core::rate_limit::{self, verdict};
use std::rc::Rc;
use std::time::Duration;

/// Where a request stands once its budgets are asked about.
pub(super) enum Counting {
    /// Counted (or nothing to count): go on.
    Go(Decided),
    /// The callback's action: paused for the service's answer, or refused.
    Stop(Action),
}

impl<D: Host + Default> Request<D> {
    /// Spends one request from every budget that counts these calls. Calls no budget counts
    /// never wait for the service.
    pub(super) fn count_budgets<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
        calls: &[Call],
        after: AfterCount,
    ) -> Counting {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, decided.server) else {
            return Counting::Stop(self.fail_closed(h, "server vanished from the policy"));
        };
        let Outcome::Allow(grant) = &decided.decision.outcome else {
            return Counting::Stop(self.fail_closed(h, "counting a request that was not allowed"));
        };
        let Some(service) = &policy.filter.rate_limit else {
            return match budgets::spend_all(h, target.server, calls, grant, self.now) {
                Ok(()) => Counting::Go(decided),
                Err(retry_after) => {
                    let d = budget::exceeded(target, &decided.decision.audit, retry_after);
                    Counting::Stop(self.reply(h, worker, &d))
                }
            };
        };
        let gateway = target.gateway.name.as_str();
        let Some(ask) = rate_limit::ask(&service.domain, gateway, target.server, calls, grant)
        else {
            return Counting::Go(decided);
        };
        let call = h.dispatch_grpc(
            &service.grpc_service,
            rate_limit::SERVICE,
            rate_limit::METHOD,
            &ask.message,
            Duration::from_millis(service.timeout_ms),
        );
        match call {
            Ok(call) => {
                self.phase = Phase::AwaitingRateLimit {
                    call,
                    windows: ask.windows,
                    decided,
                    after,
                };
                Counting::Stop(Action::Pause)
            }
            Err(e) => {
                let why = format!("cannot call it on cluster {}: {e:?}", service.cluster);
                self.uncounted(h, worker, decided, &why)
            }
        }
    }

    /// The rate limit service could not count the request: `on_error` says whether the budget
    /// is spent (`deny`, refused with `rate_limit_unavailable`) or not counted (`allow`).
    pub(super) fn uncounted<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: Decided,
        why: &str,
    ) -> Counting {
        let policy = Rc::clone(&worker.policy);
        let (Some(target), Some(service)) = (
            Target::of(&policy, decided.server),
            &policy.filter.rate_limit,
        ) else {
            return Counting::Stop(self.fail_closed(h, "rate limit settings vanished"));
        };
        match service.on_error {
            OnError::Deny => {
                log::warn!(
                    "rate limit service unavailable ({why}); on_error deny: server={} refused",
                    target.server.name
                );
                let d = verdict::unavailable(target, &decided.decision.audit);
                Counting::Stop(self.reply(h, worker, &d))
            }
            OnError::Allow => {
                log::warn!(
                    "rate limit service unavailable ({why}); on_error allow: server={} passes uncounted",
                    target.server.name
                );
                let mut stats = worker.stats.borrow_mut();
                stats.count_global(h, "rate_limit", "unavailable_allowed");
                stats.count(h, &target.server.name, "rate_limit", "unavailable_allowed");
                Counting::Go(decided)
            }
        }
    }

    /// `hold_body`, counted: the headers are upstream already, so only the body is let go.
    pub(super) fn release<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decided: &Decided,
    ) -> Action {
        // The record kept with a reused decision, when there is one.
        let record = match &decided.then {
            Then::Finish(record) => record.as_deref(),
            Then::HoldBody(_) => None,
        };
        audit::record(
            h,
            &mut worker.stats.borrow_mut(),
            &decided.decision.audit,
            record,
        );
        self.phase = Phase::Done;
        Action::Continue
    }
}
