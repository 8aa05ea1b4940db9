//! Classifies MCP JSON-RPC request bodies: which method, which tool, and do the `Mcp-*` headers agree.

use serde::Deserialize;
use std::borrow::Cow;

/// One JSON-RPC request or notification the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    /// Not JSON, or not a JSON-RPC message.
    NotJsonRpc,
    /// A 2026-07-28 header disagrees with the body.
    HeaderMismatch { header: &'static str },
}

impl McpError {
    pub fn reason(&self) -> &'static str {
        match self {
            McpError::NotJsonRpc => "not_json_rpc",
            McpError::HeaderMismatch { .. } => "mcp_header_mismatch",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            McpError::NotJsonRpc => "request body is not a JSON-RPC message".into(),
            McpError::HeaderMismatch { header } => {
                format!("the {header} header does not match the JSON-RPC body")
            }
        }
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body<'a> {
    #[serde(borrow)]
    One(Message<'a>),
    #[serde(borrow)]
    Batch(Vec<Message<'a>>),
}

/// The name a method's call is known by, for `Mcp-Name` and for per-tool scopes.
fn name_of(method: &str, params: Option<&Params<'_>>) -> Option<String> {
    let p = params?;
    match method {
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            p.uri.as_deref().map(str::to_string)
        }
        _ => p.name.as_deref().map(str::to_string),
    }
}

/// Reads the calls in a body and checks the `Mcp-Method`/`Mcp-Name` headers against them.
///
/// JSON-RPC responses the client sends back (they have no `method`) carry no call.
pub fn classify(
    body: &[u8],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<Vec<Call>, McpError> {
    let parsed: Body<'_> = serde_json::from_slice(body).map_err(|_| McpError::NotJsonRpc)?;
    let messages = match parsed {
        Body::One(m) => vec![m],
        Body::Batch(ms) if !ms.is_empty() => ms,
        Body::Batch(_) => return Err(McpError::NotJsonRpc),
    };
    let mut calls = Vec::with_capacity(messages.len());
    for m in &messages {
        if m.jsonrpc.as_deref() != Some("2.0") {
            return Err(McpError::NotJsonRpc);
        }
        if let Some(method) = m.method.as_deref() {
            calls.push(Call {
                method: method.to_string(),
                name: name_of(method, m.params.as_ref()),
            });
        }
    }
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
