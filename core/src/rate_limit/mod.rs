//! Budgets counted by an Envoy rate limit service (`filter.rate_limit`), shared by every proxy:
//! the descriptors a request carries, the wire messages (`proto`) and what the answer decides
//! (`verdict`).
//!
//! One descriptor per budget that counts the request, its entries in this order: `gateway`,
//! `server`, `budget` (`tool:<name>:<per_seconds>s` or `server:<per_seconds>s`), then `subject`
//! or `client_id` for budgets counted per person or per client (none per server). The service's
//! configuration (`scopegate-broker render ratelimit`) nests the same keys, so each distinct
//! subject or client has its own counter there. The client's token never leaves the filter.

pub mod proto;
pub mod verdict;

use crate::budget::{applies, Budget, BudgetKey};
use crate::decision::Grant;
use crate::mcp::Call;
use crate::policy::Server;

/// The service's gRPC method.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// The windows envoyproxy/ratelimit counts in (it has no multiplier), by length in seconds.
pub const UNITS: [(u64, &str); 4] = [
    (1, "second"),
    (60, "minute"),
    (3600, "hour"),
    (86400, "day"),
];

/// The service's unit for a budget's window, when it has one.
pub fn unit(per_seconds: u64) -> Option<&'static str> {
    UNITS
        .iter()
        .find(|(s, _)| *s == per_seconds)
        .map(|(_, u)| *u)
}

/// The `budget` entry's value: which calls the budget counts, and over what window.
pub fn budget_value(b: &Budget) -> String {
    match &b.tool {
        Some(tool) => format!("tool:{tool}:{}s", b.per_seconds),
        None => format!("server:{}s", b.per_seconds),
    }
}

/// The key of the last entry, naming whose counter a budget spends; none per server.
pub fn counter_key(per: BudgetKey) -> Option<&'static str> {
    match per {
        BudgetKey::Subject => Some("subject"),
        BudgetKey::ClientId => Some("client_id"),
        BudgetKey::Server => None,
    }
}

/// One budget's descriptor for a request: its entries, key and value, in order.
pub type Descriptor = Vec<(&'static str, String)>;

/// What to ask the service about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The serialized `RateLimitRequest`.
    pub message: Vec<u8>,
    /// Each descriptor's window, in order: the `Retry-After` when the service gives no reset time.
    pub windows: Vec<u64>,
}

/// The descriptors of the budgets that count these calls, in the server's order; `None` when no
/// budget counts them (the request never waits for the service).
pub fn descriptors(
    gateway: &str,
    server: &Server,
    calls: &[Call],
    grant: &Grant,
) -> Option<(Vec<Descriptor>, Vec<u64>)> {
    let mut descriptors = Vec::new();
    let mut windows = Vec::new();
    for budget in server.budgets.iter().filter(|b| applies(b, calls)) {
        let mut entries = vec![
            ("gateway", gateway.to_string()),
            ("server", server.name.clone()),
            ("budget", budget_value(budget)),
        ];
        match budget.per {
            BudgetKey::Subject => entries.push(("subject", grant.subject.clone())),
            BudgetKey::ClientId => entries.push(("client_id", grant.client_id.clone())),
            BudgetKey::Server => {}
        }
        descriptors.push(entries);
        windows.push(budget.per_seconds);
    }
    if descriptors.is_empty() {
        None
    } else {
        Some((descriptors, windows))
    }
}

/// The `ShouldRateLimit` request for these calls (one hit on every budget that counts them), or
/// `None` when no budget does.
pub fn ask(
    domain: &str,
    gateway: &str,
    server: &Server,
    calls: &[Call],
    grant: &Grant,
) -> Option<Ask> {
    let (descriptors, windows) = descriptors(gateway, server, calls, grant)?;
    let borrowed: Vec<Vec<(&str, &str)>> = descriptors
        .iter()
        .map(|d| d.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    Some(Ask {
        message: proto::encode_request(domain, &borrowed),
        windows,
    })
}

#[cfg(test)]
mod tests;
