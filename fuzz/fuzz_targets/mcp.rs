//! JSON-RPC classification of MCP request bodies, with and without `Mcp-Method`/`Mcp-Name`,
//! and the one-pass reader under it on its own.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scopegate_core::rpc_read::messages(data);
    let _ = scopegate_core::mcp::classify(data, None, None);
    let _ = scopegate_core::mcp::classify(data, Some("tools/call"), Some("get_account"));
});
