//! The walkthrough client (`target/debug/scopegate-walkthrough`, examples/two-servers/client) run
//! as a child process against a gateway, its output echoed or kept, its final summary parsed.

use crate::built;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub const BIN: &str = "target/debug/scopegate-walkthrough";

/// Document tweaks the walkthrough's expiry steps need: short client access tokens.
pub const ACCESS_TTL_S: u64 = 5;
/// The downstream access-token lifetime for a walkthrough stack.
pub const DOWNSTREAM_TTL_S: u64 = 20;

pub struct Outcome {
    pub success: bool,
    /// The `WALKTHROUGH {json}` line: passed, failed, failures, registrations, authorizations,
    /// grants_used, refreshes, downstream_renewals, tool_calls.
    pub summary: Value,
    pub output: String,
}

/// Runs the walkthrough against `gateway` (Envoy's public URL); `echo` prints its lines live.
pub fn run(gateway: &str, max_wait: u64, echo: bool) -> Outcome {
    let bin = built(
        BIN,
        "cargo build -p scopegate-example-client (or make build)",
    );
    let mut child = Command::new(bin)
        .args(["--gateway", gateway, "--max-wait", &max_wait.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scopegate-walkthrough");
    let mut output = String::new();
    let mut summary = Value::Null;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("WALKTHROUGH ") {
                summary = serde_json::from_str(json).unwrap_or(Value::Null);
            } else if echo {
                println!("{line}");
            }
            output.push_str(&line);
            output.push('\n');
        }
    }
    let status = child.wait().expect("wait for scopegate-walkthrough");
    Outcome {
        success: status.success(),
        summary,
        output,
    }
}
