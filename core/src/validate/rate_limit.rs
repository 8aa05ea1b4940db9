//! Budgets a rate limit service counts: windows it has a unit for, and one counter per
//! descriptor path (the service refuses a configuration that names one twice).

use super::Errors;
use crate::config::Document;
use crate::policy::FilterSettings;
use crate::rate_limit::{budget_value, unit};

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
