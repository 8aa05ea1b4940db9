//! Local replies: refusals (as OAuth challenges or JSON-RPC errors), failing closed, and the
//! protected-resource metadata document.

use super::request::Request;
use crate::audit;
use crate::host::Host;
use crate::phase::Phase;
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::decision::{Decision, Outcome};
use scopegate_core::jsonrpc::Answering;
use scopegate_core::policy::ServerId;
use scopegate_core::upstream;

impl<D: Host + Default> Request<D> {
    /// The refusal with a JSON-RPC error body carrying the request's id (from the body, or as
    /// the native MCP filter recorded it), for refusals that are not OAuth challenges; `None`
    /// keeps it as it is.
    fn as_jsonrpc<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decision: &Decision,
    ) -> Option<Decision> {
        scopegate_core::jsonrpc::code_for(decision.audit.reason)?;
        let readable = self.body.complete
            && self.head.read_is_post(h).unwrap_or(false)
            && self.body.size > 0
            && self.body.size <= worker.policy.filter.max_body_bytes;
        let body = if readable {
            h.request_body(self.body.size).ok().flatten()
        } else {
            None
        };
        let answering = match (&body, &self.head.rpc_id) {
            (None, Some(id)) => Answering::Recorded(Some(id)),
            _ => Answering::Body(body.as_deref()),
        };
        scopegate_core::jsonrpc::refusal(decision, answering)
    }

    /// Answers with the decision's refusal (an allow only leaves its record) and ends the request.
    pub(super) fn reply<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decision: &Decision,
    ) -> Action {
        let rewritten = self.as_jsonrpc(h, worker, decision);
        let decision = rewritten.as_ref().unwrap_or(decision);
        if let Outcome::Deny(d) = &decision.outcome {
            let retry_after = d.retry_after.map(|s| s.to_string());
            let r = upstream::reply(d, retry_after.as_deref());
            if let Err(e) = h.send_reply(r.status, &r.headers, r.body) {
                log::error!("cannot send local reply {}: {e:?}", r.status);
            }
        }
        audit::record(h, &mut worker.stats.borrow_mut(), &decision.audit, None);
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// An internal failure: answer 503 rather than let an unchecked request through, and leave
    /// the same audit record and counter as any other refusal (reason `internal_error`).
    pub(super) fn fail_closed<H: Host>(&mut self, h: &mut H, what: &str) -> Action {
        log::error!("{what}; refusing the request");
        let worker = self.worker.clone();
        let server = match (&worker, self.server) {
            (Some(w), Some(id)) => w.policy.server(id).map(|s| s.name.as_str()),
            _ => None,
        };
        let (denial, audit) = upstream::internal_error(server.unwrap_or(""));
        let r = upstream::reply(&denial, None);
        if let Err(e) = h.send_reply(r.status, &r.headers, r.body) {
            log::error!("cannot send local reply {}: {e:?}", r.status);
        }
        match &worker {
            Some(w) => audit::record(h, &mut w.stats.borrow_mut(), &audit, None),
            None => {
                let mut stats = audit::Stats::default();
                audit::record(h, &mut stats, &audit, None);
            }
        }
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// Serves the protected-resource metadata document (RFC 9728) for `server`.
    pub(super) fn serve_metadata<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
    ) -> Action {
        let Some(s) = worker.policy.server(server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        let sent = h.send_reply(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "public, max-age=300"),
                // Browser-based MCP clients read this document cross-origin.
                ("access-control-allow-origin", "*"),
            ],
            &s.prm_json,
        );
        if let Err(e) = sent {
            log::error!("cannot send the metadata document: {e:?}");
        }
        let mut stats = worker.stats.borrow_mut();
        stats.count(h, &s.name, "metadata", "served");
        self.phase = Phase::Replied;
        Action::Pause
    }
}
