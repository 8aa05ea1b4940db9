//! The last decision on a single-call body per admitted token and server: a client calling
//! the same tool again with the same token decides nothing again, as a token cache hit does.
//!
//! Sound because [`scopegate_core::authorize::decide`] depends on the server, the principal
//! and the calls only: the worker's policy is fixed for its lifetime (a new configuration is a
//! new worker, and a new memo), and a principal is the one the token cache admitted. Entries
//! are keyed by the principal's address and hold a `Weak` to it, so an address is never reused
//! while its entry exists, and a principal dropped with its token (expiry, new keys) misses.
//! Only allows are kept; budgets are spent per request after the decision, as before.

use crate::token_cache::WordHasher;
use scopegate_core::authorize::Principal;
use scopegate_core::decision::Decision;
use scopegate_core::mcp::Call;
use scopegate_core::policy::ServerId;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::{Rc, Weak};

/// A kept decision: shared with the request that enforces it, and its record's JSON.
#[derive(Clone)]
pub struct Kept {
    pub decision: Rc<Decision>,
    pub record: Rc<str>,
}

struct Entry {
    principal: Weak<Principal>,
    server: ServerId,
    call: Call,
    kept: Kept,
}

pub struct CallMemo {
    entries: HashMap<usize, Entry, BuildHasherDefault<WordHasher>>,
    capacity: usize,
}

fn key(principal: &Rc<Principal>) -> usize {
    Rc::as_ptr(principal) as usize
}

impl CallMemo {
    /// At most `capacity` entries (one call per cached token, up to `worker::CALL_MEMO_ENTRIES`).
    pub fn new(capacity: usize) -> CallMemo {
        CallMemo {
            entries: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// The kept decision for this principal, server and one call, if it is the last one decided.
    pub fn get(&self, principal: &Rc<Principal>, server: ServerId, call: &Call) -> Option<Kept> {
        let e = self.entries.get(&key(principal))?;
        let same = e.principal.as_ptr() == Rc::as_ptr(principal)
            && e.principal.strong_count() > 0
            && e.server == server
            && e.call == *call;
        same.then(|| e.kept.clone())
    }

    /// Keeps an allow on one call (refusals and batches are decided every time).
    pub fn keep(&mut self, principal: &Rc<Principal>, server: ServerId, call: &Call, kept: &Kept) {
        if !kept.decision.is_allow() {
            return;
        }
        if self.entries.len() >= self.capacity {
            // Drop entries whose token is gone, then start over rather than track recency.
            self.entries.retain(|_, e| e.principal.strong_count() > 0);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(
            key(principal),
            Entry {
                principal: Rc::downgrade(principal),
                server,
                call: call.clone(),
                kept: kept.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scopegate_core::decision::{Audit, Denial, Grant, Outcome, Reason};

    fn principal() -> Rc<Principal> {
        Rc::new(Principal {
            subject: "alice".into(),
            client_id: "agent".into(),
            granted: Default::default(),
            effective: Default::default(),
            foreign: String::new(),
            grant_id: None,
        })
    }

    fn call(name: &str) -> Call {
        Call {
            method: "tools/call".into(),
            name: Some(name.into()),
        }
    }

    fn allow() -> Kept {
        let mut d = Decision::refusal(
            Reason::Ok,
            Denial::with_body(403, String::new()),
            Audit::new("s", Reason::Ok),
        );
        d.outcome = Outcome::Allow(Grant {
            subject: "alice".into(),
            client_id: "agent".into(),
            scopes: String::new(),
            forward_client_token: false,
            grant_id: None,
        });
        Kept {
            decision: Rc::new(d),
            record: "{}".into(),
        }
    }

    #[test]
    fn only_the_same_principal_server_and_call_hit() {
        let mut m = CallMemo::new(4);
        let (p, q) = (principal(), principal());
        let s = 0;
        m.keep(&p, s, &call("a"), &allow());
        assert!(m.get(&p, s, &call("a")).is_some());
        assert!(m.get(&p, s, &call("b")).is_none());
        assert!(m.get(&q, s, &call("a")).is_none());
    }

    #[test]
    fn refusals_are_not_kept_and_a_dropped_principal_misses() {
        let mut m = CallMemo::new(4);
        let p = principal();
        let s = 0;
        let deny = Kept {
            decision: Rc::new(Decision::refusal(
                Reason::InsufficientScope,
                Denial::with_body(403, String::new()),
                Audit::new("s", Reason::InsufficientScope),
            )),
            record: "{}".into(),
        };
        m.keep(&p, s, &call("a"), &deny);
        assert!(m.get(&p, s, &call("a")).is_none());
        m.keep(&p, s, &call("a"), &allow());
        let weak = Rc::downgrade(&p);
        drop(p);
        // The allocation is still held by the entry's Weak, so no new principal can take it.
        assert_eq!(weak.strong_count(), 0);
        let p2 = principal();
        assert!(m.get(&p2, s, &call("a")).is_none());
    }

    #[test]
    fn it_is_bounded() {
        let mut m = CallMemo::new(2);
        let ps: Vec<_> = (0..5).map(|_| principal()).collect();
        for p in &ps {
            m.keep(p, 0, &call("a"), &allow());
        }
        assert!(m.entries.len() <= 2);
    }
}
