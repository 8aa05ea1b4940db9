//! One benchmark run: tokens, one Envoy per case (all started up front, idle until their turn),
//! checks that the auth is really on, throughput rounds with wrk, latency rounds at a fixed rate,
//! memory before and after, and the broker hooks.
//!
//! Repetitions are interleaved (round 1 of every case, then round 2, order reversed on odd
//! rounds), so that a burst of load from elsewhere on a shared machine lands on several cases
//! instead of skewing one.

use super::broker;
use super::cases::{Case, Kind, Pool, Probe, CASES};
use super::envoy::{self as benv, Auth, STAT_PREFIX};
use super::memory::Snapshot;
use super::paced;
use super::request::{self, BODY};
use super::stats::cpu_ns;
use super::upstream::Upstream;
use super::wrk;
use crate::envoy::Envoy;
use crate::issuer::Issuer;
use crate::{now, repo_root};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The gateway's public origin. The filter never compares it with the request's Host, so every
/// case's Envoy (each on its own port) accepts the same tokens.
pub const PUBLIC_URL: &str = "https://mcp.example.com";
pub const HOST: &str = "mcp.example.com";

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
    pub only: Option<Vec<String>>,
    /// The filter under test: the repository's build unless `--wasm` names another (to compare a
    /// candidate build against the current one with the same harness).
    pub wasm: PathBuf,
    pub custom_wasm: bool,
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
            only: None,
            wasm: repo_root().join(crate::envoy::WASM),
            custom_wasm: false,
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
            ..Options::full()
        }
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
                        "load_generator": "paced open-loop client (tests/src/bench/paced.rs)"},
            "hit_tokens": self.hit_tokens,
            "miss_tokens": self.miss_tokens,
            "token_cache_entries": self.cache_entries,
        })
    }
}

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
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.ok)
    }
}

pub struct Outcome {
    pub cases: Vec<CaseResult>,
    pub brokered: broker::Outcome,
    pub exchange: broker::Outcome,
    pub mass_expiry: broker::Outcome,
    pub wasm_bytes: u64,
    pub seconds: f64,
}

struct Tokens {
    pools: BTreeMap<&'static str, Vec<String>>,
    probes: Vec<Probe>,
}

fn claims(issuer: &Issuer, aud: &str, scope: &str, i: usize, tag: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer.url, "sub": format!("bench-user-{i}"), "aud": aud, "scope": scope,
        "client_id": "bench-client", "iat": now, "exp": now + 4 * 3600,
        "jti": format!("{tag}-{i}-{now}"),
    })
}

fn mint(issuer: &Issuer, opts: &Options, resource: &str, needed: &[Pool]) -> Tokens {
    let scope = "tickets.read accounts.read";
    let many = |kid: &str, n: usize, tag: &str| {
        let t = Instant::now();
        let c: Vec<Value> = (0..n)
            .map(|i| claims(issuer, resource, scope, i, tag))
            .collect();
        let tokens = issuer.sign_many(kid, c);
        println!("    {n} {kid} tokens in {:.1} s", t.elapsed().as_secs_f64());
        tokens
    };
    // The hit pool always: its first token is the probes' valid one.
    let mut pools = BTreeMap::new();
    pools.insert(Pool::Hit.name(), many("es256", opts.hit_tokens, "hit"));
    if needed.contains(&Pool::MissEs256) {
        pools.insert(
            Pool::MissEs256.name(),
            many("es256", opts.miss_tokens, "mes"),
        );
    }
    if needed.contains(&Pool::MissRs256) {
        pools.insert(
            Pool::MissRs256.name(),
            many("rs256", opts.miss_tokens, "mrs"),
        );
    }

    let valid = pools[Pool::Hit.name()][0].clone();
    let mut forged = valid.clone();
    if let Some(dot) = forged.rfind('.') {
        let sig: String = forged[dot + 1..].chars().rev().collect();
        forged.replace_range(dot + 1.., &sig);
    }
    let wrong_aud = issuer.sign(
        "es256",
        claims(issuer, &format!("{PUBLIC_URL}/other/mcp"), scope, 0, "aud"),
    );
    let mut expired = claims(issuer, resource, scope, 0, "exp");
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    let expired = issuer.sign("es256", expired);
    let no_scope = issuer.sign("es256", claims(issuer, resource, "accounts.read", 0, "scp"));
    let probe = |what, token, sg, ja| Probe {
        what,
        token,
        expect_scopegate: sg,
        expect_jwt_authn: ja,
    };
    Tokens {
        pools,
        probes: vec![
            probe("valid token", Some(valid), 200, 200),
            probe("no token", None, 401, 401),
            probe("forged signature", Some(forged), 401, 401),
            // jwt_authn answers a wrong audience with 403; scopegate with 401 invalid_token.
            probe("wrong audience", Some(wrong_aud), 401, 403),
            probe("expired", Some(expired), 401, 401),
            probe("without the required scope", Some(no_scope), 403, 403),
        ],
    }
}

fn send_probe(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
) -> Result<u16, String> {
    let mut req = client
        .post(url)
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(BODY);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Raw requests, one per token, shared with the paced client.
type Requests = Arc<Vec<Vec<u8>>>;

/// A case's Envoy, between rounds.
struct Live {
    envoy: Envoy,
    requests_file: PathBuf,
    requests: Requests,
    /// Next token index: runs continue where the previous one stopped, so no token comes back
    /// before the whole pool has gone by (which is what makes every miss a miss).
    offset: u64,
}

fn counters(envoy: &Envoy) -> [u64; 3] {
    ["2xx", "4xx", "5xx"].map(|c| {
        envoy
            .stat(&format!("http.{STAT_PREFIX}.downstream_rq_{c}"))
            .unwrap_or(0)
    })
}

/// Starts one case's Envoy, waits until its auth is ready, and sends the probes.
fn bring_up(
    case: &'static Case,
    opts: &Options,
    issuer: &Issuer,
    upstream: &Upstream,
    tokens: &Tokens,
    result: &mut CaseResult,
) -> Result<Envoy, String> {
    let resource = format!("{PUBLIC_URL}{}", request::PATH);
    let auth = match case.kind {
        Kind::NoAuth => Auth::None,
        Kind::Scopegate { per_tool } => Auth::Scopegate {
            doc: benv::scopegate_doc(PUBLIC_URL, &issuer.url, per_tool, opts.cache_entries)
                .to_string(),
            wasm: opts.wasm.clone(),
        },
        Kind::JwtAuthn => Auth::JwtAuthn {
            issuer: issuer.url.clone(),
            audience: resource,
        },
    };
    let port = crate::free_port();
    let admin = benv::admin_port();
    let boot = benv::bootstrap(
        &auth,
        port,
        admin,
        upstream.port,
        issuer.port,
        opts.cache_entries,
    );
    let envoy = benv::start(case.id, &boot, port, admin)?;
    let url = envoy.url(request::PATH);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    // Until the filter has its keys it answers 503.
    let valid = tokens.probes[0].token.as_deref();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match send_probe(&client, &url, valid) {
            Ok(503) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => break,
        }
    }
    for p in &tokens.probes {
        let want = p.expected(case.kind);
        let got = send_probe(&client, &url, p.token.as_deref());
        let ok = got == Ok(want);
        result.checks.push(Check {
            what: format!("probe `{}`: want {want}, got {}", p.what, show(&got)),
            ok,
        });
    }
    Ok(envoy)
}

/// What the auth's own counters say: signature verifications (scopegate's
/// `scopegate.jwt.verified`, `jwt_authn`'s `jwt_cache_miss`) and `jwt_authn`'s cache hits.
#[derive(Debug, Clone, Copy, Default)]
struct AuthCounters {
    verified: Option<u64>,
    native_hits: u64,
}

impl AuthCounters {
    fn read(envoy: &Envoy, kind: Kind) -> AuthCounters {
        match kind {
            Kind::NoAuth => AuthCounters::default(),
            // Defined on first use: absent until the first verification.
            Kind::Scopegate { .. } => AuthCounters {
                verified: Some(envoy.stat(SCOPEGATE_VERIFIED).unwrap_or(0)),
                native_hits: 0,
            },
            Kind::JwtAuthn => AuthCounters {
                verified: envoy.stat(&format!("http.{STAT_PREFIX}.jwt_authn.jwt_cache_miss")),
                native_hits: envoy
                    .stat(&format!("http.{STAT_PREFIX}.jwt_authn.jwt_cache_hit"))
                    .unwrap_or(0),
            },
        }
    }
}

/// scopegate's count of signatures it verified (as opposed to cache hits and tokens another
/// worker verified).
const SCOPEGATE_VERIFIED: &str = "wasmcustom.scopegate.jwt.verified";

/// Whether a run kept its case's premise, from the auth's own counters, and what they said.
/// Hit cases: at most one verification per token of the pool. Miss cases (when the pool
/// outnumbers the cache): a verification for every answered request. scopegate also keeps a
/// process-wide table of verified tokens (4,096 slots, last writer wins), which remembers a token
/// that comes back after N others with probability about e^(-N/4096): 0.8% at N = 20,000,
/// 0.006% at the full run's 40,000. So scopegate's misses must be at least 99% verifications,
/// and `jwt_authn`'s LRU cache must not hit at all.
fn premise(
    case: &Case,
    opts: &Options,
    before: AuthCounters,
    after: AuthCounters,
    answered: u64,
) -> (bool, String, Option<u64>) {
    if case.kind == Kind::NoAuth {
        return (true, String::new(), None);
    }
    let verified = match (before.verified, after.verified) {
        (b, Some(a)) => a.saturating_sub(b.unwrap_or(0)),
        _ => {
            return (
                true,
                ", verifications not counted by this build".into(),
                None,
            )
        }
    };
    let note = format!(", signature verifications {verified}");
    let (ok, note) = match case.pool {
        Pool::Hit => (verified <= opts.hit_tokens as u64, note),
        _ if opts.miss_tokens <= opts.cache_entries => (
            true,
            format!("{note} (pool within the cache: not all misses)"),
        ),
        _ => {
            let enough = verified * 100 >= answered * 99;
            let hits = after.native_hits.saturating_sub(before.native_hits);
            if case.kind == Kind::JwtAuthn {
                (
                    enough && hits == 0,
                    format!("{note}, native cache hits {hits}"),
                )
            } else {
                (enough, note)
            }
        }
    };
    (ok, note, Some(verified))
}

/// Counters of the auth filters, by name.
fn auth_stats(admin_port: u16) -> BTreeMap<String, u64> {
    reqwest::blocking::get(format!(
        "http://127.0.0.1:{admin_port}/stats?filter=jwt_authn|rbac|wasmcustom"
    ))
    .and_then(|r| r.text())
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.split_once(": "))
    .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
    .collect()
}

/// The last check's text when it failed, for the progress line.
fn failed_note(r: &CaseResult) -> String {
    match r.checks.last() {
        Some(c) if !c.ok => format!("\n      CHECK FAILED: {}", c.what),
        _ => String::new(),
    }
}

fn show(r: &Result<u16, String>) -> String {
    match r {
        Ok(s) => s.to_string(),
        Err(e) => format!("error ({e})"),
    }
}

fn order(n: usize, round: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// Runs every selected case, then the broker hooks.
pub fn run(opts: &Options, wasm_bytes: u64) -> Outcome {
    let started = Instant::now();
    let selected: Vec<&'static Case> = CASES
        .iter()
        .filter(|c| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|x| x == c.id))
        })
        .collect();
    println!("==> upstream and token issuer");
    let upstream = Upstream::start();
    let issuer = Issuer::start();
    let resource = format!("{PUBLIC_URL}{}", request::PATH);
    println!("==> minting tokens (aud {resource})");
    let needed: Vec<Pool> = selected.iter().map(|c| c.pool).collect();
    let tokens = mint(&issuer, opts, &resource, &needed);
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let script = dir.join("rotate.lua");
    std::fs::write(&script, wrk::SCRIPT).expect("write wrk script");
    let mut files: BTreeMap<&str, (PathBuf, Requests)> = BTreeMap::new();
    for (pool, toks) in &tokens.pools {
        let path = dir.join(format!("requests-{pool}.bin"));
        request::write_request_file(&path, HOST, toks);
        let raw: Vec<Vec<u8>> = toks.iter().map(|t| request::raw(HOST, Some(t))).collect();
        files.insert(pool, (path, Arc::new(raw)));
    }

    println!("==> starting one Envoy per case (one worker each) and probing its auth");
    let mut results: Vec<CaseResult> = Vec::new();
    let mut live: Vec<Option<Live>> = Vec::new();
    for case in &selected {
        let mut r = CaseResult {
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
        };
        match bring_up(case, opts, &issuer, &upstream, &tokens, &mut r) {
            Ok(envoy) => {
                r.memory_before = Some(Snapshot::take(envoy.proc.pid(), envoy.admin_port));
                let (file, raw) = &files[case.pool.name()];
                let failed: Vec<&str> = r
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.what.as_str())
                    .collect();
                println!(
                    "    {:<22} port {:<5} probes {}",
                    case.id,
                    envoy.port,
                    if failed.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("FAILED: {}", failed.join("; "))
                    }
                );
                live.push(Some(Live {
                    envoy,
                    requests_file: file.clone(),
                    requests: Arc::clone(raw),
                    offset: 0,
                }));
            }
            Err(e) => {
                println!("    {:<22} FAILED to start: {e}", case.id);
                r.error = Some(e);
                live.push(None);
            }
        }
        results.push(r);
    }

    let n = results.len();
    let wrk_run = |l: &mut Live, r: &mut CaseResult, d: Duration, keep: bool, tag: &str| {
        let before = counters(&l.envoy);
        let auth0 = AuthCounters::read(&l.envoy, r.case.kind);
        let served = upstream.served();
        let cpu = cpu_ns(l.envoy.proc.pid());
        let url = l.envoy.url(request::PATH);
        match wrk::run(
            &url,
            &script,
            &l.requests_file,
            l.offset,
            opts.connections,
            d,
        ) {
            Ok(run) => {
                let cpu = cpu_ns(l.envoy.proc.pid()).saturating_sub(cpu);
                let after = counters(&l.envoy);
                let served = upstream.served() - served;
                // Requests answered, plus at most one in flight per connection when wrk stopped,
                // plus the one `request()` call wrk makes to check the script before sending.
                l.offset += run.requests + u64::from(opts.connections) + 1;
                let bad = [after[1] - before[1], after[2] - before[2]];
                let (premise_ok, premise, verified) = premise(
                    r.case,
                    opts,
                    auth0,
                    AuthCounters::read(&l.envoy, r.case.kind),
                    run.requests,
                );
                let ok = run.requests > 0
                    && run.non_2xx == 0
                    && run.socket_errors == 0
                    && run.timeouts == 0
                    && bad == [0, 0]
                    && served >= run.requests
                    && premise_ok;
                r.checks.push(Check {
                    what: format!(
                        "{tag}: {} requests, non-2xx {}, socket errors {}, timeouts {}, Envoy 4xx/5xx {}/{}, upstream served {}{premise}",
                        run.requests, run.non_2xx, run.socket_errors, run.timeouts, bad[0], bad[1], served
                    ),
                    ok,
                });
                println!(
                    "    {tag:<10} {:<22} {:>8.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us  cpu {:>6.1} us/req{}",
                    r.case.id,
                    run.rps,
                    run.p50_us,
                    run.p99_us,
                    cpu as f64 / 1e3 / run.requests.max(1) as f64,
                    failed_note(r)
                );
                if keep {
                    r.cpu_us_per_request
                        .push(cpu as f64 / 1e3 / run.requests.max(1) as f64);
                    if let Some(v) = verified {
                        r.verifications.push((v, run.requests));
                    }
                    r.wrk.push(run);
                }
            }
            Err(e) => r.checks.push(Check {
                what: format!("{tag}: {e}"),
                ok: false,
            }),
        }
    };
    let paced_run = |l: &mut Live, r: &mut CaseResult, d: Duration, keep: bool, tag: &str| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], l.envoy.port));
        let auth0 = AuthCounters::read(&l.envoy, r.case.kind);
        let run = paced::run(
            addr,
            Arc::clone(&l.requests),
            l.offset,
            opts.rate,
            opts.connections,
            d,
        );
        l.offset += run.sent;
        let only_200 = run.statuses.keys().all(|s| *s == 200);
        let answered = run.latencies_us.len() as u64;
        let (premise_ok, premise, _) = premise(
            r.case,
            opts,
            auth0,
            AuthCounters::read(&l.envoy, r.case.kind),
            answered,
        );
        let ok = run.sent > 0 && run.errors == 0 && only_200 && premise_ok;
        r.checks.push(Check {
            what: format!(
                "{tag}: {} sent at {} req/s, statuses {:?}, errors {}{premise}",
                run.sent, opts.rate, run.statuses, run.errors
            ),
            ok,
        });
        println!(
            "    {tag:<10} {:<22} {:>8.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us{}",
            r.case.id,
            run.achieved_rate(),
            run.percentile(50.0),
            run.percentile(99.0),
            failed_note(r)
        );
        if keep {
            r.paced.push(run);
        }
    };

    if !opts.warmup.is_zero() {
        println!("==> warm-up, {} s per case", opts.warmup.as_secs());
        for i in 0..n {
            if let Some(l) = live[i].as_mut() {
                wrk_run(l, &mut results[i], opts.warmup, false, "warm-up");
            }
        }
    }
    for round in 0..opts.reps {
        println!(
            "==> throughput round {}/{}: wrk, {} connections, {} s per case",
            round + 1,
            opts.reps,
            opts.connections,
            opts.duration.as_secs()
        );
        for i in order(n, round) {
            if let Some(l) = live[i].as_mut() {
                wrk_run(
                    l,
                    &mut results[i],
                    opts.duration,
                    true,
                    &format!("round {}", round + 1),
                );
            }
        }
    }
    if !opts.latency_warmup.is_zero() {
        println!("==> latency warm-up at {} req/s", opts.rate);
        for i in 0..n {
            if let Some(l) = live[i].as_mut() {
                paced_run(l, &mut results[i], opts.latency_warmup, false, "warm-up");
            }
        }
    }
    for round in 0..opts.latency_reps {
        println!(
            "==> latency round {}/{}: {} req/s over {} connections, {} s per case",
            round + 1,
            opts.latency_reps,
            opts.rate,
            opts.connections,
            opts.latency_duration.as_secs()
        );
        for i in order(n, round) {
            if let Some(l) = live[i].as_mut() {
                paced_run(
                    l,
                    &mut results[i],
                    opts.latency_duration,
                    true,
                    &format!("round {}", round + 1),
                );
            }
        }
    }
    for (i, l) in live.iter().enumerate() {
        if let Some(l) = l {
            results[i].memory_after = Some(Snapshot::take(l.envoy.proc.pid(), l.envoy.admin_port));
            results[i].auth_stats = auth_stats(l.envoy.admin_port);
        }
    }
    drop(live);

    println!("==> broker");
    let brokered = broker::brokered_case();
    let exchange = broker::exchange_throughput();
    let mass_expiry = broker::mass_expiry();
    for (what, o) in [
        ("case 5 (brokered path, exchange cached)", &brokered),
        ("broker token-exchange throughput and p99", &exchange),
        ("1,000 grants expiring together", &mass_expiry),
    ] {
        match o {
            broker::Outcome::NotMeasured(why) => println!("    {what}: not yet measured: {why}"),
            broker::Outcome::Failed(e) => println!("    {what}: FAILED: {e}"),
            broker::Outcome::Measured(v) => println!("    {what}: {v}"),
        }
    }
    Outcome {
        cases: results,
        brokered,
        exchange,
        mass_expiry,
        wasm_bytes,
        seconds: started.elapsed().as_secs_f64(),
    }
}
