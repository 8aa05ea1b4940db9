//! A fleet: several Envoys (each what `scopegate-broker render envoy` prints, with the built
//! `.wasm`) in front of the same MCP servers and issuer, counting budgets in one rate limit
//! service on one Redis (`filter.rate_limit`), its configuration what `render ratelimit` prints.

use crate::envoy::Envoy;
use crate::free_port;
use crate::issuer::Issuer;
use crate::procs::log_dir;
use crate::ratelimit::RateLimitService;
use crate::redis::Redis;
use crate::stack::{example_clusters, gateway_doc, start_example_envoy, McpServer, OPS};
use serde_json::{json, Value};

/// The rate limit service's cluster in the documents the fleet renders.
pub const CLUSTER: &str = "ratelimit";

pub struct Fleet {
    pub issuer: Issuer,
    pub support: McpServer,
    pub ops: McpServer,
    pub redis: Redis,
    pub ratelimit: RateLimitService,
    pub envoys: Vec<Envoy>,
    /// The one public URL every Envoy of the fleet serves (as behind a load balancer).
    pub public_url: String,
}

impl Fleet {
    /// Starts the servers, Redis, the rate limit service on `render ratelimit`'s output for the
    /// first Envoy's document, then one Envoy of `workers` workers per entry of `envoys`: the
    /// example document with `filter.rate_limit` on the service, edited by `tweak` and then by
    /// that Envoy's own edit.
    pub fn start(
        name: &str,
        workers: u32,
        tweak: &dyn Fn(&mut Value),
        envoys: &[&dyn Fn(&mut Value)],
    ) -> Fleet {
        let issuer = Issuer::start();
        let support = McpServer::start("support-assistant", name);
        let ops = McpServer::start("ops-console", name);
        let redis = Redis::start(name);
        let ports: Vec<u16> = envoys.iter().map(|_| free_port()).collect();
        let public_url = format!("http://127.0.0.1:{}", ports[0]);
        let docs: Vec<Value> = envoys
            .iter()
            .map(|edit| {
                let mut doc = gateway_doc(&public_url, &issuer.url);
                doc["filter"]["rate_limit"] = json!({ "cluster": CLUSTER });
                tweak(&mut doc);
                edit(&mut doc);
                doc
            })
            .collect();
        let dir = log_dir(name);
        let first = dir.join("gateway-for-ratelimit.json");
        std::fs::write(
            &first,
            serde_json::to_string_pretty(&docs[0]).expect("JSON"),
        )
        .expect("write the document");
        let config = crate::render::render(&["ratelimit", &first.display().to_string()]);
        let ratelimit = RateLimitService::start(name, &config, &redis.url());
        let address = ratelimit.address();
        let envoys = docs
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (doc, port))| {
                start_example_envoy(
                    &format!("{name}/envoy-{i}"),
                    doc,
                    &example_clusters(&issuer, &support, &ops),
                    Some(&address),
                    *port,
                    workers,
                    &|_| {},
                )
            })
            .collect();
        Fleet {
            issuer,
            support,
            ops,
            redis,
            ratelimit,
            envoys,
            public_url,
        }
    }

    pub fn resource(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// A token for ops-console's `admin.read` held by `subject`.
    pub fn admin_token(&self, subject: &str) -> String {
        let mut claims = self.issuer.claims(&self.resource(OPS), "admin.read");
        claims["sub"] = json!(subject);
        self.issuer.sign("es256", claims)
    }
}
