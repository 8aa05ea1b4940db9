//! The broker's shared state, built once from the validated document.

use crate::cimd::Fetcher;
use crate::clock::Clock;
use crate::crypto::{self, Sealer};
use crate::downstream::{self, Downstream};
use crate::grants::{self, Grants};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::secret::read_secret;
use crate::store::Store;
use scopegate_core::config::{BrokerDoc, RegistrationLimitsDoc};
use scopegate_core::oauth::client::ClientMetadata;
use scopegate_core::oauth::registration::Window;
use scopegate_core::policy::GatewayId;
use scopegate_core::Policy;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A client from the document.
pub struct Prereg {
    pub meta: ClientMetadata,
    pub secret_hash: Option<String>,
}

/// Everything the broker keeps per brokered gateway.
pub struct GatewayRt {
    pub id: GatewayId,
    pub name: String,
    pub issuer: String,
    pub issuer_path: String,
    pub downstream: Downstream,
    pub cimd: Option<Fetcher>,
    pub dcr: bool,
    pub prereg: HashMap<String, Prereg>,
    pub metadata: Value,
    pub registration: RegistrationLimitsDoc,
    /// Registrations in the current minute.
    pub registrations: Mutex<Window>,
}

pub struct App {
    pub policy: Policy,
    pub broker: BrokerDoc,
    pub store: Arc<dyn Store>,
    pub sealer: Sealer,
    pub keys: KeyRing,
    pub gateways: Vec<GatewayRt>,
    pub metrics: Arc<Metrics>,
    pub grants: Grants,
    pub clock: Arc<dyn Clock>,
}

impl App {
    pub fn build(
        policy: Policy,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<App, String> {
        let broker = policy.document.broker.clone().unwrap_or_default();
        let key = read_secret(broker.encryption_key_env.as_deref(), broker.encryption_key_file.as_deref(), "broker encryption key")?
            .ok_or("broker.encryption_key_env or broker.encryption_key_file is required: downstream tokens are stored encrypted")?;
        let sealer = Sealer::from_text(&key)?;
        let roots = match &broker.tls_ca_file {
            Some(path) => {
                let pem =
                    std::fs::read(path).map_err(|e| format!("broker.tls_ca_file {path}: {e}"))?;
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("broker.tls_ca_file {path}: {e}"))?
            }
            None => Vec::new(),
        };
        let http = downstream::http_client(&roots)?;
        let mut gateways = Vec::new();
        for (id, g) in policy.document.gateways.iter().enumerate() {
            let Some(d) = &g.downstream else { continue };
            let what = format!("gateway `{}` downstream client secret", g.name);
            let secret = read_secret(
                d.client_secret_env.as_deref(),
                d.client_secret_file.as_deref(),
                &what,
            )?;
            let downstream = Downstream::new(g, secret, http.clone(), Arc::clone(&clock))
                .ok_or("downstream missing")?;
            let cimd = match &g.clients.cimd {
                Some(c) => Some(Fetcher::new(c, broker.cimd_timeout_ms, &roots)?),
                None => None,
            };
            let mut prereg = HashMap::new();
            for c in &g.clients.preregistered {
                let what = format!("gateway `{}` client `{}` secret", g.name, c.client_id);
                let secret = read_secret(
                    c.client_secret_env.as_deref(),
                    c.client_secret_file.as_deref(),
                    &what,
                )?;
                let meta = ClientMetadata {
                    client_name: c.client_name.clone(),
                    redirect_uris: c.redirect_uris.clone(),
                    grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                    response_types: vec!["code".into()],
                    token_endpoint_auth_method: if secret.is_some() {
                        "client_secret_basic".into()
                    } else {
                        "none".into()
                    },
                    application_type: "web".into(),
                    scope: None,
                    client_uri: None,
                };
                for uri in &meta.redirect_uris {
                    scopegate_core::oauth::client::check_redirect_uri(uri).map_err(|e| {
                        format!("gateway `{}` client `{}`: {e}", g.name, c.client_id)
                    })?;
                }
                prereg.insert(
                    c.client_id.clone(),
                    Prereg {
                        meta,
                        secret_hash: secret.as_deref().map(crypto::hash),
                    },
                );
            }
            let gw = policy.gateway(id).ok_or("gateway index")?;
            gateways.push(GatewayRt {
                id,
                name: g.name.clone(),
                issuer: g.issuer.clone(),
                issuer_path: scopegate_core::oauth::metadata::issuer_path(&g.issuer).to_string(),
                downstream,
                cimd,
                dcr: g.clients.dcr,
                prereg,
                metadata: scopegate_core::oauth::metadata::document(gw, &g.clients),
                registration: g.clients.registration.clone(),
                registrations: Mutex::new(Window::default()),
            });
        }
        if gateways.is_empty() {
            return Err("no gateway has `downstream`: the broker has nothing to broker".into());
        }
        let keys = KeyRing::load(
            Arc::clone(&store),
            sealer.clone(),
            broker.signing_key_rotation_s,
            broker.access_token_ttl_s,
            clock.now(),
        )?;
        let metrics = Arc::new(Metrics::new()?);
        let grants = Grants::new(
            Arc::clone(&store),
            sealer.clone(),
            Arc::clone(&clock),
            grants::Settings {
                margin_s: broker.downstream_refresh_margin_s,
                lock_timeout: std::time::Duration::from_millis(broker.refresh_lock_timeout_ms),
            },
            &metrics,
        );
        Ok(App {
            policy,
            broker,
            store,
            sealer,
            keys,
            gateways,
            metrics,
            grants,
            clock,
        })
    }

    pub fn gateway(&self, id: GatewayId) -> Option<&GatewayRt> {
        self.gateways.iter().find(|g| g.id == id)
    }

    /// Unix seconds, from the broker's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Runs a blocking store call on tokio's blocking pool.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> crate::store::Result<T> + Send + 'static,
    ) -> crate::store::Result<T> {
        crate::store::blocking(&self.store, f).await
    }
}
