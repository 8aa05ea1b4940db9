//! The requests the cases send, byte for byte, from both load generators: an MCP `tools/call`
//! POST with a bearer token (as a 2025-06-18 client sends it, or a 2026-07-28 one with the
//! `Mcp-Method`/`Mcp-Name` headers), or a `tools/list` whose answer is a listing. Only the token
//! differs between the requests of one case.

/// The gateway's public origin. The filter never compares it with the request's Host, so every
/// case's Envoy (each on its own port) accepts the same tokens.
pub const PUBLIC_URL: &str = "https://mcp.example.com";
pub const HOST: &str = "mcp.example.com";
/// The governed path (the bench server's resource is `public_url + PATH`).
pub const PATH: &str = "/mcp";
/// The tool the request calls (the per-tool case gives it its own scope).
pub const TOOL: &str = "get_ticket";
pub const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"T-1"}}}"#;
/// The listing request of the listing cases.
pub const LIST_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
/// Asks the bench upstream for its listing answer (`json` or `sse`) instead of the call result.
pub const LISTING_HEADER: &str = "x-bench-listing";

/// Which request a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `tools/call` of [`TOOL`], protocol 2025-06-18 (no `Mcp-*` headers).
    ToolCall,
    /// The same call as a 2026-07-28 client sends it: `Mcp-Method: tools/call`, `Mcp-Name`.
    Declared,
    /// `tools/list`, answered with the upstream's 40-tool listing as JSON.
    ListJson,
    /// `tools/list`, answered with the same listing as one SSE event.
    ListSse,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::ToolCall => "call",
            Shape::Declared => "declared",
            Shape::ListJson => "list-json",
            Shape::ListSse => "list-sse",
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Shape::ToolCall | Shape::Declared => BODY,
            Shape::ListJson | Shape::ListSse => LIST_BODY,
        }
    }

    /// Headers besides host, content type, accept, authorization and length.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::ToolCall => &[("mcp-protocol-version", "2025-06-18")],
            Shape::Declared => &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", TOOL),
            ],
            Shape::ListJson => &[
                ("mcp-protocol-version", "2025-06-18"),
                (LISTING_HEADER, "json"),
            ],
            Shape::ListSse => &[
                ("mcp-protocol-version", "2025-06-18"),
                (LISTING_HEADER, "sse"),
            ],
        }
    }

    pub fn is_listing(self) -> bool {
        matches!(self, Shape::ListJson | Shape::ListSse)
    }
}

/// The raw HTTP/1.1 request, keep-alive, with `Authorization: Bearer <token>` when given.
pub fn raw(host: &str, token: Option<&str>, shape: Shape) -> Vec<u8> {
    let mut r = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n"
    );
    for (k, v) in shape.headers() {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(t) = token {
        r.push_str("Authorization: Bearer ");
        r.push_str(t);
        r.push_str("\r\n");
    }
    let body = shape.body();
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

/// Many requests, one per token, in the file format the wrk script reads: each followed by a NUL.
pub fn write_request_file(path: &std::path::Path, host: &str, tokens: &[String], shape: Shape) {
    let mut out = Vec::with_capacity(tokens.len() * 1024);
    for t in tokens {
        out.extend_from_slice(&raw(host, Some(t), shape));
        out.push(0);
    }
    std::fs::write(path, out).expect("write request file");
}
