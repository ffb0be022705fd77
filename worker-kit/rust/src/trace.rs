//! Traces: the gateway's W3C trace context continued, and with OpenTelemetry's standard
//! variables in the worker's environment, a span per handled request exported over
//! OTLP/HTTP as the child of the gateway's span.
//!
//! On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`); the exporter reads the rest of OpenTelemetry's
//! variables itself (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`...).
//! Off, nothing is built and no span is made: a handler still gets the request's
//! `traceparent` in its [`Context`](crate::Context) to pass on.

use std::sync::OnceLock;

use async_nats::HeaderMap;
use openim_gateway_proto::headers;
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _},
    Context, KeyValue,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
    Resource,
};

/// The instrumentation scope of the kit's spans.
const SCOPE: &str = "openim-worker-kit";

/// The exporter and its tracer, when traces are on; built on first use.
static EXPORTING: OnceLock<Option<(SdkTracerProvider, SdkTracer)>> = OnceLock::new();

/// Whether OpenTelemetry's variables ask for traces.
fn wanted(variable: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| variable(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = variable("OTEL_SDK_DISABLED")
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn build(service: &str) -> Option<(SdkTracerProvider, SdkTracer)> {
    if !wanted(|name| std::env::var(name).ok()) {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build();
    match exporter {
        Ok(exporter) => {
            // OTEL_SERVICE_NAME when set, else the worker's own name.
            let mut resource = Resource::builder();
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name(service.to_owned());
            }
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build();
            let tracer = provider.tracer(SCOPE);
            tracing::info!("exporting a span per request (OTEL_EXPORTER_OTLP_ENDPOINT)");
            Some((provider, tracer))
        }
        Err(error) => {
            tracing::error!(%error, "traces are off: OpenTelemetry's OTLP exporter cannot be built from the OTEL_* variables");
            None
        }
    }
}

/// Builds the exporter if the environment asks for one, `service` naming the worker unless
/// `OTEL_SERVICE_NAME` does. (Its blocking HTTP client is built and used on threads of the
/// exporter's own, never on the async runtime.)
pub(crate) fn start_exporting(service: &str) {
    EXPORTING.get_or_init(|| build(service));
}

/// Sends the spans still buffered (at shutdown). Blocks until the exporter is done.
pub(crate) fn flush() {
    if let Some(Some((provider, _))) = EXPORTING.get() {
        if let Err(error) = provider.force_flush() {
            tracing::warn!(%error, "the last spans may not have been exported");
        }
    }
}

/// One request's trace: its span when exporting, and the `traceparent` a handler passes on.
#[derive(Debug, Default)]
pub(crate) struct RequestTrace {
    span: Option<Context>,
    traceparent: Option<String>,
}

impl RequestTrace {
    /// The trace of a request on `subject` for `command`, from its NATS headers.
    pub(crate) fn start(message_headers: Option<&HeaderMap>, command: &str, subject: &str) -> Self {
        let propagator = TraceContextPropagator::new();
        let incoming = || propagator.extract(&NatsHeaders(message_headers));
        let Some(Some((_, tracer))) = EXPORTING.get() else {
            let has_parent = message_headers
                .and_then(|map| map.get(headers::TRACEPARENT))
                .is_some();
            if !has_parent {
                return Self::default();
            }
            return Self {
                span: None,
                traceparent: traceparent_of(&propagator, &incoming()),
            };
        };
        let parent = incoming();
        let span = tracer
            .span_builder(command.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("openim.command", command.to_owned()),
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.destination.name", subject.to_owned()),
            ])
            .start_with_context(tracer, &parent);
        let context = parent.with_span(span);
        let traceparent = traceparent_of(&propagator, &context);
        Self {
            span: Some(context),
            traceparent,
        }
    }

    /// The `traceparent` for what the handler sends on: its own span's when exporting, else
    /// the gateway's.
    pub(crate) fn traceparent(&self) -> Option<String> {
        self.traceparent.clone()
    }

    /// Ends the span with the request id and, for a service error, its code.
    pub(crate) fn end(self, request_id: Option<&str>, error_code: Option<u16>) {
        let Some(context) = self.span else {
            return;
        };
        let span = context.span();
        if let Some(request_id) = request_id {
            span.set_attribute(KeyValue::new(
                "openim_gateway.request_id",
                request_id.to_owned(),
            ));
        }
        if let Some(code) = error_code {
            span.set_attribute(KeyValue::new(
                "openim_worker.service_error_code",
                i64::from(code),
            ));
            span.set_status(opentelemetry::trace::Status::error("service error"));
        }
        span.end();
    }
}

fn traceparent_of(propagator: &TraceContextPropagator, context: &Context) -> Option<String> {
    let mut carrier = Traceparent(None);
    propagator.inject_context(context, &mut carrier);
    carrier.0
}

/// A request's NATS headers, read by the propagator.
struct NatsHeaders<'a>(Option<&'a HeaderMap>);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .map(|map| map.iter().map(|(name, _)| name.as_ref()).collect())
            .unwrap_or_default()
    }
}

/// Keeps the `traceparent` the propagator writes.
struct Traceparent(Option<String>);

impl Injector for Traceparent {
    fn set(&mut self, key: &str, value: String) {
        if key == headers::TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_wanted_only_with_an_endpoint_and_not_disabled() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            wanted(|name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
        };
        assert!(!with(&[]));
        assert!(!with(&[("OTEL_SERVICE_NAME", "w")]));
        assert!(!with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]));
        assert!(with(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )]));
        assert!(!with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]));
    }

    #[test]
    fn off_the_gateways_traceparent_is_handed_on() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut map = HeaderMap::new();
        map.insert(headers::TRACEPARENT, parent);
        let trace = RequestTrace::start(Some(&map), "command", "openim.callback.command");
        assert_eq!(trace.traceparent().as_deref(), Some(parent));
        let trace = RequestTrace::start(None, "command", "openim.callback.command");
        assert_eq!(trace.traceparent(), None);
        let mut bad = HeaderMap::new();
        bad.insert(headers::TRACEPARENT, "00-zz-01");
        let trace = RequestTrace::start(Some(&bad), "command", "openim.callback.command");
        assert_eq!(trace.traceparent(), None);
    }
}
