//! Reads what Envoy's native `envoy.filters.http.mcp` parsed, from the stream's dynamic metadata.

use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::mcp::NativeMetadata;
use scopegate_core::native_metadata;

/// The metadata for this request, in one property read: `metadata` is the whole
/// `envoy.config.core.v3.Metadata` message, typed (reading the namespace itself gives
/// proxy-wasm pairs that lose each value's type, and fail on a JSON `null` anywhere in it).
/// Nothing there, or bytes core cannot trust, read as nothing recorded (and core refuses).
pub fn read(h: &mut impl Host) -> Result<NativeMetadata, Status> {
    let Some(bytes) = h.property(&["metadata"])? else {
        return Ok(NativeMetadata::default());
    };
    Ok(native_metadata::decode(&bytes).unwrap_or_else(|_| {
        log::warn!("the stream's dynamic metadata does not decode; refusing the request");
        NativeMetadata::default()
    }))
}
