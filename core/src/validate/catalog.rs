//! A server's `resources`, `prompts` and `deny`: patterns and names checked, compiled to a catalog.

use crate::catalog::{Catalog, Pattern};
use crate::config::ServerDoc;
use crate::scopes::ScopeSet;

/// Compiles `resources`, `prompts` and `deny`; scopes are checked by `within` (which reports
/// its own errors), patterns and names here, returned as `(field, message)`.
pub(super) fn compile(
    s: &ServerDoc,
    within: &mut dyn FnMut(String, &str, &[String]) -> ScopeSet,
) -> Result<Catalog, Vec<(String, String)>> {
    let mut bad = Vec::new();
    let mut catalog = Catalog::default();
    for (pattern, needs) in &s.resources {
        let set = within(
            format!("resources.{pattern}"),
            &format!("resource `{pattern}`"),
            needs,
        );
        match Pattern::parse(pattern) {
            Ok(p) => catalog.resources.push((p, set)),
            Err(m) => bad.push((format!("resources.{pattern}"), m)),
        }
    }
    for (name, needs) in &s.prompts {
        if name.is_empty() {
            bad.push(("prompts".into(), "prompt name must not be empty".into()));
        }
        let set = within(
            format!("prompts.{name}"),
            &format!("prompt `{name}`"),
            needs,
        );
        catalog.prompts.insert(name.clone(), set);
    }
    for (i, pattern) in s.deny.resources.iter().enumerate() {
        match Pattern::parse(pattern) {
            Ok(p) => catalog.deny_resources.push(p),
            Err(m) => bad.push((format!("deny.resources[{i}]"), m)),
        }
    }
    for (what, names, into) in [
        ("methods", &s.deny.methods, &mut catalog.deny_methods),
        ("tools", &s.deny.tools, &mut catalog.deny_tools),
        ("prompts", &s.deny.prompts, &mut catalog.deny_prompts),
    ] {
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                bad.push((format!("deny.{what}[{i}]"), "must not be empty".into()));
            }
            into.insert(n.clone());
        }
    }
    for (i, m) in s.deny.methods.iter().enumerate() {
        if matches!(
            m.as_str(),
            "initialize" | "notifications/initialized" | "ping"
        ) {
            bad.push((
                format!("deny.methods[{i}]"),
                format!("denying `{m}` would make the server unusable"),
            ));
        }
    }
    for t in &s.deny.tools {
        if s.tools.contains_key(t) {
            bad.push((
                format!("tools.{t}"),
                format!("tool `{t}` is both denied and given scopes"),
            ));
        }
    }
    for p in &s.deny.prompts {
        if s.prompts.contains_key(p) {
            bad.push((
                format!("prompts.{p}"),
                format!("prompt `{p}` is both denied and given scopes"),
            ));
        }
    }
    if bad.is_empty() {
        Ok(catalog)
    } else {
        Err(bad)
    }
}
