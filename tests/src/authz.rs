//! The example's real authorization server (`oidc-provider` under Node), started for a test.

use crate::procs::{log_dir, Proc};
use crate::repo_root;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

pub const AUTHZ_DIR: &str = "examples/two-servers/authz";

pub struct Authz {
    pub proc: Proc,
    /// The issuer URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
}

impl Authz {
    /// Starts `node server.mjs --config <config>`; `config` is the JSON its README describes.
    pub fn start(dir: &str, config: &Value) -> Authz {
        Authz::start_with_env(dir, config, &[])
    }

    /// As [`Authz::start`], with extra environment (e.g. `NODE_EXTRA_CA_CERTS` for a test CA).
    pub fn start_with_env(dir: &str, config: &Value, env: &[(&str, String)]) -> Authz {
        let root = repo_root().join(AUTHZ_DIR);
        assert!(
            root.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci` in {AUTHZ_DIR} (or `make test`)"
        );
        let logs = log_dir(dir);
        let config_path = logs.join("authz.json");
        std::fs::write(&config_path, config.to_string()).expect("authz config");
        let mut cmd = Command::new("node");
        cmd.current_dir(&root)
            .arg("server.mjs")
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut proc = Proc::start("authz", cmd, &logs);
        let url = proc.wait_stdout_line("listening on ", Duration::from_secs(30));
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("authz port");
        Authz { proc, url, port }
    }

    /// A real access token from the client_credentials grant (RFC 6749 §4.4 + RFC 8707 `resource`).
    pub fn client_credentials(
        &self,
        client_id: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> Value {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/token", self.url))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .expect("token request");
        let status = r.status();
        let body: Value = r.json().expect("token response JSON");
        assert!(
            status.is_success(),
            "client_credentials failed: {status} {body}"
        );
        body
    }
}
