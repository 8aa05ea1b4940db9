//! Thin `Result`-returning wrappers over the host calls the filter makes, with errors logged once here.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::{Duration, UNIX_EPOCH};

pub fn request_headers() -> Result<Vec<(String, String)>, Status> {
    hostcalls::get_map(MapType::HttpRequestHeaders)
}

/// Replaces every request header at once (one host call instead of one per header).
pub fn set_request_headers(headers: Vec<(&str, &str)>) -> Result<(), Status> {
    hostcalls::set_map(MapType::HttpRequestHeaders, headers)
}

/// A property as UTF-8, e.g. `xds.cluster_name`.
pub fn property(path: Vec<&str>) -> Result<Option<String>, Status> {
    Ok(hostcalls::get_property(path)?.and_then(|b| String::from_utf8(b).ok()))
}

/// A property's raw bytes (strings as UTF-8, a bool as one byte, messages serialised).
pub fn property_bytes(path: Vec<&str>) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_property(path)
}

/// Writes filter state that access logs read as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_filter_state(name: &str, value: &str) {
    if let Err(e) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::warn!("cannot set filter state {name}: {e:?}");
    }
}

pub fn request_body(size: usize) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
}

pub fn response_body(size: usize) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
}

pub fn call_response_body(size: usize) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
}

pub fn call_response_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

/// Seconds since the epoch by the host's clock; 0 (and so every token expired) if it fails.
pub fn now_s() -> u64 {
    now().as_secs()
}

pub fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Answers the request locally.
pub fn send_response(status: u16, headers: Vec<(&str, &str)>, body: &str) {
    if let Err(e) = hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
    {
        log::error!("cannot send local reply {status}: {e:?}");
    }
}

pub fn resume_request() {
    if let Err(e) = hostcalls::resume_http_request() {
        log::error!("cannot resume request: {e:?}");
    }
}
