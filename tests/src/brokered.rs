//! The whole product: Envoy with scopegate in front of the two MCP servers and the broker, the
//! broker in front of the downstream authorization server. Clients see only Envoy's URL.

use crate::broker::BrokerStack;
use crate::envoy::wait_keys_loaded;
use crate::envoy::{Envoy, Spec};
use crate::free_port;
use crate::mcp::Client;
use crate::oauth::{pkce, redeem, register, Agent, AuthRequest};
use crate::stack::{McpServer, OPS, SUPPORT};
use serde_json::{json, Value};

pub const CLIENT_CB: &str = "http://127.0.0.1:1/walkthrough/cb";

pub struct Brokered {
    pub stack: BrokerStack,
    pub support: McpServer,
    pub ops: McpServer,
    pub envoy: Envoy,
    /// The gateway's public URL: Envoy's listener.
    pub public_url: String,
}

/// What a client holds after authorizing.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_id: String,
    pub resource: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Where everything listens on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub envoy: u16,
    pub support: u16,
    pub ops: u16,
    pub broker: u16,
    pub broker_internal: u16,
}

/// Envoy in front of servers and broker: MCP paths to the servers, everything else (the OAuth
/// endpoints) to the broker's public listener; the filter reaches the broker's internal one.
pub fn envoy_spec(name: &str, doc: &Value, ports: Ports, concurrency: u32) -> Spec {
    Spec {
        name: name.to_string(),
        filter_config: doc.to_string(),
        clusters: vec![
            ("support_assistant".into(), ports.support),
            ("ops_console".into(), ports.ops),
            ("scopegate_broker".into(), ports.broker),
            ("scopegate_broker_internal".into(), ports.broker_internal),
        ],
        routes: vec![
            (SUPPORT.into(), "support_assistant".into()),
            (OPS.into(), "ops_console".into()),
            ("/".into(), "scopegate_broker".into()),
        ],
        concurrency,
        port: Some(ports.envoy),
    }
}

impl Brokered {
    /// `ttl`: downstream access-token lifetime; `concurrency`: Envoy workers.
    pub fn start(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        concurrency: u32,
    ) -> Brokered {
        Brokered::start_with(name, ttl, proxy, concurrency, |_| {})
    }

    /// As [`Brokered::start`]; `tweak` edits the gateway document (broker and filter read the
    /// same one) after the example's per-tool scopes are in.
    pub fn start_with(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        concurrency: u32,
        tweak: impl FnOnce(&mut Value),
    ) -> Brokered {
        Brokered::start_edited(name, ttl, proxy, concurrency, tweak, &|_| {})
    }

    /// As [`Brokered::start_with`]; `edit_envoy` edits Envoy's bootstrap.
    pub fn start_edited(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        concurrency: u32,
        tweak: impl FnOnce(&mut Value),
        edit_envoy: &dyn Fn(&mut Value),
    ) -> Brokered {
        Brokered::start_rendered(name, ttl, proxy, concurrency, tweak, &[], edit_envoy)
    }

    /// As [`Brokered::start_edited`], with more `render envoy` options (`render_options`).
    pub fn start_rendered(
        name: &str,
        ttl: u64,
        proxy: Option<&crate::proxy::Proxy>,
        concurrency: u32,
        tweak: impl FnOnce(&mut Value),
        render_options: &[&str],
        edit_envoy: &dyn Fn(&mut Value),
    ) -> Brokered {
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let stack = BrokerStack::start_at(name, ttl, proxy, Some(port), |doc| {
            // The test broker document has a second gateway for cross-gateway checks; Envoy
            // here fronts only `saas`.
            if let Some(gws) = doc["gateways"].as_array_mut() {
                gws.truncate(1);
            }
            // Per-tool scopes as in the example.
            doc["gateways"][0]["servers"][0]["tools"] =
                json!({"list_tickets": ["tickets.read"], "get_account": ["accounts.read"]});
            doc["gateways"][0]["servers"][1]["tools"] =
                json!({"update_ticket": ["tickets.write"], "admin_report": ["admin.read"]});
            tweak(doc);
        });
        let support = McpServer::start("support-assistant", name);
        let ops = McpServer::start("ops-console", name);
        let config = std::fs::read_to_string(crate::procs::log_dir(name).join("broker.json"))
            .expect("broker.json");
        let doc: Value = serde_json::from_str(&config).expect("broker document");
        // Envoy runs what `scopegate-broker render envoy` prints for the same document.
        let envoy = crate::render::start_envoy_rendered_with(
            name,
            &doc,
            &crate::render::Upstreams {
                clusters: &[
                    ("support_assistant", support.port),
                    ("ops_console", ops.port),
                ],
                broker: Some((stack.broker.port, stack.broker.internal_port)),
                rate_limit: None,
            },
            port,
            concurrency,
            render_options,
            edit_envoy,
        );
        let b = Brokered {
            stack,
            support,
            ops,
            envoy,
            public_url,
        };
        // The broker signs the tokens the filter verifies: its keys come from the broker.
        wait_keys_loaded(&b.envoy.url(SUPPORT));
        b
    }

    pub fn resource(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// Registers a client (DCR) and authorizes it for `path` through Envoy, consenting as the user.
    pub fn authorize(&self, path: &str, scope: Option<&str>) -> Session {
        let client_id = register(&self.public_url, CLIENT_CB);
        self.authorize_client(&client_id, path, scope)
    }

    /// Authorizes an already registered client.
    pub fn authorize_client(&self, client_id: &str, path: &str, scope: Option<&str>) -> Session {
        let issuer = &self.public_url;
        let resource = self.resource(path);
        let (verifier, challenge) = pkce();
        let mut req = AuthRequest::new(issuer, client_id, CLIENT_CB, &resource, &challenge);
        req.scope = scope.map(str::to_string);
        let code = Agent::default().authorize(&req);
        let r = redeem(issuer, client_id, &code, CLIENT_CB, &verifier, &resource);
        assert_eq!(r.status, 200, "token: {}", r.body);
        let t = r.json();
        Session {
            client_id: client_id.to_string(),
            resource,
            access_token: t["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            refresh_token: t["refresh_token"].as_str().map(str::to_string),
            scope: t["scope"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// An initialized MCP session through Envoy with `session`'s token.
    pub fn mcp(&self, path: &str, session: &Session) -> Client {
        let mut c = Client::new(&self.envoy.url(path), Some(&session.access_token));
        let r = c.initialize();
        assert_eq!(
            r.status, 200,
            "initialize through Envoy: {} {}",
            r.status, r.body
        );
        c
    }

    /// The broker's counters (`token_exchanges`, `downstream_refreshes`).
    pub fn broker_stat(&self, name: &str) -> u64 {
        self.stack.broker.stats()[name].as_u64().unwrap_or(0)
    }
}
