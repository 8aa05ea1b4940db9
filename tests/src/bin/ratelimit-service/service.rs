//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` answered by limitador: each
//! descriptor checked and counted on its own, the answer OVER_LIMIT when any one is.

use crate::config::{Leaf, RateLimit, Unit};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit, Code, DescriptorStatus, RateLimit as CurrentLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use limitador::counter::Counter;
use limitador::limit::Namespace;
use limitador::AsyncRateLimiter;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct Service {
    limiter: AsyncRateLimiter,
    domain: String,
    /// Each limit's `rate_limit`, by the limit's name, for `current_limit`.
    limits: HashMap<String, RateLimit>,
    /// limitador reads the counters, then increments them in a second round trip; two checks at
    /// once could both pass the last unit. envoyproxy/ratelimit increments first (INCRBY) and
    /// never admits past the limit, so the stand-in checks one request at a time to keep that.
    one_at_a_time: Mutex<()>,
    /// Test-only fault injection (`--delay-ms`): how long each answer waits.
    delay: Duration,
}

impl Service {
    pub fn new(
        limiter: AsyncRateLimiter,
        domain: String,
        leaves: Vec<Leaf>,
        delay: Duration,
    ) -> Self {
        let mut limits = HashMap::new();
        for leaf in leaves {
            if let Some(name) = leaf.limit.name() {
                limits.insert(name.to_string(), leaf.rate_limit.clone());
            }
            limiter.add_limit(leaf.limit);
        }
        Service {
            limiter,
            domain,
            limits,
            one_at_a_time: Mutex::new(()),
            delay,
        }
    }

    async fn check(
        &self,
        d: &RateLimitDescriptor,
        hits: i64,
    ) -> Result<DescriptorStatus, tonic::Status> {
        let entries: Vec<(&str, &str)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let values = crate::config::values(&entries);
        let namespace = Namespace::from(self.domain.as_str());
        let result = self
            .limiter
            .check_rate_limited_and_update(&namespace, &values, hits, true)
            .await
            .map_err(|e| {
                // Logged here too: the caller sees only UNAVAILABLE (and, with `on_error: deny`,
                // a 503), and a post-mortem needs to know the storage said no.
                eprintln!("ShouldRateLimit counter storage error: {e}");
                tonic::Status::unavailable(format!("counter storage: {e}"))
            })?;
        // The counter closest to its limit speaks for the descriptor.
        let tightest = result
            .counters
            .iter()
            .min_by_key(|c| c.remaining().unwrap_or(c.max_value()));
        Ok(match tightest {
            None => DescriptorStatus {
                code: Code::Ok.into(),
                ..Default::default()
            },
            Some(c) => DescriptorStatus {
                code: if result.limited {
                    Code::OverLimit
                } else {
                    Code::Ok
                }
                .into(),
                current_limit: self.current_limit(c),
                limit_remaining: u32::try_from(c.remaining().unwrap_or(0).max(0))
                    .unwrap_or(u32::MAX),
                duration_until_reset: Some(until_reset(c)),
                ..Default::default()
            },
        })
    }

    fn current_limit(&self, c: &Counter) -> Option<CurrentLimit> {
        let rl = self.limits.get(c.limit().name()?)?;
        let unit = match rl.unit {
            Unit::Second => rate_limit::Unit::Second,
            Unit::Minute => rate_limit::Unit::Minute,
            Unit::Hour => rate_limit::Unit::Hour,
            Unit::Day => rate_limit::Unit::Day,
        };
        Some(CurrentLimit {
            name: rl.name.clone().unwrap_or_default(),
            requests_per_unit: rl.requests_per_unit,
            unit: unit.into(),
        })
    }
}

/// Until the counter's window ends: its expiry in Redis, or the whole window for a counter that
/// has none yet.
fn until_reset(c: &Counter) -> ProtoDuration {
    let d = c
        .expires_in()
        .unwrap_or_else(|| Duration::from_secs(c.seconds()));
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let req = request.into_inner();
        if req.domain != self.domain {
            // envoyproxy/ratelimit knows no limits in another domain: everything is under limit.
            return Ok(tonic::Response::new(answer(req.descriptors.iter().map(
                |_| DescriptorStatus {
                    code: Code::Ok.into(),
                    ..Default::default()
                },
            ))));
        }
        let hits = i64::from(req.hits_addend.max(1));
        let _turn = self.one_at_a_time.lock().await;
        let mut statuses = Vec::with_capacity(req.descriptors.len());
        for d in &req.descriptors {
            let hits = d
                .hits_addend
                .as_ref()
                .map_or(hits, |h| i64::try_from(h.value.max(1)).unwrap_or(i64::MAX));
            statuses.push(self.check(d, hits).await?);
        }
        let response = answer(statuses);
        // One line per answer, for a test's post-mortem (descriptors only: no credentials).
        eprintln!(
            "ShouldRateLimit domain={} descriptors={:?} -> {:?}",
            req.domain,
            req.descriptors
                .iter()
                .map(|d| d
                    .entries
                    .iter()
                    .map(|e| format!("{}={}", e.key, e.value))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            response.statuses.iter().map(|s| s.code).collect::<Vec<_>>()
        );
        Ok(tonic::Response::new(response))
    }
}

fn answer(statuses: impl IntoIterator<Item = DescriptorStatus>) -> RateLimitResponse {
    let statuses: Vec<_> = statuses.into_iter().collect();
    let over = statuses
        .iter()
        .any(|s| s.code == i32::from(Code::OverLimit));
    RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok }.into(),
        statuses,
        ..Default::default()
    }
}
