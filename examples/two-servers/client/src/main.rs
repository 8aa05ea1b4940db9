//! `scopegate-walkthrough`: an MCP client meeting the scopegate gateway the way real clients do.
//!
//! For each of the two example servers it connects with rmcp's Streamable HTTP client, meets the
//! 401, and runs rmcp's OAuth client support: discovery from the challenge (protected-resource
//! metadata, then the broker's authorization-server metadata), dynamic client registration with
//! a loopback redirect URI, an authorization URL with PKCE S256 and the RFC 8707 `resource`, the
//! code exchange with `iss` checked (RFC 9207). The browser part (consent page, the identity
//! provider's automatic login, the redirects) is played by `browser.rs`. Then it calls tools
//! through rmcp's authorized transport, steps up on a 403 `insufficient_scope`, and keeps going
//! across access-token expiry (refresh with rotation) and the downstream credential's expiry.
//!
//! Every step is printed; the last line is `WALKTHROUGH {json}` with the counts a caller checks.
//! Exit status 0 only when every check held.
//!
//! Usage: scopegate-walkthrough [--gateway URL] [--support URL] [--ops URL] [--max-wait SECS]

mod browser;
mod oauth_log;
mod show;
mod steps;
mod summary;
mod walk;

use std::process::ExitCode;

pub struct Options {
    pub support: String,
    pub ops: String,
    /// Longest the walkthrough waits for a token to expire; longer waits are skipped.
    pub max_wait: u64,
}

const USAGE: &str = "usage: scopegate-walkthrough [--gateway URL] [--support URL] [--ops URL] [--max-wait SECS]\n\
  --gateway URL   the gateway's public URL (default http://127.0.0.1:10000); the servers are at\n\
                  /support-assistant/mcp and /ops-console/mcp under it\n\
  --support URL   support-assistant's MCP URL (overrides --gateway for it)\n\
  --ops URL       ops-console's MCP URL (overrides --gateway for it)\n\
  --max-wait S    wait at most S seconds for tokens to expire (default 60); longer waits are skipped";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut gateway = "http://127.0.0.1:10000".to_string();
    let (mut support, mut ops, mut max_wait) = (None, None, 60);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--gateway" => gateway = value.trim_end_matches('/').to_string(),
            "--support" => support = Some(value),
            "--ops" => ops = Some(value),
            "--max-wait" => {
                max_wait = value
                    .parse()
                    .map_err(|_| format!("--max-wait takes seconds, not `{value}`"))?
            }
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(Options {
        support: support.unwrap_or_else(|| format!("{gateway}/support-assistant/mcp")),
        ops: ops.unwrap_or_else(|| format!("{gateway}/ops-console/mcp")),
        max_wait,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let summary = rt.block_on(walk::run(&opts));
    println!(
        "\n\x1b[1mwalkthrough: {} checks passed, {} failed, {} skipped\x1b[0m",
        summary.passed.len(),
        summary.failed.len(),
        summary.skipped.len()
    );
    for f in &summary.failed {
        println!("   failed: {f}");
    }
    println!("WALKTHROUGH {}", summary.to_json());
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
