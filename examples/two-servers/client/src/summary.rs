//! What the walkthrough counted, for the `WALKTHROUGH {json}` line: checks, grants, refreshes.

use serde_json::{json, Value};

#[derive(Default)]
pub struct Summary {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
    /// Dynamic client registrations made (one per MCP server connection).
    pub registrations: usize,
    /// Completed authorizations (each is a grant at the broker).
    pub authorizations: usize,
    /// Grants that carried at least one successful tool call.
    pub grants_used: usize,
    /// Access-token refreshes (refresh_token grants) that succeeded.
    pub refreshes: usize,
    /// Times the upstream was seen with a renewed downstream credential on the same grant.
    pub downstream_renewals: usize,
    pub tool_calls: usize,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        json!({
            "passed": self.passed.len(),
            "failed": self.failed.len(),
            "skipped": self.skipped.len(),
            "failures": self.failed,
            "registrations": self.registrations,
            "authorizations": self.authorizations,
            "grants_used": self.grants_used,
            "refreshes": self.refreshes,
            "downstream_renewals": self.downstream_renewals,
            "tool_calls": self.tool_calls,
        })
    }
}
