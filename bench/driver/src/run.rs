//! One benchmark run: tokens, one Envoy per case (all started up front, idle until their turn),
//! checks that the auth is really on, throughput rounds with wrk, latency rounds at a fixed rate,
//! memory before and after, and the broker hooks.
//!
//! Repetitions are interleaved (round 1 of every case, then round 2, order reversed on odd
//! rounds), so that a burst of load from elsewhere on a shared machine lands on several cases
//! instead of skewing one.

use super::broker;
use super::case_auth::case_bootstrap;
use super::cases::{self, Case, Kind, Pool};
use super::checks::{auth_stats, premise, vm_growth_check, AuthCounters};
use super::envoy::{self as benv, STAT_PREFIX};
use super::memory::Snapshot;
pub use super::options::Options;
use super::outcome::{CaseResult, Check, Outcome};
use super::paced;
use super::probe::{probe_all, send_probe};
use super::request::{self, HOST, PUBLIC_URL};
use super::stats::cpu_ns;
use super::tokens::{mint, Tokens};
use super::upstream::Upstream;
use super::wrk;
use scopegate_tests::envoy::Envoy;
use scopegate_tests::issuer::Issuer;
use scopegate_tests::repo_root;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--only` names for the broker measurements that are not cases of the table.
pub const BROKER_EXCHANGE: &str = "broker-exchange";
pub const BROKER_EXPIRY: &str = "broker-expiry";
pub const BROKER_IDS: [&str; 2] = [BROKER_EXCHANGE, BROKER_EXPIRY];

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
    let port = scopegate_tests::free_port();
    let boot = case_bootstrap(case, opts, issuer, upstream.port, port)?;
    let envoy = benv::start(case.id, &boot, port)?;
    probe_all(case, &envoy, &tokens.probes, result)?;
    Ok(envoy)
}

/// The last check's text when it failed, for the progress line.
fn failed_note(r: &CaseResult) -> String {
    match r.checks.last() {
        Some(c) if !c.ok => format!("\n      CHECK FAILED: {}", c.what),
        _ => String::new(),
    }
}

/// Ladder rungs are measured for CPU per request only: no latency rounds.
fn is_ladder(r: &CaseResult) -> bool {
    matches!(r.case.kind, Kind::Ladder { .. })
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
