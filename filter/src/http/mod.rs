//! One HTTP request through the filter, as an explicit state machine over Envoy's callbacks.
//!
//! The request's state is a [`Phase`](crate::phase::Phase); each callback moves it on. The work
//! is split by phase, each file calling only those below it: `request` (the state), `replies`
//! (local answers, failing closed), `count` (an allowed request's budgets: spent in shared data,
//! or asked of the rate limit service), `body` (deciding a held message), `exchange` (asking for
//! the broker's credential, or parking on another request's exchange), `enforce` (an allow
//! counted, then the credential and the upstream's headers), `headers` (metadata, the token, admission), `callouts`
//! (the answers: keys, budget counts, credentials, parked requests woken) and this file, the
//! callbacks.

mod body;
mod callouts;
mod count;
mod enforce;
mod exchange;
mod headers;
mod replies;
mod request;

pub use request::Request;

use crate::host::{Envoy, Host};
use crate::phase::{BodySeen, Phase};
use crate::worker::Worker;
use body::{HeadersSent, Held};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, Principal, Target};
use scopegate_core::exchange::ExchangeError;
use scopegate_core::policy::ServerId;
use std::rc::Rc;

impl<D: Host + Default> Request<D> {
    pub(crate) fn request_body<H: Host>(
        &mut self,
        h: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.body = BodySeen {
            size: body_size,
            complete: end_of_stream,
        };
        let Some(worker) = self.worker.clone() else {
            return Action::Pause;
        };
        self.unpark(&worker);
        let (server, principal, headers) = match self.held(&worker) {
            Held::Nothing => return Action::Continue,
            Held::Waiting => return Action::Pause,
            Held::Body(server, principal, headers) => (server, principal, headers),
        };
        if body_size > worker.policy.filter.max_body_bytes {
            let policy = Rc::clone(&worker.policy);
            return match Target::of(&policy, server) {
                Some(target) => self.reply(h, &worker, &authorize::body_too_large(target)),
                None => self.fail_closed(h, "server vanished from the policy"),
            };
        }
        if !end_of_stream {
            // StopIterationAndBuffer: nothing of the message moves on until it is decided.
            return Action::Pause;
        }
        self.decide_held_body(h, &worker, server, &principal, headers)
    }

    pub(crate) fn request_trailers<H: Host>(&mut self, h: &mut H) -> Action {
        self.body.complete = true;
        let Some(worker) = self.worker.clone() else {
            return Action::Pause;
        };
        self.unpark(&worker);
        let (server, principal, headers) = match self.held(&worker) {
            Held::Nothing => return Action::Continue,
            Held::Waiting => return Action::Pause,
            Held::Body(server, principal, headers) => (server, principal, headers),
        };
        self.decide_held_body(h, &worker, server, &principal, headers)
    }
}

impl<D: Host + Default> Request<D> {
    fn decide_held_body<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        principal: &Rc<Principal>,
        headers: HeadersSent,
    ) -> Action {
        match headers {
            HeadersSent::No => self.decide_held_headers(h, worker, server, principal),
            HeadersSent::Yes => self.decide_sent_body(h, worker, server, principal),
        }
    }
}

impl<D: Host + Default> Drop for Request<D> {
    fn drop(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        match &self.phase {
            Phase::HoldingHeaders { .. } => crate::hold_watch::release(&worker, self.id),
            Phase::AwaitingExchange => worker.parking.borrow_mut().forget(self.id),
            // The exchange dies with this request: whoever waits on it is refused rather than
            // left hanging (they retry, and the next request exchanges).
            Phase::AwaitingCredential { cache_key, .. } => {
                let cache_key = cache_key.clone();
                callouts::wake_parked::<D, D>(
                    &mut D::default(),
                    &worker,
                    self.id,
                    &cache_key,
                    &Err(ExchangeError::Unavailable),
                );
            }
            _ => {}
        }
    }
}

impl Context for Request<Envoy> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.call_response(&mut Envoy, token_id, body_size);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.rate_limit_answered(&mut Envoy, token_id, status_code, response_size);
    }
}

impl HttpContext for Request<Envoy> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.request_headers(&mut Envoy, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body(&mut Envoy, body_size, end_of_stream)
    }

    /// Trailers end the body: a held message is decided here, never continued unchecked.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.request_trailers(&mut Envoy)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(watch), Some(worker)) = (self.listing.as_mut(), self.worker.as_ref()) else {
            return Action::Continue;
        };
        watch.on_headers(&mut Envoy, &worker.policy, &mut worker.stats.borrow_mut())
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(watch), Some(worker)) = (self.listing.as_mut(), self.worker.as_ref()) else {
            return Action::Continue;
        };
        watch.on_body(
            &mut Envoy,
            &worker.policy,
            &mut worker.stats.borrow_mut(),
            body_size,
            end_of_stream,
        )
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_native_mcp;
#[cfg(test)]
mod tests_rate_limit;
