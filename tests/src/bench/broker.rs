//! Hooks for the broker's numbers: case 5 (the brokered request path, token exchange cached),
//! token-exchange throughput and p99, and 1,000 grants expiring together causing exactly 1,000
//! downstream refreshes. None of them is measured yet; each says so in the run's output and files.
//!
//! To fill one in: replace its body with the measurement and return `Outcome::Measured(json)`;
//! the driver prints it, stores it in the results and counts it as passed (or `Failed`).

use crate::repo_root;
use serde_json::{json, Value};
use std::path::PathBuf;

pub const BINARIES: [&str; 2] = [
    "target/release/scopegate-broker",
    "target/debug/scopegate-broker",
];

/// What a broker measurement came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Value),
    Failed(String),
    /// Not measured, and why (printed as `not yet measured: <why>`).
    NotMeasured(String),
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Measured(v) => json!({"status": "measured", "result": v}),
            Outcome::Failed(e) => json!({"status": "failed", "reason": e}),
            Outcome::NotMeasured(r) => json!({"status": "not_measured", "reason": r}),
        }
    }
}

/// The built broker, release build preferred.
pub fn binary() -> Option<PathBuf> {
    BINARIES
        .iter()
        .map(|p| repo_root().join(p))
        .find(|p| p.exists())
}

fn pending(what: &str) -> Outcome {
    match binary() {
        None => Outcome::NotMeasured("broker not built".into()),
        Some(bin) => Outcome::NotMeasured(format!(
            "the bench harness does not drive the broker yet ({} exists; {what} is to be \
             written in tests/src/bench/broker.rs)",
            bin.strip_prefix(repo_root()).unwrap_or(&bin).display()
        )),
    }
}

/// Case 5: Envoy with the filter in broker mode, the client's token exchanged (and the exchange
/// cached) for the downstream credential, same upstream and load as cases 1-4.
pub fn brokered_case() -> Outcome {
    pending("case 5, the brokered path")
}

/// RFC 8693 token exchanges per second on the broker's internal listener, and their p99.
pub fn exchange_throughput() -> Outcome {
    pending("token-exchange throughput and p99")
}

/// 1,000 grants expiring at once must cause exactly 1,000 downstream refreshes (single-flight).
pub fn mass_expiry() -> Outcome {
    pending("the 1,000-grant simultaneous expiry")
}
