//! The request headers: serve metadata, pass ungoverned requests, check the token (cache, then
//! signature, refetching keys on an unknown `kid`), admit it on the server, plan the body.

use super::request::{resume, Request};
use crate::hold_watch;
use crate::host::{self, Host};
use crate::keys;
use crate::native_mcp;
use crate::phase::{Decided, Phase, Then};
use crate::token_cache::{self, Verified};
use crate::worker::Worker;
use proxy_wasm::types::Action;
use scopegate_core::authorize::{self, BodyPlan, Target};
use scopegate_core::jwt::{self, TokenError, VerifyOptions};
use scopegate_core::policy::{ServerId, PRM_WELL_KNOWN};
use std::rc::Rc;

impl<D: Host + Default> Request<D> {
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
            if let Err(e) = self.head.read_is_post(h) {
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
                    let trace = super::exchange::trace_context(h);
                    keys::dispatch(h, &spec, &trace).ok()
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

    /// The JWKS refetch answered: install the keys, then verify the (still held) token again.
    pub(super) fn keys_arrived<H: Host>(
        &mut self,
        h: &mut H,
        worker: &Rc<Worker>,
        source: usize,
        server: ServerId,
        body_size: usize,
    ) {
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
        if let Action::Continue = self.authenticate(h, worker, server, token, true) {
            resume(h);
        }
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
            if let Err(e) = self.head.read_mcp_headers(h) {
                return self.fail_closed(h, &format!("cannot read the Mcp-* headers: {e:?}"));
            }
        }
        match plan {
            BodyPlan::DecideNow => {
                let decided = Decided {
                    server,
                    decision: Rc::clone(&admitted.decision),
                    then: Then::Finish(Some(Rc::clone(&admitted.record))),
                };
                self.enforce(h, worker, decided, &[])
            }
            BodyPlan::HoldHeaders => {
                if self.body.complete || self.head.end_of_stream {
                    return self.decide_held_headers(h, worker, server, principal);
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
                let decided = Decided {
                    server,
                    decision: Rc::clone(&admitted.decision),
                    then: Then::HoldBody(Rc::clone(principal)),
                };
                self.enforce(h, worker, decided, &[])
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
                self.head.rpc_id = metadata.id.clone();
                let (decision, calls) = authorize::decide_metadata(
                    target,
                    principal,
                    &metadata,
                    self.head.mcp_method.as_deref(),
                    self.head.mcp_name.as_deref(),
                );
                let decided = Decided {
                    server,
                    decision: Rc::new(decision),
                    then: Then::Finish(None),
                };
                self.enforce(h, worker, decided, &calls)
            }
        }
    }
}
