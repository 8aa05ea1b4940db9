//! Logs and traces: JSON log lines on stderr (with the trace and span id when there is a trace),
//! and OpenTelemetry traces over OTLP/gRPC only when the standard `OTEL_*` variables ask for them.
//!
//! Off (no endpoint variable, or `OTEL_SDK_DISABLED=true`) means no exporter, no batch thread and
//! no propagator: incoming `traceparent` headers are then ignored. Span fields are chosen so that
//! no token, code, secret, cookie or redirect query is ever exported (README, "Traces").

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::fmt;
use tracing::field::Empty;
use tracing::{Event, Instrument, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The service name when `OTEL_SERVICE_NAME` does not give one.
const SERVICE_NAME: &str = "scopegate-broker";

/// The installed exporter; dropping it without [`Telemetry::shutdown`] loses the last batch.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// What the `OTEL_*` variables ask for: `Ok(None)` is "no traces".
fn wanted(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<()>, String> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    if set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none") {
        return Ok(None);
    }
    // Only gRPC is built in (Envoy's tracer speaks it too); anything else is refused, not ignored.
    for k in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = set(k) {
            if p.trim() != "grpc" {
                return Err(format!(
                    "{k}={p}: this broker exports traces over OTLP/gRPC only (`grpc`)"
                ));
            }
            break;
        }
    }
    Ok(Some(()))
}

/// Installs the log subscriber and, when asked, the OTLP exporter. Call inside the tokio runtime
/// (the gRPC channel lives on it).
pub fn init() -> Result<Telemetry, String> {
    let provider = match wanted(&|k| std::env::var(k).ok())? {
        None => None,
        Some(()) => Some(provider()?),
    };
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .event_format(WithTraceIds(
            tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(false),
        ));
    // Source locations, threads and targets say nothing to an operator and cost bytes per span.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("scopegate-broker"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()
        .map_err(|e| format!("log subscriber: {e}"))?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(Telemetry { provider })
}

fn provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

impl Telemetry {
    /// Sends what is still batched; blocks (off the async workers) until the collector answered.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: trace exporter shutdown: {e}");
            }
        }
    }
}

/// Middleware for both listeners: one server span per request under its route template,
/// continuing the caller's W3C trace context. Handlers fill the declared fields.
pub async fn trace(State(listener): State<&'static str>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        scopegate.listener = listener,
        gateway = Empty,
        server = Empty,
        client_id = Empty,
        grant_status = Empty,
        oauth.error = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed, where there is nothing to continue.
        let _ = span.set_parent(parent);
    }
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    resp
}

/// Records one of the request span's declared fields (see [`trace`]) on the current span.
pub fn note(field: &'static str, value: &str) {
    tracing::Span::current().record(field, value);
}

/// The current trace context as request headers, for a downstream call.
pub fn inject(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(headers))
        });
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(key.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The JSON line format with `trace_id` and `span_id` first, when the event is inside a trace.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let cx = tracing::Span::current().context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                sc.trace_id(),
                sc.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wanted;
    use std::collections::HashMap;

    fn ask(vars: &[(&str, &str)]) -> Result<Option<()>, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wanted(&|k| m.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(ask(&[]), Ok(None));
        assert_eq!(ask(&[("OTEL_SERVICE_NAME", "b")]), Ok(None));
        assert_eq!(ask(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")];
        assert_eq!(ask(&on), Ok(Some(())));
        assert_eq!(ask(&[on[0], ("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert_eq!(ask(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]), Ok(None));
        assert_eq!(
            ask(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]),
            Ok(Some(()))
        );
    }

    #[test]
    fn a_protocol_other_than_grpc_is_refused_with_the_variable_named() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        assert_eq!(
            ask(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Ok(Some(()))
        );
        let e = ask(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        // The signal's own variable wins over the general one.
        assert_eq!(
            ask(&[
                on,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
            ]),
            Ok(Some(()))
        );
    }
}
