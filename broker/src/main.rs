//! scopegate-broker: `serve` runs the broker, `check` validates a document, `render` prints the
//! proxy configuration for Envoy, Istio or Envoy Gateway (see `cli`).

mod app;
mod body;
mod check;
mod cimd;
mod cli;
mod clients;
mod clock;
mod crypto;
mod downstream;
mod error;
mod grants;
mod http;
mod internal;
mod keys;
mod listen;
mod metrics;
mod pages;
mod public;
mod render;
mod secret;
mod serve;
mod store;
mod telemetry;
mod tokens;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version on stdout with exit code 0, usage errors with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        cli::Command::Serve(a) => serve::serve_cmd(a),
        cli::Command::Check { file } => check_cmd(&file),
        cli::Command::Render { target } => render::run(target.into()),
    }
}

fn check_cmd(file: &str) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let (report, ok) = check::run(&text);
    print!("{report}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
