//! The root context: loads the document, keeps the signing keys fresh, and creates HTTP contexts.

use crate::host::{self, Envoy, Host};
use crate::http::Request;
use crate::keys;
use crate::worker::Worker;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How often each worker checks for new keys and due refreshes.
const TICK: Duration = Duration::from_secs(1);
/// Until keys are loaded governed requests get 503, so look more often.
const TICK_LOADING: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<Worker>>,
    /// JWKS fetches in flight: callout token -> source.
    fetches: HashMap<u32, usize>,
    ticks: u64,
    /// The tick period in force, so it is only changed when it must be.
    period: Duration,
    /// The revocations poll in flight, if this worker holds the lease.
    revocation_poll: Option<u32>,
}

impl Root {
    /// A callout answered: the revocations poll, or a JWKS fetch.
    fn call_response(&mut self, h: &mut impl Host, token_id: u32, body_size: usize) {
        let Some(worker) = &self.worker else { return };
        if self.revocation_poll == Some(token_id) {
            self.revocation_poll = None;
            worker.revocations.borrow_mut().on_response(
                h,
                &worker.policy,
                &mut worker.credentials.borrow_mut(),
                body_size,
            );
            return;
        }
        let Some(source) = self.fetches.remove(&token_id) else {
            return;
        };
        worker.install_fetched_keys(h, source, body_size);
    }

    fn set_period(&mut self, h: &mut impl Host, period: Duration) -> bool {
        match h.set_tick_period(period) {
            Ok(()) => {
                self.period = period;
                true
            }
            Err(e) => {
                log::error!("cannot start the key refresh timer: {e:?}");
                false
            }
        }
    }

    /// Loads the policy document; false makes Envoy refuse the configuration instead of running
    /// without it.
    fn configure(&mut self, h: &mut impl Host, size: usize) -> bool {
        let text = match h.plugin_configuration(size) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(None) => String::new(),
            Err(e) => {
                log::error!("cannot read plugin configuration: {e:?}");
                return false;
            }
        };
        let policy = match scopegate_core::validate::load(&text) {
            Ok(p) => p,
            Err(e) => {
                for line in e.to_string().lines() {
                    log::error!("{line}");
                }
                log::error!("configuration refused");
                return false;
            }
        };
        for w in &policy.warnings {
            log::warn!("{w}");
        }
        log::info!(
            "configured {} gateway(s), {} server(s)",
            policy.gateways.len(),
            policy.servers.len()
        );
        self.worker = Some(Rc::new(Worker::new(policy)));
        if !self.set_period(h, TICK_LOADING) {
            return false;
        }
        // Don't wait a whole tick for the first keys.
        self.tick(h);
        true
    }

    fn tick(&mut self, h: &mut impl Host) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        self.ticks = self.ticks.wrapping_add(1);
        let now = h.now();
        let now_ms = host::millis(now);
        crate::hold_watch::on_tick(h, &worker, now_ms);
        let sources = worker.keys.borrow().len();
        for id in 0..sources {
            if worker.keys.borrow_mut().sync(h, id) {
                worker.tokens.borrow_mut().clear();
            }
            if self.fetches.values().any(|s| *s == id) {
                continue;
            }
            if !worker.keys.borrow().claim_refresh(h, id, now_ms) {
                continue;
            }
            let store = worker.keys.borrow();
            let Some(spec) = store.fetch_spec(id) else {
                continue;
            };
            match keys::dispatch(h, &spec, &[]) {
                Ok(token) => {
                    self.fetches.insert(token, id);
                }
                Err(e) => log::warn!("cannot fetch JWKS from cluster {}: {e:?}", spec.cluster),
            }
        }
        if self.revocation_poll.is_none() {
            self.revocation_poll = worker.revocations.borrow_mut().tick(
                h,
                &worker.policy,
                &mut worker.credentials.borrow_mut(),
                now_ms,
            );
        }
        let wanted = if worker.keys.borrow().all_loaded() {
            TICK
        } else {
            TICK_LOADING
        };
        if wanted != self.period {
            self.set_period(h, wanted);
        }
        if self.ticks.is_multiple_of(30) {
            worker
                .tokens
                .borrow_mut()
                .evict_expired(now.as_secs(), worker.policy.filter.leeway_s);
        }
    }
}

impl Context for Root {
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

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        self.configure(&mut Envoy, size)
    }

    fn on_tick(&mut self) {
        self.tick(&mut Envoy);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on None, so an unconfigured root still hands out a (fail-closed) context.
        Some(Box::new(Request::<Envoy>::new(
            self.worker.clone(),
            context_id,
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

    use super::*;
    use crate::fake_host::{Fake, NOW};

    const DOC: &str = r#"{"gateways": [{"name": "saas", "public_url": "https://mcp.example.com",
        "issuer": "https://idp.example.com", "allowed_scopes": ["tickets.read"],
        "jwks": {"cluster": "idp"},
        "downstream": {"authorization_server": "https://auth.example.com", "client_id": "gw"},
        "servers": [{"name": "support", "cluster": "support", "path": "/support/mcp",
                     "scopes": ["tickets.read"]}]}],
        "filter": {"broker": {"cluster": "broker"}}}"#;

    fn configured(h: &mut Fake) -> Root {
        h.configuration = Some(DOC.as_bytes().to_vec());
        let mut root = Root::default();
        assert!(root.configure(h, DOC.len()));
        root
    }

    #[test]
    fn configuring_starts_the_fast_timer_and_fetches_the_keys_at_once() {
        let mut h = Fake::default();
        let root = configured(&mut h);
        assert!(root.worker.is_some());
        assert_eq!(h.tick_period, Some(TICK_LOADING));
        assert_eq!(h.dispatched[0].0, "idp", "the first tick ran");
        assert_eq!(root.fetches.get(&7), Some(&0));
        assert_eq!(h.dispatched[1].0, "broker", "and polled revocations");
        assert_eq!(root.revocation_poll, Some(8));
    }

    #[test]
    fn a_refused_or_unreadable_configuration_is_refused() {
        let mut h = Fake {
            configuration: Some(b"{\"gateways\": 3}".to_vec()),
            ..Fake::default()
        };
        let mut root = Root::default();
        assert!(!root.configure(&mut h, 100));
        assert!(root.worker.is_none());
        let mut h = Fake::failing(&["plugin_configuration"]);
        assert!(!root.configure(&mut h, 100));
        let mut h = Fake {
            configuration: Some(DOC.as_bytes().to_vec()),
            ..Fake::failing(&["set_tick_period"])
        };
        assert!(
            !root.configure(&mut h, DOC.len()),
            "no timer, no key refresh"
        );
    }

    #[test]
    fn answers_reach_the_keys_and_the_revocations_and_the_timer_slows_once_keys_are_in() {
        let mut h = Fake::default();
        let mut root = configured(&mut h);
        let worker = root.worker.clone().unwrap();
        h.call_status = Some(200);
        let key = jwt_simple::prelude::ES256KeyPair::generate().with_key_id("k1");
        h.call_body = format!(r#"{{"keys": [{}]}}"#, key.public_key().to_jwk()).into_bytes();
        let n = h.call_body.len();
        root.call_response(&mut h, 7, n);
        assert!(worker.keys.borrow().all_loaded());
        assert!(root.fetches.is_empty());

        h.call_body = format!(
            r#"{{"cursor": 4, "revoked": [{{"grant_id": "g1", "until": {}}}]}}"#,
            NOW + 60
        )
        .into_bytes();
        let n = h.call_body.len();
        root.call_response(&mut h, 8, n);
        assert!(worker.revocations.borrow().is_revoked("g1"));
        assert_eq!(root.revocation_poll, None);

        root.tick(&mut h);
        assert_eq!(h.tick_period, Some(TICK));
    }
    /// The filter builds scopegate-core without its `broker` feature: the broker's own sections
    /// are skipped unread (they are the broker's and `scopegate-broker check`'s to refuse), while
    /// everything the filter enforces is still checked and a mistake in it named. In a workspace
    /// test run cargo unifies features and core reads them (the broker needs it): then the same
    /// document is refused naming the broker's field. The `.wasm` itself is checked end to end by
    /// `tests/it/wasm_module.rs`.
    #[test]
    fn the_broker_sections_are_skipped_and_the_rest_checked() {
        let doc = |servers_scopes: &str| {
            format!(
                r#"{{"gateways": [{{"name": "saas", "public_url": "https://mcp.example.com",
                  "issuer": "https://idp.example.com", "allowed_scopes": ["tickets.read"],
                  "jwks": {{"cluster": "idp"}},
                  "clients": {{"dcr": "not a bool", "unknown": 1}},
                  "servers": [{{"name": "support", "cluster": "support", "path": "/support/mcp",
                               "scopes": {servers_scopes}}}]}}],
                  "broker": {{"listen": "nowhere", "access_token_ttl_s": 0, "typo": true}}}}"#
            )
        };
        if scopegate_core::validate::READS_BROKER_SECTIONS {
            let refused = scopegate_core::validate::load(&doc(r#"["tickets.read"]"#))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                refused.contains("typo") || refused.contains("clients"),
                "{refused}"
            );
            return;
        }
        let policy = scopegate_core::validate::load(&doc(r#"["tickets.read"]"#));
        assert!(policy.is_ok(), "{:?}", policy.err());
        let refused = scopegate_core::validate::load(&doc(r#"["billing.write"]"#))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("`billing.write` is not in the gateway's allowed_scopes")
                && refused.contains("gateways[0].servers[0].scopes"),
            "{refused}"
        );
        assert!(!refused.contains("broker."), "{refused}");
    }
}
