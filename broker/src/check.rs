//! `scopegate-broker check FILE`: the document's errors, warnings and effective scopes per server.

use scopegate_core::oauth::authorize::api_subset;
use scopegate_core::validate::{load, LoadError};
use std::fmt::Write;

/// The report and whether the document is usable.
pub fn run(text: &str) -> (String, bool) {
    let mut out = String::new();
    match load(text) {
        Err(LoadError::Parse(e)) => {
            let _ = writeln!(out, "error: {e}");
            (out, false)
        }
        Err(LoadError::Invalid(errors)) => {
            for e in &errors {
                let _ = writeln!(out, "error: {e}");
            }
            let _ = writeln!(out, "{} error(s)", errors.len());
            (out, false)
        }
        Ok(policy) => {
            for g in &policy.gateways {
                let mode = if g.brokered { "broker" } else { "validate" };
                let _ = writeln!(
                    out,
                    "gateway `{}` ({mode} mode), issuer {}",
                    g.name, g.issuer
                );
                let _ = writeln!(out, "  allowed scopes: {}", g.scopes.render(g.scopes.all()));
                for id in &g.servers {
                    let Some(s) = policy.server(*id) else {
                        continue;
                    };
                    let _ = writeln!(out, "  server `{}` (cluster `{}`)", s.name, s.cluster);
                    let _ = writeln!(out, "    resource: {}", s.resource);
                    let _ = writeln!(
                        out,
                        "    effective scopes: {}",
                        g.scopes.render(api_subset(&g.scopes, s))
                    );
                }
            }
            for w in &policy.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            let _ = writeln!(
                out,
                "ok: {} gateway(s), {} server(s), {} warning(s)",
                policy.gateways.len(),
                policy.servers.len(),
                policy.warnings.len()
            );
            (out, true)
        }
    }
}
