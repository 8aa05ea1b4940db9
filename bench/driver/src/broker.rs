//! The broker's numbers: case 5 (the brokered request path, token exchange cached), the broker's
//! RFC 8693 token-exchange throughput and p99, and many grants expiring together causing exactly
//! one downstream refresh each (single-flight).
//!
//! Every grant here is real: registered by DCR, authorized and consented through the real broker
//! and the real downstream authorization server (oidc-provider), redeemed at `/token`.

use super::cases::Probe;
use super::envoy::{self as benv, Auth, REQUIRED_SCOPE, UPSTREAM_CLUSTER};
use super::options::Options;
use super::paced::percentile;
use super::request;
use super::stats::{round, Spread};
use scopegate_tests::broker::BrokerStack;
use scopegate_tests::envoy::Envoy;
use scopegate_tests::oauth::{pkce, redeem, register, Agent, AuthRequest};
use scopegate_tests::proxy::Proxy;
use scopegate_tests::{free_port, repo_root};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BINARIES: [&str; 2] = [
    "target/release/scopegate-broker",
    "target/debug/scopegate-broker",
];

/// Where the MCP client of the bench's authorizations "listens" (never reached).
const CLIENT_CB: &str = scopegate_tests::brokered::CLIENT_CB;
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What a broker measurement came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Value),
    Failed(String),
    /// Not measured, and why (printed as `not measured: <why>`).
    NotMeasured(String),
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Measured(v) => json!({"status": "measured", "result": v}),
            Outcome::Failed(e) => json!({"status": "failed", "reason": e}),
            Outcome::NotMeasured(r) => json!({"status": "not_measured", "reason": r}),
        }
    }
}

/// The built broker, release build preferred.
pub fn binary() -> Option<PathBuf> {
    BINARIES
        .iter()
        .map(|p| repo_root().join(p))
        .find(|p| p.exists())
}

/// Makes every broker of this run the [`binary`] (release when built); returns it, relative.
pub fn select_binary() -> Result<String, String> {
    let bin = binary().ok_or("broker not built: cargo build --release -p scopegate-broker")?;
    let bin = scopegate_tests::broker::use_binary(bin);
    Ok(bin
        .strip_prefix(repo_root())
        .unwrap_or(&bin)
        .display()
        .to_string())
}

/// Authorizes `n` grants for `resource` at the gateway `issuer`: DCR once per thread, then per
/// grant authorize + consent (downstream login included) + `/token`. Returns the access tokens.
pub fn authorize_many(
    issuer: &str,
    resource: &str,
    scope: Option<&str>,
    n: usize,
    threads: usize,
) -> Result<Vec<String>, String> {
    let threads = threads.clamp(1, n.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (issuer, resource) = (issuer.to_string(), resource.to_string());
            let scope = scope.map(str::to_string);
            let count = n / threads + usize::from(t < n % threads);
            std::thread::spawn(move || {
                let client_id = register(&issuer, CLIENT_CB);
                (0..count)
                    .map(|_| {
                        let (verifier, challenge) = pkce();
                        let mut req =
                            AuthRequest::new(&issuer, &client_id, CLIENT_CB, &resource, &challenge);
                        req.scope = scope.clone();
                        let code = Agent::default().authorize(&req);
                        let r = redeem(&issuer, &client_id, &code, CLIENT_CB, &verifier, &resource);
                        assert_eq!(r.status, 200, "token: {}", r.body);
                        r.json()["access_token"]
                            .as_str()
                            .expect("access_token")
                            .to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let mut tokens = Vec::with_capacity(n);
    for h in handles {
        tokens.extend(h.join().map_err(|e| {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("authorizing grants failed: {why}")
        })?);
    }
    Ok(tokens)
}

fn stat(stack: &BrokerStack, name: &str) -> u64 {
    stack.broker.stats()[name].as_u64().unwrap_or(0)
}

/// Case 5, set up: the broker (public URL = this Envoy's listener) in front of oidc-provider, the
/// bench's Envoy with the filter in broker mode governing the bench upstream, and the grants.
pub struct BrokeredCase {
    pub stack: BrokerStack,
    pub envoy: Option<Envoy>,
    /// One broker-issued access token per grant: the load rotates through them.
    pub tokens: Vec<String>,
    pub probes: Vec<Probe>,
    pub authorize_s: f64,
}

/// Starts case 5's broker and Envoy (`name` and Envoy as the other cases') and authorizes
/// `opts.grants` grants through Envoy, like case 2's token pool.
pub fn start_case(
    name: &str,
    opts: &Options,
    upstream_port: u16,
    other_issuer_token: String,
) -> Result<BrokeredCase, String> {
    let port = free_port();
    let dir = "bench-brokered";
    let cache_entries = opts.cache_entries;
    // Downstream credentials and the broker's own tokens outlive the whole run: every request
    // after a grant's first is a hit in both of the filter's caches.
    let stack = BrokerStack::start_at(dir, 4 * 3600, None, Some(port), move |doc| {
        if let Some(gws) = doc["gateways"].as_array_mut() {
            gws.truncate(1);
        }
        doc["gateways"][0]["servers"] = json!([{
            "name": "bench", "cluster": UPSTREAM_CLUSTER, "path": request::PATH,
            "scopes": ["tickets.read", "accounts.read"],
            "base_scopes": [REQUIRED_SCOPE],
        }]);
        doc["gateways"][0]["default_server"] = json!("bench");
        doc["filter"]["token_cache_entries"] = json!(cache_entries);
        doc["broker"]["access_token_ttl_s"] = json!(4 * 3600);
    });
    let config = std::fs::read_to_string(scopegate_tests::procs::log_dir(dir).join("broker.json"))
        .map_err(|e| format!("broker.json: {e}"))?;
    let auth = Auth::Brokered {
        doc: config,
        wasm: opts.wasm.clone(),
        broker_port: stack.broker.port,
        internal_port: stack.broker.internal_port,
    };
    let admin = benv::admin_port();
    let boot = benv::bootstrap(&auth, port, admin, upstream_port, 1, cache_entries);
    let envoy = benv::start(name, &boot, port)?;
    scopegate_tests::envoy::keys_loaded(&envoy.url(request::PATH), Duration::from_secs(20))
        .map_err(|e| format!("case 5: {e}"))?;
    let issuer = format!("http://127.0.0.1:{port}");
    let resource = format!("{issuer}{}", request::PATH);
    let t = Instant::now();
    let tokens = authorize_many(&issuer, &resource, None, opts.grants, 4)?;
    let no_scope = authorize_many(&issuer, &resource, Some("accounts.read"), 1, 1)?;
    let authorize_s = t.elapsed().as_secs_f64();
    println!(
        "    {} grants authorized through Envoy, the broker and oidc-provider in {authorize_s:.1} s",
        tokens.len() + 1
    );
    let mut forged = tokens[0].clone();
    if let Some(dot) = forged.rfind('.') {
        let sig: String = forged[dot + 1..].chars().rev().collect();
        forged.replace_range(dot + 1.., &sig);
    }
    let probe = |what, token, status| Probe {
        what,
        token,
        expect_scopegate: status,
        expect_jwt_authn: status,
    };
    let probes = vec![
        probe("valid broker token", Some(tokens[0].clone()), 200),
        probe("no token", None, 401),
        probe("forged signature", Some(forged), 401),
        probe("another issuer's token", Some(other_issuer_token), 401),
        probe(
            "broker token without the required scope",
            no_scope.into_iter().next(),
            403,
        ),
    ];
    Ok(BrokeredCase {
        stack,
        envoy: Some(envoy),
        tokens,
        probes,
        authorize_s,
    })
}

/// Token-exchange counts of case 5's broker around the load, checked: one exchange per grant.
pub fn brokered_summary(
    grants: usize,
    authorize_s: f64,
    before: u64,
    after: u64,
    requests: u64,
) -> Outcome {
    let v = json!({
        "grants": grants,
        "authorize_s": round(authorize_s, 1),
        "token_exchanges_before_load": before,
        "token_exchanges_after_load": after,
        "requests_during_load": requests,
    });
    if after == grants as u64 && after == before {
        Outcome::Measured(v)
    } else {
        Outcome::Failed(format!(
            "broker token_exchanges {before} before the load and {after} after, want one per grant ({grants}) and none during the load: {v}"
        ))
    }
}

fn exchange_form(token: &str, resource: &str) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("url");
    u.query_pairs_mut()
        .append_pair("grant_type", TOKEN_EXCHANGE)
        .append_pair("subject_token", token)
        .append_pair("subject_token_type", ACCESS_TOKEN_TYPE)
        .append_pair("resource", resource);
    u.query().unwrap_or_default().to_string()
}

/// One closed-loop round of exchanges.
#[derive(Debug, Default)]
struct ExRun {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    latencies_us: Vec<u32>,
    seconds: f64,
}

impl ExRun {
    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds.max(1e-9)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("exchange client runtime")
}

/// `connections` keep-alive connections, each posting the next grant's exchange as soon as the
/// previous answer is in, for `duration`.
fn exchange_round(
    url: &str,
    forms: &Arc<Vec<String>>,
    next: &Arc<AtomicU64>,
    connections: u32,
    duration: Duration,
) -> ExRun {
    runtime().block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections as usize)
            .build()
            .expect("client");
        let start = tokio::time::Instant::now();
        let end = start + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_string());
                let (forms, next) = (Arc::clone(forms), Arc::clone(next));
                tokio::spawn(async move {
                    let mut r = ExRun::default();
                    while tokio::time::Instant::now() < end {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize % forms.len();
                        let t = tokio::time::Instant::now();
                        let got = client
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(forms[i].clone())
                            .send()
                            .await;
                        match got {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let ok = resp.bytes().await.is_ok();
                                if ok {
                                    r.latencies_us
                                        .push(t.elapsed().as_micros().min(u128::from(u32::MAX))
                                            as u32);
                                    *r.statuses.entry(status).or_default() += 1;
                                } else {
                                    r.errors += 1;
                                }
                            }
                            Err(_) => r.errors += 1,
                        }
                    }
                    r
                })
            })
            .collect();
        let mut total = ExRun::default();
        for t in tasks {
            if let Ok(r) = t.await {
                total.errors += r.errors;
                total.latencies_us.extend(r.latencies_us);
                for (s, n) in r.statuses {
                    *total.statuses.entry(s).or_default() += n;
                }
            }
        }
        total.seconds = start.elapsed().as_secs_f64();
        total.latencies_us.sort_unstable();
        total
    })
}

/// RFC 8693 token exchanges per second on the broker's internal listener, and their latency:
/// `opts.connections` connections, closed loop, over `opts.grants` grants whose downstream
/// credentials are fresh (no downstream refresh involved); warm-up, then `opts.reps` rounds.
pub fn exchange_throughput(opts: &Options) -> Outcome {
    match exchange_throughput_inner(opts) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e),
    }
}

fn exchange_throughput_inner(opts: &Options) -> Result<Outcome, String> {
    let stack = BrokerStack::start("bench-exchange", 4 * 3600, None, |doc| {
        doc["broker"]["access_token_ttl_s"] = json!(4 * 3600);
    });
    let resource = stack.resource(scopegate_tests::stack::SUPPORT);
    let t = Instant::now();
    let tokens = authorize_many(&stack.issuer, &resource, None, opts.grants, 4)?;
    println!(
        "    {} grants authorized in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    let forms: Arc<Vec<String>> =
        Arc::new(tokens.iter().map(|t| exchange_form(t, &resource)).collect());
    let url = format!("{}/internal/token-exchange", stack.broker.internal);
    let next = Arc::new(AtomicU64::new(0));
    let (ex0, rf0) = (
        stat(&stack, "token_exchanges"),
        stat(&stack, "downstream_refreshes"),
    );
    let mut failures = Vec::new();
    let mut check = |tag: &str, r: &ExRun| {
        let only_200 = r.statuses.keys().all(|s| *s == 200);
        if !only_200 || r.errors > 0 || r.latencies_us.is_empty() {
            failures.push(format!(
                "{tag}: statuses {:?}, errors {}",
                r.statuses, r.errors
            ));
        }
    };
    if !opts.warmup.is_zero() {
        let r = exchange_round(&url, &forms, &next, opts.connections, opts.warmup);
        check("warm-up", &r);
    }
    let mut rounds = Vec::new();
    for i in 0..opts.reps {
        let r = exchange_round(&url, &forms, &next, opts.connections, opts.duration);
        println!(
            "    round {}/{}  token exchange {:>8.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us",
            i + 1,
            opts.reps,
            r.rps(),
            percentile(&r.latencies_us, 50.0),
            percentile(&r.latencies_us, 99.0)
        );
        check(&format!("round {}", i + 1), &r);
        rounds.push(r);
    }
    let (ex1, rf1) = (
        stat(&stack, "token_exchanges"),
        stat(&stack, "downstream_refreshes"),
    );
    let answered: u64 = rounds.iter().map(|r| r.latencies_us.len() as u64).sum();
    let sp = |f: &dyn Fn(&ExRun) -> f64| Spread::of(&rounds.iter().map(f).collect::<Vec<_>>());
    let rps = sp(&|r| r.rps());
    let p50 = sp(&|r| percentile(&r.latencies_us, 50.0));
    let p99 = sp(&|r| percentile(&r.latencies_us, 99.0));
    let v = json!({
        "grants": tokens.len(),
        "connections": opts.connections,
        "warmup_s": opts.warmup.as_secs_f64(),
        "reps": opts.reps,
        "duration_s": opts.duration.as_secs_f64(),
        "rps": rps.map(Spread::to_json),
        "p50_us": p50.map(Spread::to_json),
        "p99_us": p99.map(Spread::to_json),
        "reps_rps": rounds.iter().map(|r| round(r.rps(), 1)).collect::<Vec<_>>(),
        "answered": answered,
        "token_exchanges_counted": ex1 - ex0,
        "downstream_refreshes": rf1 - rf0,
        "load_generator": "driver's closed-loop tokio client (bench/driver/src/broker.rs)",
    });
    // The broker counts every exchange it received, including at most one in flight per
    // connection when a round stopped.
    if rf1 != rf0 {
        failures.push(format!(
            "{} downstream refreshes with fresh credentials",
            rf1 - rf0
        ));
    }
    Ok(if failures.is_empty() {
        Outcome::Measured(v)
    } else {
        Outcome::Failed(format!("{}: {v}", failures.join("; ")))
    })
}

/// `grants` grants whose downstream access tokens all expire together, then two exchanges per
/// grant fired at once: the broker must refresh each grant exactly once (single-flight), and the
/// downstream server (behind a counting proxy) must see exactly that many refresh grants.
pub fn mass_expiry(opts: &Options) -> Outcome {
    match mass_expiry_inner(opts) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e),
    }
}

fn mass_expiry_inner(opts: &Options) -> Result<Outcome, String> {
    let grants = opts.expiry_grants;
    // Short enough not to wait long, long enough that authorizing every grant (about 20 a second
    // here) rarely outlasts the first ones' credentials; any that do are refreshed by the
    // loading exchange below, before the burst is counted.
    let ttl = if opts.quick { 4 } else { 30 };
    let proxy = Proxy::start();
    let stack = BrokerStack::start("bench-expiry", ttl, Some(&proxy), |doc| {
        doc["broker"]["access_token_ttl_s"] = json!(3600);
    });
    let resource = stack.resource(scopegate_tests::stack::SUPPORT);
    let t = Instant::now();
    let tokens = authorize_many(&stack.issuer, &resource, None, grants, 4)?;
    let authorize_s = t.elapsed().as_secs_f64();
    println!("    {grants} grants authorized in {authorize_s:.1} s (downstream access tokens live {ttl} s)");
    let forms: Vec<String> = tokens.iter().map(|t| exchange_form(t, &resource)).collect();
    let url = format!("{}/internal/token-exchange", stack.broker.internal);
    // Load every credential once, noting when the last one expires.
    let burst = |forms: Vec<String>| -> (Vec<(u16, u64, Value)>, f64) {
        runtime().block_on(async {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(forms.len())
                .build()
                .expect("client");
            let t = Instant::now();
            let tasks: Vec<_> = forms
                .into_iter()
                .map(|f| {
                    let (client, url) = (client.clone(), url.clone());
                    tokio::spawn(async move {
                        let r = client
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(f)
                            .send()
                            .await;
                        match r {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                (status, body["expires_in"].as_u64().unwrap_or(0), body)
                            }
                            Err(e) => (0, 0, json!(e.to_string())),
                        }
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap_or((0, 0, Value::Null)));
            }
            (out, t.elapsed().as_secs_f64())
        })
    };
    let loaded_at = Instant::now();
    let (loaded, _) = burst(forms.clone());
    if let Some(bad) = loaded.iter().find(|(s, _, _)| *s != 200) {
        return Err(format!("loading exchange answered {}: {}", bad.0, bad.2));
    }
    let last_expiry = loaded.iter().map(|(_, e, _)| *e).max().unwrap_or(0);
    // Every downstream token expired (whole seconds, plus one for rounding).
    let until = loaded_at + Duration::from_secs(last_expiry + 1);
    let wait = until.saturating_duration_since(Instant::now());
    println!(
        "    credentials loaded; waiting {:.1} s until all {grants} have expired",
        wait.as_secs_f64()
    );
    std::thread::sleep(wait);
    let (rf0, ex0, px0) = (
        stat(&stack, "downstream_refreshes"),
        stat(&stack, "token_exchanges"),
        proxy.refreshes(),
    );
    // Each grant twice, the two side by side, all at once.
    let twice: Vec<String> = forms.iter().flat_map(|f| [f.clone(), f.clone()]).collect();
    let (answers, wall_s) = burst(twice);
    let (rf1, ex1, px1) = (
        stat(&stack, "downstream_refreshes"),
        stat(&stack, "token_exchanges"),
        proxy.refreshes(),
    );
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for (s, _, body) in &answers {
        *statuses.entry(*s).or_default() += 1;
        if *s != 200 {
            let why = format!(
                "{s} {}: {}",
                body["error"].as_str().unwrap_or("?"),
                body["error_description"]
                    .as_str()
                    .unwrap_or(&body.to_string())
            );
            *refusals.entry(why).or_default() += 1;
        }
    }
    let failures_counted = stat(&stack, "downstream_refresh_failures");
    let v = json!({
        "grants": grants,
        "downstream_ttl_s": ttl,
        "authorize_s": round(authorize_s, 1),
        "exchanges_in_burst": answers.len(),
        "statuses": statuses,
        "refusals": refusals,
        "downstream_refresh_failures": failures_counted,
        "burst_wall_s": round(wall_s, 3),
        "downstream_refreshes": rf1 - rf0,
        "refresh_grants_seen_downstream": px1 - px0,
        "refreshes_before_burst": rf0,
        "token_exchanges_counted": ex1 - ex0,
    });
    println!(
        "    burst: {} exchanges in {wall_s:.2} s, downstream refreshes {} (broker) / {} (seen by oidc-provider)",
        answers.len(),
        rf1 - rf0,
        px1 - px0
    );
    let mut failures = Vec::new();
    if rf1 - rf0 != grants as u64 {
        failures.push(format!(
            "broker downstream_refreshes rose by {}, want exactly {grants}",
            rf1 - rf0
        ));
    }
    if px1 - px0 != grants {
        failures.push(format!(
            "the downstream server saw {} refresh_token grants, want exactly {grants}",
            px1 - px0
        ));
    }
    if statuses.keys().any(|s| *s != 200) {
        failures.push(format!("burst statuses {statuses:?}, want only 200"));
    }
    Ok(if failures.is_empty() {
        Outcome::Measured(v)
    } else {
        Outcome::Failed(format!("{}: {v}", failures.join("; ")))
    })
}
