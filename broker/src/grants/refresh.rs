//! The downstream refresh single-flight: concurrent callers for one grant wait for one refresh
//! (a lock per grant in this process, then the store's lock across replicas) and reuse its result,
//! so a downstream refresh token is never spent twice.

use super::{Grants, TokenEndpoint};
use crate::downstream::RefreshError;
use crate::error::Error;
use crate::store::{self, GrantRow, RefreshLock};
use scopegate_core::oauth::OAuthError;
use std::sync::Arc;
use std::time::Duration;

/// About 15 s of retries (50 ms doubling to 2 s): a database failover, not a dead database.
const STORE_ATTEMPTS: u32 = 12;

impl Grants {
    /// The grant's downstream access token and how long it still lives, refreshed first if it is
    /// within the margin of expiry.
    pub async fn current(
        &self,
        grant: GrantRow,
        downstream: &impl TokenEndpoint,
        gateway: &str,
    ) -> Result<(String, u64), Error> {
        if self.fresh(&grant) {
            return self.hand_out(&grant);
        }
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| Error::internal("lock poisoned"))?;
            Arc::clone(flights.entry(grant.id.clone()).or_default())
        };
        let result = {
            let _guard = flight.lock().await;
            // Someone may have refreshed while we waited.
            let grant = self.active(&grant.id).await?;
            if self.fresh(&grant) {
                self.hand_out(&grant)
            } else {
                self.refresh_across_replicas(grant, downstream, gateway)
                    .await
            }
        };
        drop(flight);
        if let Ok(mut flights) = self.flights.lock() {
            if flights
                .get(&grant.id)
                .is_some_and(|l| Arc::strong_count(l) == 1)
            {
                flights.remove(&grant.id);
            }
        }
        result
    }

    fn fresh(&self, g: &GrantRow) -> bool {
        g.downstream_expires_at > self.clock.now() + self.settings.margin_s
    }

    /// Refreshes under the store's lock for the grant, so no two brokers on one database spend
    /// the same downstream refresh token (identity providers revoke a family when one is used
    /// twice).
    async fn refresh_across_replicas(
        &self,
        grant: GrantRow,
        downstream: &impl TokenEndpoint,
        gateway: &str,
    ) -> Result<(String, u64), Error> {
        let held = self.fleet_lock(&grant.id).await?;
        // Another replica may have refreshed while we waited for its lock.
        let result = match self.active(&grant.id).await {
            Ok(g) if self.fresh(&g) => self.hand_out(&g),
            Ok(g) => self.refresh(g, downstream, gateway).await,
            Err(e) => Err(e),
        };
        // The lock's release is a database call: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(held)).await;
        result
    }

    async fn fleet_lock(&self, grant_id: &str) -> Result<Box<dyn RefreshLock>, Error> {
        let deadline = tokio::time::Instant::now() + self.settings.lock_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let id = grant_id.to_string();
            match store::blocking(&self.store, move |s| s.try_lock_refresh(&id)).await? {
                Some(held) => return Ok(held),
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                None => {
                    tracing::warn!(grant_id = %grant_id, "downstream refresh lock: timed out waiting for another broker");
                    return Err(Error::unavailable(
                        "another broker is refreshing this grant",
                    ));
                }
            }
        }
    }

    async fn refresh(
        &self,
        grant: GrantRow,
        downstream: &impl TokenEndpoint,
        gateway: &str,
    ) -> Result<(String, u64), Error> {
        let credential = self.open(&grant)?;
        let Some(rt) = credential.refresh_token else {
            self.mark_dead(&grant.id, "no downstream refresh token")
                .await;
            return Err(dead());
        };
        self.refreshes.inc();
        match downstream.refresh(&rt).await {
            Ok(t) => {
                let blob = self.seal(&grant.id, &t)?;
                let stored = self.store_refreshed(&grant, blob, t.expires_at).await?;
                if !stored {
                    // Revoked meanwhile, or another replica won: what is stored now is the truth.
                    let g = self.active(&grant.id).await?;
                    return self.hand_out(&g);
                }
                tracing::info!(gateway = %gateway, grant_id = %grant.id, "downstream token refreshed");
                crate::telemetry::note("grant_status", "refreshed");
                Ok((
                    t.access_token,
                    t.expires_at.saturating_sub(self.clock.now()),
                ))
            }
            Err(RefreshError::Dead) => {
                self.refresh_failures.inc();
                crate::telemetry::note("grant_status", "dead");
                self.mark_dead(&grant.id, "downstream refused the refresh (invalid_grant)")
                    .await;
                Err(dead())
            }
            Err(RefreshError::Unavailable(e)) => {
                self.refresh_failures.inc();
                tracing::warn!(gateway = %gateway, grant_id = %grant.id, error = %e, "downstream refresh failed");
                Err(Error::unavailable(
                    "the downstream authorization server is unavailable",
                ))
            }
        }
    }

    /// Stores a refreshed downstream credential, retrying: the downstream has already spent the
    /// old refresh token, so giving up here would lose the grant.
    async fn store_refreshed(
        &self,
        grant: &GrantRow,
        blob: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, Error> {
        let mut pause = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            let (id, version, blob, now) = (
                grant.id.clone(),
                grant.version,
                blob.clone(),
                self.clock.now(),
            );
            match store::blocking(&self.store, move |s| {
                s.update_downstream(&id, version, &blob, expires_at, now)
            })
            .await
            {
                Ok(stored) => return Ok(stored),
                Err(e) if attempt < STORE_ATTEMPTS => {
                    tracing::warn!(grant_id = %grant.id, attempt, error = %e, "storing the refreshed downstream token failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                Err(e) => {
                    tracing::error!(grant_id = %grant.id, error = %e, "refreshed downstream token could not be stored; the grant needs a new authorization");
                    return Err(e.into());
                }
            }
        }
    }
}

fn dead() -> Error {
    OAuthError::invalid_grant("the downstream grant is gone; the user must authorize again").into()
}
