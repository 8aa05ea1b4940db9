//! The rate limit service the filter asks about budgets, as a process: the harness's stand-in
//! for envoyproxy/ratelimit (src/bin/ratelimit-service, limitador on Redis behind Envoy's RLS
//! gRPC API), started on a configuration file, stopped and started again on the same port for
//! fault tests, and a gRPC client for tests that ask it directly.

use crate::procs::{log_dir, Proc};
use crate::{built, free_port};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const BIN: &str = "target/debug/ratelimit-service";
pub const RELEASE_BIN: &str = "target/release/ratelimit-service";

pub struct RateLimitService {
    proc: Option<Proc>,
    name: String,
    dir: PathBuf,
    config: PathBuf,
    redis_url: String,
    pub port: u16,
    bin: &'static str,
}

impl RateLimitService {
    /// Starts the service for test `name` on `config` (envoyproxy/ratelimit's YAML), counting
    /// in the Redis at `redis_url`; returns once it listens.
    pub fn start(name: &str, config_yaml: &str, redis_url: &str) -> RateLimitService {
        RateLimitService::start_built(BIN, name, config_yaml, redis_url)
    }

    /// As [`RateLimitService::start`] with another build of the service (the bench runs
    /// [`RELEASE_BIN`], so the service keeps up with its load).
    pub fn start_built(
        bin: &'static str,
        name: &str,
        config_yaml: &str,
        redis_url: &str,
    ) -> RateLimitService {
        let dir = log_dir(name);
        let port = free_port();
        let config = dir.join(format!("ratelimit-{port}.yaml"));
        std::fs::write(&config, config_yaml).expect("write the rate limit configuration");
        let mut s = RateLimitService {
            proc: None,
            name: format!("ratelimit-{port}"),
            dir,
            config,
            redis_url: redis_url.to_string(),
            port,
            bin,
        };
        s.start_server(0);
        s
    }

    /// (Re)starts the service on its port; `delay_ms` above 0 makes every answer wait that long
    /// (the service's test-only `--delay-ms` fault).
    pub fn start_server(&mut self, delay_ms: u64) {
        self.stop_server();
        let how = if self.bin == RELEASE_BIN {
            "make ratelimit-service"
        } else {
            "cargo build -p scopegate-tests --bins"
        };
        let mut cmd = Command::new(built(self.bin, how));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--redis")
            .arg(&self.redis_url)
            .arg("--config")
            .arg(&self.config)
            .args(["--delay-ms", &delay_ms.to_string()]);
        let mut proc = Proc::start(&self.name, cmd, &self.dir);
        proc.wait_stdout_line("listening on ", Duration::from_secs(30));
        self.proc = Some(proc);
    }

    /// Stops the service at once (SIGKILL).
    pub fn stop_server(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its stderr so far, for assertion messages.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// Asks `ShouldRateLimit` once, as Envoy would, with hits_addend 1.
    pub fn ask(
        &self,
        domain: &str,
        descriptors: &[&[(&str, &str)]],
    ) -> Result<RateLimitResponse, String> {
        ask(&self.address(), domain, descriptors)
    }
}

/// One `ShouldRateLimit` call to the service at `address` (a client of its own, on a runtime of
/// its own: tests are synchronous).
pub fn ask(
    address: &str,
    domain: &str,
    descriptors: &[&[(&str, &str)]],
) -> Result<RateLimitResponse, String> {
    let request = RateLimitRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| Entry {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 1,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut client = RateLimitServiceClient::connect(format!("http://{address}"))
            .await
            .map_err(|e| e.to_string())?;
        client
            .should_rate_limit(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| e.to_string())
    })
}
