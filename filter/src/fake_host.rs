//! A [`Host`] for native tests: records what the filter does and answers from plain fields.
#![cfg(test)] // declared in lib.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use crate::host::{Host, Shared};
use proxy_wasm::types::Status;
use std::collections::HashMap;
use std::time::Duration;

/// The fake clock's default reading, seconds since the epoch.
pub const NOW: u64 = 1_800_000_000;

/// A local reply as sent: status, headers, body.
pub type Sent = (u16, Vec<(String, String)>, String);

/// A callout as dispatched: cluster, headers, body.
pub type Dispatched = (String, Vec<(String, String)>, Option<Vec<u8>>);

/// A gRPC call as dispatched: upstream, service, method, message.
pub type GrpcDispatched = (String, String, String, Vec<u8>);

/// A host that records what the filter does. `fail` names calls that return an error.
#[derive(Default)]
pub struct Fake {
    pub headers: Vec<(String, String)>,
    pub cluster: Option<String>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    /// Each read of the response body: start and size.
    pub response_reads: Vec<(usize, usize)>,
    pub resets: usize,
    pub filter_state: HashMap<String, String>,
    pub counters: Vec<String>,
    pub counts: HashMap<u32, u64>,
    pub replies: Vec<Sent>,
    pub resumed: usize,
    pub calls: Vec<&'static str>,
    pub fail: Vec<&'static str>,
    /// The context host calls act on, and the other contexts' request headers.
    pub effective: u32,
    pub others: HashMap<u32, Vec<(String, String)>>,
    pub resumed_ids: Vec<u32>,
    pub replied_ids: Vec<u32>,
    pub call_status: Option<u16>,
    pub call_body: Vec<u8>,
    pub dispatched: Vec<Dispatched>,
    pub grpc_dispatched: Vec<GrpcDispatched>,
    /// The message of the gRPC call being answered.
    pub grpc_body: Vec<u8>,
    /// Shared data: value and version (the compare-and-swap token).
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    /// Writes another worker makes to a key just before this one's next write to it (so a
    /// read-modify-write loses its compare-and-swap and must retry).
    pub races: Vec<(String, Vec<u8>)>,
    /// Clock override (else [`NOW`]).
    pub clock: Option<Duration>,
    pub tick_period: Option<Duration>,
    pub configuration: Option<Vec<u8>>,
    /// Other properties by their path joined with `.` (e.g. the native MCP filter's metadata).
    pub properties: HashMap<String, Vec<u8>>,
    /// Every property path read, joined with `.`, in order.
    pub properties_read: Vec<String>,
}

impl Fake {
    pub fn request(method: &str, path: &str, cluster: &str, authorization: Option<&str>) -> Fake {
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "mcp.example.com".to_string()),
            ("x-scopegate-subject".to_string(), "mallory".to_string()),
        ];
        if let Some(a) = authorization {
            headers.push(("authorization".to_string(), a.to_string()));
        }
        Fake {
            headers,
            cluster: Some(cluster.to_string()),
            effective: 1,
            ..Fake::default()
        }
    }

    /// A host whose `calls` fail.
    pub fn failing(calls: &[&'static str]) -> Fake {
        Fake {
            fail: calls.to_vec(),
            ..Fake::default()
        }
    }

    fn call(&mut self, name: &'static str) -> Result<(), Status> {
        self.calls.push(name);
        if self.fail.contains(&name) {
            return Err(Status::InternalFailure);
        }
        Ok(())
    }

    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn response_header_values(&self, name: &str) -> Vec<&str> {
        self.response_headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A counter's value by its full name (0 when never defined).
    pub fn count(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .position(|c| c == name)
            .and_then(|id| self.counts.get(&(id as u32)).copied())
            .unwrap_or(0)
    }

    /// How many times the filter made a host call.
    pub fn times(&self, call: &str) -> usize {
        self.calls.iter().filter(|c| **c == call).count()
    }

    pub fn shared_value(&self, key: &str) -> Option<&[u8]> {
        self.shared.get(key).map(|(v, _)| v.as_slice())
    }

    pub fn record(&self) -> serde_json::Value {
        serde_json::from_str(&self.filter_state["scopegate_record"]).unwrap()
    }

    /// Stores a value as another worker would.
    pub fn share(&mut self, key: &str, value: &[u8]) {
        let version = self.shared.get(key).map_or(0, |(_, v)| *v) + 1;
        self.shared
            .insert(key.to_string(), (value.to_vec(), version));
    }
}

impl Host for Fake {
    fn request_header(&mut self, name: &str) -> Result<Option<String>, Status> {
        self.call("request_header")?;
        Ok(self.header(name).first().map(|v| v.to_string()))
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), Status> {
        self.call("remove_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), Status> {
        self.call("replace_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.call("property")?;
        self.properties_read.push(path.join("."));
        Ok(match path {
            ["xds", "cluster_name"] => self.cluster.clone().map(String::into_bytes),
            _ => self.properties.get(&path.join(".")).cloned(),
        })
    }
    fn request_body(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("request_body")?;
        Ok(Some(self.body.iter().copied().take(size).collect()))
    }
    fn response_header(&mut self, name: &str) -> Result<Option<String>, Status> {
        self.call("response_header")?;
        Ok(self
            .response_header_values(name)
            .first()
            .map(|v| v.to_string()))
    }
    fn remove_response_header(&mut self, name: &str) -> Result<(), Status> {
        self.call("remove_response_header")?;
        self.response_headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn response_body(&mut self, start: usize, size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("response_body")?;
        self.response_reads.push((start, size));
        let end = start.saturating_add(size).min(self.response_body.len());
        Ok(self.response_body.get(start..end).map(<[u8]>::to_vec))
    }
    fn replace_response_body(&mut self, size: usize, body: &[u8]) -> Result<(), Status> {
        self.call("replace_response_body")?;
        let size = size.min(self.response_body.len());
        self.response_body.splice(..size, body.iter().copied());
        Ok(())
    }
    fn reset_response(&mut self) -> Result<(), Status> {
        self.call("reset_response")?;
        self.resets += 1;
        Ok(())
    }
    fn send_reply(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(), Status> {
        self.call("send_reply")?;
        self.replied_ids.push(self.effective);
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.replies.push((status, headers, body.to_string()));
        Ok(())
    }
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, Status> {
        self.call("dispatch")?;
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.dispatched
            .push((cluster.to_string(), headers, body.map(<[u8]>::to_vec)));
        // Callout tokens 7, 8, ...
        Ok(6 + self.dispatched.len() as u32)
    }
    fn call_response_status(&mut self) -> Option<u16> {
        self.calls.push("call_response_status");
        self.call_status
    }
    fn call_response_body(&mut self, _size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("call_response_body")?;
        Ok(Some(self.call_body.clone()))
    }
    fn dispatch_grpc(
        &mut self,
        upstream: &str,
        service: &str,
        method: &str,
        message: &[u8],
        _timeout: Duration,
    ) -> Result<u32, Status> {
        self.call("dispatch_grpc")?;
        self.grpc_dispatched.push((
            upstream.to_string(),
            service.to_string(),
            method.to_string(),
            message.to_vec(),
        ));
        // gRPC call tokens 101, 102, ...
        Ok(100 + self.grpc_dispatched.len() as u32)
    }
    fn grpc_response(&mut self, _size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("grpc_response")?;
        Ok(Some(self.grpc_body.clone()))
    }
    fn resume(&mut self) -> Result<(), Status> {
        self.call("resume")?;
        self.resumed += 1;
        self.resumed_ids.push(self.effective);
        Ok(())
    }
    fn set_effective_context(&mut self, context_id: u32) -> Result<(), Status> {
        self.call("set_effective_context")?;
        if context_id != self.effective {
            let current = std::mem::take(&mut self.headers);
            self.others.insert(self.effective, current);
            self.headers = self.others.remove(&context_id).unwrap_or_default();
            self.effective = context_id;
        }
        Ok(())
    }
    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), Status> {
        self.call("set_filter_state")?;
        self.filter_state
            .insert(name.to_string(), value.to_string());
        Ok(())
    }
    fn define_counter(&mut self, name: &str) -> Result<u32, Status> {
        self.call("define_counter")?;
        self.counters.push(name.to_string());
        Ok(self.counters.len() as u32 - 1)
    }
    fn increment_counter(&mut self, id: u32, by: u64) -> Result<(), Status> {
        self.call("increment_counter")?;
        *self.counts.entry(id).or_default() += by;
        Ok(())
    }
    fn now(&mut self) -> Duration {
        self.calls.push("now");
        self.clock.unwrap_or(Duration::from_secs(NOW))
    }
    fn shared_data(&mut self, key: &str) -> Result<Shared, Status> {
        self.call("shared_data")?;
        Ok(match self.shared.get(key) {
            Some((v, version)) => (Some(v.clone()), Some(*version)),
            None => (None, None),
        })
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.call("set_shared_data")?;
        if let Some(i) = self.races.iter().position(|(k, _)| k == key) {
            let (_, other) = self.races.remove(i);
            self.share(key, &other);
        }
        let current = self.shared.get(key).map(|(_, v)| *v);
        if let (Some(cas), Some(current)) = (cas, current) {
            if cas != 0 && cas != current {
                return Err(Status::CasMismatch);
            }
        }
        self.share(key, value);
        Ok(())
    }
    fn set_tick_period(&mut self, period: Duration) -> Result<(), Status> {
        self.call("set_tick_period")?;
        self.tick_period = Some(period);
        Ok(())
    }
    fn plugin_configuration(&mut self, size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("plugin_configuration")?;
        Ok(self
            .configuration
            .as_ref()
            .map(|c| c.iter().copied().take(size).collect()))
    }
}
