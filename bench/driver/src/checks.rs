//! The checks from Envoy's own counters after the load: the case's premise, VM growth, auth stats.

use super::cases::{Case, Kind, Pool};
use super::envoy::STAT_PREFIX;
use super::options::Options;
use super::outcome::{CaseResult, Check};
use scopegate_tests::envoy::Envoy;
use std::collections::BTreeMap;

/// How much a worker VM's linear memory may grow over a hit case's load: its caches filling with
/// the pool's tokens. A request that left anything behind (a context the SDK never dropped)
/// would grow it by hundreds of bytes per request, tens of MiB over a full run.
pub const VM_GROWTH_ALLOWED_KB: u64 = 2048;

/// What the auth's own counters say: signature verifications (scopegate's
/// `scopegate.jwt.verified`, `jwt_authn`'s `jwt_cache_miss`) and `jwt_authn`'s cache hits.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AuthCounters {
    verified: Option<u64>,
    native_hits: u64,
}

impl AuthCounters {
    pub(super) fn read(envoy: &Envoy, kind: Kind) -> AuthCounters {
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
pub(super) fn premise(
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
pub(super) fn auth_stats(admin_port: u16) -> BTreeMap<String, u64> {
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

/// Nothing a request leaves behind: in the cases whose caches stay small (a pool of reused
/// tokens), the worker VM's linear memory grows by at most [`VM_GROWTH_ALLOWED_KB`] over the
/// whole load. A bound, not a timing: it holds or not whatever the machine's speed.
pub(super) fn vm_growth_check(r: &CaseResult) -> Option<Check> {
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
