//! The host calls the filter makes, behind a small trait: Envoy implements it for real, tests fake it.
//!
//! Every call returns the host's `Result` so the caller decides how to fail closed. No other
//! module calls `proxy_wasm::hostcalls` (nor the SDK's getters, which unwrap). Every caller is
//! generic over `H: Host` and monomorphised once for [`Envoy`] in the `.wasm`, so the seam costs
//! nothing at run time.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::{Duration, UNIX_EPOCH};

/// Shared data as the host stores it: the value and its compare-and-swap version.
pub type Shared = (Option<Vec<u8>>, Option<u32>);

pub trait Host {
    /// One request header by (lower-case) name.
    fn request_header(&mut self, name: &str) -> Result<Option<String>, Status>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), Status>;
    /// Sets a header, replacing every value the client sent under that name.
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), Status>;
    /// A property's raw bytes (strings as UTF-8, a bool as one byte), e.g. `xds.cluster_name`.
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    fn request_body(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status>;
    /// One response header by (lower-case) name.
    fn response_header(&mut self, name: &str) -> Result<Option<String>, Status>;
    fn remove_response_header(&mut self, name: &str) -> Result<(), Status>;
    /// `size` bytes of the buffered response body from `start`.
    fn response_body(&mut self, start: usize, size: usize) -> Result<Option<Vec<u8>>, Status>;
    /// Replaces the first `size` buffered bytes of the response body with `body`.
    fn replace_response_body(&mut self, size: usize, body: &[u8]) -> Result<(), Status>;
    /// Ends the response stream (when nothing safe can be sent).
    fn reset_response(&mut self) -> Result<(), Status>;
    /// Answers the request locally.
    fn send_reply(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(), Status>;
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status>;
    fn call_response_status(&mut self) -> Option<u16>;
    fn call_response_body(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status>;
    /// Starts a unary gRPC call. `upstream` is a serialized `GrpcService` (or a cluster name).
    fn dispatch_grpc(
        &mut self,
        upstream: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status>;
    /// The message of the gRPC call being answered.
    fn grpc_response(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status>;
    /// Lets a paused request go on.
    fn resume(&mut self) -> Result<(), Status>;
    /// Makes later calls act on another request of this worker (a parked one being woken).
    fn set_effective_context(&mut self, context_id: u32) -> Result<(), Status>;
    /// Filter state, read in access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), Status>;
    fn define_counter(&mut self, name: &str) -> Result<u32, Status>;
    fn increment_counter(&mut self, id: u32, by: u64) -> Result<(), Status>;
    /// The host's clock since the epoch (zero if it fails: every token then reads expired).
    fn now(&mut self) -> Duration;
    fn shared_data(&mut self, key: &str) -> Result<Shared, Status>;
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// The root context's timer.
    fn set_tick_period(&mut self, period: Duration) -> Result<(), Status>;
    /// The plugin configuration (the policy document) as Envoy hands it to `on_configure`.
    fn plugin_configuration(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status>;
}

/// The real host: Envoy's proxy-wasm ABI.
#[derive(Default)]
pub struct Envoy;

impl Host for Envoy {
    fn request_header(&mut self, name: &str) -> Result<Option<String>, Status> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), Status> {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
    }

    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), Status> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
    }

    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_property(path.to_vec())
    }

    fn request_body(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
    }

    fn response_header(&mut self, name: &str) -> Result<Option<String>, Status> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), Status> {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None)
    }

    fn response_body(&mut self, start: usize, size: usize) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, start, size)
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) -> Result<(), Status> {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body)
    }

    fn reset_response(&mut self) -> Result<(), Status> {
        hostcalls::reset_http_response()
    }

    fn send_reply(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(), Status> {
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body.as_bytes()))
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
    }

    fn call_response_status(&mut self) -> Option<u16> {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
    }

    fn call_response_body(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
    }

    fn dispatch_grpc(
        &mut self,
        upstream: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status> {
        hostcalls::dispatch_grpc_call(upstream, service, method, vec![], Some(message), timeout)
    }

    fn grpc_response(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
    }

    fn resume(&mut self) -> Result<(), Status> {
        hostcalls::resume_http_request()
    }

    fn set_effective_context(&mut self, context_id: u32) -> Result<(), Status> {
        hostcalls::set_effective_context(context_id)
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), Status> {
        hostcalls::set_property(vec![name], Some(value.as_bytes()))
    }

    fn define_counter(&mut self, name: &str) -> Result<u32, Status> {
        hostcalls::define_metric(MetricType::Counter, name)
    }

    fn increment_counter(&mut self, id: u32, by: u64) -> Result<(), Status> {
        hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX))
    }

    fn now(&mut self) -> Duration {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    fn shared_data(&mut self, key: &str) -> Result<Shared, Status> {
        hostcalls::get_shared_data(key)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        hostcalls::set_shared_data(key, Some(value), cas)
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), Status> {
        hostcalls::set_tick_period(period)
    }

    fn plugin_configuration(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
    }
}

/// Milliseconds since the epoch, saturating.
pub fn millis(now: Duration) -> u64 {
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}
