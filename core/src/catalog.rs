//! What each tool, resource and prompt of a server needs: per-entry scopes, URI patterns, deny lists.
//!
//! One rule serves both sides (applied in `reach`): a call (`tools/call`, `resources/read`,
//! `prompts/get`) needs the same scopes as the listing entry it names, so what a listing shows
//! is what a client may call.

pub use crate::config::DenyDoc;
use crate::scopes::ScopeSet;
use std::collections::{BTreeMap, BTreeSet};

/// A resource URI pattern: `tickets://T-1` (exact), `tickets://*` (prefix), `tickets://{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Template(Vec<Part>),
}

/// A piece of a `{template}` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// `{x}`: one or more characters, none of them `/`.
    Segment,
    /// `{+x}`: one or more characters, `/` included (RFC 6570 reserved expansion).
    Any,
}

impl Pattern {
    /// Parses one pattern, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a resource pattern must not be empty".into());
        }
        if let Some(prefix) = text.strip_suffix('*') {
            if prefix.contains(['*', '{', '}']) {
                return Err(format!(
                    "pattern `{text}`: a prefix pattern ends in one `*` and has no `{{…}}`"
                ));
            }
            if prefix.is_empty() {
                return Err("pattern `*` would match every resource; list the prefix".into());
            }
            return Ok(Pattern::Prefix(prefix.to_string()));
        }
        if text.contains('*') {
            return Err(format!("pattern `{text}`: `*` is only allowed at the end"));
        }
        if !text.contains(['{', '}']) {
            return Ok(Pattern::Exact(text.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
                Some(i) if rest[i..].starts_with('}') => {
                    return Err(format!("pattern `{text}`: `}}` without `{{`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_string()));
                    }
                    let after = &rest[i + 1..];
                    let Some(end) = after.find('}') else {
                        return Err(format!("pattern `{text}`: `{{` without `}}`"));
                    };
                    let var = &after[..end];
                    let (part, name) = match var.strip_prefix('+') {
                        Some(n) => (Part::Any, n),
                        None => (Part::Segment, var),
                    };
                    if name.is_empty() || name.contains(['{', '/']) {
                        return Err(format!("pattern `{text}`: `{{{var}}}` is not a variable"));
                    }
                    if matches!(parts.last(), Some(Part::Segment | Part::Any)) {
                        return Err(format!(
                            "pattern `{text}`: two variables need a literal between them"
                        ));
                    }
                    parts.push(part);
                    rest = &after[end + 1..];
                }
            }
        }
        Ok(Pattern::Template(parts))
    }

    /// Whether a concrete resource URI matches.
    pub fn matches(&self, uri: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == uri,
            Pattern::Prefix(p) => uri.starts_with(p.as_str()),
            Pattern::Template(parts) => match_parts(parts, uri),
        }
    }

    /// Whether the pattern applies to every URI a listed `uriTemplate` can expand to: a prefix
    /// of the template's literal start, or the very same template text.
    pub fn covers_template(&self, template: &str) -> bool {
        let literal_start = template.split('{').next().unwrap_or(template);
        match self {
            Pattern::Prefix(p) => literal_start.starts_with(p.as_str()),
            Pattern::Exact(e) => e == template,
            // The same template up to variable names.
            Pattern::Template(_) => Pattern::parse(template).is_ok_and(|p| &p == self),
        }
    }
}

fn match_parts(parts: &[Part], s: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return s.is_empty();
    };
    match first {
        Part::Literal(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|tail| match_parts(rest, tail)),
        Part::Segment | Part::Any => {
            // Try every non-empty length the variable may take (patterns are short).
            for (i, c) in s.char_indices() {
                if *first == Part::Segment && c == '/' {
                    return false;
                }
                let end = i + c.len_utf8();
                if match_parts(rest, &s[end..]) {
                    return true;
                }
            }
            false
        }
    }
}

/// The compiled per-entry rules of one server (tools keep living in `Server::tools`).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: Vec<(Pattern, ScopeSet)>,
    pub prompts: BTreeMap<String, ScopeSet>,
    pub deny_methods: BTreeSet<String>,
    pub deny_tools: BTreeSet<String>,
    pub deny_prompts: BTreeSet<String>,
    pub deny_resources: Vec<Pattern>,
}

impl Catalog {
    /// Whether anything at all is denied outright (such entries are hidden from every listing).
    pub fn denies_anything(&self) -> bool {
        !self.deny_tools.is_empty()
            || !self.deny_prompts.is_empty()
            || !self.deny_resources.is_empty()
            || ENTRY_METHODS.iter().any(|m| self.deny_methods.contains(*m))
    }
}

/// The methods that name one entry: what a listed entry is for.
const ENTRY_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// What kind of entry a listing holds, and so which call it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Tool,
    Resource,
    /// A listed `uriTemplate`: judged by the rules that apply to all of its expansions.
    ResourceTemplate,
    Prompt,
}

impl EntryKind {
    pub fn call_method(self) -> &'static str {
        match self {
            EntryKind::Tool => "tools/call",
            EntryKind::Resource | EntryKind::ResourceTemplate => "resources/read",
            EntryKind::Prompt => "prompts/get",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_forms() {
        let exact = Pattern::parse("tickets://T-1").unwrap();
        assert!(exact.matches("tickets://T-1"));
        assert!(!exact.matches("tickets://T-10"));
        let prefix = Pattern::parse("tickets://*").unwrap();
        assert!(prefix.matches("tickets://T-1/notes"));
        assert!(!prefix.matches("accounts://a"));
        let t = Pattern::parse("accounts://{id}/profile").unwrap();
        assert!(t.matches("accounts://acct-42/profile"));
        assert!(!t.matches("accounts://a/b/profile"));
        assert!(!t.matches("accounts:///profile"));
        let any = Pattern::parse("files://{+path}").unwrap();
        assert!(any.matches("files://a/b/c"));
        assert!(!any.matches("files://"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in ["", "*", "a*b*", "a{x", "a}b", "a{}b", "a{x}{y}", "a*{x}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_are_judged_by_rules_covering_every_expansion() {
        let prefix = Pattern::parse("accounts://*").unwrap();
        assert!(prefix.covers_template("accounts://{id}/profile"));
        let same = Pattern::parse("accounts://{id}/profile").unwrap();
        assert!(same.covers_template("accounts://{id}/profile"));
        let narrower = Pattern::parse("accounts://acct-1/profile").unwrap();
        assert!(!narrower.covers_template("accounts://{id}/profile"));
    }

    #[test]
    fn the_document_is_checked_naming_the_field() {
        let doc = serde_json::json!({"gateways": [{
            "name": "g", "public_url": "https://a.example", "issuer": "https://a.example",
            "allowed_scopes": ["tickets.read", "admin.read"],
            "jwks": {"cluster": "idp"},
            "servers": [{"name": "s", "cluster": "c", "path": "/s/mcp", "scopes": ["tickets.read"],
                "resources": {"a{": ["tickets.read"], "ok://*": ["admin.read"]},
                "prompts": {"p": ["billing"]},
                "deny": {"tools": ["t"], "methods": ["initialize"]},
                "tools": {"t": []}}]}]});
        let err = crate::validate::load(&doc.to_string())
            .unwrap_err()
            .to_string();
        for want in [
            "server `s`: pattern `a{`",
            "resource `ok://*` needs `admin.read`, which is not in the server's scopes",
            "prompt `p` needs `billing`",
            "tool `t` is both denied and given scopes",
            "denying `initialize` would make the server unusable (at `gateways[0].servers[0].deny.methods[0]`)",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }
}
