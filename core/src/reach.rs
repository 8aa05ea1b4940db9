//! What a server lets a call or a listed entry reach: its deny lists and per-entry scopes applied.

use crate::catalog::EntryKind;
use crate::mcp::Call;
use crate::policy::Server;
use crate::scopes::ScopeSet;

/// What reaching an entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never, whatever the token (denied in the document, or outside the server's subset).
    Never,
    /// These scopes (base, method and entry scopes together).
    Needs(ScopeSet),
}

/// The scopes one entry itself needs, or `None` when it is denied outright.
fn entry_scopes(server: &Server, kind: EntryKind, key: &str) -> Option<ScopeSet> {
    let c = &server.catalog;
    match kind {
        EntryKind::Tool => {
            if c.deny_tools.contains(key) {
                return None;
            }
            Some(server.tools.get(key).copied().unwrap_or_default())
        }
        EntryKind::Prompt => {
            if c.deny_prompts.contains(key) {
                return None;
            }
            Some(c.prompts.get(key).copied().unwrap_or_default())
        }
        EntryKind::Resource => {
            if c.deny_resources.iter().any(|p| p.matches(key)) {
                return None;
            }
            // Every matching pattern applies: overlapping rules only ever add needs.
            Some(
                c.resources
                    .iter()
                    .filter(|(p, _)| p.matches(key))
                    .fold(ScopeSet::EMPTY, |acc, (_, s)| acc.union(*s)),
            )
        }
        EntryKind::ResourceTemplate => {
            if c.deny_resources.iter().any(|p| p.covers_template(key)) {
                return None;
            }
            Some(
                c.resources
                    .iter()
                    .filter(|(p, _)| p.covers_template(key))
                    .fold(ScopeSet::EMPTY, |acc, (_, s)| acc.union(*s)),
            )
        }
    }
}

/// What reaching one listed entry takes on this server.
pub fn access(server: &Server, kind: EntryKind, key: &str) -> Access {
    let method = kind.call_method();
    if server.catalog.deny_methods.contains(method) {
        return Access::Never;
    }
    let Some(own) = entry_scopes(server, kind, key) else {
        return Access::Never;
    };
    let needs = server
        .base_scopes
        .union(server.methods.get(method).copied().unwrap_or_default())
        .union(own);
    if needs.is_subset_of(server.scopes) {
        Access::Needs(needs)
    } else {
        Access::Never
    }
}

/// The first call the document denies outright, if any.
pub fn denied_call<'c>(server: &Server, calls: &'c [Call]) -> Option<&'c Call> {
    calls.iter().find(|call| {
        if server.catalog.deny_methods.contains(&call.method) {
            return true;
        }
        let Some(kind) = call_entry(&call.method) else {
            return false;
        };
        // A call without a name names nothing the rules could allow.
        match call.name.as_deref() {
            Some(name) => entry_scopes(server, kind, name).is_none(),
            None => false,
        }
    })
}

/// The scopes a call's named entry needs beyond its method (resources and prompts; tools are
/// in `authorize::required_scopes`).
pub fn call_scopes(server: &Server, call: &Call) -> ScopeSet {
    match (call.method.as_str(), call.name.as_deref()) {
        // Subscribing to a resource shows its changes: it needs what reading it needs.
        ("resources/read" | "resources/subscribe", Some(uri)) => {
            entry_scopes(server, EntryKind::Resource, uri).unwrap_or_default()
        }
        ("prompts/get", Some(name)) => {
            entry_scopes(server, EntryKind::Prompt, name).unwrap_or_default()
        }
        _ => ScopeSet::EMPTY,
    }
}

fn call_entry(method: &str) -> Option<EntryKind> {
    match method {
        "tools/call" => Some(EntryKind::Tool),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Some(EntryKind::Resource)
        }
        "prompts/get" => Some(EntryKind::Prompt),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: serde_json::Value) -> crate::Policy {
        let mut server = serde_json::json!({
            "name": "s", "cluster": "c", "path": "/s/mcp",
            "scopes": ["tickets.read", "accounts.read"],
            "tools": {"get_account": ["accounts.read"]},
            "resources": {"tickets://*": ["tickets.read"], "accounts://{id}": ["accounts.read"], "accounts://{id}/profile": ["accounts.read"]},
            "prompts": {"triage": ["tickets.read"]},
            "deny": {"tools": ["drop_all"], "resources": ["tickets://internal/*"],
                     "prompts": ["jailbreak"], "methods": ["resources/subscribe"]}
        });
        if let (Some(s), Some(e)) = (server.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let doc = serde_json::json!({"gateways": [{
            "name": "g", "public_url": "https://a.example", "issuer": "https://a.example",
            "allowed_scopes": ["tickets.read", "tickets.write", "accounts.read"],
            "jwks": {"cluster": "idp"}, "servers": [server]}]});
        crate::validate::load(&doc.to_string()).unwrap()
    }

    fn call(method: &str, name: &str) -> Call {
        Call {
            method: method.into(),
            name: Some(name.into()),
        }
    }

    #[test]
    fn entries_need_their_scopes_and_denied_ones_are_never_reachable() {
        let p = policy(serde_json::json!({}));
        let s = &p.servers[0];
        let idx = &p.gateways[0].scopes;
        let needs = |k, key| match access(s, k, key) {
            Access::Needs(n) => Some(idx.render(n)),
            Access::Never => None,
        };
        assert_eq!(
            needs(EntryKind::Tool, "get_account").as_deref(),
            Some("accounts.read")
        );
        assert_eq!(needs(EntryKind::Tool, "anything").as_deref(), Some(""));
        assert_eq!(needs(EntryKind::Tool, "drop_all"), None);
        assert_eq!(
            needs(EntryKind::Resource, "tickets://T-1").as_deref(),
            Some("tickets.read")
        );
        assert_eq!(needs(EntryKind::Resource, "tickets://internal/x"), None);
        assert_eq!(
            needs(EntryKind::Resource, "accounts://a1").as_deref(),
            Some("accounts.read")
        );
        assert_eq!(
            needs(EntryKind::ResourceTemplate, "accounts://{account}").as_deref(),
            Some("accounts.read")
        );
        assert_eq!(needs(EntryKind::Prompt, "jailbreak"), None);
        assert_eq!(
            needs(EntryKind::Prompt, "triage").as_deref(),
            Some("tickets.read")
        );
        assert!(s.catalog.denies_anything());
        assert!(s.reads_listings());
    }

    #[test]
    fn calls_are_denied_or_need_the_entry_scopes() {
        let p = policy(serde_json::json!({}));
        let s = &p.servers[0];
        let idx = &p.gateways[0].scopes;
        let batch = [
            call("tools/call", "get_account"),
            call("tools/call", "drop_all"),
        ];
        assert_eq!(denied_call(s, &batch), Some(&batch[1]));
        assert!(denied_call(s, &[call("resources/subscribe", "tickets://1")]).is_some());
        assert!(denied_call(s, &[call("resources/read", "tickets://internal/a")]).is_some());
        assert!(denied_call(s, &[call("resources/read", "tickets://a")]).is_none());
        let needs = crate::authorize::required_scopes(
            s,
            &[
                call("resources/read", "tickets://a"),
                call("prompts/get", "triage"),
                call("tools/call", "get_account"),
            ],
        );
        assert_eq!(idx.render(needs), "tickets.read accounts.read");
        let sub = crate::authorize::required_scopes(
            s,
            &[call("resources/subscribe", "accounts://a/profile")],
        );
        assert_eq!(idx.render(sub), "accounts.read");
    }
}
