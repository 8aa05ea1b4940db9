//! What the policy decided for one request, and the audit record that goes to access logs and stats.

use crate::oauth::OAuthErrorCode;
pub use crate::reason::Reason;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub server: String,
    /// `allow` or `deny`: always [`Reason::decision`] of `reason`.
    pub decision: &'static str,
    /// `ok`, `no_token`, `expired`, `insufficient_scope`, ... ([`Reason::as_str`]).
    pub reason: Reason,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// Effective scopes (allow) or the scopes granted when refused.
    pub scopes: String,
    /// Scopes the token carried that the gateway never grants.
    pub foreign_scopes: String,
    pub tool: Option<String>,
}

impl Audit {
    /// A record for `server` with nothing known yet but the reason.
    pub fn new(server: impl Into<String>, reason: Reason) -> Audit {
        Audit {
            server: server.into(),
            decision: reason.decision(),
            reason,
            subject: None,
            client_id: None,
            scopes: String::new(),
            foreign_scopes: String::new(),
            tool: None,
        }
    }

    /// The same record, now refused for `reason` (every refusal's record goes through here).
    pub fn refused(mut self, reason: Reason) -> Audit {
        self.decision = "deny";
        self.reason = reason;
        self
    }
}

impl Denial {
    /// A reply with an OAuth-style JSON body (`error`, `error_description`).
    pub fn oauth(status: u16, error: OAuthErrorCode, description: &str) -> Denial {
        Denial::with_body(status, oauth_error_body(error, description))
    }

    /// A reply with a body of its own (a JSON-RPC error).
    pub fn with_body(status: u16, body: String) -> Denial {
        Denial {
            status,
            www_authenticate: None,
            retry_after: None,
            body,
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn challenge(mut self, www_authenticate: String) -> Denial {
        self.www_authenticate = Some(www_authenticate);
        self
    }

    /// Adds `Retry-After` (seconds).
    pub fn retry_after(mut self, seconds: u64) -> Denial {
        self.retry_after = Some(seconds);
        self
    }
}

impl Decision {
    /// The one way to build a refusal: this reply, and `audit` marked refused for `reason`.
    pub fn refusal(reason: Reason, denial: Denial, audit: Audit) -> Decision {
        Decision {
            outcome: Outcome::Deny(denial),
            audit: audit.refused(reason),
        }
    }

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
pub fn oauth_error_body(error: OAuthErrorCode, description: &str) -> String {
    serde_json::json!({ "error": error.as_str(), "error_description": description }).to_string()
}
