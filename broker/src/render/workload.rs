//! The broker as a Kubernetes workload (ConfigMap, Deployment, Service) and the external hosts it
//! and the filter reach, shared by the Istio and Envoy Gateway targets.

use super::options::MeshOptions;
use serde_json::{json, Value};

pub const BROKER_NAME: &str = "scopegate-broker";
pub const PUBLIC_PORT: u16 = 8080;
pub const INTERNAL_PORT: u16 = 8081;
const CONFIG_DIR: &str = "/etc/scopegate";
const CONFIG_FILE: &str = "scopegate.json";
const DATA_DIR: &str = "/var/lib/scopegate";

/// The broker Service's in-cluster host name.
pub fn broker_host(namespace: &str) -> String {
    format!("{BROKER_NAME}.{namespace}.svc.cluster.local")
}

fn labels() -> Value {
    json!({"app.kubernetes.io/name": BROKER_NAME, "app.kubernetes.io/part-of": "scopegate"})
}

/// Names of the environment variables the document reads secrets from (`*_env`), sorted.
pub fn secret_env_names(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k.ends_with("_env") {
                        if let Some(name) = v.as_str() {
                            out.push(name.to_string());
                        }
                    }
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut out);
    out.sort();
    out.dedup();
    out
}

/// ConfigMap (the document the filter also gets), Deployment and Service of the broker.
pub fn broker_objects(
    mesh: &MeshOptions,
    configuration: &str,
    doc: &Value,
) -> Vec<(Option<String>, Value)> {
    let ns = &mesh.namespace;
    let mut env: Vec<Value> = secret_env_names(doc)
        .into_iter()
        .map(|name| {
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": mesh.secret, "key": name}}})
        })
        .collect();
    if let Some(collector) = &mesh.otlp_collector {
        env.push(
            json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": format!("http://{collector}")}),
        );
        env.push(json!({"name": "OTEL_SERVICE_NAME", "value": BROKER_NAME}));
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels()},
        "data": {CONFIG_FILE: configuration},
    });
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": "http-public"}, "periodSeconds": 10});
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels()},
        "spec": {
            // SQLite: one replica (PostgreSQL for more).
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels()},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "containers": [{
                        "name": "broker",
                        "image": mesh.broker_image,
                        "args": [
                            "serve",
                            "--config", format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                            "--listen", format!("0.0.0.0:{PUBLIC_PORT}"),
                            "--internal-listen", format!("0.0.0.0:{INTERNAL_PORT}"),
                        ],
                        "workingDir": DATA_DIR,
                        "ports": [
                            {"name": "http-public", "containerPort": PUBLIC_PORT},
                            {"name": "http-internal", "containerPort": INTERNAL_PORT},
                        ],
                        "env": env,
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "volumeMounts": [
                            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
                            {"name": "data", "mountPath": DATA_DIR},
                        ],
                        "securityContext": {
                            "runAsNonRoot": true,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                        },
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": BROKER_NAME}},
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": BROKER_NAME, "namespace": ns, "labels": labels()},
        "spec": {
            "selector": labels(),
            "ports": [
                {"name": "http-public", "port": PUBLIC_PORT, "targetPort": "http-public"},
                {"name": "http-internal", "port": INTERNAL_PORT, "targetPort": "http-internal"},
            ],
        },
    });
    vec![
        (
            Some(format!(
                "The broker. Its secrets come from the Secret `{}` (keys: the variable names); \
                 create it yourself, render never writes secret values.\n\
                 The data volume holds the SQLite database: use a PersistentVolumeClaim to keep \
                 grants across restarts.",
                mesh.secret
            )),
            config_map,
        ),
        (None, deployment),
        (None, service),
    ]
}

/// Hosts and ports of the downstream authorization servers (`https://host[:port]`).
pub fn downstream_hosts(doc: &Value) -> Vec<(String, u16, bool)> {
    let mut out: Vec<(String, u16, bool)> = Vec::new();
    for g in doc["gateways"].as_array().into_iter().flatten() {
        let Some(url) = g["downstream"]["authorization_server"].as_str() else {
            continue;
        };
        let Ok(u) = url::Url::parse(url) else {
            continue;
        };
        let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
            continue;
        };
        let entry = (host.to_string(), port, u.scheme() == "https");
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// Whether a host is a Kubernetes service name rather than something outside the cluster.
pub fn in_cluster(host: &str) -> bool {
    host.ends_with(".svc.cluster.local") || host.ends_with(".svc") || !host.contains('.')
}
