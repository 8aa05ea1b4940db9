//! The official MCP SDK clients in `tests/clients/` run as real hosts through a scopegate stack,
//! and the checks on what crossed the wire (their wire logs, the servers' `/_seen`, Envoy's log).
//!
//! A client run gets a JSON config file (built in [`run`]), writes one JSON object per
//! HTTP exchange to its wire log (tokens, codes and secrets replaced by a short SHA-256), and prints
//! a JSON summary as its last stdout line. The summary says what the host saw; every check that
//! matters reads the wire log and the other side instead.

mod check;
mod host;
mod matrix;

pub use check::{check, nulls, Outcome};
pub use host::{
    cells, require_installed, run, Cell, Protocol, Registration, Run, Sdk, Target, CLIENTS_DIR,
    PYTHON, STEP_UP_CHALLENGE, SUPPORT_SCOPES,
};
pub use matrix::run_matrix;
