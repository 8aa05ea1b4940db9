//! The benchmark harness behind `make bench` and `make bench-quick` (driver: `src/main.rs`):
//! what scopegate costs on the request path against Envoy alone and Envoy's native `jwt_authn`.
//! BENCHMARKS.md at the repository root explains the method and the latest numbers. The
//! processes (Envoy, the broker, the issuer) start through the test harness (`scopegate-tests`).

pub mod broker;
pub mod budgeted;
pub mod case_auth;
pub mod cases;
pub mod checks;
pub mod envoy;
pub mod instructions;
pub mod memory;
pub mod options;
pub mod outcome;
pub mod paced;
pub mod probe;
pub mod report;
pub mod request;
pub mod run;
pub mod stats;
pub mod tokens;
pub mod upstream;
pub mod wrk;
