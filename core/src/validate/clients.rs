//! Each gateway's `clients` section (broker builds only): CIMD hosts, registration limits, preregistered clients.

use super::{Errors, Here};
use crate::config::GatewayDoc;
use std::collections::HashSet;

/// The `clients` section, which only the broker reads (see `config::skip_section`).
pub(super) fn check(errs: &mut Errors, here: &Here<'_>, g: &GatewayDoc) {
    let gn = here.gateway;
    let at = |f: &str| here.field(f);
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
