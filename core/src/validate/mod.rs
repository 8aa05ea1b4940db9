//! Turns a parsed [`Document`] into a [`Policy`], refusing every inconsistency with a named location.
//!
//! All errors are collected (not just the first) so an operator fixes a document in one pass.
//! Each names the gateway, the server and the scope involved. One module per section:
//! [`filter`] (`filter.*`), [`gateways`] (each gateway and its `jwks`), [`servers`] (each server
//! and its scope rules), [`catalog`] (resources, prompts, `deny`), `clients` (broker builds).

mod catalog;
#[cfg(feature = "broker")]
mod clients;
mod filter;
mod gateways;
mod rate_limit;
mod servers;

use crate::config::Document;
use crate::policy::{JwksSource, Policy, Server};
use std::collections::{HashMap, HashSet};
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

/// The errors found so far, in document order.
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

    /// An error at `field` under `here` (a gateway's or a server's path).
    fn at(&mut self, here: &Here<'_>, field: &str, message: String) {
        self.push(here.gateway, here.server, here.field(field), message);
    }
}

/// Where in the document a section is: the names errors carry and the prefix of its field paths.
struct Here<'a> {
    gateway: Option<&'a str>,
    server: Option<&'a str>,
    prefix: String,
}

impl Here<'_> {
    fn field(&self, f: &str) -> String {
        format!("{}{f}", self.prefix)
    }
}

/// What the sections build and check across gateways: names, clusters and resources must be
/// unique document-wide, and JWKS sources are shared between gateways that name the same one.
struct Build<'d> {
    errs: Errors,
    warnings: Vec<String>,
    servers: Vec<Server>,
    jwks_sources: Vec<JwksSource>,
    gateway_names: HashSet<&'d str>,
    /// Server name → its gateway's name.
    server_names: HashMap<String, String>,
    /// Cluster → the server governing it.
    clusters: HashMap<String, String>,
    /// Resource URL → its server.
    resources: HashMap<String, String>,
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
    let mut b = Build {
        errs: Errors(Vec::new()),
        warnings: Vec::new(),
        servers: Vec::new(),
        jwks_sources: Vec::new(),
        gateway_names: HashSet::new(),
        server_names: HashMap::new(),
        clusters: HashMap::new(),
        resources: HashMap::new(),
    };
    if doc.gateways.is_empty() {
        b.errs.push(
            None,
            None,
            "gateways".into(),
            "at least one gateway is required".into(),
        );
    }
    let filter = filter::settings(&doc, &mut b.errs);
    #[cfg(feature = "broker")]
    for (field, message) in crate::broker_config::check(&doc)
        .into_iter()
        .chain(crate::consent_config::check(&doc))
    {
        b.errs.push(None, None, field, message);
    }
    let gateways = doc
        .gateways
        .iter()
        .enumerate()
        .map(|(gi, g)| gateways::compile(&mut b, &doc, &filter, gi, g))
        .collect();
    b.warnings
        .extend(gateways::shared_boundaries(&doc.gateways));
    filter::check_body_mode(&filter, &b.servers, &mut b.errs, &mut b.warnings);
    filter::rate_limit_warnings(&filter, &mut b.warnings);
    rate_limit::check_cluster(&doc, &filter, &mut b.errs);
    rate_limit::check_budgets(&doc, &filter, &mut b.errs);

    let Build {
        errs,
        warnings,
        servers,
        jwks_sources,
        ..
    } = b;
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
