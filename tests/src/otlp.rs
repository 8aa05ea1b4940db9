//! An OTLP/gRPC trace receiver (the collector's `TraceService`, from `opentelemetry-proto`), in
//! process: what Envoy's tracer and the broker export, kept whole, and every connection counted.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Received {
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
    connections: AtomicUsize,
}

struct Service(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .requests
            .lock()
            .expect("requests")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A span as received, ids in hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver, serving on 127.0.0.1 until dropped.
pub struct Receiver {
    pub port: u16,
    received: Arc<Received>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        listener.set_nonblocking(true).expect("non-blocking");
        let received = Arc::new(Received::default());
        let r = Arc::clone(&received);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            // Counted at accept: a client that only connects is seen too.
            let incoming =
                futures_util::stream::unfold((listener, Arc::clone(&r)), |(l, r)| async move {
                    let next = l.accept().await.map(|(s, _)| {
                        r.connections.fetch_add(1, Ordering::SeqCst);
                        s
                    });
                    Some((next, (l, r)))
                });
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Service(r)))
                .serve_with_incoming(Box::pin(incoming))
                .await;
        });
        Receiver {
            port,
            received,
            _runtime: runtime,
        }
    }

    /// `HOST:PORT`, as `render envoy --otlp-collector` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// As `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.received.connections.load(Ordering::SeqCst)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        let requests = self.received.requests.lock().expect("requests");
        let mut out = Vec::new();
        for req in requests.iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| value_of(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Span {
                            service: service.clone(),
                            name: s.name.clone(),
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: hex(&s.parent_span_id),
                            kind: s.kind,
                            start_ns: s.start_time_unix_nano,
                            end_ns: s.end_time_unix_nano,
                            attributes: s
                                .attributes
                                .iter()
                                .map(|kv| (kv.key.clone(), text(kv)))
                                .collect(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Everything received, as text: for scanning what must never be exported.
    pub fn payload_text(&self) -> String {
        let requests = self.received.requests.lock().expect("requests");
        let mut out = String::new();
        for r in requests.iter() {
            let _ = write!(out, "{r:?}");
        }
        out
    }
}

fn value_of(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(text)
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace as an indented tree (name, service, duration, attributes), for the
/// test's output.
pub fn render_tree(spans: &[Span], trace_id: &str) -> String {
    let of_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let ids: Vec<&str> = of_trace.iter().map(|s| s.span_id.as_str()).collect();
    let mut out = format!("trace {trace_id}\n");
    let roots = of_trace
        .iter()
        .filter(|s| !ids.contains(&s.parent_span_id.as_str()));
    for root in roots {
        write_span(&mut out, &of_trace, root, 1);
    }
    out
}

fn write_span(out: &mut String, spans: &[&Span], s: &Span, depth: usize) {
    let ms = s.end_ns.saturating_sub(s.start_ns) as f64 / 1e6;
    let attrs: Vec<String> = s
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let parent = if s.parent_span_id.is_empty() {
        "root".to_string()
    } else {
        format!("parent {}", s.parent_span_id)
    };
    let _ = writeln!(
        out,
        "{}- {} [{}] span {} ({parent}) {ms:.1} ms {}",
        "  ".repeat(depth),
        s.name,
        s.service,
        s.span_id,
        attrs.join(" ")
    );
    let mut children: Vec<&&Span> = spans
        .iter()
        .filter(|c| c.parent_span_id == s.span_id)
        .collect();
    children.sort_by_key(|c| c.start_ns);
    for c in children {
        write_span(out, spans, c, depth + 1);
    }
}
