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

/// The last entry for a grant: whose counter a budget spends; none per server.
fn counter(per: BudgetKey, grant: &Grant) -> Option<(&'static str, &str)> {
    let value = match per {
        BudgetKey::Subject => grant.subject.as_str(),
        BudgetKey::ClientId => grant.client_id.as_str(),
        BudgetKey::Server => return None,
    };
    Some((counter_key(per)?, value))
}

/// What to ask the service about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The serialized `RateLimitRequest`.
    pub message: Vec<u8>,
    /// Each descriptor's window, in order: the `Retry-After` when the service gives no reset time.
    pub windows: Vec<u64>,
}

/// The `ShouldRateLimit` request for these calls: one descriptor (and one hit) per budget that
/// counts them, in the server's order; `None` when no budget does (the request never waits for
/// the service).
pub fn ask(
    domain: &str,
    gateway: &str,
    server: &Server,
    calls: &[Call],
    grant: &Grant,
) -> Option<Ask> {
    let mut request: Option<proto::RequestEncoder> = None;
    let mut windows = Vec::new();
    for budget in server.budgets.iter().filter(|b| applies(b, calls)) {
        let value = budget_value(budget);
        let mut entries = [
            ("gateway", gateway),
            ("server", server.name.as_str()),
            ("budget", value.as_str()),
            ("", ""),
        ];
        let n = match counter(budget.per, grant) {
            Some(who) => {
                entries[3] = who;
                4
            }
            None => 3,
        };
        request
            .get_or_insert_with(|| proto::RequestEncoder::new(domain))
            .descriptor(&entries[..n]);
        windows.push(budget.per_seconds);
    }
    Some(Ask {
        message: request?.finish(),
        windows,
    })
}

#[cfg(test)]
mod tests;
