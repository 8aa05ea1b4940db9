//! JSON-RPC error responses for refusals an MCP client reads as errors, with stable error codes.
//!
//! 401 and 403 `insufficient_scope` keep the OAuth shape the MCP authorization spec asks for
//! (clients act on their `WWW-Authenticate`). Every other refusal of a JSON-RPC request gets a
//! JSON-RPC error body carrying the request's `id`, while the HTTP status and headers
//! (`Retry-After`) stay what HTTP clients expect.

use crate::decision::{Decision, Outcome, Reason};
use crate::mcp::RequestId;
use serde_json::{json, Value};

/// 400: the `Mcp-Method`/`Mcp-Name` headers disagree with the body (MCP 2026-07-28).
pub use crate::mcp::HEADER_MISMATCH;
/// 400: the body is not JSON-RPC (or, in `mcp_metadata`, the native filter could not read it).
pub use crate::mcp::INVALID_REQUEST;
/// 403: the document denies this method, tool, resource or prompt outright; no scope helps.
pub const DENIED: i64 = -32010;
/// 429: a request budget is spent; `data.retry_after` (seconds) matches `Retry-After`.
pub const RATE_LIMITED: i64 = -32011;
/// 413: the request body is larger than the gateway reads.
pub const TOO_LARGE: i64 = -32012;
/// 200: a listing response could not be filtered and might show entries no token may reach.
pub const LISTING_UNFILTERABLE: i64 = -32013;

/// The JSON-RPC code for a refusal reason, or `None` where the OAuth shape stays.
pub fn code_for(reason: Reason) -> Option<i64> {
    match reason {
        Reason::NotJsonRpc | Reason::McpMetadataMissing => Some(INVALID_REQUEST),
        Reason::McpHeaderMismatch => Some(HEADER_MISMATCH),
        Reason::Denied => Some(DENIED),
        Reason::BudgetExceeded => Some(RATE_LIMITED),
        Reason::BodyTooLarge => Some(TOO_LARGE),
        _ => None,
    }
}

/// One error response object.
pub fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut e = json!({ "code": code, "message": message });
    if let Some(d) = data {
        e["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": e })
}

/// The ids of the requests in a body: one per message that has one; `[null]` when the body
/// cannot be read (JSON-RPC 2.0 §5: `id` is null when it cannot be determined).
pub fn request_ids(body: Option<&[u8]>) -> (Vec<Value>, bool) {
    let parsed = body.and_then(|b| serde_json::from_slice::<Value>(b).ok());
    match parsed {
        Some(Value::Array(msgs)) => {
            let ids: Vec<Value> = msgs
                .iter()
                .filter_map(|m| m.get("id").cloned())
                .filter(|id| !id.is_null())
                .collect();
            (ids, true)
        }
        Some(m @ Value::Object(_)) => (vec![m.get("id").cloned().unwrap_or(Value::Null)], false),
        _ => (vec![Value::Null], false),
    }
}

/// The request(s) a refusal answers.
#[derive(Debug, Clone, Copy)]
pub enum Answering<'a> {
    /// The held body (`None` when it was not read): one error per request in it.
    Body(Option<&'a [u8]>),
    /// The one request `envoy.filters.http.mcp` recorded (`mcp_metadata`), by its `id`.
    Recorded(Option<&'a RequestId>),
}

impl Answering<'_> {
    /// The ids to answer, and whether the answer is a batch.
    fn ids(self) -> (Vec<Value>, bool) {
        match self {
            Answering::Body(body) => request_ids(body),
            Answering::Recorded(id) => (vec![recorded_id(id)], false),
        }
    }
}

/// A recorded id as JSON: `null` when none was recorded exactly.
fn recorded_id(id: Option<&RequestId>) -> Value {
    match id {
        Some(RequestId::Number(n)) => Value::from(*n),
        Some(RequestId::Text(s)) => Value::from(s.as_str()),
        None => Value::Null,
    }
}

/// An error body answering every request of `request_body` (an array for a batch).
pub fn error_body(
    request_body: Option<&[u8]>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> String {
    error_body_to(Answering::Body(request_body), code, message, data)
}

/// An error body answering `answering` (an array for a batch).
fn error_body_to(
    answering: Answering<'_>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> String {
    let (ids, batch) = answering.ids();
    let mut errors: Vec<Value> = ids
        .iter()
        .map(|id| error(id, code, message, data.clone()))
        .collect();
    if batch && !errors.is_empty() {
        return Value::Array(errors).to_string();
    }
    errors
        .pop()
        .unwrap_or_else(|| error(&Value::Null, code, message, data))
        .to_string()
}

/// The human-readable message of an existing refusal body (OAuth or JSON-RPC shaped).
fn message_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(body.as_bytes()).ok()?;
    v.get("error_description")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The same refusal with a JSON-RPC error body answering `answering`, when its reason is not an
/// OAuth challenge; `None` leaves the decision as it is.
pub fn refusal(decision: &Decision, answering: Answering<'_>) -> Option<Decision> {
    let Outcome::Deny(denial) = &decision.outcome else {
        return None;
    };
    let code = code_for(decision.audit.reason)?;
    let message = message_of(&denial.body).unwrap_or_else(|| decision.audit.reason.to_string());
    let data = denial.retry_after.map(|s| json!({ "retry_after": s }));
    let mut out = decision.clone();
    if let Outcome::Deny(d) = &mut out.outcome {
        d.body = error_body_to(answering, code, &message, data);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Audit, Denial};

    fn denial(status: u16, reason: Reason, body: &str, retry: Option<u64>) -> Decision {
        let mut denial = Denial::with_body(status, body.into());
        denial.retry_after = retry;
        Decision::refusal(reason, denial, Audit::new("", Reason::Ok))
    }

    fn body_of(d: &Decision) -> Value {
        match &d.outcome {
            Outcome::Deny(x) => serde_json::from_str(&x.body).unwrap(),
            Outcome::Allow(_) => Value::Null,
        }
    }

    #[test]
    fn a_budget_refusal_carries_the_id_code_and_retry_after() {
        let d = denial(
            429,
            Reason::BudgetExceeded,
            r#"{"error":"rate_limited","error_description":"spent"}"#,
            Some(30),
        );
        let req = br#"{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"x"}}"#;
        let out = refusal(&d, Answering::Body(Some(req))).unwrap();
        assert_eq!(out.status(), 429);
        assert_eq!(
            body_of(&out),
            json!({"jsonrpc":"2.0","id":"abc","error":{"code":RATE_LIMITED,"message":"spent","data":{"retry_after":30}}})
        );
    }

    #[test]
    fn batches_get_one_error_per_request_and_unknown_ids_are_null() {
        let d = denial(403, Reason::Denied, r#"{"error":{"message":"no"}}"#, None);
        let req = br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#;
        let v = body_of(&refusal(&d, Answering::Body(Some(req))).unwrap());
        assert_eq!(v[0]["id"], 1);
        assert_eq!(v[1]["id"], 2);
        assert_eq!(v[1]["error"]["code"], DENIED);
        let v = body_of(
            &refusal(
                &denial(413, Reason::BodyTooLarge, "{}", None),
                Answering::Body(None),
            )
            .unwrap(),
        );
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], TOO_LARGE);
    }

    #[test]
    fn a_recorded_id_is_answered_as_the_client_sent_it() {
        let d = denial(400, Reason::McpMetadataMissing, "{}", None);
        for (id, json) in [
            (Some(RequestId::Number(31)), json!(31)),
            (Some(RequestId::Number(-3)), json!(-3)),
            (Some(RequestId::Text("req-7".into())), json!("req-7")),
            (None, Value::Null),
        ] {
            let v = body_of(&refusal(&d, Answering::Recorded(id.as_ref())).unwrap());
            assert_eq!(v["id"], json, "{id:?}");
            assert_eq!(v["error"]["code"], INVALID_REQUEST);
        }
    }

    #[test]
    fn oauth_challenges_keep_their_shape() {
        for reason in [
            Reason::InsufficientScope,
            Reason::NoToken,
            Reason::Expired,
            Reason::JwksUnavailable,
        ] {
            assert!(refusal(&denial(403, reason, "{}", None), Answering::Body(None)).is_none());
        }
    }
}
