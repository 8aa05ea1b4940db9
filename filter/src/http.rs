//! One HTTP request through the filter, as an explicit state machine over Envoy's callbacks.

use crate::audit;
use crate::budgets;
use crate::hold_watch;
use crate::host;
use crate::keys;
use crate::native_mcp;
use crate::token_cache;
use crate::worker::Worker;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, BodyPlan, Principal, Target};
use scopegate_core::budget;
use scopegate_core::decision::{oauth_error_body, Decision, Grant, Outcome};
use scopegate_core::exchange;
use scopegate_core::jwt::{self, Claims, TokenError, VerifyOptions};
use scopegate_core::mcp;
use scopegate_core::policy::{ServerId, PRM_WELL_KNOWN};
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
        token: String,
    },
    /// `hold_headers`: the token was admitted; the headers are held until the JSON-RPC body is
    /// complete (needs `allow_on_headers_stop_iteration`).
    HoldingHeaders {
        server: ServerId,
        principal: Principal,
    },
    /// `hold_body`: the headers went upstream with identity and credential; the body is held
    /// until the JSON-RPC message is complete, then decided (a refusal resets the upstream).
    HoldingBody {
        server: ServerId,
        principal: Principal,
    },
    /// Allowed so far; waiting for the broker's downstream credential (callout `call`).
    AwaitingCredential {
        call: u32,
        server: ServerId,
        decision: Box<Decision>,
        cache_key: String,
        then: Then,
    },
}

/// What follows once the request headers are rewritten for the upstream.
enum Then {
    /// The decision was final: record it, and let the request go.
    Finish,
    /// `hold_body`: the token's decision only; the body is decided when complete.
    HoldBody(Principal),
}

/// Whether the request headers already went upstream when the body is decided.
#[derive(Clone, Copy)]
enum HeadersSent {
    /// `hold_headers`: still held, so an allow rewrites them.
    No,
    /// `hold_body`: sent with identity and credential; only the verdict remains.
    Yes,
}

/// What the headers told us that later phases need.
#[derive(Default)]
struct Head {
    is_post: bool,
    end_of_stream: bool,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    /// The request headers as read, rewritten in one host call when the request is forwarded.
    headers: Vec<(String, String)>,
}

/// Body bytes buffered so far, tracked in every phase (bodies may arrive while keys load).
#[derive(Default, Clone, Copy)]
struct BodySeen {
    size: usize,
    complete: bool,
}

pub struct Request {
    worker: Option<Rc<Worker>>,
    /// Envoy's id for this stream (the hold watch answers it from the root context).
    id: u32,
    phase: Phase,
    head: Head,
    body: BodySeen,
    /// The client's token, kept only on brokered gateways: it is the exchange's subject token.
    subject_token: Option<String>,
    /// Set when an allowed request holds listing calls whose response may need filtering.
    listing: Option<crate::listing::Watch>,
}

impl Request {
    pub fn new(worker: Option<Rc<Worker>>, id: u32) -> Request {
        Request {
            worker,
            id,
            phase: Phase::Start,
            head: Head::default(),
            body: BodySeen::default(),
            subject_token: None,
            listing: None,
        }
    }

    /// The refusal with a JSON-RPC error body carrying the request's id, for refusals that are
    /// not OAuth challenges; `None` keeps it as it is.
    fn as_jsonrpc(&self, worker: &Worker, decision: &Decision) -> Option<Decision> {
        scopegate_core::jsonrpc::code_for(decision.audit.reason)?;
        let readable = self.head.is_post
            && self.body.complete
            && self.body.size > 0
            && self.body.size <= worker.policy.filter.max_body_bytes;
        let body = if readable {
            host::request_body(self.body.size).ok().flatten()
        } else {
            None
        };
        scopegate_core::jsonrpc::refusal(decision, body.as_deref())
    }

    fn reply(&mut self, worker: &Worker, decision: &Decision) -> Action {
        let rewritten = self.as_jsonrpc(worker, decision);
        let decision = rewritten.as_ref().unwrap_or(decision);
        if let Outcome::Deny(d) = &decision.outcome {
            let mut headers = vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ];
            if let Some(w) = &d.www_authenticate {
                headers.push(("www-authenticate", w.as_str()));
            }
            let retry_after = d.retry_after.map(|s| s.to_string());
            if let Some(s) = &retry_after {
                headers.push(("retry-after", s.as_str()));
            }
            host::send_response(d.status, headers, &d.body);
        }
        audit::record(&mut worker.stats.borrow_mut(), &decision.audit);
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// An internal failure: answer 503 rather than let an unchecked request through.
    fn fail_closed(&mut self, what: &str) -> Action {
        log::error!("{what}; refusing the request");
        host::send_response(
            503,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            &oauth_error_body(
                "temporarily_unavailable",
                "the gateway could not check this request",
            ),
        );
        self.phase = Phase::Replied;
        Action::Pause
    }

    /// Applies an allow, fetching the downstream credential first on brokered gateways, or
    /// sends the refusal.
    fn enforce(
        &mut self,
        worker: &Worker,
        server: ServerId,
        decision: Decision,
        calls: &[mcp::Call],
        then: Then,
    ) -> Action {
        let Outcome::Allow(grant) = &decision.outcome else {
            return self.reply(worker, &decision);
        };
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed("server vanished from the policy");
        };
        // Budgets count calls: a held body is counted when it is decided.
        if let Then::Finish = then {
            if let Err(retry_after) = budgets::spend_all(target.server, calls, grant, host::now_s())
            {
                let d = budget::exceeded(target, &decision.audit, retry_after);
                return self.reply(worker, &d);
            }
        }
        if !target.gateway.brokered {
            return self.forward(worker, server, grant, &decision, None, then);
        }
        let Some(grant_id) = grant.grant_id.as_deref() else {
            return self.reply(worker, &exchange::no_grant(target, &decision.audit));
        };
        if worker.revocations.borrow().is_revoked(grant_id) {
            let d = exchange::refusal(target, exchange::ExchangeError::DeadGrant, &decision.audit);
            return self.reply(worker, &d);
        }
        let cache_key = exchange::cache_key(grant_id, &target.server.name);
        let now = host::now_s();
        let cached = worker.credentials.borrow_mut().get(&cache_key, now);
        if let Some(c) = cached {
            return self.forward(
                worker,
                server,
                grant,
                &decision,
                Some(&c.access_token),
                then,
            );
        }
        let Some(broker) = &policy.filter.broker else {
            return self.fail_closed("brokered gateway without filter.broker");
        };
        let Some(subject_token) = self.subject_token.take() else {
            return self.fail_closed("the client's token was not kept for the exchange");
        };
        let body = exchange::request_body(&subject_token, &target.server.resource);
        let call = proxy_wasm::hostcalls::dispatch_http_call(
            &broker.cluster,
            vec![
                (":method", "POST"),
                (":path", broker.path.as_str()),
                (":authority", broker.authority.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
            Some(body.as_bytes()),
            vec![],
            std::time::Duration::from_millis(broker.timeout_ms),
        );
        match call {
            Ok(call) => {
                self.phase = Phase::AwaitingCredential {
                    call,
                    server,
                    decision: Box::new(decision),
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
                self.reply(worker, &d)
            }
        }
    }

    /// Rewrites the request for the upstream: no client token (unless opted in), the downstream
    /// credential when there is one, and the identity headers. They depend on the token only,
    /// so `hold_body` sets them before the body is seen (the host refuses header changes later).
    fn forward(
        &mut self,
        worker: &Worker,
        server: ServerId,
        grant: &Grant,
        decision: &Decision,
        downstream: Option<&str>,
        then: Then,
    ) -> Action {
        // One host call replaces the whole header map: the client's token and any
        // client-supplied `x-scopegate-*` go, the credential and identity headers come in.
        let headers = std::mem::take(&mut self.head.headers);
        if headers.is_empty() {
            return self.fail_closed("request headers were not kept");
        }
        let keep_client_token = downstream.is_none() && grant.forward_client_token;
        let bearer = downstream.map(|t| format!("Bearer {t}"));
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 4);
        out.extend(
            headers
                .iter()
                .filter(|(k, _)| !k.starts_with("x-scopegate-"))
                .filter(|(k, _)| keep_client_token || k != "authorization")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some(b) = &bearer {
            out.push(("authorization", b.as_str()));
        }
        out.push(("x-scopegate-subject", grant.subject.as_str()));
        out.push(("x-scopegate-client-id", grant.client_id.as_str()));
        out.push(("x-scopegate-scopes", grant.scopes.as_str()));
        if host::set_request_headers(out).is_err() {
            return self.fail_closed("cannot rewrite the request headers");
        }
        match then {
            Then::Finish => {
                audit::record(&mut worker.stats.borrow_mut(), &decision.audit);
                self.phase = Phase::Done;
                Action::Continue
            }
            Then::HoldBody(principal) => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_held_body(worker, server, &principal, HeadersSent::Yes);
                }
                self.phase = Phase::HoldingBody { server, principal };
                // The headers go on; `on_http_request_body` holds the body.
                Action::Continue
            }
        }
    }

    /// The broker answered (or the call failed): forward with the credential, or refuse.
    fn credential_arrived(
        &mut self,
        worker: &Worker,
        server: ServerId,
        decision: &Decision,
        cache_key: &str,
        body_size: usize,
        then: Then,
    ) {
        let status = host::call_response_status();
        let body = match host::call_response_body(body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let now = host::now_s();
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            self.fail_closed("server vanished from the policy");
            return;
        };
        let Outcome::Allow(grant) = &decision.outcome else {
            return;
        };
        match exchange::parse_response(status, &body, now) {
            Ok(credential) => {
                worker
                    .credentials
                    .borrow_mut()
                    .insert(cache_key, &credential);
                if let Action::Continue = self.forward(
                    worker,
                    server,
                    grant,
                    decision,
                    Some(&credential.access_token),
                    then,
                ) {
                    host::resume_request();
                }
            }
            Err(e) => {
                if e == exchange::ExchangeError::Unavailable {
                    log::warn!("broker exchange failed (status {status:?})");
                }
                let d = exchange::refusal(target, e, &decision.audit);
                self.reply(worker, &d);
            }
        }
    }

    /// Verifies (or finds cached) the token, admits it, then decides or waits for the body.
    fn authenticate(
        &mut self,
        worker: &Rc<Worker>,
        server: ServerId,
        token: &str,
        retried: bool,
    ) -> Action {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed("server vanished from the policy");
        };
        let now = host::now_s();
        let leeway = policy.filter.leeway_s;
        let cached = worker.tokens.borrow().get(token, now, leeway);
        let claims: Rc<Claims> = match cached {
            Some(c) => c,
            None => {
                let source = target.gateway.jwks_source;
                let loaded = worker.keys.borrow().keys(source);
                // Another worker may have fetched them since this worker's last tick.
                let loaded = loaded.or_else(|| {
                    let mut store = worker.keys.borrow_mut();
                    store.sync(source);
                    store.keys(source)
                });
                let Some(keyset) = loaded else {
                    return self.reply(worker, &authorize::keys_unavailable(target));
                };
                let generation = worker.keys.borrow().generation(source);
                let digest = token_cache::digest(token);
                let opts = VerifyOptions {
                    issuer: &target.gateway.issuer,
                    now,
                    leeway,
                };
                let result = if token_cache::verified_elsewhere(&digest, generation) {
                    worker
                        .stats
                        .borrow_mut()
                        .count_global("jwt", "verified_elsewhere");
                    jwt::decode_verified(token, &opts)
                } else {
                    let r = jwt::verify(token, &keyset, &opts);
                    if r.is_ok() {
                        worker.stats.borrow_mut().count_global("jwt", "verified");
                        token_cache::share_verified(&digest, generation);
                    }
                    r
                };
                match result {
                    Ok(c) => {
                        let c = Rc::new(c);
                        worker
                            .tokens
                            .borrow_mut()
                            .insert(token, Rc::clone(&c), now, leeway);
                        c
                    }
                    Err(TokenError::UnknownKid(_)) if !retried => {
                        return self.refetch_keys(worker, server, source, token);
                    }
                    Err(e) => return self.reply(worker, &authorize::token_rejected(target, &e)),
                }
            }
        };
        let principal = match authorize::admit(target, &claims, now, leeway) {
            Ok(p) => p,
            Err(d) => return self.reply(worker, &d),
        };
        match authorize::body_plan(target.server, policy.filter.body_mode, self.head.is_post) {
            BodyPlan::DecideNow => {
                let decision = authorize::decide(target, &principal, &[]);
                self.enforce(worker, server, decision, &[], Then::Finish)
            }
            BodyPlan::HoldHeaders => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_held_body(worker, server, &principal, HeadersSent::No);
                }
                self.phase = Phase::HoldingHeaders { server, principal };
                hold_watch::hold(worker, self.id);
                Action::Pause
            }
            BodyPlan::HoldBody => {
                let (method, name) = (
                    self.head.mcp_method.as_deref(),
                    self.head.mcp_name.as_deref(),
                );
                if let Some(refused) = authorize::early_refusal(target, &principal, method, name) {
                    return self.reply(worker, &refused);
                }
                let decision = authorize::decide(target, &principal, &[]);
                self.enforce(worker, server, decision, &[], Then::HoldBody(principal))
            }
            BodyPlan::FromMetadata => {
                let metadata = match native_mcp::read() {
                    Ok(m) => m,
                    Err(e) => {
                        return self
                            .fail_closed(&format!("cannot read the mcp filter's metadata: {e:?}"))
                    }
                };
                let (decision, calls) = authorize::decide_metadata(
                    target,
                    &principal,
                    &metadata,
                    self.head.mcp_method.as_deref(),
                    self.head.mcp_name.as_deref(),
                );
                self.enforce(worker, server, decision, &calls, Then::Finish)
            }
        }
    }

    /// An unknown `kid`: use keys another worker already fetched, else refetch if the rate limit allows.
    fn refetch_keys(
        &mut self,
        worker: &Rc<Worker>,
        server: ServerId,
        source: usize,
        token: &str,
    ) -> Action {
        if worker.keys.borrow_mut().sync(source) {
            worker.tokens.borrow_mut().clear();
            return self.authenticate(worker, server, token, true);
        }
        let now_ms = u64::try_from(host::now().as_millis()).unwrap_or(u64::MAX);
        let dispatched = {
            let store = worker.keys.borrow();
            match store.fetch_spec(source) {
                Some(spec) if store.claim_unknown_kid(source, now_ms) => keys::dispatch(&spec).ok(),
                _ => None,
            }
        };
        match dispatched {
            Some(call) => {
                self.phase = Phase::AwaitingKeys {
                    call,
                    source,
                    server,
                    token: token.to_string(),
                };
                Action::Pause
            }
            // Rate-limited (or inline keys): the kid is simply unknown.
            None => self.authenticate(worker, server, token, true),
        }
    }

    /// Decides on the complete body: `hold_headers` still holds the headers (the decision may
    /// rewrite them); `hold_body` already sent them, so only the verdict remains.
    fn decide_held_body(
        &mut self,
        worker: &Worker,
        server: ServerId,
        principal: &Principal,
        headers: HeadersSent,
    ) -> Action {
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed("server vanished from the policy");
        };
        let body = if self.body.size == 0 {
            Vec::new()
        } else {
            match host::request_body(self.body.size) {
                Ok(b) => b.unwrap_or_default(),
                Err(e) => return self.fail_closed(&format!("cannot read the request body: {e:?}")),
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
            return self.enforce(worker, server, decision, &calls, Then::Finish);
        }
        // `hold_body`: headers, identity and credential are upstream already.
        let Outcome::Allow(grant) = &decision.outcome else {
            return self.reply(worker, &decision);
        };
        if let Err(retry_after) = budgets::spend_all(target.server, &calls, grant, host::now_s()) {
            let d = budget::exceeded(target, &decision.audit, retry_after);
            return self.reply(worker, &d);
        }
        audit::record(&mut worker.stats.borrow_mut(), &decision.audit);
        self.phase = Phase::Done;
        Action::Continue
    }

    fn serve_metadata(&mut self, worker: &Worker, server: ServerId) -> Action {
        let Some(s) = worker.policy.server(server) else {
            return self.fail_closed("server vanished from the policy");
        };
        host::send_response(
            200,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "public, max-age=300"),
                // Browser-based MCP clients read this document cross-origin.
                ("access-control-allow-origin", "*"),
            ],
            &s.prm_json,
        );
        let mut stats = worker.stats.borrow_mut();
        stats.count(&s.name, "metadata", "served");
        self.phase = Phase::Replied;
        Action::Pause
    }
}

/// Where a body callback finds the request.
enum Held {
    /// Not governed, or already decided: the body flows.
    Nothing,
    /// Refused, or a callout is pending: keep the body.
    Waiting,
    /// A held message to decide once complete.
    Body(ServerId, Principal, HeadersSent),
}

impl Request {
    fn held(&self, worker: &Worker) -> Held {
        match &self.phase {
            Phase::Done | Phase::Start => Held::Nothing,
            Phase::Replied | Phase::AwaitingKeys { .. } | Phase::AwaitingCredential { .. } => {
                Held::Waiting
            }
            Phase::HoldingHeaders { server, principal } => {
                // A body callback came, so the flag is set: the watch can stop.
                hold_watch::release(worker, self.id);
                Held::Body(*server, principal.clone(), HeadersSent::No)
            }
            Phase::HoldingBody { server, principal } => {
                Held::Body(*server, principal.clone(), HeadersSent::Yes)
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let (Phase::HoldingHeaders { .. }, Some(worker)) = (&self.phase, &self.worker) {
            hold_watch::release(worker, self.id);
        }
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        match std::mem::replace(&mut self.phase, Phase::Start) {
            Phase::AwaitingKeys {
                call,
                source,
                server,
                token,
            } if call == token_id => {
                worker.install_fetched_keys(source, body_size);
                if let Action::Continue = self.authenticate(&worker, server, &token, true) {
                    host::resume_request();
                }
            }
            Phase::AwaitingCredential {
                call,
                server,
                decision,
                cache_key,
                then,
            } if call == token_id => {
                self.credential_arrived(&worker, server, &decision, &cache_key, body_size, then);
            }
            other => self.phase = other,
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            return self.fail_closed("filter is not configured");
        };
        let headers = match host::request_headers() {
            Ok(h) => h,
            Err(e) => return self.fail_closed(&format!("cannot read request headers: {e:?}")),
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let path = header(":path").unwrap_or("");
        if path.starts_with(PRM_WELL_KNOWN) && matches!(header(":method"), Some("GET" | "HEAD")) {
            if let Some(server) = worker.policy.prm_server(path, header(":authority")) {
                return self.serve_metadata(&worker, server);
            }
        }

        let cluster = match host::property(vec!["xds", "cluster_name"]) {
            Ok(Some(c)) => c,
            // No route, no upstream: nothing to govern.
            Ok(None) => return Action::Continue,
            Err(e) => return self.fail_closed(&format!("cannot read xds.cluster_name: {e:?}")),
        };
        let Some(server) = worker.policy.server_for_cluster(&cluster) else {
            self.phase = Phase::Done;
            return Action::Continue;
        };

        // Client-supplied `x-scopegate-*` headers are dropped when the request is forwarded.
        let is_post = header(":method") == Some("POST");
        let mcp_method = header("mcp-method").map(str::to_string);
        let mcp_name = header("mcp-name").map(str::to_string);
        let authorization = header("authorization").map(str::to_string);
        self.head = Head {
            is_post,
            end_of_stream,
            mcp_method,
            mcp_name,
            headers,
        };
        let policy = Rc::clone(&worker.policy);
        let Some(target) = Target::of(&policy, server) else {
            return self.fail_closed("server vanished from the policy");
        };
        match authorize::bearer_token(target, authorization.as_deref()) {
            Ok(token) => {
                if target.gateway.brokered {
                    self.subject_token = Some(token.to_string());
                }
                self.authenticate(&worker, server, token, false)
            }
            Err(d) => self.reply(&worker, &d),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body = BodySeen {
            size: body_size,
            complete: end_of_stream,
        };
        let Some(worker) = self.worker.clone() else {
            return Action::Pause;
        };
        let (server, principal, headers) = match self.held(&worker) {
            Held::Nothing => return Action::Continue,
            Held::Waiting => return Action::Pause,
            Held::Body(server, principal, headers) => (server, principal, headers),
        };
        if body_size > worker.policy.filter.max_body_bytes {
            let policy = Rc::clone(&worker.policy);
            return match Target::of(&policy, server) {
                Some(target) => self.reply(&worker, &authorize::body_too_large(target)),
                None => self.fail_closed("server vanished from the policy"),
            };
        }
        if !end_of_stream {
            // StopIterationAndBuffer: nothing of the message moves on until it is decided.
            return Action::Pause;
        }
        self.decide_held_body(&worker, server, &principal, headers)
    }

    /// Trailers end the body: a held message is decided here, never continued unchecked.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body.complete = true;
        let Some(worker) = self.worker.clone() else {
            return Action::Pause;
        };
        let (server, principal, headers) = match self.held(&worker) {
            Held::Nothing => return Action::Continue,
            Held::Waiting => return Action::Pause,
            Held::Body(server, principal, headers) => (server, principal, headers),
        };
        self.decide_held_body(&worker, server, &principal, headers)
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
