//! JSON-RPC classification of MCP request bodies, with and without `Mcp-Method`/`Mcp-Name`,
//! the one-pass reader under it on its own, and the native MCP filter's metadata as Envoy
//! serializes it (`mcp_metadata`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scopegate_core::rpc_read::messages(data);
    let _ = scopegate_core::mcp::classify(data, None, None);
    let _ = scopegate_core::mcp::classify(data, Some("tools/call"), Some("get_account"));
    if let Ok(m) = scopegate_core::native_metadata::decode(data) {
        let _ = scopegate_core::mcp::from_metadata(&m);
    }
});
