//! The broker binary (`target/debug/scopegate-broker`) under test, and its config document.

use crate::built;
use crate::downstream::{API, CLIENT_SECRET};
use crate::procs::{log_dir, Proc};
use crate::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const BIN: &str = "target/debug/scopegate-broker";

static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs brokers from `path` instead of [`BIN`] (the benchmarks use the release build). First call
/// wins; returns the binary in use.
pub fn use_binary(path: PathBuf) -> PathBuf {
    BINARY.get_or_init(|| path).clone()
}
/// The AEAD key the tests' brokers use (hex, 32 bytes).
pub const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const PREREG: &str = "prereg-app";
pub const PREREG_REDIRECT: &str = "http://127.0.0.1:1/prereg/cb";

pub struct Broker {
    pub proc: Proc,
    pub public: String,
    pub internal: String,
    pub port: u16,
    pub internal_port: u16,
    config: PathBuf,
    dir: String,
}

/// The example gateway in broker mode on `public_url` (the broker's own public listener here),
/// plus a second gateway `other` whose issuer has a path, for cross-gateway checks.
pub fn doc(public_url: &str, downstream: &str, db: &str) -> Value {
    json!({
        "gateways": [
            {
                "name": "saas",
                "public_url": public_url,
                "issuer": public_url,
                "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read", "admin.read"],
                "downstream": {
                    "authorization_server": downstream,
                    "client_id": crate::downstream::CLIENT_ID,
                    "client_secret_env": "SCOPEGATE_TEST_DOWNSTREAM_SECRET",
                    "resource": API,
                    "extra_scopes": ["openid", "offline_access"]
                },
                "identity": {"subject_claim": "sub"},
                "clients": {
                    "dcr": true,
                    "preregistered": [{"client_id": PREREG, "client_name": "Prereg App", "redirect_uris": [PREREG_REDIRECT]}]
                },
                "default_server": "support-assistant",
                "servers": [
                    {"name": "support-assistant", "cluster": "support_assistant", "path": SUPPORT, "scopes": ["tickets.read", "accounts.read"]},
                    {"name": "ops-console", "cluster": "ops_console", "path": OPS, "scopes": ["tickets.write", "admin.read"]}
                ]
            },
            {
                "name": "other",
                "public_url": "http://127.0.0.1:2",
                "issuer": format!("{public_url}/other"),
                "allowed_scopes": ["x.read"],
                "downstream": {"authorization_server": downstream, "client_id": crate::downstream::CLIENT_ID,
                               "client_secret_env": "SCOPEGATE_TEST_DOWNSTREAM_SECRET", "resource": API},
                "servers": [{"name": "x", "cluster": "x", "path": "/x/mcp", "scopes": ["x.read"]}]
            }
        ],
        "filter": {
            "jwks": {"cluster": "scopegate_broker_internal", "path": "/jwks"},
            "broker": {"cluster": "scopegate_broker_internal"}
        },
        "broker": {
            "database": db,
            "encryption_key_env": "SCOPEGATE_TEST_KEY",
            "access_token_ttl_s": 300,
            "downstream_refresh_margin_s": 0
        }
    })
}

impl Broker {
    /// Writes `doc` and starts the broker on `port` (fixed: `public_url` names it).
    pub fn start(dir: &str, doc: &Value, port: u16) -> Broker {
        let logs = log_dir(dir);
        let config = logs.join("broker.json");
        std::fs::write(&config, serde_json::to_string_pretty(doc).unwrap()).unwrap();
        // A fixed internal port too, so Envoy's cluster still reaches a restarted broker.
        let internal_port = crate::free_port();
        let mut b = Broker {
            proc: spawn(&config, port, internal_port, &logs, &[]),
            public: String::new(),
            internal: String::new(),
            port,
            internal_port,
            config,
            dir: dir.to_string(),
        };
        b.wait_listening();
        b
    }

    fn wait_listening(&mut self) {
        let line = self
            .proc
            .wait_stdout_line("listening ", Duration::from_secs(30));
        let addr = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in `{line}`"))
                .to_string()
        };
        self.public = format!("http://{}", addr("public="));
        self.internal = format!("http://{}", addr("internal="));
        // A Unix-socket internal listener (`internal=unix:/path`) has no port.
        if let Some(path) = addr("internal=").strip_prefix("unix:") {
            self.internal = format!("unix:{path}");
            self.internal_port = 0;
            return;
        }
        self.internal_port = self
            .internal
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGKILL) };
        self.proc
            .wait_exit(Duration::from_secs(10))
            .expect("broker did not die");
    }

    /// Starts it again on the same config, database and port.
    pub fn restart(&mut self) {
        self.restart_with_env(&[]);
    }

    /// As [`Broker::restart`], with these environment variables added.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.proc.kill();
        self.proc = spawn(
            &self.config,
            self.port,
            self.internal_port,
            &log_dir(&self.dir),
            env,
        );
        self.wait_listening();
    }

    /// SIGTERM, and its exit: the graceful shutdown runs (connections drained, traces flushed).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGTERM) };
        self.proc
            .wait_exit(Duration::from_secs(30))
            .expect("broker did not stop on SIGTERM")
    }

    pub fn stats(&self) -> Value {
        reqwest::blocking::get(format!("{}/internal/stats", self.internal))
            .unwrap()
            .json()
            .unwrap()
    }

    /// The Prometheus metrics (`/metrics` on the internal listener), as a scraper sees them.
    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.internal))
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("cannot scrape the broker's /metrics: {e}"))
    }

    /// RFC 8693 exchange on the internal listener, as the filter does it: (status, body).
    pub fn exchange(&self, token: &str, resource: &str) -> (u16, Value) {
        exchange(&self.internal, token, resource)
    }
}

pub fn exchange(internal: &str, token: &str, resource: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{internal}/internal/token-exchange"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("resource", resource),
        ])
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn spawn(
    config: &PathBuf,
    port: u16,
    internal_port: u16,
    logs: &std::path::Path,
    env: &[(&str, &str)],
) -> Proc {
    let bin = match BINARY.get() {
        Some(p) => p.clone(),
        None => built(BIN, "cargo build -p scopegate-broker"),
    };
    // The document's internal listener when it is a Unix socket, else a loopback port.
    let internal = std::fs::read_to_string(config)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|d| d["broker"]["internal_listen"].as_str().map(str::to_string))
        .filter(|a| a.starts_with("unix:"))
        .unwrap_or_else(|| format!("127.0.0.1:{internal_port}"));
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--internal-listen",
            &internal,
        ])
        .env("SCOPEGATE_TEST_KEY", KEY)
        .env("SCOPEGATE_TEST_DOWNSTREAM_SECRET", CLIENT_SECRET)
        .envs(env.iter().copied());
    Proc::start("broker", cmd, logs)
}

/// The downstream server and the broker in front of it, ready for a client.
pub struct BrokerStack {
    pub authz: crate::authz::Authz,
    pub broker: Broker,
    /// The `saas` gateway's issuer (the broker's public listener).
    pub issuer: String,
    pub other_issuer: String,
    pub downstream_issuer: String,
}

impl BrokerStack {
    /// `ttl`: the downstream access-token lifetime; `proxy`: put it between broker and downstream;
    /// `tweak` edits the broker's document.
    pub fn start(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        tweak: impl FnOnce(&mut Value),
    ) -> BrokerStack {
        BrokerStack::start_at(name, ttl, proxy, None, tweak)
    }

    /// As [`BrokerStack::start`], with the gateway's public URL on `public_port` (Envoy's
    /// listener, in front of the broker) instead of the broker's own port.
    pub fn start_at(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        public_port: Option<u16>,
        tweak: impl FnOnce(&mut Value),
    ) -> BrokerStack {
        let port = crate::free_port();
        let public = format!("http://127.0.0.1:{}", public_port.unwrap_or(port));
        let spec = crate::downstream::Spec {
            redirect_uris: vec![
                format!("{public}/callback"),
                format!("{public}/other/callback"),
            ],
            access_ttl: ttl,
            issuer: proxy.map(|p| p.url.clone()),
        };
        let (authz, downstream_issuer) = crate::downstream::start(name, &spec);
        if let Some(p) = proxy {
            p.set_target(authz.port);
        }
        let logs = log_dir(name);
        for f in ["broker.sqlite", "broker.sqlite-wal", "broker.sqlite-shm"] {
            let _ = std::fs::remove_file(logs.join(f));
        }
        let db = logs.join("broker.sqlite").display().to_string();
        let mut d = doc(&public, &downstream_issuer, &db);
        tweak(&mut d);
        let broker = Broker::start(name, &d, port);
        BrokerStack {
            authz,
            broker,
            other_issuer: format!("{public}/other"),
            issuer: public,
            downstream_issuer,
        }
    }

    pub fn resource(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The broker's JWKS from the internal listener, as the filter fetches it.
    pub fn keys(&self) -> scopegate_core::jwks::KeySet {
        let text = reqwest::blocking::get(format!("{}/jwks", self.broker.internal))
            .unwrap()
            .text()
            .unwrap();
        scopegate_core::jwks::KeySet::from_json(text.as_bytes()).unwrap()
    }

    /// Verifies an access token as an MCP server (or the filter) would: signature, `iss`, `exp`
    /// with `scopegate_core::jwt::verify`, then `aud` against `resource`.
    pub fn verify(&self, token: &str, resource: &str) -> scopegate_core::jwt::Claims {
        let c = scopegate_core::jwt::verify(
            token,
            &self.keys(),
            &scopegate_core::jwt::VerifyOptions::new(&self.issuer, crate::now()),
        )
        .unwrap_or_else(|e| panic!("broker token does not verify: {e}"));
        assert_eq!(c.aud, vec![resource.to_string()]);
        c
    }
}
