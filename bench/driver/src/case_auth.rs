//! What a case's Envoy runs in front of the upstream: its bootstrap, auth, the budgeted cluster.

use super::cases::{Case, Kind, LADDER_FLOOR_EXPORTS};
use super::envoy::{self as benv, Auth};
use super::options::Options;
use super::request::{self, PUBLIC_URL};
use scopegate_tests::issuer::Issuer;
use serde_json::Value;

/// A case's Envoy bootstrap on `port` (its admin on a port of its own), for the timed and the
/// counted runs alike.
pub(super) fn case_bootstrap(
    case: &Case,
    opts: &Options,
    issuer: &Issuer,
    upstream_port: u16,
    port: u16,
) -> Result<Value, String> {
    let auth = auth_for(case, opts, issuer);
    let mut boot = benv::bootstrap(
        &auth,
        port,
        benv::admin_port(),
        upstream_port,
        issuer.port,
        opts.cache_entries,
    );
    attach_service(case, &auth, &mut boot)?;
    Ok(boot)
}

/// What a case's Envoy runs in front of the upstream.
fn auth_for(case: &Case, opts: &Options, issuer: &Issuer) -> Auth {
    match case.kind {
        Kind::NoAuth | Kind::Brokered => Auth::None,
        Kind::Ladder { rung } => Auth::Ladder {
            rung: rung.to_string(),
            wasm: if rung == LADDER_FLOOR_EXPORTS {
                opts.ladder_stripped_wasm.clone()
            } else {
                opts.ladder_wasm.clone()
            },
        },
        Kind::Scopegate { per_tool, metadata } => {
            let rules = benv::Rules {
                per_tool,
                listing: case.shape.is_listing(),
                metadata,
            };
            Auth::Scopegate {
                doc: budgeted_if(
                    case,
                    benv::scopegate_doc(PUBLIC_URL, &issuer.url, rules, opts.cache_entries),
                )
                .to_string(),
                wasm: opts.wasm.clone(),
                native_mcp: metadata,
            }
        }
        Kind::JwtAuthn { per_tool } => Auth::JwtAuthn {
            issuer: issuer.url.clone(),
            audience: format!("{PUBLIC_URL}{}", request::PATH),
            per_tool,
        },
    }
}

/// The budgeted case's document: the per-tool one with its budget (`budgeted.rs`).
fn budgeted_if(case: &Case, doc: Value) -> Value {
    if case.id == super::budgeted::ID {
        super::budgeted::doc(doc)
    } else {
        doc
    }
}

/// The budgeted case's bootstrap gains the rate limit service's cluster (`budgeted.rs`).
fn attach_service(case: &Case, auth: &Auth, boot: &mut Value) -> Result<(), String> {
    match auth {
        Auth::Scopegate { doc, .. } if case.id == super::budgeted::ID => {
            super::budgeted::attach(boot, doc)
        }
        _ => Ok(()),
    }
}
