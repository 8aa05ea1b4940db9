//! The `filter` section: limits, the broker call, and what the body mode cannot do.

use super::{Errors, MAX_BODY_BYTES, MAX_LEEWAY_S, MAX_LISTING_BYTES};
use crate::config::{BodyMode, BrokerCallDoc, Document, OnError, RateLimitDoc};
use crate::policy::{BrokerCall, FilterSettings, RateLimitCall, Server};

/// `filter.*`, checked and compiled.
pub(super) fn settings(doc: &Document, errs: &mut Errors) -> FilterSettings {
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
    FilterSettings {
        leeway_s: f.leeway_s,
        max_body_bytes: f.max_body_bytes,
        token_cache_entries: f.token_cache_entries,
        max_listing_bytes: f.max_listing_bytes,
        broker: f.broker.as_ref().map(|b| broker_call(b, errs)),
        body_mode: f.body_mode,
        rate_limit: f.rate_limit.as_ref().map(|r| rate_limit_call(r, errs)),
    }
}

/// `filter.rate_limit`: where budgets are counted across every proxy.
fn rate_limit_call(r: &RateLimitDoc, errs: &mut Errors) -> RateLimitCall {
    let mut refuse = |field: &str, message: String| {
        errs.push(None, None, format!("filter.rate_limit.{field}"), message);
    };
    // The cluster goes to Envoy inside a serialized GrpcService whose length bytes must stay
    // single-byte varints (the host call takes UTF-8).
    if r.cluster.is_empty() || r.cluster.len() > 120 || r.cluster.chars().any(char::is_control) {
        refuse(
            "cluster",
            "must be an Envoy cluster name of 1 to 120 characters".into(),
        );
    }
    if r.domain.is_empty() || r.domain.len() > 120 || r.domain.chars().any(char::is_control) {
        refuse("domain", "must be 1 to 120 characters".into());
    }
    if r.timeout_ms == 0 || r.timeout_ms > 10_000 {
        refuse("timeout_ms", "must be between 1 and 10000".into());
    }
    let grpc_service =
        String::from_utf8(crate::rate_limit::proto::grpc_service(&r.cluster)).unwrap_or_default();
    RateLimitCall {
        cluster: r.cluster.clone(),
        grpc_service,
        domain: r.domain.clone(),
        timeout_ms: r.timeout_ms,
        on_error: r.on_error,
    }
}

/// The load-time warning a fail-open rate limit deserves.
pub(super) fn rate_limit_warnings(filter: &FilterSettings, warnings: &mut Vec<String>) {
    if let Some(r) = &filter.rate_limit {
        if r.on_error == OnError::Allow {
            warnings.push(format!("filter.rate_limit.on_error is `allow`: while the rate limit service (cluster `{}`) cannot answer, budgeted calls pass uncounted", r.cluster));
        }
    }
}

/// `filter.broker`: where the filter exchanges tokens and polls revocations.
fn broker_call(b: &BrokerCallDoc, errs: &mut Errors) -> BrokerCall {
    let mut refuse = |field: &str, message: String| {
        errs.push(None, None, format!("filter.broker.{field}"), message);
    };
    if b.cluster.is_empty() {
        refuse("cluster", "cluster must not be empty".into());
    }
    if !b.path.starts_with('/') {
        refuse("path", "path must start with `/`".into());
    }
    if b.timeout_ms == 0 || b.timeout_ms > 60_000 {
        refuse("timeout_ms", "must be between 1 and 60000".into());
    }
    if !b.revocations_path.starts_with('/') || b.revocations_path.contains(['?', '#']) {
        refuse(
            "revocations_path",
            "must start with `/` and have no query".into(),
        );
    }
    if b.revocation_poll_s == 0 || b.revocation_poll_s > crate::revocation::MAX_POLL_S {
        refuse(
            "revocation_poll_s",
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
}

/// What `filter.body_mode` needs from the deployment, and what it cannot serve.
pub(super) fn check_body_mode(
    filter: &FilterSettings,
    servers: &[Server],
    errs: &mut Errors,
    warnings: &mut Vec<String>,
) {
    if filter.body_mode == BodyMode::HoldHeaders {
        warnings.push("filter.body_mode `hold_headers` needs `allow_on_headers_stop_iteration: true` in the wasm plugin config (static Envoy, or an EnvoyFilter/ECDS patch); Istio's WasmPlugin and Envoy Gateway cannot set it, and without it per-tool requests are held and refused, never forwarded".into());
    }
    if filter.body_mode == BodyMode::McpMetadata {
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
}
