//! Closed-loop throughput with `wrk` (Debian's package): a fixed number of connections sending as
//! fast as answers come back, cycling through pre-formatted requests (one token each) in order.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Loads NUL-separated raw requests and sends them in turn, continuing from an offset so that
/// consecutive runs never resend a token early; reports its summary as one JSON line.
pub const SCRIPT: &str = r#"-- scopegate bench: args = <request file> <start offset>
local reqs = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while true do
    local z = string.find(data, "\0", pos, true)
    if not z then break end
    n = n + 1
    reqs[n] = string.sub(data, pos, z - 1)
    pos = z + 1
  end
  assert(n > 0, "no requests in " .. args[1])
  i = tonumber(args[2] or "0") % n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"non_2xx":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"#;

/// One wrk run's summary.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
    pub timeouts: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

/// `wrk --version`'s first line, or why there is none.
pub fn version() -> Result<String, String> {
    let out = Command::new("wrk").arg("--version").output().map_err(|e| {
        format!("wrk is not installed ({e}): `apt-get install -y wrk`, or run `make bench`")
    })?;
    // wrk prints its version (and usage) and exits 1.
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    let first = text.lines().next().unwrap_or("wrk");
    Ok(first.split(" [").next().unwrap_or(first).trim().to_string())
}

/// Runs wrk against `url` for `duration` with `connections` on one thread.
pub fn run(
    url: &str,
    script: &Path,
    requests: &Path,
    offset: u64,
    connections: u32,
    duration: Duration,
) -> Result<Run, String> {
    let secs = duration.as_secs_f64().max(1.0).round() as u64;
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
        ])
        .args(["--timeout", "5s", "--latency", "-s"])
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(requests)
        .arg(offset.to_string())
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .ok_or_else(|| {
            format!(
                "wrk printed no summary ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("wrk summary `{line}`: {e}"))?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let seconds = n("duration_us") / 1e6;
    Ok(Run {
        requests: n("requests") as u64,
        seconds,
        rps: if seconds > 0.0 {
            n("requests") / seconds
        } else {
            0.0
        },
        socket_errors: (n("connect_errors") + n("read_errors") + n("write_errors")) as u64,
        non_2xx: n("non_2xx") as u64,
        timeouts: n("timeouts") as u64,
        p50_us: n("p50_us"),
        p90_us: n("p90_us"),
        p99_us: n("p99_us"),
        mean_us: n("mean_us"),
        max_us: n("max_us"),
    })
}
