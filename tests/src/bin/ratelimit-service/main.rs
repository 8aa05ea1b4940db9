//! A stand-in for envoyproxy/ratelimit, for the tests and the bench only: Envoy's rate limit
//! service (`envoy.service.ratelimit.v3.RateLimitService`) with its counters in Redis.
//!
//! envoyproxy/ratelimit is a Go program with no package any registry here ships, so the tests
//! run this instead: Kuadrant's limitador engine (its Redis storage) behind the same gRPC API,
//! reading the same configuration file (a domain and a tree of descriptors, as
//! `scopegate-broker render ratelimit` prints it). What it shares with envoyproxy/ratelimit is
//! what the filter can see: the API, the configuration format, counters kept in Redis (so
//! several service processes count together) and the answer (OVER_LIMIT with
//! `duration_until_reset`; descriptors no limit matches are OK). It is no part of the product.
//!
//! ```text
//! ratelimit-service --listen 127.0.0.1:0 --redis redis://127.0.0.1:6379 --config ratelimit.yaml [--delay-ms N]
//! ```
//! Prints `listening on ADDR` once bound. `--delay-ms` is a test-only fault injector: every
//! answer waits that long, so a test can see the filter's `timeout_ms` and `on_error` at work.

mod config;
mod service;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use std::io::Write;
use std::time::Duration;

struct Args {
    listen: String,
    redis: String,
    config: String,
    delay_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut listen = None;
    let mut redis = None;
    let mut config = None;
    let mut delay_ms = 0;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--redis" => redis = Some(value()?),
            "--config" => config = Some(value()?),
            "--delay-ms" => delay_ms = value()?.parse().map_err(|e| format!("--delay-ms: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        redis: redis.ok_or("--redis is required")?,
        config: config.ok_or("--config is required")?,
        delay_ms,
    })
}

async fn run(args: Args) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&args.config).map_err(|e| format!("{}: {e}", args.config))?;
    let (domain, leaves) = config::parse(&text).map_err(|e| format!("{}: {e}", args.config))?;
    let storage = AsyncRedisStorage::new(&args.redis)
        .await
        .map_err(|e| format!("Redis at {}: {e}", args.redis))?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    let svc = service::Service::new(
        limiter,
        domain,
        leaves,
        Duration::from_millis(args.delay_ms),
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(svc))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let result = match args() {
        Ok(a) => run(a).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("ratelimit-service: {e}");
        std::process::exit(1);
    }
}
