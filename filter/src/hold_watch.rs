//! `hold_headers` without `allow_on_headers_stop_iteration`: Envoy then never hands the body
//! to the filter, so held requests are answered 503 from the timer instead of hanging.
//!
//! Envoy turns a paused header callback into "stop all iteration" unless the flag is set, and
//! no body callback follows. The filter cannot read the flag, but it can see that no body
//! arrived: a request held this long with no body callback is refused, and the log says why.

use crate::host::Host;
use crate::worker::Worker;
use scopegate_core::decision::oauth_error_body;
use scopegate_core::oauth::OAuthErrorCode;

/// How long a request may hold its headers without any body reaching the filter.
pub const NO_BODY_LIMIT_MS: u64 = 10_000;

/// Starts watching a request whose headers are held for its body.
pub fn hold(worker: &Worker, context_id: u32, now_ms: u64) {
    worker.held.borrow_mut().insert(context_id, now_ms);
}

/// The body arrived, or the request ended.
pub fn release(worker: &Worker, context_id: u32) {
    worker.held.borrow_mut().remove(&context_id);
}

/// From the root context's timer: refuses requests held past the limit without a body.
pub fn on_tick(h: &mut impl Host, worker: &Worker, now_ms: u64) {
    if worker.held.borrow().is_empty() {
        return;
    }
    let expired: Vec<u32> = worker
        .held
        .borrow()
        .iter()
        .filter(|(_, since)| now_ms.saturating_sub(**since) >= NO_BODY_LIMIT_MS)
        .map(|(id, _)| *id)
        .collect();
    for id in expired {
        worker.held.borrow_mut().remove(&id);
        log::error!(
            "body_mode hold_headers: no request body reached the filter in {} s while the headers were held; \
             set allow_on_headers_stop_iteration: true in the wasm plugin config, or use body_mode hold_body; refusing the request",
            NO_BODY_LIMIT_MS / 1000
        );
        worker
            .stats
            .borrow_mut()
            .count_global(h, "hold_headers", "no_body");
        if let Err(e) = h.set_effective_context(id) {
            log::warn!("held request {id} is gone: {e:?}");
            continue;
        }
        let sent = h.send_reply(
            503,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            &oauth_error_body(
                OAuthErrorCode::TemporarilyUnavailable,
                "the gateway could not read this request's body",
            ),
        );
        if let Err(e) = sent {
            log::error!("cannot refuse held request {id}: {e:?}");
        }
    }
}
