//! What a decision does to the request: the header edits for a forwarded one, the local reply for a refusal, and the audit record's access-log text.
//!
//! The filter applies these as individual host calls (a removal, a few sets), never by
//! rewriting the whole header map: reading the map and writing it back costs more than the
//! handful of edits a request needs.

use crate::decision::{Audit, Denial, Grant, Reason};
use crate::oauth::OAuthErrorCode;

/// The identity headers the filter sets on every forwarded request. Setting a header replaces
/// every value the client sent under that name, so a client cannot forge these.
///
/// Other `x-scopegate-*` names a client sends pass through untouched: scopegate never sets
/// them, so no upstream can be told to trust them. Any header scopegate adds later must be
/// added here, which makes it replaced (and so unforgeable) too.
pub const IDENTITY_HEADERS: [&str; 3] = [
    "x-scopegate-subject",
    "x-scopegate-client-id",
    "x-scopegate-scopes",
];

/// How the `authorization` header reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// The client's token stays (the server opted in to re-validate it).
    Keep,
    /// The client's token is removed; nothing replaces it.
    Remove,
    /// Replaced by this complete header value (`Bearer <downstream credential>`).
    Replace(&'a str),
}

/// The header edits for an allowed request, in the order the filter applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHeaders<'a> {
    pub authorization: Authorization<'a>,
    /// Set (replacing any client-sent value): [`IDENTITY_HEADERS`] with the grant's values.
    pub identity: [(&'static str, &'a str); 3],
}

/// The edits for an allowed request; `downstream` is the full `authorization` value of a
/// brokered credential.
pub fn upstream_headers<'a>(grant: &'a Grant, downstream: Option<&'a str>) -> UpstreamHeaders<'a> {
    let authorization = match downstream {
        Some(value) => Authorization::Replace(value),
        None if grant.forward_client_token => Authorization::Keep,
        None => Authorization::Remove,
    };
    UpstreamHeaders {
        authorization,
        identity: [
            (IDENTITY_HEADERS[0], grant.subject.as_str()),
            (IDENTITY_HEADERS[1], grant.client_id.as_str()),
            (IDENTITY_HEADERS[2], grant.scopes.as_str()),
        ],
    }
}

/// A local reply: status, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub status: u16,
    pub headers: Vec<(&'static str, &'a str)>,
    pub body: &'a str,
}

/// The reply for a refusal. `retry_after` is the denial's `retry_after` as text (the caller owns it).
pub fn reply<'a>(denial: &'a Denial, retry_after: Option<&'a str>) -> Reply<'a> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ];
    if let Some(w) = &denial.www_authenticate {
        headers.push(("www-authenticate", w.as_str()));
    }
    if let Some(s) = retry_after {
        headers.push(("retry-after", s));
    }
    Reply {
        status: denial.status,
        headers,
        body: &denial.body,
    }
}

/// The refusal when the gateway itself fails (a host call, a lost state): 503, fail closed.
pub fn internal_error(server: &str) -> (Denial, Audit) {
    let denial = Denial::oauth(
        503,
        OAuthErrorCode::TemporarilyUnavailable,
        "the gateway could not check this request",
    );
    (denial, Audit::new(server, Reason::InternalError))
}

/// Filter-state keys written per decided request: the whole record in one, plus the three
/// fields access logs filter on, each in its own (a filter-state write costs about 1 µs).
pub const RECORD_KEY: &str = "scopegate_record";
pub const DECISION_KEY: &str = "scopegate_decision";
pub const REASON_KEY: &str = "scopegate_reason";
pub const SERVER_KEY: &str = "scopegate_server";

/// The record's fields in access-log order; empty ones are left out.
#[derive(serde::Serialize)]
struct Record<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    server: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    decision: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subject: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scopes: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tool: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    foreign_scopes: &'a str,
}

/// The audit record as one compact JSON object (absent and empty fields omitted), e.g.
/// `{"server":"ops","decision":"deny","reason":"insufficient_scope","subject":"alice",…}`.
/// Serialised from borrowed fields: one allocation, the output.
pub fn record_json(audit: &Audit) -> String {
    let record = Record {
        server: &audit.server,
        decision: audit.decision,
        reason: audit.reason.as_str(),
        subject: audit.subject.as_deref().unwrap_or(""),
        client_id: audit.client_id.as_deref().unwrap_or(""),
        scopes: &audit.scopes,
        tool: audit.tool.as_deref().unwrap_or(""),
        foreign_scopes: &audit.foreign_scopes,
    };
    // Serialising borrowed strings cannot fail; an empty object is still a valid record.
    serde_json::to_string(&record).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(forward: bool) -> Grant {
        Grant {
            subject: "alice".into(),
            client_id: "agent".into(),
            scopes: "tickets.read".into(),
            forward_client_token: forward,
            grant_id: None,
        }
    }

    #[test]
    fn an_allowed_request_loses_the_client_token_and_gets_identity() {
        let g = grant(false);
        let h = upstream_headers(&g, None);
        assert_eq!(h.authorization, Authorization::Remove);
        assert_eq!(
            h.identity,
            [
                ("x-scopegate-subject", "alice"),
                ("x-scopegate-client-id", "agent"),
                ("x-scopegate-scopes", "tickets.read"),
            ]
        );
    }

    #[test]
    fn an_opted_in_server_keeps_the_client_token() {
        let g = grant(true);
        assert_eq!(
            upstream_headers(&g, None).authorization,
            Authorization::Keep
        );
    }

    #[test]
    fn a_brokered_credential_replaces_the_client_token_even_when_opted_in() {
        let g = grant(true);
        let h = upstream_headers(&g, Some("Bearer down"));
        assert_eq!(h.authorization, Authorization::Replace("Bearer down"));
    }

    #[test]
    fn a_refusal_reply_carries_challenge_and_retry_after() {
        let d = Denial {
            status: 429,
            www_authenticate: Some("Bearer x".into()),
            retry_after: Some(7),
            body: "{}".into(),
        };
        let r = reply(&d, Some("7"));
        assert_eq!(r.status, 429);
        assert_eq!(
            r.headers,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                ("www-authenticate", "Bearer x"),
                ("retry-after", "7"),
            ]
        );
        assert_eq!(r.body, "{}");
    }

    #[test]
    fn an_internal_error_is_a_503_deny_with_its_own_reason() {
        let (d, a) = internal_error("ops");
        assert_eq!(d.status, 503);
        assert!(d.body.contains("temporarily_unavailable"));
        assert_eq!(
            (a.decision, a.reason.as_str(), a.server.as_str()),
            ("deny", "internal_error", "ops")
        );
    }

    #[test]
    fn the_record_omits_empty_fields() {
        let a = Audit {
            subject: Some("alice".into()),
            scopes: "a b".into(),
            ..Audit::new("ops", Reason::Ok)
        };
        let v: serde_json::Value = serde_json::from_str(&record_json(&a)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"server":"ops","decision":"allow","reason":"ok","subject":"alice","scopes":"a b"})
        );
    }
}
