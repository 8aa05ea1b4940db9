//! `render ratelimit`: the configuration of the rate limit service (envoyproxy/ratelimit) that
//! counts the document's budgets, and that service as a Kubernetes workload for the meshes.
//!
//! The descriptors nest as the filter sends them (`scopegate_core::rate_limit`): gateway, server,
//! budget, then a valueless `subject` or `client_id` key so each distinct value gets its own
//! counter; a budget counted per server holds its limit on the budget descriptor itself.

use super::options::{MeshOptions, RateLimitOptions, DEFAULT_RATELIMIT_IMAGE};
use super::{Endpoint, Input, RenderError, Rendered};
use scopegate_core::rate_limit::{budget_value, counter_key, unit};
use scopegate_core::Policy;
use serde::Serialize;
use serde_json::{json, Value};

pub const RATELIMIT_NAME: &str = "scopegate-ratelimit";
pub const REDIS_NAME: &str = "scopegate-ratelimit-redis";
pub const GRPC_PORT: u16 = 8081;
const HTTP_PORT: u16 = 8080;
const REDIS_PORT: u16 = 6379;
const RUNTIME_ROOT: &str = "/data";
const RUNTIME_SUBDIRECTORY: &str = "ratelimit";
const CONFIG_FILE: &str = "scopegate.yaml";

/// The rate limit Service's in-cluster address.
pub fn service_endpoint(namespace: &str) -> Endpoint {
    Endpoint {
        host: format!("{RATELIMIT_NAME}.{namespace}.svc.cluster.local"),
        port: GRPC_PORT,
    }
}

/// envoyproxy/ratelimit's configuration file. Typed so it prints key first, as its documentation
/// writes it (a JSON object would sort the keys).
#[derive(Debug, Serialize)]
pub struct Config {
    domain: String,
    descriptors: Vec<Descriptor>,
}

#[derive(Debug, Serialize)]
struct Descriptor {
    key: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<Limit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    descriptors: Vec<Descriptor>,
}

#[derive(Debug, Serialize)]
struct Limit {
    unit: &'static str,
    requests_per_unit: u32,
}

impl Descriptor {
    fn new(key: &'static str, value: &str) -> Descriptor {
        Descriptor {
            key,
            value: Some(value.to_string()),
            rate_limit: None,
            descriptors: Vec::new(),
        }
    }
}

impl Config {
    pub fn yaml(&self) -> Result<String, RenderError> {
        serde_norway::to_string(self).map_err(|e| RenderError::Usage(e.to_string()))
    }

    pub fn json(&self) -> Result<Value, RenderError> {
        serde_json::to_value(self).map_err(|e| RenderError::Usage(e.to_string()))
    }
}

/// The service's configuration for the policy's budgets, or `None` without `filter.rate_limit`.
pub fn config(policy: &Policy) -> Option<Config> {
    let service = policy.filter.rate_limit.as_ref()?;
    let mut gateways = Vec::new();
    for g in &policy.gateways {
        let mut servers = Vec::new();
        for s in g.servers.iter().filter_map(|id| policy.server(*id)) {
            let mut budgets: Vec<Descriptor> = Vec::new();
            for b in &s.budgets {
                let value = budget_value(b);
                let limit = Limit {
                    // Validation refused windows the service has no unit for.
                    unit: unit(b.per_seconds).unwrap_or("second"),
                    requests_per_unit: b.requests,
                };
                // Budgets with the same value (a per-subject and a per-client one, say) share
                // one descriptor: the service refuses a key/value named twice.
                let at = match budgets
                    .iter()
                    .position(|d| d.value.as_deref() == Some(value.as_str()))
                {
                    Some(i) => i,
                    None => {
                        budgets.push(Descriptor::new("budget", &value));
                        budgets.len() - 1
                    }
                };
                let node = &mut budgets[at];
                match counter_key(b.per) {
                    Some(key) => node.descriptors.push(Descriptor {
                        key,
                        value: None,
                        rate_limit: Some(limit),
                        descriptors: Vec::new(),
                    }),
                    // Per server: one counter, on the budget descriptor.
                    None => node.rate_limit = Some(limit),
                }
            }
            if !budgets.is_empty() {
                let mut server = Descriptor::new("server", &s.name);
                server.descriptors = budgets;
                servers.push(server);
            }
        }
        if !servers.is_empty() {
            let mut gateway = Descriptor::new("gateway", &g.name);
            gateway.descriptors = servers;
            gateways.push(gateway);
        }
    }
    Some(Config {
        domain: service.domain.clone(),
        descriptors: gateways,
    })
}

/// `render ratelimit`: the configuration file, as the service reads it.
pub fn render(input: &Input, _a: &RateLimitOptions) -> Result<Rendered, RenderError> {
    let Some(config) = config(&input.policy) else {
        return Err(RenderError::Usage(
            "the document has no `filter.rate_limit`: its budgets are counted by each Envoy on its own, and no rate limit service is configured".into(),
        ));
    };
    Ok(Rendered {
        text: Some(config.yaml()?),
        header: vec![
            format!("Rendered by `scopegate-broker {}`: do not edit.", input.command),
            format!("envoyproxy/ratelimit configuration ({DEFAULT_RATELIMIT_IMAGE}): put it in RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config/."),
        ],
        objects: vec![(None, config.json()?)],
    })
}

fn labels(name: &str) -> Value {
    json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "scopegate"})
}

/// The rate limit service next to the broker: its configuration as a ConfigMap, a Deployment
/// of envoyproxy/ratelimit and its Service (gRPC), and a small Redis unless `--redis-url` names
/// one. Empty without `filter.rate_limit`.
pub fn objects(
    mesh: &MeshOptions,
    policy: &Policy,
) -> Result<Vec<(Option<String>, Value)>, RenderError> {
    let Some(config) = config(policy) else {
        return match &mesh.redis_url {
            Some(_) => Err(RenderError::Usage(
                "--redis-url: the document has no `filter.rate_limit`, so no rate limit service is rendered".into(),
            )),
            None => Ok(Vec::new()),
        };
    };
    let ns = &mesh.namespace;
    let yaml = config.yaml()?;
    let redis = match &mesh.redis_url {
        Some(url) => {
            Endpoint::parse(url).map_err(|e| RenderError::Usage(format!("--redis-url: {e}")))?;
            url.clone()
        }
        None => format!("{REDIS_NAME}.{ns}.svc.cluster.local:{REDIS_PORT}"),
    };
    let env = [
        ("USE_STATSD", "false"),
        ("LOG_LEVEL", "warn"),
        ("REDIS_SOCKET_TYPE", "tcp"),
        ("REDIS_URL", redis.as_str()),
        ("RUNTIME_ROOT", RUNTIME_ROOT),
        ("RUNTIME_SUBDIRECTORY", RUNTIME_SUBDIRECTORY),
        // A ConfigMap volume is symlinks and dot-directories swapped on update.
        ("RUNTIME_WATCH_ROOT", "false"),
        ("RUNTIME_IGNOREDOTFILES", "true"),
    ]
    .map(|(name, value)| json!({"name": name, "value": value}));
    let mut out = vec![
        (
            Some(format!(
                "The rate limit service counting the budgets across every proxy \
                 (envoyproxy/ratelimit; `scopegate-broker render ratelimit` prints the same \
                 configuration). It counts in Redis at {redis}."
            )),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": RATELIMIT_NAME, "namespace": ns, "labels": labels(RATELIMIT_NAME)},
                "data": {CONFIG_FILE: yaml},
            }),
        ),
        (
            None,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": RATELIMIT_NAME, "namespace": ns, "labels": labels(RATELIMIT_NAME)},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels(RATELIMIT_NAME)},
                    "template": {
                        "metadata": {"labels": labels(RATELIMIT_NAME)},
                        "spec": {
                            "containers": [{
                                "name": "ratelimit",
                                "image": mesh.ratelimit_image,
                                "command": ["/bin/ratelimit"],
                                "env": env,
                                "ports": [
                                    {"name": "grpc", "containerPort": GRPC_PORT},
                                    {"name": "http", "containerPort": HTTP_PORT},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/healthcheck", "port": "http"}, "periodSeconds": 10},
                                "volumeMounts": [{
                                    "name": "config",
                                    "mountPath": format!("{RUNTIME_ROOT}/{RUNTIME_SUBDIRECTORY}/config"),
                                    "readOnly": true,
                                }],
                                "securityContext": {
                                    "runAsNonRoot": true,
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                },
                            }],
                            "volumes": [{"name": "config", "configMap": {"name": RATELIMIT_NAME}}],
                        },
                    },
                },
            }),
        ),
        (
            Some("gRPC (`appProtocol: grpc`): the filter's calls go over HTTP/2.".into()),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": RATELIMIT_NAME, "namespace": ns, "labels": labels(RATELIMIT_NAME)},
                "spec": {
                    "selector": labels(RATELIMIT_NAME),
                    "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"}],
                },
            }),
        ),
    ];
    if mesh.redis_url.is_none() {
        out.extend(redis_objects(ns));
    }
    Ok(out)
}

/// A single Redis without persistence: counters are short-lived windows, so a restart at worst
/// forgets the current windows. `--redis-url` names a managed one instead.
fn redis_objects(ns: &str) -> Vec<(Option<String>, Value)> {
    vec![
        (
            Some("The rate limit service's counters (no persistence: a restart forgets the current windows). Use --redis-url for an existing Redis.".into()),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": REDIS_NAME, "namespace": ns, "labels": labels(REDIS_NAME)},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels(REDIS_NAME)},
                    "template": {
                        "metadata": {"labels": labels(REDIS_NAME)},
                        "spec": {
                            "containers": [{
                                "name": "redis",
                                "image": "redis:7.4-alpine",
                                "args": ["--save", "", "--appendonly", "no"],
                                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                                "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
                                "securityContext": {
                                    "runAsNonRoot": true,
                                    "runAsUser": 999,
                                    "allowPrivilegeEscalation": false,
                                },
                            }],
                        },
                    },
                },
            }),
        ),
        (
            None,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": REDIS_NAME, "namespace": ns, "labels": labels(REDIS_NAME)},
                "spec": {
                    "selector": labels(REDIS_NAME),
                    "ports": [{"name": "tcp-redis", "port": REDIS_PORT, "targetPort": "redis", "appProtocol": "redis"}],
                },
            }),
        ),
    ]
}
