//! scopegate-core: the host-independent policy engine shared by the Envoy filter and the broker.
//!
//! Plain data in, a decision out. Nothing here performs I/O or reads a clock: callers pass
//! the request facts and the current time, so every rule is unit-tested natively.

pub mod authorize;
pub mod broker_config;
pub mod budget;
pub mod catalog;
pub mod challenge;
pub mod config;
#[cfg(feature = "broker")]
pub mod consent_config;
pub mod decision;
pub mod es256;
pub mod exchange;
mod json_scan;
pub mod jsonrpc;
pub mod jwks;
pub mod jwt;
pub mod listing;
pub mod mcp;
#[cfg(test)]
mod mutation;
pub mod native_metadata;
pub mod oauth;
pub mod policy;
pub mod prm;
mod proto_wire;
pub mod rate_limit;
pub mod reach;
pub mod reason;
pub mod revocation;
pub mod rpc_read;
pub mod scopes;
pub mod trace_context;
pub mod upstream;
pub mod url;
pub mod validate;

pub use config::Document;
pub use decision::{Decision, Outcome, Reason};
pub use policy::{Policy, Server, ServerId};
pub use scopes::ScopeSet;
