//! `scopegate-broker check FILE`: the document's errors, warnings and effective scopes per server.

use scopegate_core::oauth::authorize::api_subset;
use scopegate_core::validate::{load, LoadError};
use std::fmt::Write;

/// Where budgets are counted, said plainly: per proxy unless a rate limit service counts them.
fn counted_by(policy: &scopegate_core::Policy) -> String {
    match &policy.filter.rate_limit {
        Some(r) => format!(
            "counted by the rate limit service (cluster `{}`, domain `{}`) across every proxy",
            r.cluster, r.domain
        ),
        None => "counted per proxy: each Envoy counts on its own, so N replicas allow N times each budget (filter.rate_limit counts them across the fleet)".into(),
    }
}

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
                    if !s.budgets.is_empty() {
                        let _ = writeln!(
                            out,
                            "    budgets: {}, {}",
                            s.budgets.len(),
                            counted_by(&policy)
                        );
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"gateways":[{"name":"g","public_url":"https://mcp.example.com","issuer":"https://idp.example.com","allowed_scopes":["a"],"jwks":{"cluster":"idp"},"servers":[{"name":"s","cluster":"c","path":"/s/mcp","scopes":["a"],"budgets":[{"requests":5,"per_seconds":60}]}]}]FILTER}"#;

    #[test]
    fn check_says_where_budgets_are_counted() {
        let (per_proxy, ok) = run(&DOC.replace("FILTER", ""));
        assert!(ok, "{per_proxy}");
        assert!(
            per_proxy.contains("budgets: 1, counted per proxy"),
            "{per_proxy}"
        );
        let fleet = DOC.replace(
            "FILTER",
            r#","filter":{"rate_limit":{"cluster":"rls","on_error":"allow"}}"#,
        );
        let (fleet, ok) = run(&fleet);
        assert!(ok, "{fleet}");
        assert!(
            fleet.contains(
                "budgets: 1, counted by the rate limit service (cluster `rls`, domain `scopegate`)"
            ),
            "{fleet}"
        );
        assert!(
            fleet.contains("warning: filter.rate_limit.on_error is `allow`"),
            "on_error allow is said at load: {fleet}"
        );
    }
}
