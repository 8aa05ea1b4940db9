//! One SDK client run as a real host: the SDKs and cells, its config file, what the run left.

use crate::cimd_host::CimdHost;
use crate::envoy::Envoy;
use crate::procs::{log_dir, Proc};
use crate::stack::McpServer;
use crate::{free_port, repo_root};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const CLIENTS_DIR: &str = "tests/clients";
pub const PYTHON: &str = ".venv/bin/python";
/// The tool a fresh token may call on each server, and the one the step-up needs.
pub const SUPPORT_SCOPES: &str = "tickets.read accounts.read";
pub const STEP_UP_CHALLENGE: &str = "tickets.write admin.read";

/// Which SDK the host is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `@modelcontextprotocol/sdk` 1.x
    TsV1,
    /// `@modelcontextprotocol/client` 2.x
    TsV2,
    /// `mcp` 2.x (PyPI)
    Python,
}

impl Sdk {
    pub fn label(self) -> &'static str {
        match self {
            Sdk::TsV1 => "ts-v1",
            Sdk::TsV2 => "ts-v2",
            Sdk::Python => "python",
        }
    }

    /// The package and its installed version, read from what is installed.
    pub fn package(self) -> (String, String) {
        let npm = |name: &str| {
            let p = repo_root()
                .join(CLIENTS_DIR)
                .join("node_modules")
                .join(name)
                .join("package.json");
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default())
                .unwrap_or(Value::Null);
            (
                name.to_string(),
                v["version"].as_str().unwrap_or("?").to_string(),
            )
        };
        match self {
            Sdk::TsV1 => npm("@modelcontextprotocol/sdk"),
            Sdk::TsV2 => npm("@modelcontextprotocol/client"),
            Sdk::Python => {
                let out = Command::new(repo_root().join(PYTHON))
                    .args([
                        "-c",
                        "import importlib.metadata as m; print(m.version('mcp'))",
                    ])
                    .output();
                let v = out
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_default();
                ("mcp".to_string(), v)
            }
        }
    }

    /// Protocol generations the SDK speaks (1.x knows nothing after 2025-11-25).
    pub fn speaks(self, p: Protocol) -> bool {
        !(self == Sdk::TsV1 && p == Protocol::Modern)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Dcr,
    Cimd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 2025-11-25: `initialize`, `Mcp-Session-Id`.
    Legacy,
    /// 2026-07-28: stateless, `Mcp-Method`/`Mcp-Name`.
    Modern,
}

impl Protocol {
    pub fn version(self) -> &'static str {
        match self {
            Protocol::Legacy => "2025-11-25",
            Protocol::Modern => "2026-07-28",
        }
    }
}

/// One cell of the matrix (the mode is the stack it runs against).
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub sdk: Sdk,
    pub registration: Registration,
    pub protocol: Protocol,
}

impl Cell {
    pub fn name(&self) -> String {
        let r = match self.registration {
            Registration::Dcr => "dcr",
            Registration::Cimd => "cimd",
        };
        format!("{}-{r}-{}", self.sdk.label(), self.protocol.version())
    }
}

/// Every cell each SDK can run.
pub fn cells(registrations: &[Registration]) -> Vec<Cell> {
    let mut out = Vec::new();
    for sdk in [Sdk::TsV1, Sdk::TsV2, Sdk::Python] {
        for &registration in registrations {
            for protocol in [Protocol::Legacy, Protocol::Modern] {
                if sdk.speaks(protocol) {
                    out.push(Cell {
                        sdk,
                        registration,
                        protocol,
                    });
                }
            }
        }
    }
    out
}

/// What a mode's stack offers the cells that share it.
pub struct Target<'a> {
    /// `broker` or `validate`.
    pub mode: &'static str,
    /// Test name: logs go to `target/it-logs/<dir>/`.
    pub dir: &'a str,
    pub public_url: String,
    /// The authorization server's issuer as clients see it.
    pub issuer: String,
    pub envoy: &'a Envoy,
    pub support: &'a McpServer,
    pub ops: &'a McpServer,
    pub cimd: Option<&'a CimdHost>,
    /// Seconds a client waits for its access token to be refused (TTL plus a margin).
    pub expiry_wait_s: f64,
}

/// What one client run left behind.
pub struct Run {
    pub cell: Cell,
    pub summary: Value,
    pub wire: Vec<Value>,
    pub redirect_port: u16,
    pub client_name: String,
    pub client_metadata_url: Option<String>,
}

/// Fails (never skips) when the clients are not installed.
pub fn require_installed() {
    let root = repo_root();
    for p in [
        "tests/clients/node_modules/@modelcontextprotocol/sdk/package.json",
        "tests/clients/node_modules/@modelcontextprotocol/client/package.json",
    ] {
        assert!(
            root.join(p).exists(),
            "{p} is missing: run `make sdk-clients` (npm ci in tests/clients)"
        );
    }
    let ok = Command::new(root.join(PYTHON))
        .args(["-c", "import mcp.client.auth, httpx2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python SDK is not in .venv: run `make sdk-clients` (pip install -r tests/clients/requirements.txt)"
    );
    assert!(
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "node is required (Node.js 20+)"
    );
}

/// Runs one client to its end (it exits by itself; killed after a generous limit).
pub fn run(target: &Target, cell: Cell) -> Run {
    let label = format!("{}-{}", target.mode, cell.name());
    let logs = log_dir(target.dir);
    let wire = logs.join(format!("{label}.wire.jsonl"));
    let _ = std::fs::remove_file(&wire);
    let redirect_port = free_port();
    let client_name = format!("SDK host {label}");
    let client_metadata_url = match (cell.registration, target.cimd) {
        (Registration::Cimd, Some(host)) => {
            let name = format!("{label}.json");
            let url = host.url(&name);
            host.put(
                &name,
                &json!({
                    "client_id": url,
                    "client_name": client_name,
                    "redirect_uris": [format!("http://127.0.0.1:{redirect_port}/callback")],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "none",
                    "application_type": "native"
                }),
            );
            Some(url)
        }
        (Registration::Cimd, None) => panic!("{label}: CIMD needs a document host"),
        (Registration::Dcr, _) => None,
    };
    // The config file a client reads (ts-client.mjs and py_client.py read the same fields).
    let config = json!({
        "sdk": match cell.sdk {
            Sdk::TsV1 => "v1",
            Sdk::TsV2 => "v2",
            Sdk::Python => "python",
        },
        "label": label,
        "client_name": client_name,
        "support_url": target.envoy.url(crate::stack::SUPPORT),
        "ops_url": target.envoy.url(crate::stack::OPS),
        "registration": match cell.registration {
            Registration::Dcr => "dcr",
            Registration::Cimd => "cimd",
        },
        "client_metadata_url": client_metadata_url,
        "redirect_port": redirect_port,
        "protocol": cell.protocol.version(),
        "wire_log": wire.display().to_string(),
        "expiry_wait_s": target.expiry_wait_s,
        // TypeScript 2.x in broker mode also meets a withdrawal on the connected-apps page.
        "apps_url": (target.mode == "broker" && cell.sdk == Sdk::TsV2)
            .then(|| format!("{}/apps", target.public_url)),
        "revocation_wait_ms": 3500,
    });
    let config_path = logs.join(format!("{label}.config.json"));
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let root = repo_root();
    let mut cmd = match cell.sdk {
        Sdk::Python => {
            let mut c = Command::new(root.join(PYTHON));
            c.arg(root.join(CLIENTS_DIR).join("py_client.py"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg(root.join(CLIENTS_DIR).join("ts-client.mjs"));
            c
        }
    };
    cmd.current_dir(root.join(CLIENTS_DIR)).arg(&config_path);
    let mut proc = Proc::start(&label, cmd, &logs);
    let status = proc.wait_exit(Duration::from_secs(240));
    if status.is_none() {
        proc.kill();
    }
    let stdout = std::fs::read_to_string(&proc.stdout_path).unwrap_or_default();
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| {
            json!({"ok": false, "error": format!("no summary (exit {status:?}); stderr:\n{}", proc.stderr())})
        });
    Run {
        cell,
        summary,
        wire: read_jsonl(&wire),
        redirect_port,
        client_name,
        client_metadata_url,
    }
}

fn read_jsonl(p: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
