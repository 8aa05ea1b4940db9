//! One HTTP request through the filter, as an explicit state machine over Envoy's callbacks.

use crate::audit;
use crate::budgets;
use crate::credentials::Usable;
use crate::hold_watch;
use crate::host::{self, Envoy, Host};
use crate::keys;
use crate::native_mcp;
use crate::token_cache::{self, Verified};
use crate::worker::Worker;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, BodyPlan, Principal, Target};
use scopegate_core::budget;
use scopegate_core::decision::{Decision, Grant, Outcome};
use scopegate_core::exchange;
use scopegate_core::jwt::{self, TokenError, VerifyOptions};
use scopegate_core::mcp;
use scopegate_core::policy::{ServerId, PRM_WELL_KNOWN};
use scopegate_core::upstream::{self, Authorization};
use std::rc::Rc;

/// Where a request stands. Each waiting state names what it waits for.
enum Phase {
    /// Headers not seen yet.
    Start,
    /// Not governed, or already allowed: nothing more to do.
    Done,
    /// A local reply was sent; later callbacks must not forward anything.
    Replied,
    /// A token named an unknown `kid`; waiting for the JWKS refetch (callout `call`).
    AwaitingKeys {
        call: u32,
        source: usize,
        server: ServerId,
    },
    /// `hold_headers`: the token was admitted; the headers are held until the JSON-RPC body is
    /// complete (needs `allow_on_headers_stop_iteration`).
    HoldingHeaders {
        server: ServerId,
        principal: Rc<Principal>,
    },
    /// `hold_body`: the headers went upstream with identity and credential; the body is held
    /// until the JSON-RPC message is complete, then decided (a refusal resets the upstream).
    HoldingBody {
        server: ServerId,
        principal: Rc<Principal>,
    },
    /// Allowed so far; waiting for the broker's downstream credential (callout `call`).
    AwaitingCredential {
        call: u32,
        server: ServerId,
        decision: Rc<Decision>,
        cache_key: String,
        then: Then,
    },
    /// Another request of this worker is exchanging for the same grant: this one is parked in
    /// `Worker::parked` and resumed (or refused) from that request's callback, in this
    /// request's context, when the credential arrives or the exchange fails.
    AwaitingExchange,
}

/// A request parked on another request's exchange: what it needs to go on.
pub struct Parked {
    server: ServerId,
    decision: Rc<Decision>,
    then: Then,
    head: Head,
    body: BodySeen,
    now: u64,
    /// Set when the exchange ended: the phase (and head) the request goes on with.
    resolved: Option<(Phase, Head)>,
}

/// What follows once the request headers are rewritten for the upstream.
enum Then {
    /// The decision was final: record it, and let the request go. Carries the record's JSON
    /// when the token cache already has it.
    Finish(Option<Rc<str>>),
    /// `hold_body`: the token's decision only; the body is decided when complete.
    HoldBody(Rc<Principal>),
}

/// Whether the request headers already went upstream when the body is decided.
#[derive(Clone, Copy)]
enum HeadersSent {
    /// `hold_headers`: still held, so an allow rewrites them.
    No,
    /// `hold_body`: sent with identity and credential; only the verdict remains.
    Yes,
}

/// What the headers told us that later phases need. Only the headers a decision needs are read
/// (by name, one host call each): the whole map is never copied into the VM.
#[derive(Default)]
struct Head {
    /// Read only when needed (servers that read bodies, JSON-RPC refusals).
    is_post: Option<bool>,
    end_of_stream: bool,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
}

/// Body bytes buffered so far, tracked in every phase (bodies may arrive while keys load).
#[derive(Default, Clone, Copy)]
struct BodySeen {
    size: usize,
    complete: bool,
}

/// `D` is the host a dropped request uses to refuse the requests parked on its exchange
/// (Envoy in the `.wasm`, the fake in tests).
pub struct Request<D: Host + Default = Envoy> {
    worker: Option<Rc<Worker>>,
    /// Envoy's id for this stream (the hold watch answers it from the root context).
    id: u32,
    phase: Phase,
    head: Head,
    body: BodySeen,
    /// Set when an allowed request holds listing calls whose response may need filtering.
    listing: Option<crate::listing::Watch>,
    /// The governed server, once known (for the audit record of an internal failure).
    server: Option<ServerId>,
    /// The host's clock, read once when the headers arrive (seconds since the epoch).
    now: u64,
    host: std::marker::PhantomData<D>,
}

impl<D: Host + Default> Request<D> {
    pub fn new(worker: Option<Rc<Worker>>, id: u32) -> Request<D> {
        Request {
            worker,
            id,
            phase: Phase::Start,
            head: Head::default(),
            body: BodySeen::default(),
            listing: None,
            server: None,
            now: 0,
            host: std::marker::PhantomData,
        }
    }

    /// The refusal with a JSON-RPC error body carrying the request's id, for refusals that are
    /// not OAuth challenges; `None` keeps it as it is.
    fn as_jsonrpc<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        decision: &Decision,
    ) -> Option<Decision> {
        scopegate_core::jsonrpc::code_for(decision.audit.reason)?;
        let readable = self.body.complete
            && self.read_method(h).unwrap_or(false)
            && self.body.size > 0
            && self.body.size <= worker.policy.filter.max_body_bytes;
        let body = if readable {
            h.request_body(self.body.size).ok().flatten()
        } else {
            None
        };
        scopegate_core::jsonrpc::refusal(decision, body.as_deref())
    }

    fn reply<H: Host>(&mut self, h: &mut H, worker: &Worker, decision: &Decision) -> Action {
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
    fn fail_closed<H: Host>(&mut self, h: &mut H, what: &str) -> Action {
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

    /// Applies an allow, fetching the downstream credential first on brokered gateways, or
    /// sends the refusal.
    fn enforce<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        decision: Rc<Decision>,
        calls: &[mcp::Call],
        then: Then,
    ) -> Action {
        let Outcome::Allow(grant) = &decision.outcome else {
            return self.reply(h, worker, &decision);
        };
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        // Budgets count calls: a held body is counted when it is decided.
        if let Then::Finish(_) = then {
            if let Err(retry_after) = budgets::spend_all(h, target.server, calls, grant, self.now) {
                let d = budget::exceeded(target, &decision.audit, retry_after);
                return self.reply(h, worker, &d);
            }
        }
        if !target.gateway.brokered {
            return self.forward(h, worker, server, grant, &decision, None, then);
        }
        let Some(grant_id) = grant.grant_id.as_deref() else {
            return self.reply(h, worker, &exchange::no_grant(target, &decision.audit));
        };
        if worker.revocations.borrow().is_revoked(grant_id) {
            let d = exchange::refusal(target, exchange::ExchangeError::DeadGrant, &decision.audit);
            return self.reply(h, worker, &d);
        }
        let cache_key = exchange::cache_key(grant_id, &target.server.name);
        let cached = worker.credentials.borrow_mut().get(h, &cache_key, self.now);
        if let Some(c) = cached {
            return self.forward(
                h,
                worker,
                server,
                grant,
                &decision,
                Some(&c.authorization),
                then,
            );
        }
        // One exchange per grant at a time: later requests wait for the first one's answer.
        if let Some(waiting) = worker.in_flight.borrow_mut().get_mut(&cache_key) {
            waiting.push(self.id);
            let parked = Parked {
                server,
                decision,
                then,
                head: std::mem::take(&mut self.head),
                body: self.body,
                now: self.now,
                resolved: None,
            };
            worker.parked.borrow_mut().insert(self.id, parked);
            self.phase = Phase::AwaitingExchange;
            return Action::Pause;
        }
        let Some(broker) = &policy.filter.broker else {
            return self.fail_closed(h, "brokered gateway without filter.broker");
        };
        // The client's token is read again only here, on a credential miss: the headers are
        // still held, and a hit never copies it.
        let authorization = match h.request_header("authorization") {
            Ok(a) => a,
            Err(e) => return self.fail_closed(h, &format!("cannot read authorization: {e:?}")),
        };
        let Ok(subject_token) = authorize::bearer_token(target, authorization.as_deref()) else {
            return self.fail_closed(h, "the client's token is gone before the exchange");
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
            std::time::Duration::from_millis(broker.timeout_ms),
        );
        match call {
            Ok(call) => {
                worker
                    .in_flight
                    .borrow_mut()
                    .insert(cache_key.clone(), Vec::new());
                self.phase = Phase::AwaitingCredential {
                    call,
                    server,
                    decision,
                    cache_key,
                    then,
                };
                Action::Pause
            }
            Err(e) => {
                log::warn!(
                    "cannot call the broker on cluster {}: {e:?}",
                    broker.cluster
                );
                let d = exchange::refusal(
                    target,
                    exchange::ExchangeError::Unavailable,
                    &decision.audit,
                );
                self.reply(h, worker, &d)
            }
        }
    }

    /// Edits the request for the upstream (`scopegate_core::upstream` says how): no client token
    /// (unless opted in), the downstream credential when there is one, and the identity headers.
    /// They depend on the token only, so `hold_body` sets them before the body is seen (the host
    /// refuses header changes later).
    #[allow(clippy::too_many_arguments)]
    fn forward<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        grant: &Grant,
        decision: &Decision,
        downstream: Option<&str>,
        then: Then,
    ) -> Action {
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
        match then {
            Then::Finish(record) => {
                audit::record(
                    h,
                    &mut worker.stats.borrow_mut(),
                    &decision.audit,
                    record.as_deref(),
                );
                self.phase = Phase::Done;
                Action::Continue
            }
            Then::HoldBody(principal) => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_held_body(h, worker, server, &principal, HeadersSent::Yes);
                }
                self.phase = Phase::HoldingBody { server, principal };
                // The headers go on; `on_http_request_body` holds the body.
                Action::Continue
            }
        }
    }

    /// The broker answered (or the call failed): forward with the credential, or refuse.
    #[allow(clippy::too_many_arguments)]
    fn credential_arrived<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        decision: &Decision,
        cache_key: &str,
        body_size: usize,
        then: Then,
    ) {
        let status = h.call_response_status();
        let body = match h.call_response_body(body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let now = h.now().as_secs();
        self.now = now;
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            self.fail_closed(h, "server vanished from the policy");
            return;
        };
        let Outcome::Allow(grant) = &decision.outcome else {
            return;
        };
        let result = exchange::parse_response(status, &body, now).map(|credential| {
            worker
                .credentials
                .borrow_mut()
                .insert(h, cache_key, &credential)
        });
        match &result {
            Ok(usable) => {
                if let Action::Continue = self.forward(
                    h,
                    worker,
                    server,
                    grant,
                    decision,
                    Some(&usable.authorization),
                    then,
                ) {
                    resume(h);
                }
            }
            Err(e) => {
                if *e == exchange::ExchangeError::Unavailable {
                    log::warn!("broker exchange failed (status {status:?})");
                }
                let d = exchange::refusal(target, *e, &decision.audit);
                self.reply(h, worker, &d);
            }
        }
        wake_parked::<D, H>(h, self.worker.as_ref(), self.id, cache_key, &result);
    }

    /// Verifies a token the cache does not hold (the caller looked), caches it, then goes on with
    /// what it earned on this server.
    fn authenticate<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Rc<Worker>,
        server: ServerId,
        token: &str,
        retried: bool,
    ) -> Action {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        let now = self.now;
        let leeway = policy.filter.leeway_s;
        let source = target.gateway.jwks_source;
        let loaded = worker.keys.borrow().keys(source);
        // Another worker may have fetched them since this worker's last tick.
        let loaded = loaded.or_else(|| {
            let mut store = worker.keys.borrow_mut();
            store.sync(h, source);
            store.keys(source)
        });
        let Some(keyset) = loaded else {
            return self.reply(h, worker, &authorize::keys_unavailable(target));
        };
        let generation = worker.keys.borrow().generation(source);
        let digest = token_cache::digest(token);
        let opts = VerifyOptions {
            issuer: &target.gateway.issuer,
            now,
            leeway,
        };
        let result = if token_cache::verified_elsewhere(h, &digest, generation) {
            worker
                .stats
                .borrow_mut()
                .count_global(h, "jwt", "verified_elsewhere");
            jwt::decode_verified(token, &opts)
        } else {
            let r = jwt::verify(token, &keyset, &opts);
            if r.is_ok() {
                worker.stats.borrow_mut().count_global(h, "jwt", "verified");
                token_cache::share_verified(h, &digest, generation);
            }
            r
        };
        let verified = match result {
            Ok(mut c) => {
                authorize::keep_read_claims(&policy, &mut c);
                worker
                    .tokens
                    .borrow_mut()
                    .insert(token, Rc::new(c), now, leeway)
            }
            Err(TokenError::UnknownKid(_)) if !retried => {
                return self.refetch_keys(h, worker, server, source, token);
            }
            Err(e) => return self.reply(h, worker, &authorize::token_rejected(target, &e)),
        };
        self.admitted(h, worker, server, target, &verified)
    }

    /// A verified token (within its `exp`): admit it on this server (once per cached token),
    /// then decide now or wait for the body.
    fn admitted<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Rc<Worker>,
        server: ServerId,
        target: Target<'_>,
        verified: &Verified,
    ) -> Action {
        let policy = &worker.policy;
        let admitted = match verified.admitted(server) {
            Some(a) => a,
            None => {
                let leeway = policy.filter.leeway_s;
                match authorize::admission(target, &verified.claims, self.now, leeway) {
                    Ok(a) => verified.remember(server, a),
                    Err(d) => return self.reply(h, worker, &d),
                }
            }
        };
        let principal = &admitted.principal;
        let is_post = self.head.is_post.unwrap_or(false);
        let plan = authorize::body_plan(target.server, policy.filter.body_mode, is_post);
        if !matches!(plan, BodyPlan::DecideNow) {
            // Only the modes that look at the message need the 2026-07-28 headers.
            if let Err(e) = self.read_mcp_headers(h) {
                return self.fail_closed(h, &format!("cannot read the Mcp-* headers: {e:?}"));
            }
        }
        match plan {
            BodyPlan::DecideNow => {
                let record = Some(Rc::clone(&admitted.record));
                let decision = Rc::clone(&admitted.decision);
                self.enforce(h, worker, server, decision, &[], Then::Finish(record))
            }
            BodyPlan::HoldHeaders => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_held_body(h, worker, server, principal, HeadersSent::No);
                }
                self.phase = Phase::HoldingHeaders {
                    server,
                    principal: Rc::clone(principal),
                };
                // Second precision is plenty for a 10 s limit, and saves a clock read.
                hold_watch::hold(worker, self.id, self.now.saturating_mul(1000));
                Action::Pause
            }
            BodyPlan::HoldBody => {
                let (method, name) = (
                    self.head.mcp_method.as_deref(),
                    self.head.mcp_name.as_deref(),
                );
                if let Some(refused) = authorize::early_refusal(target, principal, method, name) {
                    return self.reply(h, worker, &refused);
                }
                let decision = Rc::clone(&admitted.decision);
                let then = Then::HoldBody(Rc::clone(principal));
                self.enforce(h, worker, server, decision, &[], then)
            }
            BodyPlan::FromMetadata => {
                let metadata = match native_mcp::read(h) {
                    Ok(m) => m,
                    Err(e) => {
                        return self.fail_closed(
                            h,
                            &format!("cannot read the mcp filter's metadata: {e:?}"),
                        )
                    }
                };
                let (decision, calls) = authorize::decide_metadata(
                    target,
                    principal,
                    &metadata,
                    self.head.mcp_method.as_deref(),
                    self.head.mcp_name.as_deref(),
                );
                self.enforce(
                    h,
                    worker,
                    server,
                    Rc::new(decision),
                    &calls,
                    Then::Finish(None),
                )
            }
        }
    }

    fn read_mcp_headers<H: Host>(&mut self, h: &mut H) -> Result<(), proxy_wasm::types::Status> {
        self.head.mcp_method = h.request_header("mcp-method")?;
        self.head.mcp_name = h.request_header("mcp-name")?;
        Ok(())
    }

    /// An unknown `kid`: use keys another worker already fetched, else refetch if the rate limit allows.
    fn refetch_keys<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Rc<Worker>,
        server: ServerId,
        source: usize,
        token: &str,
    ) -> Action {
        if worker.keys.borrow_mut().sync(h, source) {
            worker.tokens.borrow_mut().clear();
            return self.authenticate(h, worker, server, token, true);
        }
        let now_ms = host::millis(h.now());
        let dispatched = {
            let store = worker.keys.borrow();
            match store.fetch_spec(source) {
                Some(spec) if store.claim_unknown_kid(h, source, now_ms) => {
                    keys::dispatch(h, &spec).ok()
                }
                _ => None,
            }
        };
        match dispatched {
            Some(call) => {
                self.phase = Phase::AwaitingKeys {
                    call,
                    source,
                    server,
                };
                Action::Pause
            }
            // Rate-limited (or inline keys): the kid is simply unknown.
            None => self.authenticate(h, worker, server, token, true),
        }
    }

    /// Decides on the complete body: `hold_headers` still holds the headers (the decision may
    /// rewrite them); `hold_body` already sent them, so only the verdict remains.
    fn decide_held_body<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Worker,
        server: ServerId,
        principal: &Principal,
        headers: HeadersSent,
    ) -> Action {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        let body = if self.body.size == 0 {
            Vec::new()
        } else {
            match h.request_body(self.body.size) {
                Ok(b) => b.unwrap_or_default(),
                Err(e) => {
                    return self.fail_closed(h, &format!("cannot read the request body: {e:?}"))
                }
            }
        };
        let (decision, calls) = authorize::decide_body(
            target,
            principal,
            &body,
            self.head.mcp_method.as_deref(),
            self.head.mcp_name.as_deref(),
        );
        if decision.is_allow() {
            self.listing = crate::listing::Watch::new(
                server,
                target.server,
                principal.effective,
                &calls,
                &body,
            );
        }
        if let HeadersSent::No = headers {
            return self.enforce(
                h,
                worker,
                server,
                Rc::new(decision),
                &calls,
                Then::Finish(None),
            );
        }
        // `hold_body`: headers, identity and credential are upstream already.
        let Outcome::Allow(grant) = &decision.outcome else {
            return self.reply(h, worker, &decision);
        };
        if let Err(retry_after) = budgets::spend_all(h, target.server, &calls, grant, self.now) {
            let d = budget::exceeded(target, &decision.audit, retry_after);
            return self.reply(h, worker, &d);
        }
        audit::record(h, &mut worker.stats.borrow_mut(), &decision.audit, None);
        self.phase = Phase::Done;
        Action::Continue
    }

    fn serve_metadata<H: Host>(&mut self, h: &mut H, worker: &Worker, server: ServerId) -> Action {
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

fn resume(h: &mut impl Host) {
    if let Err(e) = h.resume() {
        log::error!("cannot resume request: {e:?}");
    }
}

/// Where a body callback finds the request.
enum Held {
    /// Not governed, or already decided: the body flows.
    Nothing,
    /// Refused, or a callout is pending: keep the body.
    Waiting,
    /// A held message to decide once complete.
    Body(ServerId, Rc<Principal>, HeadersSent),
}

impl<D: Host + Default> Request<D> {
    /// A parked request takes the phase its exchange left it in, or tells the parked copy how
    /// much body has arrived.
    fn unpark(&mut self, worker: &Worker) {
        if !matches!(self.phase, Phase::AwaitingExchange) {
            return;
        }
        let mut parked = worker.parked.borrow_mut();
        let resolved = match parked.get_mut(&self.id) {
            Some(p) if p.resolved.is_some() => p.resolved.take(),
            Some(p) => {
                p.body = self.body;
                None
            }
            None => None,
        };
        if let Some((phase, head)) = resolved {
            parked.remove(&self.id);
            self.phase = phase;
            self.head = head;
        }
    }

    fn held(&self, worker: &Worker) -> Held {
        match &self.phase {
            Phase::Done | Phase::Start => Held::Nothing,
            Phase::Replied
            | Phase::AwaitingKeys { .. }
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
            } if call == token_id => {
                worker.install_fetched_keys(h, source, body_size);
                self.now = h.now().as_secs();
                // The headers are still held: read the token again rather than keep a copy.
                let authorization = match h.request_header("authorization") {
                    Ok(a) => a,
                    Err(e) => {
                        self.fail_closed(h, &format!("cannot read authorization: {e:?}"));
                        return;
                    }
                };
                let token = authorization
                    .as_deref()
                    .and_then(|a| Target::of(&worker.policy, server).map(|t| (t, a)))
                    .and_then(|(t, a)| authorize::bearer_token(t, Some(a)).ok());
                let Some(token) = token else {
                    self.fail_closed(h, "the client's token is gone after the key refetch");
                    return;
                };
                if let Action::Continue = self.authenticate(h, &worker, server, token, true) {
                    resume(h);
                }
            }
            Phase::AwaitingCredential {
                call,
                server,
                decision,
                cache_key,
                then,
            } if call == token_id => {
                self.credential_arrived(h, &worker, server, &decision, &cache_key, body_size, then);
            }
            other => self.phase = other,
        }
    }

    /// The request headers arrived: serve metadata, pass ungoverned requests, or check the token.
    pub(crate) fn request_headers<H: Host>(&mut self, h: &mut H, end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            return self.fail_closed(h, "filter is not configured");
        };
        let path = match h.request_header(":path") {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => return self.fail_closed(h, &format!("cannot read :path: {e:?}")),
        };
        if path.starts_with(PRM_WELL_KNOWN) {
            let method = match h.request_header(":method") {
                Ok(m) => m,
                Err(e) => return self.fail_closed(h, &format!("cannot read :method: {e:?}")),
            };
            if matches!(method.as_deref(), Some("GET" | "HEAD")) {
                let authority = h.request_header(":authority").ok().flatten();
                if let Some(server) = worker.policy.prm_server(&path, authority.as_deref()) {
                    return self.serve_metadata(h, &worker, server);
                }
            }
        }

        // The policy maps cluster names to servers in a hash map built once per configuration.
        let cluster = match h.property(&["xds", "cluster_name"]) {
            Ok(Some(c)) => c,
            // No route, no upstream: nothing to govern.
            Ok(None) => return Action::Continue,
            Err(e) => return self.fail_closed(h, &format!("cannot read xds.cluster_name: {e:?}")),
        };
        let governed = std::str::from_utf8(&cluster)
            .ok()
            .and_then(|c| worker.policy.server_for_cluster(c));
        let Some(server) = governed else {
            self.phase = Phase::Done;
            return Action::Continue;
        };
        self.server = Some(server);
        self.now = h.now().as_secs();
        self.head.end_of_stream = end_of_stream;
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed(h, "server vanished from the policy");
        };
        // The method matters only where the body is read (a POST carries the message); a
        // refusal that answers in JSON-RPC reads it then.
        if target.server.needs_body() {
            if let Err(e) = self.read_method(h) {
                return self.fail_closed(h, &format!("cannot read :method: {e:?}"));
            }
        }
        let authorization = match h.request_header("authorization") {
            Ok(a) => a,
            Err(e) => return self.fail_closed(h, &format!("cannot read authorization: {e:?}")),
        };
        // A token already verified skips the syntax checks it passed then.
        let hit = authorization
            .as_deref()
            .and_then(authorize::bearer_credentials)
            .and_then(|t| {
                worker
                    .tokens
                    .borrow()
                    .get(t, self.now, policy.filter.leeway_s)
            });
        if let Some(verified) = hit {
            return self.admitted(h, &worker, server, target, &verified);
        }
        match authorize::bearer_token(target, authorization.as_deref()) {
            Ok(token) => self.authenticate(h, &worker, server, token, false),
            Err(d) => self.reply(h, &worker, &d),
        }
    }

    /// Reads `:method` once (`Head::is_post`).
    fn read_method<H: Host>(&mut self, h: &mut H) -> Result<bool, proxy_wasm::types::Status> {
        if let Some(is_post) = self.head.is_post {
            return Ok(is_post);
        }
        let is_post = h.request_header(":method")?.as_deref() == Some("POST");
        self.head.is_post = Some(is_post);
        Ok(is_post)
    }

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

/// Resumes (or refuses, the same way as the first request) the requests parked on the
/// exchange for `cache_key`, each in its own context, then returns to context `own`.
fn wake_parked<D: Host + Default, H: Host>(
    h: &mut H,
    worker: Option<&Rc<Worker>>,
    own: u32,
    cache_key: &str,
    result: &Result<Rc<Usable>, exchange::ExchangeError>,
) {
    let Some(worker) = worker else { return };
    let waiting = worker
        .in_flight
        .borrow_mut()
        .remove(cache_key)
        .unwrap_or_default();
    if waiting.is_empty() {
        return;
    }
    for id in waiting {
        let Some(p) = worker.parked.borrow_mut().remove(&id) else {
            continue; // the request ended while it waited
        };
        if let Err(e) = h.set_effective_context(id) {
            log::warn!("parked request {id} is gone: {e:?}");
            continue;
        }
        let mut r = Request::<D> {
            host: std::marker::PhantomData,
            worker: Some(Rc::clone(worker)),
            id,
            phase: Phase::AwaitingExchange,
            listing: None,
            head: p.head,
            body: p.body,
            server: Some(p.server),
            now: p.now,
        };
        let action = match (result, &p.decision.outcome) {
            (Ok(usable), Outcome::Allow(grant)) => r.forward(
                h,
                worker,
                p.server,
                grant,
                &p.decision,
                Some(&usable.authorization),
                p.then,
            ),
            (Err(e), _) => match Target::of(&worker.policy, p.server) {
                Some(target) => {
                    let d = exchange::refusal(target, *e, &p.decision.audit);
                    r.reply(h, worker, &d)
                }
                None => r.fail_closed(h, "server vanished from the policy"),
            },
            (Ok(_), _) => r.fail_closed(h, "a parked request was not allowed"),
        };
        if let Action::Continue = action {
            resume(h);
        }
        let phase = std::mem::replace(&mut r.phase, Phase::Start);
        let head = std::mem::take(&mut r.head);
        let resolved = Parked {
            server: p.server,
            decision: p.decision,
            then: Then::Finish(None),
            head: Head::default(),
            body: r.body,
            now: p.now,
            resolved: Some((phase, head)),
        };
        worker.parked.borrow_mut().insert(id, resolved);
    }
    if let Err(e) = h.set_effective_context(own) {
        log::warn!("cannot return to request {own}: {e:?}");
    }
}

impl<D: Host + Default> Drop for Request<D> {
    fn drop(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        match &self.phase {
            Phase::HoldingHeaders { .. } => hold_watch::release(&worker, self.id),
            Phase::AwaitingExchange => {
                worker.parked.borrow_mut().remove(&self.id);
            }
            // The exchange dies with this request: whoever waits on it is refused rather than
            // left hanging (they retry, and the next request exchanges).
            Phase::AwaitingCredential { cache_key, .. } => {
                let cache_key = cache_key.clone();
                wake_parked::<D, D>(
                    &mut D::default(),
                    Some(&worker),
                    self.id,
                    &cache_key,
                    &Err(exchange::ExchangeError::Unavailable),
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
        watch.on_headers(&worker.policy, &mut worker.stats.borrow_mut())
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(watch), Some(worker)) = (self.listing.as_mut(), self.worker.as_ref()) else {
            return Action::Continue;
        };
        watch.on_body(
            &worker.policy,
            &mut worker.stats.borrow_mut(),
            body_size,
            end_of_stream,
        )
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
