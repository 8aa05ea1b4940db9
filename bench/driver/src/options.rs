//! What one benchmark run measures and how long: the full run, `--quick`, and `--only`.

use super::cases::LADDER_GROUP;
use scopegate_tests::repo_root;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Where `make bench` puts the ladder's builds.
pub const LADDER_WASM: &str = "target/wasm32-wasip1/release/scopegate_ladder.wasm";
pub const LADDER_STRIPPED_WASM: &str =
    "target/wasm32-wasip1/release/scopegate_ladder_floor_exports.wasm";

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub connections: u32,
    pub warmup: Duration,
    pub reps: usize,
    pub duration: Duration,
    pub rate: f64,
    pub latency_warmup: Duration,
    pub latency_reps: usize,
    pub latency_duration: Duration,
    pub hit_tokens: usize,
    pub miss_tokens: usize,
    pub cache_entries: usize,
    /// Grants authorized for case 5 and the exchange throughput (as many as the hit pool's tokens).
    pub grants: usize,
    /// Grants expiring together in the broker's mass-expiry check (20 in `--quick`).
    pub expiry_grants: usize,
    pub only: Option<Vec<String>>,
    /// The filter under test: the repository's build unless `--wasm` names another (to compare a
    /// candidate build against the current one with the same harness).
    pub wasm: PathBuf,
    pub custom_wasm: bool,
    /// The cost ladder's module (`bench/ladder`) and its build with the unused exports removed.
    pub ladder_wasm: PathBuf,
    pub ladder_stripped_wasm: PathBuf,
}

impl Options {
    pub fn full() -> Options {
        Options {
            quick: false,
            connections: 16,
            warmup: Duration::from_secs(3),
            reps: 5,
            duration: Duration::from_secs(10),
            rate: 200.0,
            latency_warmup: Duration::from_secs(2),
            latency_reps: 3,
            latency_duration: Duration::from_secs(10),
            hit_tokens: 100,
            miss_tokens: 40_000,
            cache_entries: 10_000,
            grants: 100,
            expiry_grants: 1_000,
            only: None,
            wasm: repo_root().join(scopegate_tests::envoy::WASM),
            custom_wasm: false,
            ladder_wasm: repo_root().join(LADDER_WASM),
            ladder_stripped_wasm: repo_root().join(LADDER_STRIPPED_WASM),
        }
    }

    /// Each case briefly, once: checks the harness, measures nothing worth keeping.
    pub fn quick() -> Options {
        Options {
            quick: true,
            warmup: Duration::ZERO,
            reps: 1,
            duration: Duration::from_secs(1),
            rate: 100.0,
            latency_warmup: Duration::ZERO,
            latency_reps: 1,
            latency_duration: Duration::from_secs(1),
            miss_tokens: 2_000,
            grants: 20,
            expiry_grants: 20,
            ..Options::full()
        }
    }

    /// Whether `--only` (if given) names `id` (a case or one of [`super::run::BROKER_IDS`]); `ladder`
    /// names every rung.
    pub fn selects(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|o| {
            o.iter()
                .any(|x| x == id || (x == LADDER_GROUP && id.starts_with("ladder-")))
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "mode": if self.quick { "quick" } else { "full" },
            "envoy_workers": 1,
            "connections": self.connections,
            "throughput": {"warmup_s": self.warmup.as_secs_f64(), "reps": self.reps,
                           "duration_s": self.duration.as_secs_f64(), "load_generator": "wrk -t1"},
            "latency": {"rate_rps": self.rate, "warmup_s": self.latency_warmup.as_secs_f64(),
                        "reps": self.latency_reps, "duration_s": self.latency_duration.as_secs_f64(),
                        "load_generator": "paced open-loop client (bench/driver/src/paced.rs)"},
            "hit_tokens": self.hit_tokens,
            "miss_tokens": self.miss_tokens,
            "token_cache_entries": self.cache_entries,
            "brokered_grants": self.grants,
            "expiry_grants": self.expiry_grants,
        })
    }
}
