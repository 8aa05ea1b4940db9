//! `make bench` / `make bench-quick`: what scopegate costs on the request path, against Envoy
//! alone and Envoy's native `jwt_authn` + RBAC. See BENCHMARKS.md for the method and the numbers.
//!
//! cargo run --release -p scopegate-bench --bin bench -- [--quick] [--only a,b] [--reps N]
//!     [--duration S] [--rate R] [--tokens N] [--grants N] [--expiry-grants N]
//!
//! `--only` takes case ids, `ladder` (every rung of the cost ladder) and `broker-exchange`,
//! `broker-expiry` (the broker measurements).
//!
//! Full mode writes bench/results/latest.{json,csv} and the generated block of BENCHMARKS.md;
//! `--quick` runs each case briefly, writes target/bench/quick.{json,csv}, and only checks that
//! every case served its requests with the expected status codes. Exits non-zero if any did not.
//!
//! `--instructions` (`make bench-instructions`) counts instructions per request under valgrind
//! instead of timing (bench/driver/src/instructions.rs); it takes `--only` and `--wasm`.

use scopegate_bench::cases::{self, Kind, LADDER_GROUP};
use scopegate_bench::options::Options;
use scopegate_bench::run;
use scopegate_bench::{instructions as instr, report, wrk};
use scopegate_tests::envoy::ENVOY;
use scopegate_tests::repo_root;
use serde_json::{json, Value};
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "usage: bench [--quick] [--only CASE,CASE] [--reps N] [--duration SECONDS] \
                     [--rate REQ_PER_S] [--tokens N] [--cache-entries N] [--grants N] \
                     [--expiry-grants N] [--wasm FILE] [--instructions]";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = if args.iter().any(|a| a == "--quick") {
        Options::quick()
    } else {
        Options::full()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |v: String, name: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|n| *n > 0.0)
                .ok_or_else(|| format!("{name}: `{v}` is not a positive number"))
        };
        match a.as_str() {
            "--quick" | "--instructions" => {}
            "--only" => {
                let ids: Vec<String> = value("--only")?.split(',').map(str::to_string).collect();
                if let Some(bad) = ids.iter().find(|i| {
                    !cases::all().any(|c| c.id == i.as_str())
                        && !run::BROKER_IDS.contains(&i.as_str())
                        && i.as_str() != LADDER_GROUP
                }) {
                    let known: Vec<&str> = cases::all()
                        .map(|c| c.id)
                        .chain(run::BROKER_IDS)
                        .chain([LADDER_GROUP])
                        .collect();
                    return Err(format!("unknown case `{bad}`; cases: {}", known.join(", ")));
                }
                opts.only = Some(ids);
            }
            "--reps" => opts.reps = num(value(a)?, a)? as usize,
            "--duration" => opts.duration = Duration::from_secs_f64(num(value(a)?, a)?),
            "--rate" => opts.rate = num(value(a)?, a)?,
            "--tokens" => opts.miss_tokens = num(value(a)?, a)? as usize,
            "--cache-entries" => opts.cache_entries = num(value(a)?, a)? as usize,
            "--grants" => opts.grants = num(value(a)?, a)? as usize,
            "--expiry-grants" => opts.expiry_grants = num(value(a)?, a)? as usize,
            "--wasm" => {
                let path = std::path::PathBuf::from(value(a)?);
                if !path.is_file() {
                    return Err(format!("--wasm: {} is not a file", path.display()));
                }
                opts.wasm = std::fs::canonicalize(&path).unwrap_or(path);
                opts.custom_wasm = true;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(opts)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let envoy = sh(
        &repo_root().join(ENVOY).display().to_string(),
        &["--version"],
    );
    // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    let envoy_version = envoy
        .split_once("version:")
        .and_then(|(_, v)| v.trim().split('/').nth(1))
        .unwrap_or(envoy.as_str())
        .to_string();
    let root = repo_root().display().to_string();
    let commit = sh("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = !sh(
        "git",
        &["-C", &root, "status", "--porcelain", "--", "filter", "core"],
    )
    .is_empty();
    json!({
        "date": sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu_model,
        "memory": format!("{} GiB", (mem_kb as f64 / 1024.0 / 1024.0).round()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "envoy_version": envoy_version,
        "wrk_version": wrk::version().unwrap_or_default(),
        "git_commit": if dirty { format!("{commit} (+ uncommitted changes in filter/ or core/)") } else { commit },
        "loadavg_start": loadavg(),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let command = if opts.quick {
        "make bench-quick".to_string()
    } else if args.is_empty() {
        "make bench".to_string()
    } else {
        format!(
            "cargo run --release -p scopegate-bench --bin bench -- {}",
            args.join(" ")
        )
    };
    // Only the plain full run replaces the kept results and BENCHMARKS.md's block.
    let canonical = args.is_empty();
    if !opts.wasm.exists() {
        eprintln!(
            "bench: {} is missing: run `make wasm` (or `make bench`)",
            opts.wasm.display()
        );
        return ExitCode::FAILURE;
    }
    let wants_ladder =
        cases::all().any(|c| matches!(c.kind, Kind::Ladder { .. }) && opts.selects(c.id));
    for ladder in [&opts.ladder_wasm, &opts.ladder_stripped_wasm] {
        if wants_ladder && !ladder.exists() {
            eprintln!(
                "bench: {} is missing: run `make ladder` (or `make bench`)",
                ladder.display()
            );
            return ExitCode::FAILURE;
        }
    }
    if !repo_root().join(ENVOY).exists() {
        eprintln!("bench: {ENVOY} is missing: run `make venv` (or `make bench`)");
        return ExitCode::FAILURE;
    }
    if args.iter().any(|a| a == "--instructions") {
        return instructions(&opts);
    }
    if let Err(e) = wrk::version() {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }
    let wasm_bytes = std::fs::metadata(&opts.wasm).map_or(0, |m| m.len());
    if opts.custom_wasm {
        println!("bench: filter under test: {}", opts.wasm.display());
    }
    let mut machine = machine();
    println!(
        "bench ({}): {} on {} cores, Envoy {}, load average {}; .wasm {wasm_bytes} bytes",
        if opts.quick {
            "quick: checks the harness, timings are not meaningful"
        } else {
            "full"
        },
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["nproc"],
        machine["envoy_version"].as_str().unwrap_or("?"),
        machine["loadavg_start"].as_str().unwrap_or("?"),
    );

    let outcome = run::run(&opts, wasm_bytes);
    machine["loadavg_end"] = json!(loadavg());

    let results = report::to_json(&outcome, &opts, &machine, &command);
    let csv = report::to_csv(&outcome, &opts);
    let md = report::markdown(&outcome, &opts, &machine, &command);
    println!("\n{md}");
    let (dir, stem) = if !canonical {
        (
            repo_root().join("target/bench"),
            if opts.quick { "quick" } else { "partial" },
        )
    } else {
        (repo_root().join("bench/results"), "latest")
    };
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::write(
                dir.join(format!("{stem}.json")),
                serde_json::to_string_pretty(&results).unwrap_or_default() + "\n",
            )
        })
        .and_then(|()| std::fs::write(dir.join(format!("{stem}.csv")), &csv));
    match written {
        Ok(()) => println!("results: {}/{stem}.json, {stem}.csv", dir.display()),
        Err(e) => eprintln!("bench: cannot write results to {}: {e}", dir.display()),
    }
    if canonical {
        let path = repo_root().join("BENCHMARKS.md");
        match report::update_markdown(&path, &md) {
            Ok(()) => println!("updated the results block of {}", path.display()),
            Err(e) => eprintln!("bench: {e}"),
        }
    }

    let (passed, failed, skipped) = report::tally(&outcome);
    for r in outcome.cases.iter().filter(|r| !r.passed()) {
        eprintln!("FAILED {}:", r.case.id);
        if let Some(e) = &r.error {
            eprintln!("    {e}");
        }
        for c in r.checks.iter().filter(|c| !c.ok) {
            eprintln!("    {}", c.what);
        }
    }
    println!("bench: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--instructions`: every selected case under callgrind, one after another.
fn instructions(opts: &Options) -> ExitCode {
    let started = std::time::Instant::now();
    let results = instr::run_all(opts);
    let (md, mut json) = instr::report(&results);
    json["machine"] = machine();
    json["wasm"] = json!(opts.wasm.display().to_string());
    json["wasm_bytes"] = json!(std::fs::metadata(&opts.wasm).map_or(0, |m| m.len()));
    json["seconds"] = json!(started.elapsed().as_secs());
    println!("\n{md}");
    let path = instr::results_path(opts);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
            )
        });
    match written {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", path.display()),
    }
    let failed = results.iter().filter(|m| m.error.is_some()).count();
    println!(
        "bench-instructions: {} measured, {failed} failed",
        results.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
