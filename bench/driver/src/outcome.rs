//! What one benchmark run found: each case's measurements and checks, and the broker's outcomes.

use super::broker;
use super::cases::Case;
use super::memory::Snapshot;
use super::paced;
use super::wrk;
use std::collections::BTreeMap;

/// One check the run makes; any failed check fails the run.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub ok: bool,
}

/// A case's measurements and checks.
pub struct CaseResult {
    pub case: &'static Case,
    pub error: Option<String>,
    pub checks: Vec<Check>,
    pub wrk: Vec<wrk::Run>,
    /// Envoy's CPU time per request in each throughput run, microseconds.
    pub cpu_us_per_request: Vec<f64>,
    /// Signature verifications and requests answered, per throughput run (auth cases).
    pub verifications: Vec<(u64, u64)>,
    pub paced: Vec<paced::Run>,
    pub memory_before: Option<Snapshot>,
    pub memory_after: Option<Snapshot>,
    /// The auth filters' own counters at the end (`jwt_authn`, `rbac`, scopegate's `wasmcustom`).
    pub auth_stats: BTreeMap<String, u64>,
}

impl CaseResult {
    /// A case with nothing measured yet.
    pub fn empty(case: &'static Case) -> CaseResult {
        CaseResult {
            case,
            error: None,
            checks: Vec::new(),
            wrk: Vec::new(),
            cpu_us_per_request: Vec::new(),
            verifications: Vec::new(),
            paced: Vec::new(),
            memory_before: None,
            memory_after: None,
            auth_stats: BTreeMap::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.ok)
    }
}

pub struct Outcome {
    pub cases: Vec<CaseResult>,
    pub brokered: broker::Outcome,
    pub exchange: broker::Outcome,
    pub mass_expiry: broker::Outcome,
    /// The broker binary the broker measurements ran, relative to the repository.
    pub broker_binary: Option<String>,
    pub wasm_bytes: u64,
    pub seconds: f64,
}
