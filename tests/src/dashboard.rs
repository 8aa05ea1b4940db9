//! Checks the Grafana dashboard's queries against metrics scraped from a real Envoy and broker.
//!
//! A dashboard whose query names a metric or label nobody exports shows an empty panel, not an
//! error: the operator learns during an incident. So every query (and every variable's
//! `label_values`) is parsed with a PromQL parser and each selector's metric, each matcher's and
//! grouping's label, and each `scopegate_reason` value it names, must be in what the tests
//! scraped.

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use scopegate_core::reason::Reason;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The dashboard operators import.
pub fn dashboard_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/scopegate.json")
}

/// Metric names seen in Prometheus text exposition, with the label names and values of each.
#[derive(Debug, Default)]
pub struct Scrape {
    metrics: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Scrape {
    /// Reads one or more `/metrics`-style documents.
    pub fn parse(texts: &[&str]) -> Scrape {
        let mut s = Scrape::default();
        for line in texts.iter().flat_map(|t| t.lines()) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = s.metrics.entry(line[..name_end].to_string()).or_default();
            if line[name_end..].starts_with('{') {
                let body = &line[name_end + 1..line.rfind('}').unwrap_or(line.len())];
                for (k, v) in label_pairs(body) {
                    labels.entry(k).or_default().insert(v);
                }
            }
        }
        s
    }

    pub fn has(&self, metric: &str) -> bool {
        self.metrics.contains_key(metric)
    }

    fn labels(&self, metric: &str) -> Option<&BTreeMap<String, BTreeSet<String>>> {
        self.metrics.get(metric)
    }
}

/// `a="x",b="y"` (values may hold escaped quotes and commas).
fn label_pairs(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len() - eq - 2;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &rest[eq + 2 + end..];
    }
    out
}

/// The row of the panels that need a rate limit service (`filter.rate_limit`): the fleet
/// budgets test checks them, the walkthrough (no such service) every other.
pub const FLEET_ROW: &str = "Budgets across a fleet (filter.rate_limit)";

/// Which rows' panels a check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every row but [`FLEET_ROW`].
    AllButFleet,
    /// Only [`FLEET_ROW`].
    Fleet,
}

/// The panels with the title of the row each sits under (Grafana lists a row, then its panels,
/// or nests them in a collapsed row's `panels`).
fn panels(dashboard: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let mut row = String::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            row = p["title"].as_str().unwrap_or_default().to_string();
        }
        out.push((row.clone(), p));
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push((row.clone(), inner));
        }
    }
    out
}

/// Every query of the rows chosen: (where, PromQL).
pub fn queries_in(dashboard: &Value, rows: Rows) -> Vec<(String, String)> {
    queries_where(dashboard, |row| (row == FLEET_ROW) == (rows == Rows::Fleet))
}

/// Every query in the dashboard: (where, PromQL).
pub fn queries(dashboard: &Value) -> Vec<(String, String)> {
    queries_where(dashboard, |_| true)
}

fn queries_where(dashboard: &Value, row: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, p) in panels(dashboard).into_iter().filter(|(r, _)| row(r)) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let title = p["title"].as_str().unwrap_or("?");
                out.push((format!("panel {title:?} ({})", t["refId"]), e.to_string()));
            }
        }
    }
    out
}

/// The `label_values(metric, label)` of the dashboard's query variables.
pub fn variable_label_values(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        let Some(q) = q.filter(|_| v["type"] == "query") else {
            continue;
        };
        let inner = q
            .trim()
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or("");
        if let Some((metric, label)) = inner.split_once(',') {
            let name = format!("variable {}", v["name"]);
            out.push((name, metric.trim().to_string(), label.trim().to_string()));
        }
    }
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("${server}", ".*")
        .replace("$server", ".*")
}

/// Every problem with the dashboard against the scrape (empty: every query can show data).
/// Grafana's variables are replaced by values PromQL accepts (`$__rate_interval` by a duration,
/// `$server` by a regex).
pub fn check(dashboard: &Value, scrape: &Scrape) -> Vec<String> {
    check_queries(dashboard, queries(dashboard), scrape, true)
}

/// [`check`] for the panels of some rows (variables are checked with [`Rows::AllButFleet`]).
pub fn check_rows(dashboard: &Value, rows: Rows, scrape: &Scrape) -> Vec<String> {
    let qs = queries_in(dashboard, rows);
    check_queries(dashboard, qs, scrape, rows == Rows::AllButFleet)
}

fn check_queries(
    dashboard: &Value,
    qs: Vec<(String, String)>,
    scrape: &Scrape,
    variables: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if qs.is_empty() {
        problems.push("the dashboard has no queries".to_string());
    }
    for (place, expr) in qs {
        match parser::parse(&substitute(&expr)) {
            Ok(ast) => {
                walk(&ast, scrape, &mut |p| {
                    problems.push(format!("{place}: {p}"))
                });
            }
            Err(e) => problems.push(format!("{place}: not PromQL ({e}): {expr}")),
        }
    }
    let vars = if variables {
        variable_label_values(dashboard)
    } else {
        Vec::new()
    };
    for (place, metric, label) in vars {
        match scrape.labels(&metric) {
            None => problems.push(format!("{place}: no metric {metric} was scraped")),
            Some(labels) if !labels.contains_key(&label) => {
                problems.push(format!("{place}: {metric} has no label {label}"))
            }
            Some(_) => {}
        }
    }
    problems
}

/// Checks the selectors under `e` and returns the label names its series can carry.
fn walk(e: &Expr, scrape: &Scrape, report: &mut dyn FnMut(String)) -> BTreeSet<String> {
    match e {
        Expr::VectorSelector(vs) => selector(vs, scrape, report),
        Expr::MatrixSelector(ms) => selector(&ms.vs, scrape, report),
        Expr::Aggregate(a) => {
            let inner = walk(&a.expr, scrape, report);
            if let Some(p) = &a.param {
                walk(p, scrape, report);
            }
            match &a.modifier {
                Some(LabelModifier::Include(by)) => {
                    for l in &by.labels {
                        if !inner.contains(l) {
                            report(format!("groups by {l}, which no series under it carries"));
                        }
                    }
                    by.labels.iter().cloned().collect()
                }
                Some(LabelModifier::Exclude(_)) => inner,
                None => BTreeSet::new(),
            }
        }
        Expr::Binary(b) => {
            let mut l = walk(&b.lhs, scrape, report);
            l.extend(walk(&b.rhs, scrape, report));
            l
        }
        Expr::Paren(p) => walk(&p.expr, scrape, report),
        Expr::Unary(u) => walk(&u.expr, scrape, report),
        Expr::Subquery(s) => walk(&s.expr, scrape, report),
        Expr::Call(c) => {
            let mut labels = BTreeSet::new();
            for a in &c.args.args {
                labels.extend(walk(a, scrape, report));
            }
            // histogram_quantile consumes the bucket label.
            if c.func.name == "histogram_quantile" {
                labels.remove("le");
            }
            labels
        }
        _ => BTreeSet::new(),
    }
}

fn selector(
    vs: &VectorSelector,
    scrape: &Scrape,
    report: &mut dyn FnMut(String),
) -> BTreeSet<String> {
    let Some(name) = &vs.name else {
        report("a selector without a metric name".to_string());
        return BTreeSet::new();
    };
    let Some(labels) = scrape.labels(name) else {
        report(format!("no metric {name} was scraped"));
        return BTreeSet::new();
    };
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        let Some(seen) = labels.get(&m.name) else {
            report(format!("{name} has no label {}", m.name));
            continue;
        };
        if m.name == "scopegate_reason" {
            let values: Vec<&str> = match &m.op {
                MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
                MatchOp::Re(_) | MatchOp::NotRe(_) => m.value.split('|').collect(),
            };
            for v in values {
                if !seen.contains(v) && !Reason::ALL.iter().any(|r| r.as_str() == v) {
                    report(format!("{name}: {v:?} is no reason the filter writes"));
                }
            }
        }
    }
    labels.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCRAPE: &str = r#"# TYPE scopegate_deny counter
scopegate_deny{scopegate_server="ops-console",scopegate_reason="no_token"} 1
scopegate_allow{scopegate_server="ops-console",scopegate_reason="ok"} 3
scopegate_broker_request_duration_seconds_bucket{listener="public",route="/token",status="200",le="0.1"} 2
scopegate_broker_revocations_total{reason="withdrawn by the person, \"twice\""} 2
"#;

    fn dashboard(exprs: &[&str]) -> Value {
        let targets: Vec<Value> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"expr": e, "refId": i.to_string()}))
            .collect();
        json!({"panels": [{"type": "row", "panels": [{"title": "t", "targets": targets}]}]})
    }

    fn problems(exprs: &[&str]) -> Vec<String> {
        check(&dashboard(exprs), &Scrape::parse(&[SCRAPE]))
    }

    #[test]
    fn queries_over_scraped_metrics_pass() {
        let p = problems(&[
            r#"sum by (scopegate_reason) (rate(scopegate_deny{scopegate_server=~"$server", scopegate_reason=~"budget_exceeded|no_token"}[$__rate_interval]))"#,
            "histogram_quantile(0.99, sum by (le, route) (rate(scopegate_broker_request_duration_seconds_bucket[5m])))",
            "sum by (reason) (scopegate_broker_revocations_total)",
        ]);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_misspelt_metric_is_refused() {
        let p = problems(&["sum(rate(scopegate_denied[5m]))"]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("no metric scopegate_denied"), "{p:?}");
    }

    #[test]
    fn a_label_the_metric_lacks_is_refused() {
        let p = problems(&[
            "sum by (reason) (rate(scopegate_deny[5m]))",
            r#"scopegate_allow{server="ops-console"}"#,
        ]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("groups by reason"), "{p:?}");
        assert!(p[1].contains("has no label server"), "{p:?}");
    }

    #[test]
    fn an_unknown_reason_and_bad_promql_are_refused() {
        let p = problems(&[
            r#"scopegate_deny{scopegate_reason="budget_exhausted"}"#,
            "sum(rate(scopegate_deny[5m])",
        ]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("\"budget_exhausted\" is no reason"), "{p:?}");
        assert!(p[1].contains("not PromQL"), "{p:?}");
    }

    #[test]
    fn variables_are_checked() {
        let d = json!({"panels": [{"title": "t", "targets": [{"expr": "scopegate_allow", "refId": "A"}]}],
            "templating": {"list": [
                {"name": "server", "type": "query", "query": {"query": "label_values(scopegate_allow, scopegate_server)"}},
                {"name": "gw", "type": "query", "query": "label_values(scopegate_allow, gateway)"}]}});
        let p = check(&d, &Scrape::parse(&[SCRAPE]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("has no label gateway"), "{p:?}");
    }

    #[test]
    fn rows_split_the_check() {
        let d = json!({"panels": [
            {"type": "row", "title": "Decisions"},
            {"title": "a", "targets": [{"expr": "scopegate_allow", "refId": "A"}]},
            {"type": "row", "title": FLEET_ROW},
            {"title": "b", "targets": [{"expr": "scopegate_rate_limit", "refId": "A"}]}]});
        let s = Scrape::parse(&[SCRAPE]);
        assert!(check_rows(&d, Rows::AllButFleet, &s).is_empty());
        let fleet = check_rows(&d, Rows::Fleet, &s);
        assert_eq!(fleet.len(), 1, "{fleet:?}");
        assert!(
            fleet[0].contains("no metric scopegate_rate_limit"),
            "{fleet:?}"
        );
        assert_eq!(check(&d, &s).len(), 1);
    }

    #[test]
    fn escaped_label_values_are_read() {
        let s = Scrape::parse(&[SCRAPE]);
        let v = &s.labels("scopegate_broker_revocations_total").unwrap()["reason"];
        assert!(v.contains("withdrawn by the person, \"twice\""), "{v:?}");
    }
}
