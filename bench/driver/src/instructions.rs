//! `make bench-instructions`: what each case costs Envoy in instructions per request, counted by
//! valgrind (callgrind) rather than timed, so that other load on a shared machine changes nothing.
//!
//! Each case's Envoy runs under callgrind. After a warm-up (long enough for V8 to tier the hot
//! wasm functions up), the counters are zeroed, a fixed number of requests go one after another
//! over one keep-alive connection, and the counters are dumped. What Envoy does while idle in the
//! same time (timers, the filter's ticks) is measured the same way and subtracted. Instructions
//! are not time: a cache miss or a syscall's kernel side counts for nothing here. The timed
//! `make bench` stays the measure of record; this one ranks changes on a noisy machine.

use super::case_auth;
use super::cases::{self, Case, Kind, Pool, LADDER_FLOOR};
use super::envoy as benv;
use super::options::Options;
use super::outcome::CaseResult;
use super::probe;
use super::request::{self, HOST, PUBLIC_URL};
use super::tokens::{mint, Tokens};
use super::upstream::Upstream;
use scopegate_tests::issuer::Issuer;
use scopegate_tests::procs::log_dir;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many requests a case sends before and while counting.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub warmup: usize,
    pub measured: usize,
}

/// Cache hits: enough warm-up for V8's tier-up, enough requests that the per-request figure
/// moves by well under a percent between runs.
pub const HIT: Counts = Counts {
    warmup: 600,
    measured: 1000,
};

/// Misses verify a signature each, hundreds of times slower under valgrind: fewer requests.
pub const MISS: Counts = Counts {
    warmup: 60,
    measured: 150,
};

/// One case's count.
pub struct Measured {
    pub case: &'static Case,
    pub counts: Counts,
    /// Instructions per request, idle subtracted.
    pub per_request: f64,
    pub idle_per_s: f64,
    pub statuses: Vec<(u16, usize)>,
    pub error: Option<String>,
}

fn wrapper(out: &Path) -> Vec<String> {
    [
        "valgrind",
        "--tool=callgrind",
        // V8 writes its JIT code to anonymous memory and patches it.
        "--smc-check=all-non-file",
        "--dump-instr=no",
        "--collect-jumps=no",
        "--cache-sim=no",
        "--branch-sim=no",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!(
        "--callgrind-out-file={}/callgrind.out.%p",
        out.display()
    )])
    .collect()
}

/// Zeroes (`-z`) or dumps (`-d`) the counters of callgrind process `pid`.
fn control(pid: u32, what: &str) -> Result<(), String> {
    let out = Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("callgrind_control: {e} (is valgrind installed? `make valgrind`)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {what} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The `summary:` of callgrind's `n`-th dump of process `pid` in `dir` (instructions since the
/// last zeroing), once the process has finished writing it.
fn summary(dir: &Path, pid: u32, n: u32) -> Result<u64, String> {
    let path = dir.join(format!("callgrind.out.{pid}.{n}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // `totals:` is the dump's last line.
        if text.lines().any(|l| l.starts_with("totals:")) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("summary:"))
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| format!("{}: no summary line", path.display()));
        }
        if Instant::now() > deadline {
            return Err(format!("{}: not written in 60 s", path.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts what `body` costs: zero, run, dump (the `n`-th); returns (instructions, elapsed).
fn count(pid: u32, dir: &Path, n: u32, body: impl FnOnce()) -> Result<(u64, Duration), String> {
    control(pid, "-z")?;
    let t = Instant::now();
    body();
    let elapsed = t.elapsed();
    control(pid, "-d")?;
    Ok((summary(dir, pid, n)?, elapsed))
}

/// A blocking HTTP/1.1 keep-alive connection that sends raw requests and reads whole answers.
struct Connection {
    addr: String,
    stream: Option<TcpStream>,
}

impl Connection {
    fn new(port: u16) -> Connection {
        Connection {
            addr: format!("127.0.0.1:{port}"),
            stream: None,
        }
    }

    /// Sends one request and returns the answer's status (0 on a transport error).
    fn send(&mut self, raw: &[u8]) -> u16 {
        for _ in 0..2 {
            if self.stream.is_none() {
                self.stream = TcpStream::connect(&self.addr).ok();
                if let Some(s) = &self.stream {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = s.set_nodelay(true);
                }
            }
            let Some(s) = self.stream.as_mut() else {
                return 0;
            };
            if s.write_all(raw).is_ok() {
                if let Some((status, keep)) = read_answer(s) {
                    if !keep {
                        self.stream = None;
                    }
                    return status;
                }
            }
            self.stream = None;
        }
        0
    }
}

/// Reads one answer (headers, then a `content-length` or chunked body): its status and whether
/// the connection stays open.
fn read_answer(s: &mut TcpStream) -> Option<(u16, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let keep = header("connection:").is_none_or(|v| v != "close");
    let mut body = buf[head_end..].to_vec();
    if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = s.read(&mut byte).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&byte[..n]);
        }
    } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        while !body.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = s.read(&mut byte).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&byte[..n]);
        }
    }
    Some((status, keep))
}

fn measure(
    case: &'static Case,
    opts: &Options,
    issuer: &Issuer,
    upstream: &Upstream,
    tokens: &Tokens,
) -> Measured {
    let counts = match case.pool {
        Pool::MissEs256 | Pool::MissRs256 => MISS,
        _ => HIT,
    };
    let mut m = Measured {
        case,
        counts,
        per_request: 0.0,
        idle_per_s: 0.0,
        statuses: Vec::new(),
        error: None,
    };
    if let Err(e) = measure_into(&mut m, opts, issuer, upstream, tokens) {
        m.error = Some(e);
    }
    m
}

fn measure_into(
    m: &mut Measured,
    opts: &Options,
    issuer: &Issuer,
    upstream: &Upstream,
    tokens: &Tokens,
) -> Result<(), String> {
    let case = m.case;
    // Per driver process, so two counted runs (say, two modules) can share the machine.
    let pid = std::process::id();
    let dir = log_dir(&format!("bench-instructions/{}-{pid}", case.id));
    for old in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if old
            .file_name()
            .to_string_lossy()
            .starts_with("callgrind.out.")
        {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let port = scopegate_tests::free_port();
    let boot = case_auth::case_bootstrap(case, opts, issuer, upstream.port, port)?;
    let envoy = benv::start_under(
        &format!("instructions-{}-{pid}", case.id),
        &boot,
        port,
        &wrapper(&dir),
        // V8 compiling the module under valgrind takes minutes on a shared machine.
        Duration::from_secs(1800),
    )?;
    let mut checks = CaseResult::empty(case);
    probe::probe_all(case, &envoy, &tokens.probes, &mut checks)?;
    if let Some(bad) = checks.checks.iter().find(|c| !c.ok) {
        return Err(bad.what.clone());
    }
    let pid = envoy.proc.pid();
    let pool = &tokens.pools[case.pool.name()];
    let raw: Vec<Vec<u8>> = pool
        .iter()
        .take(m.counts.warmup + m.counts.measured)
        .map(|t| request::raw(HOST, Some(t), case.shape))
        .collect();
    if raw.is_empty() {
        return Err("no tokens".into());
    }
    let mut conn = Connection::new(port);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..m.counts.warmup {
        conn.send(&raw[i % raw.len()]);
    }
    let (idle, idle_elapsed) = count(pid, &dir, 1, || std::thread::sleep(Duration::from_secs(3)))?;
    m.idle_per_s = idle as f64 / idle_elapsed.as_secs_f64();
    let start = m.counts.warmup;
    let (busy, elapsed) = count(pid, &dir, 2, || {
        for i in 0..m.counts.measured {
            let status = conn.send(&raw[(start + i) % raw.len()]);
            *statuses.entry(status).or_insert(0) += 1;
        }
    })?;
    m.statuses = statuses.into_iter().collect();
    let background = m.idle_per_s * elapsed.as_secs_f64();
    m.per_request = (busy as f64 - background).max(0.0) / m.counts.measured as f64;
    let ok = m.statuses.iter().all(|(s, _)| *s == 200);
    if !ok {
        return Err(format!("answers other than 200: {:?}", m.statuses));
    }
    drop(envoy);
    Ok(())
}

/// Every selected case except the brokered one (it needs the broker stack; `make bench` times it).
pub fn selected(opts: &Options) -> Vec<&'static Case> {
    cases::all()
        .filter(|c| c.kind != Kind::Brokered && opts.selects(c.id))
        .collect()
}

pub fn run_all(opts: &Options) -> Vec<Measured> {
    let selected = selected(opts);
    println!("==> upstream and token issuer");
    let upstream = Upstream::start();
    let issuer = Issuer::start();
    let resource = format!("{PUBLIC_URL}{}", request::PATH);
    let needed: Vec<Pool> = selected.iter().map(|c| c.pool).collect();
    let mut o = opts.clone();
    o.miss_tokens = MISS.warmup + MISS.measured + 10;
    println!("==> minting tokens (aud {resource})");
    let tokens = mint(&issuer, &o, &resource, &needed);
    let mut out = Vec::new();
    for case in selected {
        let t = Instant::now();
        println!("==> {}: Envoy under callgrind", case.id);
        let m = measure(case, &o, &issuer, &upstream, &tokens);
        match &m.error {
            None => println!(
                "    {:<24} {:>10.0} instructions/request  (idle {:.0}/s, {:.0} s)",
                case.id,
                m.per_request,
                m.idle_per_s,
                t.elapsed().as_secs_f64()
            ),
            Some(e) => println!("    {:<24} FAILED: {e}", case.id),
        }
        out.push(m);
    }
    out
}

/// The table: per case, instructions per request and what it adds to Envoy alone and to the
/// ladder's SDK floor.
pub fn report(results: &[Measured]) -> (String, Value) {
    let find = |id: &str| {
        results
            .iter()
            .find(|m| m.case.id == id && m.error.is_none())
            .map(|m| m.per_request)
    };
    let base = find(cases::FLOOR);
    let floor = find(LADDER_FLOOR);
    let mut md = String::from(
        "| # | case | instructions/request | added vs Envoy alone | added vs L1 (SDK floor) | vs Envoy alone |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut rows = Vec::new();
    for m in results {
        let cell =
            |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:+.0}", m.per_request - v));
        if let Some(e) = &m.error {
            md.push_str(&format!(
                "| {} | {} | failed: {e} | | | |\n",
                m.case.number, m.case.label
            ));
            rows.push(json!({"id": m.case.id, "error": e}));
            continue;
        }
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}x", b / m.per_request));
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} |\n",
            m.case.number,
            m.case.label,
            m.per_request,
            cell(base),
            cell(floor),
            ratio
        ));
        rows.push(json!({
            "id": m.case.id, "number": m.case.number, "label": m.case.label,
            "instructions_per_request": m.per_request.round(),
            "added_vs_envoy": base.map(|b| (m.per_request - b).round()),
            "added_vs_floor": floor.map(|f| (m.per_request - f).round()),
            "warmup_requests": m.counts.warmup, "measured_requests": m.counts.measured,
            "idle_instructions_per_s": m.idle_per_s.round(),
        }));
    }
    (md, json!({"cases": rows}))
}

/// Where the results go: the repository's copy for a full run of the default module (`make
/// bench-instructions`), target/ for anything else.
pub fn results_path(opts: &Options) -> PathBuf {
    if opts.custom_wasm || opts.only.is_some() {
        scopegate_tests::repo_root().join("target/bench/instructions.json")
    } else {
        scopegate_tests::repo_root().join("bench/results/instructions.json")
    }
}
