//! Native tests of the worker-level modules (listing, revocations, hold watch, budgets, keys,
//! credentials, audit) through the fake host, and the documents they use.
#![cfg(test)] // declared in lib.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod audit;
mod budgets;
mod credentials;
mod hold_watch;
mod keys;
mod listing;
mod revocations;

use crate::worker::Worker;
use scopegate_core::Policy;
use std::rc::Rc;

/// A one-gateway document: `servers` and `filter` are JSON members, `gateway` extra members of
/// the gateway (each with a leading comma when not empty).
pub fn document(servers: &str, filter: &str, gateway: &str) -> String {
    format!(
        r#"{{
  "gateways": [{{
    "name": "saas",
    "public_url": "https://mcp.example.com",
    "issuer": "https://idp.example.com",
    "allowed_scopes": ["tickets.read", "accounts.read"],
    "jwks": {{"cluster": "idp"}}{gateway},
    "servers": [{servers}]
  }}],
  "filter": {{{filter}}}
}}"#
    )
}

/// `support` denies one tool outright (so an unfilterable listing is replaced); `plain` hides
/// what the token's scopes do not grant (so one is passed untouched).
pub const SERVERS: &str = r#"
  {"name": "support", "cluster": "support", "path": "/support/mcp",
   "scopes": ["tickets.read", "accounts.read"],
   "tools": {"get_account": ["accounts.read"]},
   "deny": {"tools": ["drop_tables"]}},
  {"name": "plain", "cluster": "plain", "path": "/plain/mcp",
   "scopes": ["tickets.read", "accounts.read"],
   "tools": {"get_account": ["accounts.read"]},
   "listings": {"hide": "not_granted"}}"#;

/// The same gateway brokered: the filter exchanges for downstream credentials and polls
/// revocations on the `broker` cluster.
pub const BROKERED: &str =
    r#", "downstream": {"authorization_server": "https://auth.example.com", "client_id": "gw"}"#;

pub fn policy(doc: &str) -> Policy {
    scopegate_core::validate::load(doc).unwrap()
}

pub fn worker(doc: &str) -> Rc<Worker> {
    Rc::new(Worker::new(policy(doc)))
}
