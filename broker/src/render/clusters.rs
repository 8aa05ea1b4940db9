//! The Envoy clusters a document names (servers, JWKS, the broker, the rate limit service) and
//! their renaming per target.

use super::{Endpoint, Input, RenderError};
use serde_json::Value;

/// What a cluster is for, which decides where it points when `--upstream` does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An MCP server's upstream (`gateways[].servers[].cluster`).
    Server { name: String, path: String },
    /// Where signing keys are fetched (`filter.jwks` or `gateways[].jwks`).
    Jwks,
    /// The broker's internal listener (`filter.broker.cluster`).
    Broker,
    /// The rate limit service counting budgets (`filter.rate_limit.cluster`), spoken to in gRPC.
    RateLimit,
}

/// One cluster the document names, with its endpoint.
#[derive(Debug, Clone)]
pub struct ClusterRef {
    pub name: String,
    pub role: Role,
    pub endpoint: Endpoint,
    /// Whether it is the broker's internal listener (the broker cluster, or a JWKS cluster that
    /// shares its name: the broker serves `/jwks` there).
    pub broker_internal: bool,
}

/// Every JSON pointer at which the document names a cluster, with its role.
fn pointers(doc: &Value) -> Vec<(String, Role)> {
    let mut out = Vec::new();
    for (gi, g) in doc["gateways"].as_array().into_iter().flatten().enumerate() {
        for (si, s) in g["servers"].as_array().into_iter().flatten().enumerate() {
            out.push((
                format!("/gateways/{gi}/servers/{si}/cluster"),
                Role::Server {
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    path: s["path"].as_str().unwrap_or_default().to_string(),
                },
            ));
        }
        if g["jwks"]["cluster"].is_string() {
            out.push((format!("/gateways/{gi}/jwks/cluster"), Role::Jwks));
        }
    }
    if doc["filter"]["jwks"]["cluster"].is_string() {
        out.push(("/filter/jwks/cluster".into(), Role::Jwks));
    }
    if doc["filter"]["broker"]["cluster"].is_string() {
        out.push(("/filter/broker/cluster".into(), Role::Broker));
    }
    if doc["filter"]["rate_limit"]["cluster"].is_string() {
        out.push(("/filter/rate_limit/cluster".into(), Role::RateLimit));
    }
    out
}

/// What a cluster speaking HTTP/2 to its upstream needs (gRPC: the rate limit service).
pub fn http2_options() -> Value {
    serde_json::json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    })
}

/// The name of the broker's internal cluster, if the filter calls the broker.
pub fn broker_cluster(doc: &Value) -> Option<&str> {
    doc["filter"]["broker"]["cluster"].as_str()
}

/// The distinct clusters of the document, each with where it points: the rate limit service's
/// address for its cluster, `--upstream`, else the broker's internal listener for the broker's
/// cluster; anything else is an error naming it.
pub fn resolve(
    input: &Input,
    broker_internal: &Endpoint,
    rate_limit: Option<&Endpoint>,
) -> Result<Vec<ClusterRef>, RenderError> {
    let broker = broker_cluster(&input.doc).map(str::to_string);
    let mut out: Vec<ClusterRef> = Vec::new();
    for (ptr, role) in pointers(&input.doc) {
        let Some(name) = input.doc.pointer(&ptr).and_then(Value::as_str) else {
            continue;
        };
        if out.iter().any(|c| c.name == name) {
            continue;
        }
        let is_broker = broker.as_deref() == Some(name);
        // Validation gave the service a cluster of its own.
        if role == Role::RateLimit {
            let Some(ep) = rate_limit else {
                return Err(RenderError::Usage(format!(
                    "cluster `{name}` (the rate limit service, at `{ptr}`) has no address: add --rate-limit HOST:PORT"
                )));
            };
            out.push(ClusterRef {
                name: name.to_string(),
                role,
                endpoint: ep.clone(),
                broker_internal: false,
            });
            continue;
        }
        let endpoint = match (input.upstreams.get(name), is_broker) {
            (Some(ep), _) => ep.clone(),
            (None, true) => broker_internal.clone(),
            (None, false) => {
                let what = match &role {
                    Role::Server { name: s, .. } => format!("server `{s}`"),
                    Role::Jwks => "the JWKS".to_string(),
                    Role::Broker => "the broker".to_string(),
                    Role::RateLimit => "the rate limit service".to_string(),
                };
                return Err(RenderError::Usage(format!(
                    "cluster `{name}` ({what}, at `{ptr}`) has no address: add --upstream {name}=HOST:PORT"
                )));
            }
        };
        out.push(ClusterRef {
            name: name.to_string(),
            role,
            endpoint,
            broker_internal: is_broker,
        });
    }
    for name in input.upstreams.keys() {
        if !out.iter().any(|c| &c.name == name) {
            return Err(RenderError::Usage(format!(
                "--upstream {name}: the document names no cluster `{name}`"
            )));
        }
    }
    Ok(out)
}

/// Renames every cluster the document names with `rename(old) -> new`, and sets the JWKS and
/// broker `authority` to the upstream's host where the document leaves it to default to the
/// cluster name (a mesh cluster name is no host name).
pub fn rename(
    doc: &Value,
    clusters: &[ClusterRef],
    rename: impl Fn(&ClusterRef) -> String,
) -> Value {
    let mut out = doc.clone();
    for (ptr, role) in pointers(doc) {
        let Some(old) = doc.pointer(&ptr).and_then(Value::as_str) else {
            continue;
        };
        let Some(c) = clusters.iter().find(|c| c.name == old) else {
            continue;
        };
        let new = rename(c);
        if new == old {
            continue;
        }
        if let Some(slot) = out.pointer_mut(&ptr) {
            *slot = Value::String(new);
        }
        // The rate limit call is gRPC: its `:authority` is Envoy's to set.
        if matches!(role, Role::Jwks | Role::Broker) {
            let parent = ptr.trim_end_matches("/cluster");
            if let Some(obj) = out.pointer_mut(parent).and_then(Value::as_object_mut) {
                obj.entry("authority")
                    .or_insert_with(|| Value::String(c.endpoint.host.clone()));
            }
        }
    }
    out
}
