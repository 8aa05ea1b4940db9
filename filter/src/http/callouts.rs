//! Callouts answered: the JWKS refetch (verify the token again), the broker's exchange (forward
//! with the credential, or refuse), and the requests parked on that exchange woken with it.

use super::request::{resume, Request};
use crate::credentials::Usable;
use crate::host::Host;
use crate::parking;
use crate::phase::{Decided, Phase};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::Target;
use scopegate_core::exchange::{self, ExchangeError};
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
