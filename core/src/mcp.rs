//! Classifies MCP JSON-RPC request bodies: which method, which tool, and do the `Mcp-*` headers agree.

use crate::reason::Reason;
use crate::rpc_read::{self, Message};

/// One JSON-RPC request or notification the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
}

/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;
/// MCP 2026-07-28: the `Mcp-Method`/`Mcp-Name` headers disagree with the JSON-RPC body.
pub const HEADER_MISMATCH: i64 = -32020;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    /// Not JSON, or not a JSON-RPC message.
    NotJsonRpc,
    /// A 2026-07-28 header disagrees with the body.
    HeaderMismatch { header: &'static str },
    /// `body_mode: mcp_metadata`, but `envoy.filters.http.mcp` left no usable method for this
    /// request (not parsed, truncated at its size limit, or not an MCP request).
    MetadataMissing,
}

impl McpError {
    pub fn reason(&self) -> Reason {
        match self {
            McpError::NotJsonRpc => Reason::NotJsonRpc,
            McpError::HeaderMismatch { .. } => Reason::McpHeaderMismatch,
            McpError::MetadataMissing => Reason::McpMetadataMissing,
        }
    }

    /// The JSON-RPC error code of the refusal.
    pub fn code(&self) -> i64 {
        match self {
            McpError::HeaderMismatch { .. } => HEADER_MISMATCH,
            McpError::NotJsonRpc | McpError::MetadataMissing => INVALID_REQUEST,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            McpError::NotJsonRpc => "request body is not a JSON-RPC message".into(),
            McpError::HeaderMismatch { header } => {
                format!("the {header} header does not match the JSON-RPC body")
            }
            McpError::MetadataMissing => {
                "the request was not classified by envoy.filters.http.mcp (a POST with `Content-Type: application/json` and `Accept: application/json, text/event-stream`, one JSON-RPC message within its size limit)".into()
            }
        }
    }
}

/// The calls the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers declare, if the client sent them.
///
/// Good for an early refusal only: an allow on these still needs the body to agree
/// ([`check_declared`]) and to be decided on its own calls.
pub fn declared(mcp_method: Option<&str>, mcp_name: Option<&str>) -> Option<Vec<Call>> {
    let method = mcp_method?;
    Some(vec![Call {
        method: method.to_string(),
        name: mcp_name.map(str::to_string),
    }])
}

/// Checks the `Mcp-Method`/`Mcp-Name` headers against the calls the body (or the native
/// filter's metadata) holds: every call must be the declared one.
pub fn check_declared(
    calls: &[Call],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<(), McpError> {
    if let Some(h) = mcp_method {
        if calls.is_empty() || calls.iter().any(|c| c.method != h) {
            return Err(McpError::HeaderMismatch {
                header: "Mcp-Method",
            });
        }
    }
    if let Some(h) = mcp_name {
        if calls.is_empty() || calls.iter().any(|c| c.name.as_deref() != Some(h)) {
            return Err(McpError::HeaderMismatch { header: "Mcp-Name" });
        }
    }
    Ok(())
}

/// Dynamic-metadata namespace `envoy.filters.http.mcp` writes (Envoy 1.38 and later).
pub const MCP_METADATA_NAMESPACE: &str = "envoy.filters.http.mcp";

/// What `envoy.filters.http.mcp` left in dynamic metadata for one request, as read by the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeMetadata {
    pub method: Option<String>,
    /// `params.name` (tools/call, prompts/get).
    pub name: Option<String>,
    /// `params.uri` (resources/read and friends).
    pub uri: Option<String>,
    pub is_mcp_request: Option<bool>,
    /// The native filter stopped parsing at its size limit and let the request through.
    pub exceeding_limit: bool,
    /// Set when the native filter let a request through without trusting its parse
    /// (`mcp_duplicate_keys`, `mcp_body_too_large`, ...; Envoy 1.40).
    pub passthrough_reason: Option<String>,
    /// The request's JSON-RPC `id`, for the refusal's answer (no part of the decision).
    pub id: Option<RequestId>,
}

/// A JSON-RPC request `id` the native filter recorded, as the client can match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

/// The method the native filter records for a JSON-RPC response the client sends back.
pub const NATIVE_RESPONSE_METHOD: &str = "__jsonrpc_response";

/// The call the native filter saw, or a refusal: fail closed whenever it is missing,
/// incomplete, passed through untrusted, or not an MCP request.
///
/// Envoy 1.40 lets duplicate keys through (last key wins) with a `passthrough_reason` even
/// with `reject_duplicate_keys`, where the MCP server may read the first: such a request is
/// refused, so the native filter and the server can never disagree on the method.
pub fn from_metadata(m: &NativeMetadata) -> Result<Vec<Call>, McpError> {
    if m.exceeding_limit || m.passthrough_reason.is_some() || m.is_mcp_request != Some(true) {
        return Err(McpError::MetadataMissing);
    }
    let Some(method) = m.method.as_deref().filter(|s| !s.is_empty()) else {
        return Err(McpError::MetadataMissing);
    };
    if method == NATIVE_RESPONSE_METHOD {
        return Ok(Vec::new());
    }
    let name = match method {
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => m.uri.clone(),
        _ => m.name.clone(),
    };
    Ok(vec![Call {
        method: method.to_string(),
        name,
    }])
}

/// The name a method's call is known by, for `Mcp-Name` and for per-tool scopes.
fn name_of(m: &Message<'_>, method: &str) -> Option<String> {
    match method {
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => m.uri.as_deref(),
        _ => m.name.as_deref(),
    }
    .map(str::to_string)
}

/// Reads the calls in a body and checks the `Mcp-Method`/`Mcp-Name` headers against them.
///
/// JSON-RPC responses the client sends back (they have no `method`) carry no call.
pub fn classify(
    body: &[u8],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<Vec<Call>, McpError> {
    let messages = rpc_read::messages(body).map_err(|_| McpError::NotJsonRpc)?;
    let mut calls = Vec::with_capacity(messages.len());
    for m in &messages {
        if m.jsonrpc.as_deref() != Some("2.0") {
            return Err(McpError::NotJsonRpc);
        }
        if let Some(method) = m.method.as_deref() {
            calls.push(Call {
                method: method.to_string(),
                name: name_of(m, method),
            });
        }
    }
    check_declared(&calls, mcp_method, mcp_name)?;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_call_names_the_tool() {
        let b = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_account","arguments":{"account_id":"a1"}}}"#;
        let c = classify(b, None, None).unwrap();
        assert_eq!(
            c,
            vec![Call {
                method: "tools/call".into(),
                name: Some("get_account".into())
            }]
        );
    }

    #[test]
    fn resources_read_is_named_by_uri() {
        let b =
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"tickets://1"}}"#;
        assert_eq!(
            classify(b, None, Some("tickets://1")).unwrap()[0]
                .name
                .as_deref(),
            Some("tickets://1")
        );
    }

    #[test]
    fn headers_must_match_the_body() {
        let b =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tickets"}}"#;
        assert!(classify(b, Some("tools/call"), Some("list_tickets")).is_ok());
        assert_eq!(
            classify(b, Some("tools/list"), None),
            Err(McpError::HeaderMismatch {
                header: "Mcp-Method"
            })
        );
        assert_eq!(
            classify(b, None, Some("update_ticket")),
            Err(McpError::HeaderMismatch { header: "Mcp-Name" })
        );
    }

    #[test]
    fn declared_headers_are_one_call_and_must_match_every_body_call() {
        assert_eq!(declared(None, Some("x")), None);
        let d = declared(Some("tools/call"), Some("list_tickets")).unwrap();
        assert_eq!(d[0].name.as_deref(), Some("list_tickets"));
        // A batch smuggling a second tool behind the declared one disagrees.
        let b = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tickets"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_report"}}]"#;
        let err = classify(b, Some("tools/call"), Some("list_tickets")).unwrap_err();
        assert_eq!(err.code(), HEADER_MISMATCH);
        assert_eq!(err.reason(), "mcp_header_mismatch");
        // A body of responses only declares nothing, so a declared method disagrees.
        assert!(check_declared(&[], Some("tools/call"), None).is_err());
        assert_eq!(McpError::NotJsonRpc.code(), INVALID_REQUEST);
    }

    #[test]
    fn native_metadata_fails_closed() {
        let ok = NativeMetadata {
            method: Some("tools/call".into()),
            name: Some("get_account".into()),
            is_mcp_request: Some(true),
            ..NativeMetadata::default()
        };
        assert_eq!(
            from_metadata(&ok).unwrap(),
            vec![Call {
                method: "tools/call".into(),
                name: Some("get_account".into())
            }]
        );
        let read = NativeMetadata {
            method: Some("resources/read".into()),
            uri: Some("tickets://1".into()),
            name: Some("ignored".into()),
            is_mcp_request: Some(true),
            ..NativeMetadata::default()
        };
        assert_eq!(
            from_metadata(&read).unwrap()[0].name.as_deref(),
            Some("tickets://1")
        );
        let response = NativeMetadata {
            method: Some(NATIVE_RESPONSE_METHOD.into()),
            is_mcp_request: Some(true),
            ..NativeMetadata::default()
        };
        assert_eq!(from_metadata(&response).unwrap(), vec![]);
        for bad in [
            NativeMetadata::default(),
            NativeMetadata {
                is_mcp_request: Some(true),
                ..NativeMetadata::default()
            },
            NativeMetadata {
                is_mcp_request: Some(false),
                ..ok.clone()
            },
            NativeMetadata {
                is_mcp_request: None,
                ..ok.clone()
            },
            NativeMetadata {
                exceeding_limit: true,
                ..ok.clone()
            },
            NativeMetadata {
                passthrough_reason: Some("mcp_duplicate_keys".into()),
                ..ok.clone()
            },
        ] {
            assert_eq!(
                from_metadata(&bad),
                Err(McpError::MetadataMissing),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn batches_and_responses() {
        let b = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":7,"result":{}}]"#;
        let c = classify(b, None, None).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].method, "notifications/initialized");
    }

    #[test]
    fn garbage_is_refused() {
        for b in [
            &b"not json"[..],
            b"{}",
            b"[]",
            br#"{"jsonrpc":"1.0","method":"x"}"#,
            b"42",
        ] {
            assert_eq!(
                classify(b, None, None),
                Err(McpError::NotJsonRpc),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
    }
}
