//! The single flight natively: an in-memory store that can fail or hold the refresh lock, a clock
//! set by hand, and a downstream token endpoint that counts what it is asked and rotates.

use super::*;
use crate::clock::FixedClock;
use crate::store::sqlite::Sqlite;
use crate::store::{
    ClientRow, CodeRow, KeyRow, NoLock, PendingRow, RefreshLock, RefreshRow, StoreError,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const T0: u64 = 1_000_000;
const MARGIN_S: u64 = 60;

/// SQLite in memory, with two faults on demand: `update_downstream` failing (a database
/// failover) and the refresh lock held by another replica; it counts the writes of a last use.
struct Faulty {
    inner: Sqlite,
    failing_updates: AtomicU32,
    lock_held: AtomicBool,
    touches: AtomicU32,
}

impl Store for Faulty {
    fn put_client(&self, c: &ClientRow) -> store::Result<()> {
        self.inner.put_client(c)
    }
    fn client(&self, client_id: &str) -> store::Result<Option<ClientRow>> {
        self.inner.client(client_id)
    }
    fn count_clients(&self, gateway: &str) -> store::Result<u64> {
        self.inner.count_clients(gateway)
    }
    fn sweep_unused_clients(&self, gateway: &str, before: u64) -> store::Result<usize> {
        self.inner.sweep_unused_clients(gateway, before)
    }
    fn put_pending(&self, p: &PendingRow) -> store::Result<()> {
        self.inner.put_pending(p)
    }
    fn pending(&self, id_hash: &str) -> store::Result<Option<PendingRow>> {
        self.inner.pending(id_hash)
    }
    fn approve_pending(
        &self,
        id_hash: &str,
        state_hash: &str,
        secret: &[u8],
    ) -> store::Result<bool> {
        self.inner.approve_pending(id_hash, state_hash, secret)
    }
    fn take_pending_by_state(&self, state_hash: &str) -> store::Result<Option<PendingRow>> {
        self.inner.take_pending_by_state(state_hash)
    }
    fn delete_pending(&self, id_hash: &str) -> store::Result<()> {
        self.inner.delete_pending(id_hash)
    }
    fn create_grant(&self, g: &GrantRow, code: &CodeRow) -> store::Result<()> {
        self.inner.create_grant(g, code)
    }
    fn grants_of(&self, gateway: &str, subject: &str) -> store::Result<Vec<store::GrantListing>> {
        self.inner.grants_of(gateway, subject)
    }
    fn touch_grant(&self, id: &str, now: u64) -> store::Result<()> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch_grant(id, now)
    }
    fn grant(&self, id: &str) -> store::Result<Option<GrantRow>> {
        self.inner.grant(id)
    }
    fn update_downstream(
        &self,
        id: &str,
        version: i64,
        sealed: &[u8],
        expires_at: u64,
        now: u64,
    ) -> store::Result<bool> {
        let failing = self
            .failing_updates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Unavailable("failing over".into()));
        }
        self.inner
            .update_downstream(id, version, sealed, expires_at, now)
    }
    fn set_grant_status(&self, id: &str, status: GrantStatus, now: u64) -> store::Result<()> {
        self.inner.set_grant_status(id, status, now)
    }
    fn revoke_family(&self, grant_id: &str, now: u64, listed_until: u64) -> store::Result<()> {
        self.inner.revoke_family(grant_id, now, listed_until)
    }
    fn revocations_since(
        &self,
        since: u64,
        limit: usize,
    ) -> store::Result<(u64, Vec<(String, u64)>)> {
        self.inner.revocations_since(since, limit)
    }
    fn code(&self, code_hash: &str) -> store::Result<Option<CodeRow>> {
        self.inner.code(code_hash)
    }
    fn redeem_code(&self, code_hash: &str, refresh: Option<&RefreshRow>) -> store::Result<bool> {
        self.inner.redeem_code(code_hash, refresh)
    }
    fn refresh(&self, token_hash: &str) -> store::Result<Option<RefreshRow>> {
        self.inner.refresh(token_hash)
    }
    fn rotate_refresh(&self, old_hash: &str, new: &RefreshRow) -> store::Result<bool> {
        self.inner.rotate_refresh(old_hash, new)
    }
    fn put_key(&self, k: &KeyRow) -> store::Result<()> {
        self.inner.put_key(k)
    }
    fn keys(&self) -> store::Result<Vec<KeyRow>> {
        self.inner.keys()
    }
    fn delete_key(&self, kid: &str) -> store::Result<()> {
        self.inner.delete_key(kid)
    }
    fn purge(&self, now: u64) -> store::Result<()> {
        self.inner.purge(now)
    }
    fn ping(&self) -> store::Result<()> {
        self.inner.ping()
    }
    fn try_lock_refresh(&self, _grant_id: &str) -> store::Result<Option<Box<dyn RefreshLock>>> {
        if self.lock_held.load(Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(Some(Box::new(NoLock)))
    }
}

/// A downstream token endpoint that takes `delay` to answer, rotates the refresh token on every
/// success (`rt-N` for the N-th call) and remembers which refresh tokens it was shown.
struct Endpoint {
    delay: Duration,
    dead: bool,
    presented: Mutex<Vec<String>>,
}

impl Endpoint {
    fn new(delay_ms: u64) -> Endpoint {
        Endpoint {
            delay: Duration::from_millis(delay_ms),
            dead: false,
            presented: Mutex::new(Vec::new()),
        }
    }
    fn presented(&self) -> Vec<String> {
        self.presented.lock().unwrap().clone()
    }
}

impl TokenEndpoint for Endpoint {
    fn refresh(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Tokens, RefreshError>> + Send {
        let n = {
            let mut p = self.presented.lock().unwrap();
            p.push(refresh_token.to_string());
            p.len()
        };
        let (delay, dead) = (self.delay, self.dead);
        async move {
            tokio::time::sleep(delay).await;
            if dead {
                return Err(RefreshError::Dead);
            }
            Ok(Tokens {
                access_token: format!("at-{n}"),
                refresh_token: Some(format!("rt-{n}")),
                expires_at: T0 + 3600,
                id_token: None,
            })
        }
    }
}

struct Fixture {
    store: Arc<Faulty>,
    clock: Arc<FixedClock>,
    grants: Arc<Grants>,
    metrics: Metrics,
    grant: GrantRow,
}

/// Grant `g1`, its downstream token (`at-0`, refresh token `rt-0`) 30 s from expiry at `T0`:
/// inside the refresh margin.
fn fixture(lock_timeout_ms: u64) -> Fixture {
    let store = Arc::new(Faulty {
        inner: Sqlite::open(":memory:").unwrap(),
        failing_updates: AtomicU32::new(0),
        lock_held: AtomicBool::new(false),
        touches: AtomicU32::new(0),
    });
    let metrics = Metrics::new().unwrap();
    let clock = Arc::new(FixedClock::at(T0));
    let grants = Grants::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Sealer::from_text(&"11".repeat(32)).unwrap(),
        Arc::clone(&clock) as Arc<dyn Clock>,
        Settings {
            margin_s: MARGIN_S,
            lock_timeout: Duration::from_millis(lock_timeout_ms),
        },
        &metrics,
    );
    let first = Tokens {
        access_token: "at-0".into(),
        refresh_token: Some("rt-0".into()),
        expires_at: T0 + 30,
        id_token: None,
    };
    let grant = GrantRow {
        id: "g1".into(),
        gateway: "gw".into(),
        server: "s".into(),
        client_id: "c".into(),
        subject: "alice".into(),
        scope: "a".into(),
        status: GrantStatus::Active,
        downstream: grants.seal("g1", &first).unwrap(),
        downstream_expires_at: first.expires_at,
        version: 0,
        created_at: T0,
    };
    let code = CodeRow {
        code_hash: "h".into(),
        grant_id: "g1".into(),
        client_id: "c".into(),
        redirect_uri: "https://c.example/cb".into(),
        code_challenge: "x".into(),
        resource: "https://s.example/mcp".into(),
        expires_at: T0 + 60,
        used: false,
    };
    store.create_grant(&grant, &code).unwrap();
    Fixture {
        store,
        clock,
        grants: Arc::new(grants),
        metrics,
        grant,
    }
}

impl Fixture {
    /// What the store holds for `g1` now: the sealed tokens opened, and their expiry.
    fn stored(&self) -> (Credential, u64, GrantStatus) {
        let g = self.store.grant("g1").unwrap().unwrap();
        (
            self.grants.open(&g).unwrap(),
            g.downstream_expires_at,
            g.status,
        )
    }
}

#[tokio::test]
async fn a_fresh_token_is_handed_out_without_a_refresh() {
    let f = fixture(1000);
    let endpoint = Endpoint::new(0);
    let mut grant = f.grant.clone();
    grant.downstream_expires_at = T0 + MARGIN_S + 1;
    let (token, expires_in) = f.grants.current(grant, &endpoint, "gw").await.unwrap();
    assert_eq!((token.as_str(), expires_in), ("at-0", MARGIN_S + 1));
    assert!(endpoint.presented().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_downstream_refresh() {
    let f = fixture(1000);
    // Slow enough that every caller arrives while the first refresh is in flight.
    let endpoint = Arc::new(Endpoint::new(200));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (grants, endpoint, grant) = (
                Arc::clone(&f.grants),
                Arc::clone(&endpoint),
                f.grant.clone(),
            );
            tokio::spawn(async move { grants.current(grant, endpoint.as_ref(), "gw").await })
        })
        .collect();
    for c in callers {
        let (token, expires_in) = c.await.unwrap().unwrap();
        assert_eq!((token.as_str(), expires_in), ("at-1", 3600));
    }
    assert_eq!(endpoint.presented(), ["rt-0"], "one downstream refresh");
    assert_eq!(f.metrics.downstream_refreshes.get(), 1);
    let (stored, expires_at, _) = f.stored();
    assert_eq!(stored.access_token, "at-1");
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(expires_at, T0 + 3600);
    assert!(
        f.grants.flights.lock().unwrap().is_empty(),
        "flight left behind"
    );
}

#[tokio::test]
async fn a_failed_store_is_retried_so_the_rotated_tokens_are_kept() {
    let f = fixture(1000);
    f.store.failing_updates.store(2, Ordering::SeqCst);
    let endpoint = Endpoint::new(0);
    let (token, _) = f
        .grants
        .current(f.grant.clone(), &endpoint, "gw")
        .await
        .unwrap();
    assert_eq!(token, "at-1");
    assert_eq!(f.store.failing_updates.load(Ordering::SeqCst), 0);
    // The downstream has spent `rt-0`: only `rt-1` refreshes from now on, and it is stored.
    let (stored, expires_at, status) = f.stored();
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-1"));
    assert_eq!((expires_at, status), (T0 + 3600, GrantStatus::Active));
    // The next caller is served from the store, with no second refresh.
    let grant = f.store.grant("g1").unwrap().unwrap();
    let (token, _) = f.grants.current(grant, &endpoint, "gw").await.unwrap();
    assert_eq!(token, "at-1");
    assert_eq!(endpoint.presented(), ["rt-0"]);
    // Near its expiry, the kept refresh token is the one spent.
    f.clock.set(T0 + 3600 - MARGIN_S);
    let grant = f.store.grant("g1").unwrap().unwrap();
    let (token, _) = f.grants.current(grant, &endpoint, "gw").await.unwrap();
    assert_eq!(token, "at-2");
    assert_eq!(endpoint.presented(), ["rt-0", "rt-1"]);
}

#[tokio::test]
async fn a_lock_held_past_the_timeout_is_temporarily_unavailable() {
    let f = fixture(150);
    f.store.lock_held.store(true, Ordering::SeqCst);
    let endpoint = Endpoint::new(0);
    let started = std::time::Instant::now();
    let e = f
        .grants
        .current(f.grant.clone(), &endpoint, "gw")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "temporarily_unavailable");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "gave up early"
    );
    assert!(
        endpoint.presented().is_empty(),
        "refreshed without the lock"
    );
    assert_eq!(f.stored().0.refresh_token.as_deref(), Some("rt-0"));
    // Once the other holder lets go, the refresh goes through.
    f.store.lock_held.store(false, Ordering::SeqCst);
    let (token, _) = f
        .grants
        .current(f.grant.clone(), &endpoint, "gw")
        .await
        .unwrap();
    assert_eq!(token, "at-1");
}

#[tokio::test]
async fn a_refresh_by_the_lock_holder_is_reused_not_repeated() {
    let f = fixture(2000);
    f.store.lock_held.store(true, Ordering::SeqCst);
    let endpoint = Endpoint::new(0);
    // Another replica refreshes while it holds the lock, then lets go.
    let other = {
        let (store, grants) = (Arc::clone(&f.store), Arc::clone(&f.grants));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let theirs = Tokens {
                access_token: "at-theirs".into(),
                refresh_token: Some("rt-theirs".into()),
                expires_at: T0 + 1800,
                id_token: None,
            };
            let blob = grants.seal("g1", &theirs).unwrap();
            assert!(store
                .update_downstream("g1", 0, &blob, T0 + 1800, T0)
                .unwrap());
            store.lock_held.store(false, Ordering::SeqCst);
        })
    };
    let (token, expires_in) = f
        .grants
        .current(f.grant.clone(), &endpoint, "gw")
        .await
        .unwrap();
    other.await.unwrap();
    assert_eq!((token.as_str(), expires_in), ("at-theirs", 1800));
    assert!(
        endpoint.presented().is_empty(),
        "spent a refresh token twice"
    );
}

#[tokio::test]
async fn a_refused_refresh_kills_the_grant() {
    let f = fixture(1000);
    let endpoint = Endpoint {
        dead: true,
        ..Endpoint::new(0)
    };
    let e = f
        .grants
        .current(f.grant.clone(), &endpoint, "gw")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert_eq!(f.stored().2, GrantStatus::Dead);
    assert_eq!(f.metrics.downstream_refresh_failures.get(), 1);
}

#[tokio::test]
async fn a_grants_use_is_written_once_a_minute_and_shows_the_latest_minute() {
    let f = fixture(1000);
    // T0 is 40 s into its minute: T0 and T0 + 19 share it, T0 + 20 starts the next.
    for now in [T0, T0 + 5, T0 + 19, T0 + 20, T0 + 21] {
        f.grants.note_use("g1", now);
    }
    let written = || f.store.touches.load(Ordering::SeqCst);
    for _ in 0..500 {
        if written() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(written(), 2, "one write per minute");
    let listed = f.store.grants_of("gw", "alice").unwrap();
    assert_eq!(
        listed[0].last_used_at,
        T0 + 20,
        "the latest minute's first use"
    );
}
