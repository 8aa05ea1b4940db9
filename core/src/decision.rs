//! What the policy decided for one request, and the audit record that goes to access logs and stats.

/// The decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub audit: Audit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward upstream with these identity facts.
    Allow(Grant),
    /// Answer locally.
    Deny(Denial),
}

/// What an allowed request carries upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub client_id: String,
    /// Effective scopes: token scopes ∩ the server's subset, space-separated.
    pub scopes: String,
    /// Keep the client's `Authorization` header (the server opted in to re-validate it).
    pub forward_client_token: bool,
    /// The broker's grant id, when the token names one (broker mode).
    pub grant_id: Option<String>,
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub www_authenticate: Option<String>,
    /// Seconds, for `Retry-After` (429).
    pub retry_after: Option<u64>,
    pub body: String,
}

/// Why a request was decided the way it was; every field lands in filter state for access logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub server: String,
    pub decision: &'static str,
    /// A short snake_case code: `ok`, `no_token`, `expired`, `insufficient_scope`, ...
    pub reason: &'static str,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// Effective scopes (allow) or the scopes granted when refused.
    pub scopes: String,
    /// Scopes the token carried that the gateway never grants.
    pub foreign_scopes: String,
    pub tool: Option<String>,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self.outcome, Outcome::Allow(_))
    }

    pub fn status(&self) -> u16 {
        match &self.outcome {
            Outcome::Allow(_) => 200,
            Outcome::Deny(d) => d.status,
        }
    }
}

/// A JSON error body in the OAuth style (`error`, `error_description`).
pub fn oauth_error_body(error: &str, description: &str) -> String {
    serde_json::json!({ "error": error, "error_description": description }).to_string()
}
