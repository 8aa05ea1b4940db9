//! Each gateway: its name and URLs, allowed scopes, downstream and identity, signing keys, servers.

use super::{check_name, servers, Build, Here};
use crate::config::{Document, GatewayDoc, JwksDoc};
use crate::policy::{FilterSettings, Gateway, JwksLocation, JwksSource, ServerId};
use crate::scopes::{is_valid_scope_token, ScopeIndex, MAX_ALLOWED_SCOPES};
use crate::url::{check_origin, check_url};
use std::collections::HashSet;

/// Checks and compiles gateway `gi` (its servers go into `b.servers`).
pub(super) fn compile<'d>(
    b: &mut Build<'d>,
    doc: &'d Document,
    filter: &FilterSettings,
    gi: usize,
    g: &'d GatewayDoc,
) -> Gateway {
    let here = Here {
        gateway: Some(g.name.as_str()),
        server: None,
        prefix: format!("gateways[{gi}]."),
    };
    check_names(b, &here, g);
    let index = allowed_scopes(b, &here, g);
    check_downstream(b, &here, g);
    if g.identity.subject_claim.is_empty() {
        b.errs.at(
            &here,
            "identity.subject_claim",
            "subject_claim must not be empty".into(),
        );
    }
    #[cfg(feature = "broker")]
    super::clients::check(&mut b.errs, &here, g);
    let jwks_source = jwks(b, &here, g, doc.filter.jwks.as_ref());
    if g.downstream.is_some() && filter.broker.is_none() {
        b.errs.push(
            here.gateway,
            None,
            "filter.broker".into(),
            "gateway brokers downstream credentials (`downstream` is set) but `filter.broker` is missing".into(),
        );
    }
    if g.servers.is_empty() {
        b.errs.at(
            &here,
            "servers",
            "a gateway needs at least one server".into(),
        );
    }
    // Every gateway is compiled, refused or not, so gateway `gi` is the `gi`-th.
    let ids = servers::compile_all(b, gi, g, &index);
    let root_server = default_server(b, &here, g, &ids);
    Gateway {
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
    }
}

/// The name (safe, unique) and the two URLs.
fn check_names<'d>(b: &mut Build<'d>, here: &Here<'_>, g: &'d GatewayDoc) {
    let gname = g.name.as_str();
    if let Err(m) = check_name("gateway", gname) {
        b.errs.at(here, "name", m);
    }
    if !b.gateway_names.insert(gname) {
        b.errs
            .at(here, "name", format!("duplicate gateway name `{gname}`"));
    }
    if let Err(m) = check_origin(&g.public_url) {
        b.errs.at(here, "public_url", m);
    }
    if let Err(m) = check_url(&g.issuer) {
        b.errs.at(here, "issuer", m);
    }
}

/// Allowed scopes: well-formed, unique, bounded; client and identity scopes are warned about.
fn allowed_scopes(b: &mut Build<'_>, here: &Here<'_>, g: &GatewayDoc) -> ScopeIndex {
    if g.allowed_scopes.is_empty() {
        b.errs.at(
            here,
            "allowed_scopes",
            "allowed_scopes must not be empty".into(),
        );
    }
    if g.allowed_scopes.len() > MAX_ALLOWED_SCOPES {
        b.errs.at(
            here,
            "allowed_scopes",
            format!("at most {MAX_ALLOWED_SCOPES} allowed scopes per gateway"),
        );
    }
    let mut seen = HashSet::new();
    for s in &g.allowed_scopes {
        if !is_valid_scope_token(s) {
            b.errs.at(
                here,
                "allowed_scopes",
                format!("`{s}` is not a valid scope token (RFC 6749 §3.3)"),
            );
        }
        if !seen.insert(s.as_str()) {
            b.errs.at(
                here,
                "allowed_scopes",
                format!("scope `{s}` is listed twice"),
            );
        }
        if s == "offline_access" || s == "openid" {
            b.warnings.push(format!(
                "gateway `{}`: allowed scope `{s}` is a client/identity scope, not an API scope; it is never advertised to clients as an API scope",
                g.name
            ));
        }
    }
    ScopeIndex::new(&g.allowed_scopes)
}

/// `downstream`: the authorization server the broker gets credentials from.
fn check_downstream(b: &mut Build<'_>, here: &Here<'_>, g: &GatewayDoc) {
    let Some(d) = &g.downstream else {
        return;
    };
    if let Err(m) = check_url(&d.authorization_server) {
        b.errs.at(here, "downstream.authorization_server", m);
    }
    if d.client_id.is_empty() {
        b.errs.at(
            here,
            "downstream.client_id",
            "client_id must not be empty".into(),
        );
    }
    if d.client_secret_env.is_some() && d.client_secret_file.is_some() {
        b.errs.at(
            here,
            "downstream",
            "set client_secret_env or client_secret_file, not both".into(),
        );
    }
    if let Some(r) = &d.resource {
        if let Err(m) = check_url(r) {
            b.errs.at(here, "downstream.resource", m);
        }
    }
}

/// The gateway's signing keys (its own `jwks`, else `filter.jwks`), as an index into the
/// document's sources: gateways naming the same location share one.
fn jwks(
    b: &mut Build<'_>,
    here: &Here<'_>,
    g: &GatewayDoc,
    filter_jwks: Option<&JwksDoc>,
) -> usize {
    let Some(j) = g.jwks.as_ref().or(filter_jwks) else {
        b.errs.at(
            here,
            "jwks",
            "no signing keys: set `jwks` on the gateway or `filter.jwks`".into(),
        );
        return 0;
    };
    match jwks_source(j) {
        Ok(src) => match b
            .jwks_sources
            .iter()
            .position(|x| x.location == src.location)
        {
            Some(i) => i,
            None => {
                let shared_key = format!("scopegate.jwks.{}", b.jwks_sources.len());
                b.jwks_sources.push(JwksSource { shared_key, ..src });
                b.jwks_sources.len() - 1
            }
        },
        Err(m) => {
            let field = if g.jwks.is_some() {
                here.field("jwks")
            } else {
                "filter.jwks".into()
            };
            b.errs.push(here.gateway, None, field, m);
            0
        }
    }
}

/// One `jwks` section: fetched from a cluster or inline, with sane timings.
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

/// The server a request to the gateway's root goes to: `default_server`, or the only one.
fn default_server(
    b: &mut Build<'_>,
    here: &Here<'_>,
    g: &GatewayDoc,
    ids: &[ServerId],
) -> Option<ServerId> {
    let Some(name) = &g.default_server else {
        return match ids {
            [only] => Some(*only),
            _ => None,
        };
    };
    let found = ids
        .iter()
        .copied()
        .find(|i| b.servers.get(*i).is_some_and(|s| &s.name == name));
    if found.is_none() {
        b.errs.at(
            here,
            "default_server",
            format!("default_server `{name}` is not a server of this gateway"),
        );
    }
    found
}

/// Two gateways with the same issuer, downstream client and identity rule could be one gateway.
pub(super) fn shared_boundaries(gateways: &[GatewayDoc]) -> Vec<String> {
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
