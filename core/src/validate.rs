//! Turns a parsed [`Document`] into a [`Policy`], refusing every inconsistency with a named location.
//!
//! All errors are collected (not just the first) so an operator fixes a document in one pass.
//! Each names the gateway, the server and the scope involved.

use crate::config::{Document, GatewayDoc, JwksDoc, ServerDoc};
use crate::policy::{
    BrokerCall, FilterSettings, Gateway, JwksLocation, JwksSource, Policy, Server,
};
use crate::prm;
use crate::scopes::{is_valid_scope_token, ScopeIndex, ScopeSet, MAX_ALLOWED_SCOPES};
use crate::url::{check_origin, check_path, check_url};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Most leeway accepted: minutes of leeway would keep expired tokens alive past the client's refresh.
pub const MAX_LEEWAY_S: u64 = 60;
/// Envoy answers 413 above about 1 MiB while the filter holds the request.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Envoy's default buffer limit is about 1 MiB: a listing is never held beyond it.
pub const MAX_LISTING_BYTES: usize = 1024 * 1024;

/// One reason the document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub gateway: Option<String>,
    pub server: Option<String>,
    /// Path of the field, e.g. `gateways[0].servers[1].scopes`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.gateway, &self.server) {
            (Some(g), Some(s)) => write!(f, "gateway `{g}`, server `{s}`: ")?,
            (Some(g), None) => write!(f, "gateway `{g}`: ")?,
            _ => {}
        }
        write!(f, "{} (at `{}`)", self.message, self.field)
    }
}

/// Any reason a document cannot be used: unreadable, or read but inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    Parse(crate::config::ParseError),
    Invalid(Vec<ConfigError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Parse(e) => write!(f, "{e}"),
            LoadError::Invalid(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "config: {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Whether this build reads and checks the broker's own sections (`broker`, each gateway's
/// `clients`): the broker's does (feature `broker`), the filter's skips them unread.
pub const READS_BROKER_SECTIONS: bool = cfg!(feature = "broker");

/// Parses and validates in one step: what the filter's `on_configure` and `broker check` call.
pub fn load(text: &str) -> Result<Policy, LoadError> {
    let doc = Document::parse(text).map_err(LoadError::Parse)?;
    validate(doc).map_err(LoadError::Invalid)
}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, g: Option<&str>, s: Option<&str>, field: String, message: String) {
        self.0.push(ConfigError {
            gateway: g.map(str::to_string),
            server: s.map(str::to_string),
            field,
            message,
        });
    }
}

/// Names end up in stats names, log lines and filter state: keep them to a safe alphabet.
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{kind} name must be 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{kind} name `{name}` has `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Validates a document; on success every index and derived string is ready for the request path.
pub fn validate(doc: Document) -> Result<Policy, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());
    let mut warnings = Vec::new();

    if doc.gateways.is_empty() {
        errs.push(
            None,
            None,
            "gateways".into(),
            "at least one gateway is required".into(),
        );
    }

    let filter = filter_settings(&doc, &mut errs);
    #[cfg(feature = "broker")]
    for (field, message) in crate::broker_config::check(&doc)
        .into_iter()
        .chain(crate::consent_config::check(&doc))
    {
        errs.push(None, None, field, message);
    }

    let mut gateways = Vec::new();
    let mut servers = Vec::new();
    let mut jwks_sources: Vec<JwksSource> = Vec::new();
    let mut gateway_names = HashSet::new();
    let mut server_names: HashMap<String, String> = HashMap::new();
    let mut clusters: HashMap<String, String> = HashMap::new();
    let mut resources: HashMap<String, String> = HashMap::new();

    for (gi, g) in doc.gateways.iter().enumerate() {
        let at = |f: &str| format!("gateways[{gi}].{f}");
        let gname = g.name.as_str();
        let gn = Some(gname);
        if let Err(m) = check_name("gateway", gname) {
            errs.push(gn, None, at("name"), m);
        }
        if !gateway_names.insert(gname) {
            errs.push(
                gn,
                None,
                at("name"),
                format!("duplicate gateway name `{gname}`"),
            );
        }
        if let Err(m) = check_origin(&g.public_url) {
            errs.push(gn, None, at("public_url"), m);
        }
        if let Err(m) = check_url(&g.issuer) {
            errs.push(gn, None, at("issuer"), m);
        }

        // Allowed scopes: well-formed, unique, bounded.
        if g.allowed_scopes.is_empty() {
            errs.push(
                gn,
                None,
                at("allowed_scopes"),
                "allowed_scopes must not be empty".into(),
            );
        }
        if g.allowed_scopes.len() > MAX_ALLOWED_SCOPES {
            errs.push(
                gn,
                None,
                at("allowed_scopes"),
                format!("at most {MAX_ALLOWED_SCOPES} allowed scopes per gateway"),
            );
        }
        let mut seen = HashSet::new();
        for s in &g.allowed_scopes {
            if !is_valid_scope_token(s) {
                errs.push(
                    gn,
                    None,
                    at("allowed_scopes"),
                    format!("`{s}` is not a valid scope token (RFC 6749 §3.3)"),
                );
            }
            if !seen.insert(s.as_str()) {
                errs.push(
                    gn,
                    None,
                    at("allowed_scopes"),
                    format!("scope `{s}` is listed twice"),
                );
            }
            if s == "offline_access" || s == "openid" {
                warnings.push(format!(
                    "gateway `{gname}`: allowed scope `{s}` is a client/identity scope, not an API scope; it is never advertised to clients as an API scope"
                ));
            }
        }
        let index = ScopeIndex::new(&g.allowed_scopes);

        check_gateway_extras(g, gi, &mut errs);

        let jwks_doc = g.jwks.as_ref().or(doc.filter.jwks.as_ref());
        let jwks_source = match jwks_doc {
            None => {
                errs.push(
                    gn,
                    None,
                    at("jwks"),
                    "no signing keys: set `jwks` on the gateway or `filter.jwks`".into(),
                );
                0
            }
            Some(j) => match jwks_source(j) {
                Ok(src) => match jwks_sources.iter().position(|x| x.location == src.location) {
                    Some(i) => i,
                    None => {
                        jwks_sources.push(JwksSource {
                            shared_key: format!("scopegate.jwks.{}", jwks_sources.len()),
                            ..src
                        });
                        jwks_sources.len() - 1
                    }
                },
                Err(m) => {
                    let field = if g.jwks.is_some() {
                        at("jwks")
                    } else {
                        "filter.jwks".into()
                    };
                    errs.push(gn, None, field, m);
                    0
                }
            },
        };

        if g.downstream.is_some() && filter.broker.is_none() {
            errs.push(
                gn,
                None,
                "filter.broker".into(),
                "gateway brokers downstream credentials (`downstream` is set) but `filter.broker` is missing".into(),
            );
        }

        if g.servers.is_empty() {
            errs.push(
                gn,
                None,
                at("servers"),
                "a gateway needs at least one server".into(),
            );
        }

        let gid = gateways.len();
        let mut ids = Vec::new();
        for (si, s) in g.servers.iter().enumerate() {
            let sat = |f: &str| format!("gateways[{gi}].servers[{si}].{f}");
            let sn = Some(s.name.as_str());
            if let Err(m) = check_name("server", &s.name) {
                errs.push(gn, sn, sat("name"), m);
            }
            if let Some(prev) = server_names.insert(s.name.clone(), gname.to_string()) {
                errs.push(
                    gn,
                    sn,
                    sat("name"),
                    format!(
                        "duplicate server name `{}` (also in gateway `{prev}`)",
                        s.name
                    ),
                );
            }
            if s.cluster.is_empty() {
                errs.push(gn, sn, sat("cluster"), "cluster must not be empty".into());
            } else if let Some(prev) = clusters.insert(s.cluster.clone(), s.name.clone()) {
                errs.push(
                    gn,
                    sn,
                    sat("cluster"),
                    format!(
                        "cluster `{}` is already governed by server `{prev}`",
                        s.cluster
                    ),
                );
            }
            if let Err(m) = check_path(&s.path) {
                errs.push(gn, sn, sat("path"), m);
            }
            if s.path.starts_with("/.well-known/") {
                errs.push(
                    gn,
                    sn,
                    sat("path"),
                    "path must not be under `/.well-known/`".into(),
                );
            }
            if g.downstream.is_some() && s.forward_client_token {
                errs.push(gn, sn, sat("forward_client_token"), "a brokered gateway sends the downstream credential in `Authorization`; the client's token cannot be forwarded too".into());
            }
            let resource = format!("{}{}", g.public_url, s.path);
            if let Some(prev) = resources.insert(resource.clone(), s.name.clone()) {
                errs.push(
                    gn,
                    sn,
                    sat("path"),
                    format!("resource `{resource}` is already server `{prev}`'s"),
                );
            }
            let server = compile_server(g, gid, &index, s, resource, &sat, &mut errs);
            ids.push(servers.len());
            servers.push(server);
        }

        let root_server = match &g.default_server {
            Some(name) => {
                let found = ids
                    .iter()
                    .copied()
                    .find(|i| servers.get(*i).is_some_and(|s: &Server| &s.name == name));
                if found.is_none() {
                    errs.push(
                        gn,
                        None,
                        at("default_server"),
                        format!("default_server `{name}` is not a server of this gateway"),
                    );
                }
                found
            }
            None if ids.len() == 1 => ids.first().copied(),
            None => None,
        };

        gateways.push(Gateway {
            name: g.name.clone(),
            public_url: g.public_url.clone(),
            issuer: g.issuer.clone(),
            scopes: index,
            reject_foreign_scopes: g.reject_foreign_scopes,
            brokered: g.downstream.is_some(),
            jwks_source,
            servers: ids,
            root_server,
            subject_claim: g.identity.subject_claim.clone(),
        });
    }

    warnings.extend(shared_boundaries(&doc.gateways));
    if filter.body_mode == crate::config::BodyMode::HoldHeaders {
        warnings.push("filter.body_mode `hold_headers` needs `allow_on_headers_stop_iteration: true` in the wasm plugin config (static Envoy, or an EnvoyFilter/ECDS patch); Istio's WasmPlugin and Envoy Gateway cannot set it, and without it per-tool requests are held and refused, never forwarded".into());
    }

    if filter.body_mode == crate::config::BodyMode::McpMetadata {
        // The native filter's metadata carries no request id, so a listing response could not
        // be matched to its request and filtered: refuse rather than show denied entries.
        for s in servers.iter().filter(|s| s.reads_listings()) {
            errs.push(
                None,
                Some(s.name.as_str()),
                "filter.body_mode".into(),
                format!("`mcp_metadata` cannot filter listings, and server `{}` hides entries (`deny` or `listings.hide: not_granted`): use `hold_body` or `hold_headers`", s.name),
            );
        }
    }

    if errs.0.is_empty() {
        Ok(Policy::new(
            doc,
            gateways,
            servers,
            jwks_sources,
            filter,
            warnings,
        ))
    } else {
        Err(errs.0)
    }
}

fn filter_settings(doc: &Document, errs: &mut Errors) -> FilterSettings {
    let f = &doc.filter;
    if f.leeway_s > MAX_LEEWAY_S {
        errs.push(None, None, "filter.leeway_s".into(), format!(
            "leeway of {}s is too long (at most {MAX_LEEWAY_S}s): clients refresh when they get the 401",
            f.leeway_s
        ));
    }
    if f.max_body_bytes < 1024 || f.max_body_bytes > MAX_BODY_BYTES {
        errs.push(
            None,
            None,
            "filter.max_body_bytes".into(),
            format!("must be between 1024 and {MAX_BODY_BYTES}"),
        );
    }
    if f.token_cache_entries == 0 {
        errs.push(
            None,
            None,
            "filter.token_cache_entries".into(),
            "must be at least 1".into(),
        );
    }
    if f.max_listing_bytes < 1024 || f.max_listing_bytes > MAX_LISTING_BYTES {
        errs.push(
            None,
            None,
            "filter.max_listing_bytes".into(),
            format!("must be between 1024 and {MAX_LISTING_BYTES}"),
        );
    }
    let broker = f.broker.as_ref().map(|b| {
        if b.cluster.is_empty() {
            errs.push(
                None,
                None,
                "filter.broker.cluster".into(),
                "cluster must not be empty".into(),
            );
        }
        if !b.path.starts_with('/') {
            errs.push(
                None,
                None,
                "filter.broker.path".into(),
                "path must start with `/`".into(),
            );
        }
        if b.timeout_ms == 0 || b.timeout_ms > 60_000 {
            errs.push(
                None,
                None,
                "filter.broker.timeout_ms".into(),
                "must be between 1 and 60000".into(),
            );
        }
        if !b.revocations_path.starts_with('/') || b.revocations_path.contains(['?', '#']) {
            errs.push(
                None,
                None,
                "filter.broker.revocations_path".into(),
                "must start with `/` and have no query".into(),
            );
        }
        if b.revocation_poll_s == 0 || b.revocation_poll_s > crate::revocation::MAX_POLL_S {
            errs.push(
                None,
                None,
                "filter.broker.revocation_poll_s".into(),
                format!(
                    "must be between 1 and {} seconds",
                    crate::revocation::MAX_POLL_S
                ),
            );
        }
        BrokerCall {
            cluster: b.cluster.clone(),
            authority: b.authority.clone().unwrap_or_else(|| b.cluster.clone()),
            path: b.path.clone(),
            timeout_ms: b.timeout_ms,
            revocations_path: b.revocations_path.clone(),
            revocation_poll_s: b.revocation_poll_s,
        }
    });
    FilterSettings {
        leeway_s: f.leeway_s,
        max_body_bytes: f.max_body_bytes,
        token_cache_entries: f.token_cache_entries,
        max_listing_bytes: f.max_listing_bytes,
        broker,
        body_mode: f.body_mode,
    }
}

fn jwks_source(j: &JwksDoc) -> Result<JwksSource, String> {
    let location = match (&j.cluster, &j.inline) {
        (Some(_), Some(_)) => return Err("set either `cluster` or `inline`, not both".into()),
        (None, None) => return Err("set `cluster` (with `path`) or `inline`".into()),
        (Some(cluster), None) => {
            let path = j.path.clone().unwrap_or_else(|| "/jwks".to_string());
            if !path.starts_with('/') {
                return Err(format!("path `{path}` must start with `/`"));
            }
            if cluster.is_empty() {
                return Err("cluster must not be empty".into());
            }
            JwksLocation::Fetch {
                cluster: cluster.clone(),
                authority: j.authority.clone().unwrap_or_else(|| cluster.clone()),
                path,
            }
        }
        (None, Some(doc)) => {
            let text = doc.to_string();
            crate::jwks::KeySet::from_json(text.as_bytes())
                .map_err(|e| format!("inline JWKS is unusable: {e}"))?;
            JwksLocation::Inline(text)
        }
    };
    if j.refresh_s == 0 {
        return Err("refresh_s must be at least 1".into());
    }
    if j.timeout_ms == 0 || j.timeout_ms > 60_000 {
        return Err("timeout_ms must be between 1 and 60000".into());
    }
    Ok(JwksSource {
        location,
        refresh_s: j.refresh_s,
        unknown_kid_refetch_s: j.unknown_kid_refetch_s,
        timeout_ms: j.timeout_ms,
        shared_key: String::new(),
    })
}

fn check_gateway_extras(g: &GatewayDoc, gi: usize, errs: &mut Errors) {
    let gn = Some(g.name.as_str());
    let at = |f: &str| format!("gateways[{gi}].{f}");
    if let Some(d) = &g.downstream {
        if let Err(m) = check_url(&d.authorization_server) {
            errs.push(gn, None, at("downstream.authorization_server"), m);
        }
        if d.client_id.is_empty() {
            errs.push(
                gn,
                None,
                at("downstream.client_id"),
                "client_id must not be empty".into(),
            );
        }
        if d.client_secret_env.is_some() && d.client_secret_file.is_some() {
            errs.push(
                gn,
                None,
                at("downstream"),
                "set client_secret_env or client_secret_file, not both".into(),
            );
        }
        if let Some(r) = &d.resource {
            if let Err(m) = check_url(r) {
                errs.push(gn, None, at("downstream.resource"), m);
            }
        }
    }
    if g.identity.subject_claim.is_empty() {
        errs.push(
            gn,
            None,
            at("identity.subject_claim"),
            "subject_claim must not be empty".into(),
        );
    }
    #[cfg(feature = "broker")]
    check_clients(g, gi, errs);
}

/// The `clients` section, which only the broker reads (see `config::skip_section`).
#[cfg(feature = "broker")]
fn check_clients(g: &GatewayDoc, gi: usize, errs: &mut Errors) {
    let gn = Some(g.name.as_str());
    let at = |f: &str| format!("gateways[{gi}].{f}");
    if let Some(c) = &g.clients.cimd {
        if c.allowed_hosts.is_empty() {
            errs.push(
                gn,
                None,
                at("clients.cimd.allowed_hosts"),
                "list at least one host, or `*`".into(),
            );
        }
    }
    for (field, message) in crate::oauth::registration::check(&g.clients.registration) {
        errs.push(
            gn,
            None,
            at(&format!("clients.registration.{field}")),
            message,
        );
    }
    let mut ids = HashSet::new();
    for (i, c) in g.clients.preregistered.iter().enumerate() {
        let f = at(&format!("clients.preregistered[{i}]"));
        if c.client_id.is_empty() {
            errs.push(gn, None, f.clone(), "client_id must not be empty".into());
        }
        if !ids.insert(c.client_id.as_str()) {
            errs.push(
                gn,
                None,
                f.clone(),
                format!("duplicate client_id `{}`", c.client_id),
            );
        }
        if c.redirect_uris.is_empty() {
            errs.push(
                gn,
                None,
                f.clone(),
                "redirect_uris must not be empty".into(),
            );
        }
        if c.client_secret_env.is_some() && c.client_secret_file.is_some() {
            errs.push(
                gn,
                None,
                f,
                "set client_secret_env or client_secret_file, not both".into(),
            );
        }
    }
}

fn compile_server(
    g: &GatewayDoc,
    gid: usize,
    index: &ScopeIndex,
    s: &ServerDoc,
    resource: String,
    sat: &dyn Fn(&str) -> String,
    errs: &mut Errors,
) -> Server {
    let gn = Some(g.name.as_str());
    let sn = Some(s.name.as_str());
    let allowed = index.render(index.all());

    // Each unknown scope is reported; the known ones still form the subset, so the tool checks
    // below do not pile misleading errors on top of the real one.
    let mut scopes = ScopeSet::EMPTY;
    for name in &s.scopes {
        match index.set_of(std::slice::from_ref(name)) {
            Ok(one) => scopes = scopes.union(one),
            Err(bad) => errs.push(
                gn,
                sn,
                sat("scopes"),
                format!("scope `{bad}` is not in the gateway's allowed_scopes [{allowed}]"),
            ),
        }
    }
    if s.scopes.is_empty() {
        errs.push(
            gn,
            sn,
            sat("scopes"),
            "scopes must not be empty: list the subset this server needs".into(),
        );
    }
    let within = |names: &[String], field: String, what: &str, errs: &mut Errors| -> ScopeSet {
        match index.set_of(names) {
            Ok(set) if set.is_subset_of(scopes) => set,
            Ok(set) => {
                let outside = index.render(set.minus(scopes));
                errs.push(
                    gn,
                    sn,
                    field,
                    format!(
                        "{what} needs `{outside}`, which is not in the server's scopes [{}]",
                        index.render(scopes)
                    ),
                );
                set
            }
            Err(bad) => {
                errs.push(
                    gn,
                    sn,
                    field,
                    format!(
                    "{what} needs `{bad}`, which is not in the gateway's allowed_scopes [{allowed}]"
                ),
                );
                ScopeSet::EMPTY
            }
        }
    };
    let base_scopes = within(&s.base_scopes, sat("base_scopes"), "base_scopes", errs);
    let mut tools = BTreeMap::new();
    for (tool, needs) in &s.tools {
        if tool.is_empty() {
            errs.push(gn, sn, sat("tools"), "tool name must not be empty".into());
        }
        let set = within(
            needs,
            sat(&format!("tools.{tool}")),
            &format!("tool `{tool}`"),
            errs,
        );
        tools.insert(tool.clone(), set);
    }
    let mut methods = BTreeMap::new();
    for (method, needs) in &s.methods {
        if method.is_empty() {
            errs.push(
                gn,
                sn,
                sat("methods"),
                "method name must not be empty".into(),
            );
        }
        let set = within(
            needs,
            sat(&format!("methods.{method}")),
            &format!("method `{method}`"),
            errs,
        );
        methods.insert(method.clone(), set);
    }

    let catalog = compile_catalog(s, &mut |field: String, what: &str, needs: &[String]| {
        within(needs, sat(&field), what, errs)
    });
    let catalog = match catalog {
        Ok(c) => c,
        Err(bad) => {
            for (field, message) in bad {
                errs.push(gn, sn, sat(&field), message);
            }
            crate::catalog::Catalog::default()
        }
    };

    for (i, b) in s.budgets.iter().enumerate() {
        let field = sat(&format!("budgets[{i}]"));
        if b.requests == 0 {
            errs.push(gn, sn, field.clone(), "requests must be at least 1".into());
        }
        if b.per_seconds == 0 || b.per_seconds > 86_400 {
            errs.push(
                gn,
                sn,
                field.clone(),
                "per_seconds must be between 1 and 86400".into(),
            );
        }
        if b.tool.as_deref() == Some("") {
            errs.push(
                gn,
                sn,
                field,
                "tool must not be empty (leave it out to count every request)".into(),
            );
        }
    }

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

/// Compiles `resources`, `prompts` and `deny`; scopes are checked by `within` (which reports
/// its own errors), patterns and names here, returned as `(field, message)`.
fn compile_catalog(
    s: &ServerDoc,
    within: &mut dyn FnMut(String, &str, &[String]) -> ScopeSet,
) -> Result<crate::catalog::Catalog, Vec<(String, String)>> {
    use crate::catalog::{Catalog, Pattern};
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

/// Two gateways with the same issuer, downstream client and identity rule could be one gateway.
fn shared_boundaries(gateways: &[GatewayDoc]) -> Vec<String> {
    let key = |g: &GatewayDoc| {
        (
            g.issuer.clone(),
            g.downstream.as_ref().map(|d| {
                (
                    d.authorization_server.clone(),
                    d.client_id.clone(),
                    d.resource.clone(),
                )
            }),
            g.identity.subject_claim.clone(),
        )
    };
    let mut out = Vec::new();
    for (i, a) in gateways.iter().enumerate() {
        for b in gateways.iter().skip(i + 1) {
            if key(a) == key(b) {
                out.push(format!(
                    "gateways `{}` and `{}` share one auth boundary (issuer, downstream client, resource and identity rule); scope differences alone never need a second gateway: they could be one",
                    a.name, b.name
                ));
            }
        }
    }
    out
}
