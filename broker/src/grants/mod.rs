//! Grants: a user's consent for one client on one server, backed by the downstream tokens the
//! broker keeps sealed in the grant row. This is where a grant's current downstream access token
//! comes from, refreshed under a single flight per grant (`refresh.rs`).

mod refresh;
#[cfg(test)]
mod tests;
mod uses;

use crate::clock::Clock;
use crate::crypto::{CryptoError, Sealer};
use crate::downstream::{Credential, Downstream, RefreshError, Tokens};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{self, GrantRow, GrantStatus, Store};
use prometheus::IntCounter;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The downstream token endpoint, as the single flight spends a refresh token.
pub trait TokenEndpoint: Sync {
    fn refresh(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Tokens, RefreshError>> + Send;
}

impl TokenEndpoint for Downstream {
    fn refresh(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Tokens, RefreshError>> + Send {
        Downstream::refresh(self, refresh_token)
    }
}

/// The document's refresh settings (`broker.downstream_refresh_margin_s`,
/// `broker.refresh_lock_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A downstream token closer than this to its expiry is refreshed before it is handed out.
    pub margin_s: u64,
    /// How long to wait for another replica's refresh of the same grant.
    pub lock_timeout: Duration,
}

/// The grants in the store, as the token exchange and the callback use them.
pub struct Grants {
    store: Arc<dyn Store>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    settings: Settings,
    /// One lock per grant being refreshed downstream in this process (single flight).
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    uses: uses::Uses,
    refreshes: IntCounter,
    refresh_failures: IntCounter,
}

fn context(grant_id: &str) -> String {
    format!("grant:{grant_id}")
}

impl Grants {
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        settings: Settings,
        metrics: &Metrics,
    ) -> Grants {
        Grants {
            store,
            sealer,
            clock,
            settings,
            flights: Mutex::new(HashMap::new()),
            uses: uses::Uses::default(),
            refreshes: metrics.downstream_refreshes.clone(),
            refresh_failures: metrics.downstream_refresh_failures.clone(),
        }
    }

    /// The downstream tokens as the grant row keeps them, bound to the grant's id.
    pub fn seal(&self, grant_id: &str, t: &Tokens) -> Result<Vec<u8>, CryptoError> {
        let c = Credential {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
        };
        let plain = serde_json::to_vec(&c).map_err(|e| CryptoError::from(e.to_string()))?;
        self.sealer.seal(&context(grant_id), &plain)
    }

    pub fn open(&self, g: &GrantRow) -> Result<Credential, CryptoError> {
        let plain = self.sealer.open(&context(&g.id), &g.downstream)?;
        serde_json::from_slice(&plain)
            .map_err(|e| CryptoError::from(format!("grant {}: {e}", g.id)))
    }

    /// The grant if it is still active.
    pub async fn active(&self, grant_id: &str) -> Result<GrantRow, Error> {
        let id = grant_id.to_string();
        let row = store::blocking(&self.store, move |s| s.grant(&id)).await?;
        crate::telemetry::note(
            "grant_status",
            row.as_ref().map_or("unknown", |g| g.status.as_str()),
        );
        match row {
            Some(g) if g.status == GrantStatus::Active => Ok(g),
            _ => Err(scopegate_core::oauth::OAuthError::invalid_grant(
                "the grant is revoked or the downstream grant is gone",
            )
            .into()),
        }
    }

    /// Records, off the request path, that a grant was used (a token exchange or refresh): its
    /// last use on the person's connected-apps page, written once per grant and minute.
    pub fn note_use(&self, grant_id: &str, now: u64) {
        if !self.uses.to_record(grant_id, now) {
            return;
        }
        let (store, id) = (Arc::clone(&self.store), grant_id.to_string());
        tokio::spawn(async move {
            let key = id.clone();
            if let Err(e) = store::blocking(&store, move |s| s.touch_grant(&key, now)).await {
                tracing::warn!(grant_id = %id, error = %e, "grant's last use not recorded");
            }
        });
    }

    /// The downstream access token as stored, and how long it still lives.
    fn hand_out(&self, g: &GrantRow) -> Result<(String, u64), Error> {
        let c = self.open(g)?;
        Ok((
            c.access_token,
            g.downstream_expires_at.saturating_sub(self.clock.now()),
        ))
    }

    async fn mark_dead(&self, grant_id: &str, why: &str) {
        let (id, now) = (grant_id.to_string(), self.clock.now());
        if let Err(e) = store::blocking(&self.store, move |s| {
            s.set_grant_status(&id, GrantStatus::Dead, now)
        })
        .await
        {
            tracing::error!(grant_id = %grant_id, error = %e, "could not mark grant dead");
        }
        tracing::warn!(grant_id = %grant_id, reason = why, "grant is dead");
    }
}
