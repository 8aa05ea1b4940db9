//! One benchmark run: tokens, one Envoy per case (all started up front, idle until their turn),
//! checks that the auth is really on, throughput rounds with wrk, latency rounds at a fixed rate,
//! memory before and after, and the broker hooks.
//!
//! Repetitions are interleaved (round 1 of every case, then round 2, order reversed on odd
//! rounds), so that a burst of load from elsewhere on a shared machine lands on several cases
//! instead of skewing one.

use super::broker;
use super::cases::{self, Case, Kind, Pool, Probe, LADDER_FLOOR_EXPORTS};
use super::envoy::{self as benv, Auth, STAT_PREFIX};
use super::memory::Snapshot;
pub use super::options::Options;
use super::paced;
use super::request::{self, Shape};
use super::stats::cpu_ns;
use super::upstream::Upstream;
use super::wrk;
use scopegate_tests::envoy::Envoy;
use scopegate_tests::issuer::Issuer;
use scopegate_tests::{now, repo_root};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The gateway's public origin. The filter never compares it with the request's Host, so every
/// case's Envoy (each on its own port) accepts the same tokens.
pub const PUBLIC_URL: &str = "https://mcp.example.com";
pub const HOST: &str = "mcp.example.com";

/// `--only` names for the broker measurements that are not cases of the table.
pub const BROKER_EXCHANGE: &str = "broker-exchange";
pub const BROKER_EXPIRY: &str = "broker-expiry";
pub const BROKER_IDS: [&str; 2] = [BROKER_EXCHANGE, BROKER_EXPIRY];

/// How much a worker VM's linear memory may grow over a hit case's load: its caches filling with
/// the pool's tokens. A request that left anything behind (a context the SDK never dropped)
/// would grow it by hundreds of bytes per request, tens of MiB over a full run.
pub const VM_GROWTH_ALLOWED_KB: u64 = 2048;

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

pub(super) struct Tokens {
    pub(super) pools: BTreeMap<&'static str, Vec<String>>,
    pub(super) probes: Vec<Probe>,
}

fn claims(issuer: &Issuer, aud: &str, scope: &str, i: usize, tag: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer.url, "sub": format!("bench-user-{i}"), "aud": aud, "scope": scope,
        "client_id": "bench-client", "iat": now, "exp": now + 4 * 3600,
        "jti": format!("{tag}-{i}-{now}"),
    })
}

pub(super) fn mint(issuer: &Issuer, opts: &Options, resource: &str, needed: &[Pool]) -> Tokens {
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
    shape: Shape,
) -> Result<u16, String> {
    let mut req = client
        .post(url)
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(shape.body());
    for (k, v) in shape.headers() {
        req = req.header(*k, *v);
    }
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
    /// Case 5: the broker's token_exchanges after the probes, and Envoy's 2xx count then.
    exchanges_before: u64,
    answered_before: u64,
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
    case5: &mut Option<broker::BrokeredCase>,
    result: &mut CaseResult,
) -> Result<Envoy, String> {
    if case.kind == Kind::Brokered {
        let c = case5.as_mut().ok_or("case 5's broker did not start")?;
        let envoy = c.envoy.take().ok_or("case 5's Envoy is gone")?;
        probe_all(case, &envoy, &c.probes, result)?;
        // Each grant's first request, one at a time: the filter exchanges it once and caches the
        // credential. (Under load, concurrent first requests for one grant each exchange it: the
        // filter does not coalesce them; priming keeps the load to cache hits only.)
        let exchanges = |c: &broker::BrokeredCase| {
            c.stack.broker.stats()["token_exchanges"]
                .as_u64()
                .unwrap_or(0)
        };
        let before = exchanges(c);
        let client = reqwest::blocking::Client::new();
        let url = envoy.url(request::PATH);
        let bad = c
            .tokens
            .iter()
            .map(|t| send_probe(&client, &url, Some(t), case.shape))
            .filter(|s| *s != Ok(200))
            .count();
        let after = exchanges(c);
        result.checks.push(Check {
            what: format!(
                "priming: one request per grant ({} grants), {bad} not 200; broker token_exchanges {before} -> {after}",
                c.tokens.len()
            ),
            ok: bad == 0 && after == c.tokens.len() as u64,
        });
        return Ok(envoy);
    }
    let auth = auth_for(case, opts, issuer);
    let port = scopegate_tests::free_port();
    let admin = benv::admin_port();
    let mut boot = benv::bootstrap(
        &auth,
        port,
        admin,
        upstream.port,
        issuer.port,
        opts.cache_entries,
    );
    attach_service(case, &auth, &mut boot)?;
    let envoy = benv::start(case.id, &boot, port)?;
    probe_all(case, &envoy, &tokens.probes, result)?;
    Ok(envoy)
}

/// Waits until the filter has its keys, then sends every probe and checks its status.
pub(super) fn probe_all(
    case: &Case,
    envoy: &Envoy,
    probes: &[Probe],
    result: &mut CaseResult,
) -> Result<(), String> {
    let url = envoy.url(request::PATH);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    // Until the filter has its keys it answers 503.
    let valid = probes[0].token.as_deref();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match send_probe(&client, &url, valid, case.shape) {
            Ok(503) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => break,
        }
    }
    for p in probes {
        let want = p.expected(case.kind);
        let got = send_probe(&client, &url, p.token.as_deref(), case.shape);
        let ok = got == Ok(want);
        result.checks.push(Check {
            what: format!("probe `{}`: want {want}, got {}", p.what, show(&got)),
            ok,
        });
    }
    Ok(())
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
            Kind::NoAuth | Kind::Ladder { .. } => AuthCounters::default(),
            // Defined on first use: absent until the first verification.
            Kind::Scopegate { .. } | Kind::Brokered => AuthCounters {
                verified: Some(envoy.stat(SCOPEGATE_VERIFIED).unwrap_or(0)),
                native_hits: 0,
            },
            Kind::JwtAuthn { .. } => AuthCounters {
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
    if matches!(case.kind, Kind::NoAuth | Kind::Ladder { .. }) {
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
        Pool::Brokered => (verified <= opts.grants as u64, note),
        _ if opts.miss_tokens <= opts.cache_entries => (
            true,
            format!("{note} (pool within the cache: not all misses)"),
        ),
        _ => {
            let enough = verified * 100 >= answered * 99;
            let hits = after.native_hits.saturating_sub(before.native_hits);
            if matches!(case.kind, Kind::JwtAuthn { .. }) {
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

/// Ladder rungs are measured for CPU per request only: no latency rounds.
fn is_ladder(r: &CaseResult) -> bool {
    matches!(r.case.kind, Kind::Ladder { .. })
}

/// Nothing a request leaves behind: in the cases whose caches stay small (a pool of reused
/// tokens), the worker VM's linear memory grows by at most [`VM_GROWTH_ALLOWED_KB`] over the
/// whole load. A bound, not a timing: it holds or not whatever the machine's speed.
fn vm_growth_check(r: &CaseResult) -> Option<Check> {
    if !matches!(r.case.pool, Pool::Hit | Pool::Brokered) {
        return None;
    }
    let before = r.memory_before.as_ref()?.largest_vm_kb()?.0;
    let after = r.memory_after.as_ref()?.largest_vm_kb()?.0;
    let requests: u64 = r.wrk.iter().map(|w| w.requests).sum();
    Some(Check {
        what: format!(
            "wasm VM linear memory {before} KiB before the load, {after} KiB after {requests} requests (at most +{VM_GROWTH_ALLOWED_KB} KiB)"
        ),
        ok: after <= before + VM_GROWTH_ALLOWED_KB,
    })
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
    let selected: Vec<&'static Case> = cases::all().filter(|c| opts.selects(c.id)).collect();
    let wants_broker = selected.iter().any(|c| c.kind == Kind::Brokered)
        || BROKER_IDS.iter().any(|id| opts.selects(id));
    let broker_binary = if wants_broker {
        broker::select_binary()
    } else {
        Err("not selected (--only)".to_string())
    };
    println!("==> upstream and token issuer");
    let upstream = Upstream::start();
    let issuer = Issuer::start();
    let resource = format!("{PUBLIC_URL}{}", request::PATH);
    println!("==> minting tokens (aud {resource})");
    let needed: Vec<Pool> = selected.iter().map(|c| c.pool).collect();
    let mut tokens = mint(&issuer, opts, &resource, &needed);
    let mut case5: Option<broker::BrokeredCase> = None;
    let mut case5_error = None;
    if let Some(c) = selected.iter().find(|c| c.kind == Kind::Brokered) {
        println!(
            "==> case 5: the broker ({}) in front of oidc-provider, Envoy in broker mode, {} grants",
            broker_binary.as_deref().unwrap_or("not built"),
            opts.grants
        );
        // A valid token of the test issuer: the filter in broker mode must refuse it.
        let other = tokens.probes[0].token.clone().unwrap_or_default();
        match broker_binary
            .clone()
            .and_then(|_| broker::start_case(c.id, opts, upstream.port, other))
        {
            Ok(b) => {
                tokens.pools.insert(Pool::Brokered.name(), b.tokens.clone());
                case5 = Some(b);
            }
            Err(e) => case5_error = Some(e),
        }
    }
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let script = dir.join("rotate.lua");
    std::fs::write(&script, wrk::SCRIPT).expect("write wrk script");
    // One request file per pool and request shape the selected cases send.
    let mut files: BTreeMap<(&str, &str), (PathBuf, Requests)> = BTreeMap::new();
    for case in &selected {
        let (pool, shape) = (case.pool.name(), case.shape);
        let Some(toks) = tokens.pools.get(pool) else {
            continue;
        };
        if files.contains_key(&(pool, shape.name())) {
            continue;
        }
        let path = dir.join(format!("requests-{pool}-{}.bin", shape.name()));
        request::write_request_file(&path, HOST, toks, shape);
        let raw: Vec<Vec<u8>> = toks
            .iter()
            .map(|t| request::raw(HOST, Some(t), shape))
            .collect();
        files.insert((pool, shape.name()), (path, Arc::new(raw)));
    }

    println!("==> starting one Envoy per case (one worker each) and probing its auth");
    let mut results: Vec<CaseResult> = Vec::new();
    let mut live: Vec<Option<Live>> = Vec::new();
    for case in &selected {
        let mut r = CaseResult::empty(case);
        let up = match (case.kind, &case5_error) {
            (Kind::Brokered, Some(e)) => Err(e.clone()),
            _ => bring_up(case, opts, &issuer, &upstream, &tokens, &mut case5, &mut r),
        };
        match up {
            Ok(envoy) => {
                r.memory_before = Some(Snapshot::take(envoy.proc.pid(), envoy.admin_port));
                let (file, raw) = &files[&(case.pool.name(), case.shape.name())];
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
                let exchanges_before = match (&case5, case.kind) {
                    (Some(c), Kind::Brokered) => c.stack.broker.stats()["token_exchanges"]
                        .as_u64()
                        .unwrap_or(0),
                    _ => 0,
                };
                live.push(Some(Live {
                    answered_before: counters(&envoy)[0],
                    envoy,
                    requests_file: file.clone(),
                    requests: Arc::clone(raw),
                    offset: 0,
                    exchanges_before,
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
            if is_ladder(&results[i]) {
                continue;
            }
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
            if is_ladder(&results[i]) {
                continue;
            }
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
    let mut brokered = broker::Outcome::NotMeasured("not selected (--only)".into());
    for (i, l) in live.iter().enumerate() {
        if let Some(l) = l {
            results[i].memory_after = Some(Snapshot::take(l.envoy.proc.pid(), l.envoy.admin_port));
            if let Some(c) = vm_growth_check(&results[i]) {
                results[i].checks.push(c);
            }
            results[i].auth_stats = auth_stats(l.envoy.admin_port);
            if results[i].case.kind == Kind::Brokered {
                if let Some(c) = &case5 {
                    let after = c.stack.broker.stats()["token_exchanges"]
                        .as_u64()
                        .unwrap_or(0);
                    let requests = counters(&l.envoy)[0].saturating_sub(l.answered_before);
                    brokered = broker::brokered_summary(
                        c.tokens.len(),
                        c.authorize_s,
                        l.exchanges_before,
                        after,
                        requests,
                    );
                    let r = &mut results[i];
                    r.auth_stats.insert(
                        "broker.token_exchanges_before_load".into(),
                        l.exchanges_before,
                    );
                    r.auth_stats
                        .insert("broker.token_exchanges_after_load".into(), after);
                    r.checks.push(Check {
                        what: format!(
                            "broker token_exchanges {} before the load, {after} after {requests} requests: want one per grant ({}), none during the load",
                            l.exchanges_before,
                            c.tokens.len()
                        ),
                        ok: after == c.tokens.len() as u64 && after == l.exchanges_before,
                    });
                }
            }
        }
    }
    drop(live);
    if let Some(e) = &case5_error {
        brokered = broker::Outcome::Failed(e.clone());
    }
    drop(case5);

    println!("==> broker");
    let skip = |id: &str| {
        if !opts.selects(id) {
            Some(broker::Outcome::NotMeasured("not selected (--only)".into()))
        } else {
            broker_binary
                .as_ref()
                .err()
                .map(|e| broker::Outcome::NotMeasured(e.clone()))
        }
    };
    let exchange = skip(BROKER_EXCHANGE).unwrap_or_else(|| {
        println!(
            "==> broker token exchange: {} connections over {} grants",
            opts.connections, opts.grants
        );
        broker::exchange_throughput(opts)
    });
    let mass_expiry = skip(BROKER_EXPIRY).unwrap_or_else(|| {
        println!(
            "==> broker: {} grants expiring together",
            opts.expiry_grants
        );
        broker::mass_expiry(opts)
    });
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
        broker_binary: broker_binary.ok(),
        wasm_bytes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// What a case's Envoy runs in front of the upstream, for the timed and the counted runs alike.
pub(super) fn auth_for(case: &Case, opts: &Options, issuer: &Issuer) -> Auth {
    match case.kind {
        Kind::NoAuth | Kind::Brokered => Auth::None,
        Kind::Ladder { rung } => Auth::Ladder {
            rung: rung.to_string(),
            wasm: if rung == LADDER_FLOOR_EXPORTS {
                opts.ladder_stripped_wasm.clone()
            } else {
                opts.ladder_wasm.clone()
            },
        },
        Kind::Scopegate { per_tool, metadata } => {
            let rules = benv::Rules {
                per_tool,
                listing: case.shape.is_listing(),
                metadata,
            };
            Auth::Scopegate {
                doc: budgeted_if(
                    case,
                    benv::scopegate_doc(PUBLIC_URL, &issuer.url, rules, opts.cache_entries),
                )
                .to_string(),
                wasm: opts.wasm.clone(),
                native_mcp: metadata,
            }
        }
        Kind::JwtAuthn { per_tool } => Auth::JwtAuthn {
            issuer: issuer.url.clone(),
            audience: format!("{PUBLIC_URL}{}", request::PATH),
            per_tool,
        },
    }
}

/// The budgeted case's document: the per-tool one with its budget (`budgeted.rs`).
fn budgeted_if(case: &Case, doc: Value) -> Value {
    if case.id == super::budgeted::ID {
        super::budgeted::doc(doc)
    } else {
        doc
    }
}

/// The budgeted case's bootstrap gains the rate limit service's cluster (`budgeted.rs`).
pub(super) fn attach_service(case: &Case, auth: &Auth, boot: &mut Value) -> Result<(), String> {
    match auth {
        Auth::Scopegate { doc, .. } if case.id == super::budgeted::ID => {
            super::budgeted::attach(boot, doc)
        }
        _ => Ok(()),
    }
}
