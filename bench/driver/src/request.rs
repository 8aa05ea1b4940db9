//! The one request every case sends, byte for byte, from both load generators: an MCP `tools/call`
//! POST with a bearer token. Only the token differs between requests.

/// The governed path (the bench server's resource is `public_url + PATH`).
pub const PATH: &str = "/mcp";
/// The tool the request calls (the per-tool case gives it its own scope).
pub const TOOL: &str = "get_ticket";
pub const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"T-1"}}}"#;

/// The raw HTTP/1.1 request, keep-alive, with `Authorization: Bearer <token>` when given.
pub fn raw(host: &str, token: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2025-06-18\r\n"
    );
    if let Some(t) = token {
        r.push_str("Authorization: Bearer ");
        r.push_str(t);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{BODY}", BODY.len()));
    r.into_bytes()
}

/// Many requests, one per token, in the file format the wrk script reads: each followed by a NUL.
pub fn write_request_file(path: &std::path::Path, host: &str, tokens: &[String]) {
    let mut out = Vec::with_capacity(tokens.len() * 1024);
    for t in tokens {
        out.extend_from_slice(&raw(host, Some(t)));
        out.push(0);
    }
    std::fs::write(path, out).expect("write request file");
}
