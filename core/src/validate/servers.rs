//! Each server: unique name, cluster, path and resource; its scope subset and per-call rules.

use super::{catalog, check_name, Build, Errors, Here};
use crate::config::{GatewayDoc, ServerDoc};
use crate::policy::{Server, ServerId};
use crate::prm;
use crate::scopes::{ScopeIndex, ScopeSet};
use crate::url::check_path;
use std::collections::BTreeMap;

/// Checks and compiles the servers of gateway `gi` into `b.servers`; returns their ids.
pub(super) fn compile_all(
    b: &mut Build<'_>,
    gi: usize,
    g: &GatewayDoc,
    index: &ScopeIndex,
) -> Vec<ServerId> {
    let mut ids = Vec::new();
    for (si, s) in g.servers.iter().enumerate() {
        let here = Here {
            gateway: Some(g.name.as_str()),
            server: Some(s.name.as_str()),
            prefix: format!("gateways[{gi}].servers[{si}]."),
        };
        let resource = check_unique(b, &here, g, s);
        let server = compile(&mut b.errs, &here, g, gi, index, s, resource);
        ids.push(b.servers.len());
        b.servers.push(server);
    }
    ids
}

/// Name, cluster, path and resource, each unique across the document; returns the resource.
fn check_unique(b: &mut Build<'_>, here: &Here<'_>, g: &GatewayDoc, s: &ServerDoc) -> String {
    if let Err(m) = check_name("server", &s.name) {
        b.errs.at(here, "name", m);
    }
    if let Some(prev) = b.server_names.insert(s.name.clone(), g.name.clone()) {
        b.errs.at(
            here,
            "name",
            format!(
                "duplicate server name `{}` (also in gateway `{prev}`)",
                s.name
            ),
        );
    }
    if s.cluster.is_empty() {
        b.errs
            .at(here, "cluster", "cluster must not be empty".into());
    } else if let Some(prev) = b.clusters.insert(s.cluster.clone(), s.name.clone()) {
        b.errs.at(
            here,
            "cluster",
            format!(
                "cluster `{}` is already governed by server `{prev}`",
                s.cluster
            ),
        );
    }
    if let Err(m) = check_path(&s.path) {
        b.errs.at(here, "path", m);
    }
    if s.path.starts_with("/.well-known/") {
        b.errs.at(
            here,
            "path",
            "path must not be under `/.well-known/`".into(),
        );
    }
    if g.downstream.is_some() && s.forward_client_token {
        b.errs.at(here, "forward_client_token", "a brokered gateway sends the downstream credential in `Authorization`; the client's token cannot be forwarded too".into());
    }
    let resource = format!("{}{}", g.public_url, s.path);
    if let Some(prev) = b.resources.insert(resource.clone(), s.name.clone()) {
        b.errs.at(
            here,
            "path",
            format!("resource `{resource}` is already server `{prev}`'s"),
        );
    }
    resource
}

/// The server's scope subset and what each rule needs within it.
struct Needs<'a> {
    index: &'a ScopeIndex,
    /// The server's subset.
    scopes: ScopeSet,
    /// The gateway's allowed scopes, rendered for messages.
    allowed: String,
}

impl Needs<'_> {
    /// The scopes `names` need, reported at `field` when outside the subset or unknown.
    fn within(
        &self,
        errs: &mut Errors,
        here: &Here<'_>,
        names: &[String],
        field: &str,
        what: &str,
    ) -> ScopeSet {
        let index = self.index;
        match index.set_of(names) {
            Ok(set) if set.is_subset_of(self.scopes) => set,
            Ok(set) => {
                let outside = index.render(set.minus(self.scopes));
                errs.at(
                    here,
                    field,
                    format!(
                        "{what} needs `{outside}`, which is not in the server's scopes [{}]",
                        index.render(self.scopes)
                    ),
                );
                set
            }
            Err(bad) => {
                errs.at(
                    here,
                    field,
                    format!(
                        "{what} needs `{bad}`, which is not in the gateway's allowed_scopes [{}]",
                        self.allowed
                    ),
                );
                ScopeSet::EMPTY
            }
        }
    }
}

/// The subset a server lists. Each unknown scope is reported; the known ones still form the
/// subset, so the rule checks after it do not pile misleading errors on top of the real one.
fn subset<'a>(
    errs: &mut Errors,
    here: &Here<'_>,
    index: &'a ScopeIndex,
    s: &ServerDoc,
) -> Needs<'a> {
    let allowed = index.render(index.all());
    let mut scopes = ScopeSet::EMPTY;
    for name in &s.scopes {
        match index.set_of(std::slice::from_ref(name)) {
            Ok(one) => scopes = scopes.union(one),
            Err(bad) => errs.at(
                here,
                "scopes",
                format!("scope `{bad}` is not in the gateway's allowed_scopes [{allowed}]"),
            ),
        }
    }
    if s.scopes.is_empty() {
        errs.at(
            here,
            "scopes",
            "scopes must not be empty: list the subset this server needs".into(),
        );
    }
    Needs {
        index,
        scopes,
        allowed,
    }
}

/// Per-name rules (`tools`, `methods`): a non-empty name and scopes within the subset.
fn rules(
    errs: &mut Errors,
    here: &Here<'_>,
    needs: &Needs<'_>,
    section: &str,
    kind: &str,
    doc: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, ScopeSet> {
    let mut out = BTreeMap::new();
    for (name, names) in doc {
        if name.is_empty() {
            errs.at(here, section, format!("{kind} name must not be empty"));
        }
        let field = format!("{section}.{name}");
        let set = needs.within(errs, here, names, &field, &format!("{kind} `{name}`"));
        out.insert(name.clone(), set);
    }
    out
}

/// Request budgets: a positive count over at most a day, and no empty tool name.
fn check_budgets(errs: &mut Errors, here: &Here<'_>, s: &ServerDoc) {
    for (i, b) in s.budgets.iter().enumerate() {
        let field = format!("budgets[{i}]");
        if b.requests == 0 {
            errs.at(here, &field, "requests must be at least 1".into());
        }
        if b.per_seconds == 0 || b.per_seconds > 86_400 {
            errs.at(
                here,
                &field,
                "per_seconds must be between 1 and 86400".into(),
            );
        }
        if b.tool.as_deref() == Some("") {
            errs.at(
                here,
                &field,
                "tool must not be empty (leave it out to count every request)".into(),
            );
        }
    }
}

/// Compiles one server with every derived string the request path needs.
fn compile(
    errs: &mut Errors,
    here: &Here<'_>,
    g: &GatewayDoc,
    gid: usize,
    index: &ScopeIndex,
    s: &ServerDoc,
    resource: String,
) -> Server {
    let needs = subset(errs, here, index, s);
    let base_scopes = needs.within(errs, here, &s.base_scopes, "base_scopes", "base_scopes");
    let tools = rules(errs, here, &needs, "tools", "tool", &s.tools);
    let methods = rules(errs, here, &needs, "methods", "method", &s.methods);
    let catalog = catalog::compile(s, &mut |field: String, what: &str, names: &[String]| {
        needs.within(errs, here, names, &field, what)
    });
    let catalog = match catalog {
        Ok(c) => c,
        Err(bad) => {
            for (field, message) in bad {
                errs.at(here, &field, message);
            }
            crate::catalog::Catalog::default()
        }
    };
    check_budgets(errs, here, s);

    let scopes = needs.scopes;
    let subset = index.names(scopes);
    let advertised: Vec<&str> = subset
        .iter()
        .copied()
        .filter(|x| prm::is_advertised(x))
        .collect();
    Server {
        name: s.name.clone(),
        gateway: gid,
        cluster: s.cluster.clone(),
        path: s.path.clone(),
        metadata_url: prm::metadata_url(&g.public_url, &s.path),
        prm_json: prm::document(&resource, &g.issuer, &subset, &s.name),
        resource,
        scopes,
        base_scopes,
        tools,
        methods,
        budgets: s.budgets.clone(),
        catalog,
        hide: s.listings.hide,
        forward_client_token: s.forward_client_token,
        challenge_scope: advertised.join(" "),
    }
}
