//! The sections only the broker reads: its own settings (`broker`) and each gateway's `clients`.

use serde::Deserialize;

/// Which ways MCP clients may identify themselves to the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsDoc {
    #[serde(default = "yes")]
    pub dcr: bool,
    #[serde(default)]
    pub cimd: Option<CimdDoc>,
    #[serde(default)]
    pub preregistered: Vec<PreregisteredClientDoc>,
    /// Limits on dynamic registration.
    #[serde(default)]
    pub registration: RegistrationLimitsDoc,
}

impl Default for ClientsDoc {
    fn default() -> Self {
        ClientsDoc {
            dcr: true,
            cimd: None,
            preregistered: Vec::new(),
            registration: RegistrationLimitsDoc::default(),
        }
    }
}

/// How many clients may register, and how long one that is never used is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationLimitsDoc {
    /// Registrations per minute for the gateway (beyond: 429 with `Retry-After`).
    #[serde(default = "default_registrations_per_minute")]
    pub per_minute: u32,
    /// Registered clients kept at once (beyond: 429 until unused ones are swept).
    #[serde(default = "default_max_clients")]
    pub max_clients: u64,
    /// A registered client with no grant after this long is deleted.
    #[serde(default = "default_unused_client_ttl")]
    pub unused_client_ttl_s: u64,
}

impl Default for RegistrationLimitsDoc {
    fn default() -> Self {
        RegistrationLimitsDoc {
            per_minute: default_registrations_per_minute(),
            max_clients: default_max_clients(),
            unused_client_ttl_s: default_unused_client_ttl(),
        }
    }
}

fn default_registrations_per_minute() -> u32 {
    60
}
fn default_max_clients() -> u64 {
    10_000
}
fn default_unused_client_ttl() -> u64 {
    24 * 3600
}

fn yes() -> bool {
    true
}

/// Client ID Metadata Document policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimdDoc {
    /// Hosts whose `https` client_id documents are accepted; `"*"` allows any public host.
    pub allowed_hosts: Vec<String>,
    /// Hosts allowed even though they resolve to private or loopback addresses (tests, labs).
    #[serde(default)]
    pub allow_private_hosts: Vec<String>,
}

/// A client the operator registered ahead of time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreregisteredClientDoc {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Confidential clients name their secret by env var or file; public clients name neither.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Ask the person every time, even when they approved the same request before.
    #[serde(default)]
    pub always_ask: bool,
}

/// The consent page: the operator's words for each scope, and whether approvals are remembered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentDoc {
    /// A later authorization by the same client for the same or fewer scopes on the same server
    /// skips the page (remembered in the person's browser, voided by withdrawing the grant).
    #[serde(default = "yes")]
    pub remember: bool,
    /// How long an approval is remembered.
    #[serde(default = "default_remember_for")]
    pub remember_for_s: u64,
    /// What each allowed scope lets an application do, in words a person reads on the page.
    #[serde(default)]
    pub scope_descriptions: std::collections::BTreeMap<String, String>,
}

impl Default for ConsentDoc {
    fn default() -> Self {
        ConsentDoc {
            remember: true,
            remember_for_s: default_remember_for(),
            scope_descriptions: Default::default(),
        }
    }
}

fn default_remember_for() -> u64 {
    30 * 86_400
}

/// Settings of the broker service (listeners, storage, keys). Secrets are named, never inlined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerDoc {
    /// Public listener (OAuth endpoints, reached through Envoy); `--listen` overrides it.
    #[serde(default)]
    pub listen: Option<String>,
    /// Internal listener (token exchange, JWKS, stats) for the filter; `--internal-listen` overrides it.
    #[serde(default)]
    pub internal_listen: Option<String>,
    /// A non-loopback TCP `internal_listen` is refused unless this says a mesh enforces mutual
    /// TLS and an authorization policy on it (Istio: PeerAuthentication STRICT + AuthorizationPolicy).
    #[serde(default)]
    pub internal_mesh_authorized: bool,
    /// The database: a SQLite file (`sqlite:PATH` or a plain path; created, migrated on start) or
    /// `postgres://user@host:port/dbname` (migrated on start; for more than one replica).
    #[serde(default)]
    pub database: Option<String>,
    /// The PostgreSQL password, named by environment variable or file (never in `database`).
    #[serde(default)]
    pub database_password_env: Option<String>,
    #[serde(default)]
    pub database_password_file: Option<String>,
    /// PostgreSQL connections per replica (plus as many for the refresh locks).
    #[serde(default = "default_database_pool_size")]
    pub database_pool_size: u32,
    /// Bound on connecting to PostgreSQL and on waiting for a pooled connection.
    #[serde(default = "default_database_timeout")]
    pub database_timeout_ms: u64,
    /// How long an exchange waits for another replica's downstream refresh of the same grant.
    #[serde(default = "default_refresh_lock_timeout")]
    pub refresh_lock_timeout_ms: u64,
    /// The 32-byte key encrypting downstream tokens and signing keys at rest, base64 or hex,
    /// named by environment variable or file (exactly one of the two).
    #[serde(default)]
    pub encryption_key_env: Option<String>,
    #[serde(default)]
    pub encryption_key_file: Option<String>,
    /// Lifetime of the access tokens the broker issues.
    #[serde(default = "default_access_token_ttl")]
    pub access_token_ttl_s: u64,
    /// Lifetime of each refresh token (every use rotates it and starts a new one).
    #[serde(default = "default_refresh_token_ttl")]
    pub refresh_token_ttl_s: u64,
    /// A new signing key is made when the current one is this old; old keys stay in the JWKS
    /// until every token they signed has expired.
    #[serde(default = "default_signing_key_rotation")]
    pub signing_key_rotation_s: u64,
    /// A downstream access token this close to expiry is refreshed before it is handed out.
    #[serde(default = "default_downstream_refresh_margin")]
    pub downstream_refresh_margin_s: u64,
    /// Extra PEM root certificates trusted for outgoing https (CIMD documents, downstream).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Bound on each outgoing CIMD fetch.
    #[serde(default = "default_cimd_timeout")]
    pub cimd_timeout_ms: u64,
}

impl Default for BrokerDoc {
    fn default() -> Self {
        BrokerDoc {
            listen: None,
            internal_listen: None,
            internal_mesh_authorized: false,
            database: None,
            database_password_env: None,
            database_password_file: None,
            database_pool_size: default_database_pool_size(),
            database_timeout_ms: default_database_timeout(),
            refresh_lock_timeout_ms: default_refresh_lock_timeout(),
            encryption_key_env: None,
            encryption_key_file: None,
            access_token_ttl_s: default_access_token_ttl(),
            refresh_token_ttl_s: default_refresh_token_ttl(),
            signing_key_rotation_s: default_signing_key_rotation(),
            downstream_refresh_margin_s: default_downstream_refresh_margin(),
            tls_ca_file: None,
            cimd_timeout_ms: default_cimd_timeout(),
        }
    }
}

fn default_access_token_ttl() -> u64 {
    300
}
fn default_refresh_token_ttl() -> u64 {
    30 * 24 * 3600
}
fn default_signing_key_rotation() -> u64 {
    7 * 24 * 3600
}
fn default_downstream_refresh_margin() -> u64 {
    30
}
fn default_cimd_timeout() -> u64 {
    3000
}
fn default_database_pool_size() -> u32 {
    8
}
fn default_database_timeout() -> u64 {
    5000
}
fn default_refresh_lock_timeout() -> u64 {
    10_000
}
