//! Reads what Envoy's native `envoy.filters.http.mcp` parsed, from the stream's dynamic metadata.

use crate::host;
use proxy_wasm::types::Status;
use scopegate_core::mcp::{NativeMetadata, MCP_METADATA_NAMESPACE};

fn field(key: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let mut path = vec!["metadata", "filter_metadata", MCP_METADATA_NAMESPACE];
    path.extend_from_slice(key);
    host::property_bytes(path)
}

fn text(key: &[&str]) -> Result<Option<String>, Status> {
    Ok(field(key)?.and_then(|b| String::from_utf8(b).ok()))
}

/// A protobuf `bool` reads as one byte.
fn flag(key: &[&str]) -> Result<Option<bool>, Status> {
    Ok(field(key)?.and_then(|b| match b.as_slice() {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }))
}

/// The metadata for this request; absent keys stay `None` (and core refuses the request).
pub fn read() -> Result<NativeMetadata, Status> {
    Ok(NativeMetadata {
        method: text(&["method"])?,
        name: text(&["params", "name"])?,
        uri: text(&["params", "uri"])?,
        is_mcp_request: flag(&["is_mcp_request"])?,
        exceeding_limit: flag(&["is_exceeding_limit"])?.unwrap_or(false),
        passthrough_reason: text(&["passthrough_reason"])?,
    })
}
