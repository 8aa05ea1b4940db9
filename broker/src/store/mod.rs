//! The broker's storage interface: SQLite for one broker, PostgreSQL for replicas sharing one.
//!
//! Every method is one transaction, so a crash between any two leaves rows either before or after
//! a change, never half-way. Methods are blocking: callers run them on tokio's blocking pool.

#[cfg(test)]
mod contract;
pub mod postgres;
pub mod sqlite;

use scopegate_core::oauth::refresh::TokenStatus;

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub client_id: String,
    pub gateway: String,
    pub metadata: String,
    pub secret_hash: Option<String>,
    pub created_at: u64,
}

#[derive(Debug, Clone)]
pub struct PendingRow {
    pub id_hash: String,
    pub gateway: String,
    pub data: String,
    pub csrf_hash: String,
    pub state_hash: Option<String>,
    pub secret: Option<Vec<u8>>,
    pub expires_at: u64,
}

/// Where a grant stands; stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    /// By us: revocation, refresh-token reuse, code replay.
    Revoked,
    /// The downstream authorization server refused to refresh it.
    Dead,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Dead => "dead",
        }
    }

    /// An unknown stored value reads as `Dead`: never usable (fail closed).
    pub fn parse(s: &str) -> GrantStatus {
        match s {
            "active" => GrantStatus::Active,
            "revoked" => GrantStatus::Revoked,
            _ => GrantStatus::Dead,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrantRow {
    pub id: String,
    pub gateway: String,
    pub server: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub status: GrantStatus,
    pub downstream: Vec<u8>,
    pub downstream_expires_at: u64,
    pub version: i64,
    pub created_at: u64,
}

/// A grant as its person sees it on the connected-apps page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantListing {
    pub id: String,
    pub server: String,
    pub client_id: String,
    pub scope: String,
    pub status: GrantStatus,
    pub created_at: u64,
    /// The last token exchange or refresh; 0 for never.
    pub last_used_at: u64,
}

#[derive(Debug, Clone)]
pub struct CodeRow {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub expires_at: u64,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub status: TokenStatus,
    pub expires_at: u64,
    pub created_at: u64,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub private_key: Vec<u8>,
    pub created_at: u64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database lock poisoned")]
    Poisoned,
    #[error(
        "database schema version {found} is newer than this broker ({known}); refusing to run"
    )]
    NewerSchema { found: usize, known: usize },
    #[error("store task: {0}")]
    Task(String),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// No connection within the pool timeout: the database is unreachable or saturated.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database settings: {0}")]
    Config(String),
}

/// Held while this replica refreshes a grant downstream; dropping it lets the next one in.
pub trait RefreshLock: Send {}

/// One process needs no lock beyond its in-process single-flight (SQLite: one broker per file).
pub struct NoLock;
impl RefreshLock for NoLock {}

/// Opens the store `broker.database` names (migrating it), with the password from env or file.
pub fn open(
    b: &scopegate_core::config::BrokerDoc,
) -> std::result::Result<std::sync::Arc<dyn Store>, String> {
    use scopegate_core::broker_config::{database, Database};
    match database(b.database.as_deref()) {
        Database::Sqlite(path) => Ok(std::sync::Arc::new(sqlite::Sqlite::open(&path)?)),
        Database::Postgres(url) => {
            let password = crate::secret::read_secret(
                b.database_password_env.as_deref(),
                b.database_password_file.as_deref(),
                "broker database password",
            )?;
            let store = postgres::Postgres::open(&postgres::Options {
                url,
                password,
                pool_size: b.database_pool_size,
                timeout: std::time::Duration::from_millis(b.database_timeout_ms),
            })?;
            Ok(std::sync::Arc::new(store))
        }
        Database::Invalid(e) => Err(format!("broker.database: {e}")),
    }
}

/// Callers that report errors as text (`?` in a `Result<_, String>`).
impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.to_string()
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Runs a blocking store call on tokio's blocking pool, off the async workers.
pub async fn blocking<T: Send + 'static>(
    store: &std::sync::Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = std::sync::Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// What the broker needs from a database.
pub trait Store: Send + Sync + 'static {
    fn put_client(&self, c: &ClientRow) -> Result<()>;
    fn client(&self, client_id: &str) -> Result<Option<ClientRow>>;
    /// Registered (DCR) clients of a gateway.
    fn count_clients(&self, gateway: &str) -> Result<u64>;
    /// Deletes a gateway's clients registered before `created_before` that have no grant;
    /// returns how many.
    fn sweep_unused_clients(&self, gateway: &str, created_before: u64) -> Result<usize>;

    fn put_pending(&self, p: &PendingRow) -> Result<()>;
    fn pending(&self, id_hash: &str) -> Result<Option<PendingRow>>;
    /// Records the downstream leg of an approved request; false if it was gone or already approved.
    fn approve_pending(&self, id_hash: &str, state_hash: &str, secret: &[u8]) -> Result<bool>;
    /// Removes and returns the request a downstream `state` belongs to (single use).
    fn take_pending_by_state(&self, state_hash: &str) -> Result<Option<PendingRow>>;
    fn delete_pending(&self, id_hash: &str) -> Result<()>;

    /// Stores a new grant together with the authorization code that hands it to the client.
    fn create_grant(&self, g: &GrantRow, code: &CodeRow) -> Result<()>;
    fn grant(&self, id: &str) -> Result<Option<GrantRow>>;
    /// Replaces the downstream credential if the grant is still at `version` and active.
    fn update_downstream(
        &self,
        id: &str,
        version: i64,
        sealed: &[u8],
        expires_at: u64,
        now: u64,
    ) -> Result<bool>;
    /// A person's active grants on a gateway, newest first.
    fn grants_of(&self, gateway: &str, subject: &str) -> Result<Vec<GrantListing>>;
    /// Records that a grant was used (a token exchange or refresh) at `now`.
    fn touch_grant(&self, id: &str, now: u64) -> Result<()>;
    fn set_grant_status(&self, id: &str, status: GrantStatus, now: u64) -> Result<()>;
    /// Revokes a grant and every refresh token of its family, and lists it for the filter's
    /// revocations poll until `listed_until`.
    fn revoke_family(&self, grant_id: &str, now: u64, listed_until: u64) -> Result<()>;
    /// Revoked grants after `since` (at most `limit`): the new cursor and (grant id, until).
    fn revocations_since(&self, since: u64, limit: usize) -> Result<(u64, Vec<(String, u64)>)>;

    fn code(&self, code_hash: &str) -> Result<Option<CodeRow>>;
    /// Marks the code used and stores the first refresh token (if the client gets one); false if
    /// the code was used meanwhile.
    fn redeem_code(&self, code_hash: &str, refresh: Option<&RefreshRow>) -> Result<bool>;

    fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRow>>;
    /// Marks `old` rotated and stores `new`; false if `old` was no longer active.
    fn rotate_refresh(&self, old_hash: &str, new: &RefreshRow) -> Result<bool>;

    fn put_key(&self, k: &KeyRow) -> Result<()>;
    fn keys(&self) -> Result<Vec<KeyRow>>;
    fn delete_key(&self, kid: &str) -> Result<()>;

    /// Drops expired pending requests, codes and refresh tokens.
    fn purge(&self, now: u64) -> Result<()>;
    /// A cheap query, for `/readyz`.
    fn ping(&self) -> Result<()>;

    /// The right to refresh `grant_id` downstream across every broker on this database, or `None`
    /// while another holds it. Callers re-read the grant once they hold it.
    fn try_lock_refresh(&self, _grant_id: &str) -> Result<Option<Box<dyn RefreshLock>>> {
        Ok(Some(Box::new(NoLock)))
    }
}
