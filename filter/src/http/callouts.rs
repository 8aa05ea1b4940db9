//! Callouts answered: the JWKS refetch (verify the token again), the rate limit service's count
//! (go on, 429, or `on_error`), the broker's exchange (forward with the credential, or refuse),
//! and the requests parked on that exchange woken with it.

use super::count::Counting;
use super::request::{resume, Request};
use crate::credentials::Usable;
use crate::host::Host;
use crate::parking;
use crate::phase::{AfterCount, Decided, Phase};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::Target;
use scopegate_core::budget;
use scopegate_core::exchange::{self, ExchangeError};
use scopegate_core::rate_limit::verdict::{verdict, Verdict};
use std::rc::Rc;

impl<D: Host + Default> Request<D> {
    /// A callout answered (JWKS refetch or broker exchange).
    pub(crate) fn call_response<H: Host>(&mut self, h: &mut H, token_id: u32, body_size: usize) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        match std::mem::replace(&mut self.phase, Phase::Start) {
            Phase::AwaitingKeys {
                call,
                source,
                server,
            } if call == token_id => self.keys_arrived(h, &worker, source, server, body_size),
            Phase::AwaitingCredential {
                call,
                cache_key,
                decided,
            } if call == token_id => {
                self.credential_arrived(h, &worker, &cache_key, body_size, decided);
            }
            other => self.phase = other,
        }
    }

    /// The rate limit service answered this request's call (`grpc_status` 0 with a message), or
    /// the call failed or timed out (another status, no message).
    pub(crate) fn rate_limit_answered<H: Host>(
        &mut self,
        h: &mut H,
        token_id: u32,
        grpc_status: u32,
        size: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let (windows, decided, after) = match std::mem::replace(&mut self.phase, Phase::Start) {
            Phase::AwaitingRateLimit {
                call,
                windows,
                decided,
                after,
            } if call == token_id => (windows, decided, after),
            other => {
                self.phase = other;
                return;
            }
        };
        let message = if grpc_status == 0 && size > 0 {
            match h.grpc_response(size) {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => {
                    log::warn!("cannot read the rate limit service's answer: {e:?}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let counting = match verdict(grpc_status, &message, &windows) {
            Verdict::Allowed => Counting::Go(decided),
            Verdict::Exceeded { retry_after } => match Target::of(&worker.policy, decided.server) {
                Some(target) => {
                    let d = budget::exceeded(target, &decided.decision.audit, retry_after);
                    Counting::Stop(self.reply(h, &worker, &d))
                }
                None => Counting::Stop(self.fail_closed(h, "server vanished from the policy")),
            },
            Verdict::Unavailable(why) => self.uncounted(h, &worker, decided, &format!("{why:?}")),
        };
        let action = match (counting, after) {
            (Counting::Stop(action), _) => action,
            (Counting::Go(decided), AfterCount::Forward) => self.proceed(h, &worker, decided),
            (Counting::Go(decided), AfterCount::Release) => self.release(h, &worker, &decided),
        };
        if let Action::Continue = action {
            resume(h);
        }
    }

    /// The broker answered (or the call failed): forward with the credential, or refuse; then
    /// the requests parked on this exchange go on the same way.
    fn credential_arrived<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Rc<Worker>,
        cache_key: &str,
        body_size: usize,
        decided: Decided,
    ) {
        let status = h.call_response_status();
        let body = match h.call_response_body(body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let now = h.now().as_secs();
        self.now = now;
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, decided.server) else {
            self.fail_closed(h, "server vanished from the policy");
            return;
        };
        if !decided.decision.is_allow() {
            return;
        }
        let result = exchange::parse_response(status, &body, now).map(|credential| {
            worker
                .credentials
                .borrow_mut()
                .insert(h, cache_key, &credential)
        });
        match &result {
            Ok(usable) => {
                let action = self.forward(h, worker, decided, Some(&usable.authorization));
                if let Action::Continue = action {
                    resume(h);
                }
            }
            Err(e) => {
                if *e == ExchangeError::Unavailable {
                    log::warn!("broker exchange failed (status {status:?})");
                }
                let d = exchange::refusal(target, *e, &decided.decision.audit);
                self.reply(h, worker, &d);
            }
        }
        wake_parked::<D, H>(h, worker, self.id, cache_key, &result);
    }
}

/// Resumes (or refuses, the same way as the first request) the requests parked on the
/// exchange for `cache_key`, each in its own context, then returns to context `own`.
pub(super) fn wake_parked<D: Host + Default, H: Host>(
    h: &mut H,
    worker: &Rc<Worker>,
    own: u32,
    cache_key: &str,
    result: &Result<Rc<Usable>, ExchangeError>,
) {
    parking::wake(h, &worker.parking, own, cache_key, |h, id, p| {
        let mut r = Request::<D>::new(Some(Rc::clone(worker)), id);
        r.phase = Phase::AwaitingExchange;
        r.head = p.head;
        r.body = p.body;
        r.server = Some(p.decided.server);
        r.now = p.now;
        let action = match result {
            Ok(usable) => r.forward(h, worker, p.decided, Some(&usable.authorization)),
            Err(e) => match Target::of(&worker.policy, p.decided.server) {
                Some(target) => {
                    let d = exchange::refusal(target, *e, &p.decided.decision.audit);
                    r.reply(h, worker, &d)
                }
                None => r.fail_closed(h, "server vanished from the policy"),
            },
        };
        if let Action::Continue = action {
            resume(h);
        }
        r.settle()
    });
}
