//! The broker's Prometheus metrics, served at `/metrics` on the internal listener: what clients
//! and the filter asked of it, and how long each route took. Labels are bounded sets (gateway
//! names, grant types, fixed reasons, route templates), never client input.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

pub struct Metrics {
    registry: Registry,
    pub registrations: IntCounterVec,
    pub authorizations: IntCounterVec,
    pub consents: IntCounterVec,
    pub token_grants: IntCounterVec,
    pub exchanges: IntCounterVec,
    pub downstream_refreshes: IntCounter,
    pub downstream_refresh_failures: IntCounter,
    pub revocations: IntCounterVec,
    latency: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, String> {
    let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| e.to_string())?;
    r.register(Box::new(c.clone())).map_err(|e| e.to_string())?;
    Ok(c)
}

fn plain(r: &Registry, name: &str, help: &str) -> Result<IntCounter, String> {
    let c = IntCounter::new(name, help).map_err(|e| e.to_string())?;
    r.register(Box::new(c.clone())).map_err(|e| e.to_string())?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Metrics, String> {
        let r = Registry::new_custom(Some("scopegate_broker".into()), None)
            .map_err(|e| e.to_string())?;
        let latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time to answer, per route").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            &["listener", "route", "status"],
        )
        .map_err(|e| e.to_string())?;
        r.register(Box::new(latency.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Metrics {
            registrations: counter(
                &r,
                "registrations_total",
                "Clients registered (DCR)",
                &["gateway"],
            )?,
            authorizations: counter(
                &r,
                "authorizations_total",
                "Authorization requests shown a consent page",
                &["gateway"],
            )?,
            consents: counter(
                &r,
                "consents_total",
                "Consent decisions",
                &["gateway", "decision"],
            )?,
            token_grants: counter(
                &r,
                "token_grants_total",
                "Tokens issued at /token, by grant type",
                &["gateway", "grant_type"],
            )?,
            exchanges: counter(
                &r,
                "token_exchanges_total",
                "RFC 8693 exchanges on the internal listener, by outcome (ok or the OAuth error)",
                &["outcome"],
            )?,
            downstream_refreshes: plain(
                &r,
                "downstream_refreshes_total",
                "Downstream grants refreshed",
            )?,
            downstream_refresh_failures: plain(
                &r,
                "downstream_refresh_failures_total",
                "Downstream refreshes that failed",
            )?,
            revocations: counter(
                &r,
                "revocations_total",
                "Grants revoked, by reason",
                &["reason"],
            )?,
            latency,
            registry: r,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| e.to_string())
    }

    /// Sum of a counter over its labels (for `/internal/stats`, derived from the same counters).
    pub fn total(c: &IntCounterVec) -> u64 {
        prometheus::core::Collector::collect(c)
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// Middleware: times each request under its route template (never the raw path).
pub async fn track(
    State((metrics, listener)): State<(Arc<Metrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics
        .latency
        .with_label_values(&[listener, route.as_str(), resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

impl Metrics {
    /// The answer to `GET /metrics`.
    pub fn answer(&self) -> Response {
        match self.render() {
            Ok(text) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "metrics encoding failed");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
