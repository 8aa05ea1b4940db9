//! Reads what Envoy's native `envoy.filters.http.mcp` parsed, from the stream's dynamic metadata.

use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::mcp::{NativeMetadata, MCP_METADATA_NAMESPACE};

fn field(h: &mut impl Host, key: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let mut path = vec!["metadata", "filter_metadata", MCP_METADATA_NAMESPACE];
    path.extend_from_slice(key);
    h.property(&path)
}

fn text(h: &mut impl Host, key: &[&str]) -> Result<Option<String>, Status> {
    Ok(field(h, key)?.and_then(|b| String::from_utf8(b).ok()))
}

/// A protobuf `bool` reads as one byte.
fn flag(h: &mut impl Host, key: &[&str]) -> Result<Option<bool>, Status> {
    Ok(field(h, key)?.and_then(|b| match b.as_slice() {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }))
}

/// The metadata for this request; absent keys stay `None` (and core refuses the request).
pub fn read(h: &mut impl Host) -> Result<NativeMetadata, Status> {
    Ok(NativeMetadata {
        method: text(h, &["method"])?,
        name: text(h, &["params", "name"])?,
        uri: text(h, &["params", "uri"])?,
        is_mcp_request: flag(h, &["is_mcp_request"])?,
        exceeding_limit: flag(h, &["is_exceeding_limit"])?.unwrap_or(false),
        passthrough_reason: text(h, &["passthrough_reason"])?,
    })
}
