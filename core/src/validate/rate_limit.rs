//! Budgets a rate limit service counts: windows it has a unit for, one counter per descriptor
//! path (the service refuses a configuration that names one twice), and a cluster of its own.

use super::Errors;
use crate::config::Document;
use crate::policy::FilterSettings;
use crate::rate_limit::{budget_value, unit};

/// The service's cluster speaks gRPC (HTTP/2): it cannot be one the filter or a route uses
/// for plain HTTP.
pub(super) fn check_cluster(doc: &Document, filter: &FilterSettings, errs: &mut Errors) {
    let Some(service) = &filter.rate_limit else {
        return;
    };
    let name = service.cluster.as_str();
    let mut servers = doc.gateways.iter().flat_map(|g| &g.servers);
    let jwks = doc.gateways.iter().filter_map(|g| g.jwks.as_ref());
    let other = if let Some(s) = servers.find(|s| s.cluster == name) {
        Some(format!("server `{}`", s.name))
    } else if doc
        .filter
        .broker
        .as_ref()
        .is_some_and(|b| b.cluster == name)
    {
        Some("filter.broker".to_string())
    } else if jwks
        .chain(doc.filter.jwks.as_ref())
        .any(|j| j.cluster.as_deref() == Some(name))
    {
        Some("a JWKS source".to_string())
    } else {
        None
    };
    if let Some(other) = other {
        errs.push(None, None, "filter.rate_limit.cluster".into(), format!("cluster `{name}` is also {other}'s: the rate limit service needs its own (gRPC) cluster"));
    }
}

/// With `filter.rate_limit`, every budget's window and descriptor path.
pub(super) fn check_budgets(doc: &Document, filter: &FilterSettings, errs: &mut Errors) {
    if filter.rate_limit.is_none() {
        return;
    }
    for (gi, g) in doc.gateways.iter().enumerate() {
        for (si, s) in g.servers.iter().enumerate() {
            let mut paths: Vec<(String, crate::config::BudgetKey)> = Vec::new();
            for (bi, b) in s.budgets.iter().enumerate() {
                let field = format!("gateways[{gi}].servers[{si}].budgets[{bi}]");
                let here = (Some(g.name.as_str()), Some(s.name.as_str()));
                if (1..=86_400).contains(&b.per_seconds) && unit(b.per_seconds).is_none() {
                    errs.push(here.0, here.1, format!("{field}.per_seconds"), "with filter.rate_limit, must be 1, 60, 3600 or 86400: the rate limit service counts per second, minute, hour or day".into());
                }
                let path = (budget_value(b), b.per);
                if let Some(j) = paths.iter().position(|p| *p == path) {
                    errs.push(here.0, here.1, field, format!("counts the same calls over the same window by the same key as budgets[{j}]: the rate limit service would keep one counter for both"));
                }
                paths.push(path);
            }
        }
    }
}
