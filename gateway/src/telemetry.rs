//! Traces: a span per callback, exported with OpenTelemetry over OTLP/HTTP, and the W3C
//! trace context the workers continue.
//!
//! On only when the settings name an OTLP endpoint ([`TraceSettings`]): [`Traces::start`]
//! then builds the exporter, whose batch runs on a thread of its own (the event loop only
//! records spans and hands them over). Off, nothing exists: no exporter, no tracer, no span,
//! and a callback costs one header lookup. A valid `traceparent` OpenIM sent (with its
//! `tracestate`) is then passed on to the workers unchanged, so that a worker that exports
//! spans still joins OpenIM's trace; without one, no trace header is added.
//!
//! On, a callback's span continues OpenIM's `traceparent` when there is a valid one (else it
//! starts a trace), and the workers get the span's own context as their parent.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use axum::http::HeaderMap;
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

use crate::settings::traces::TraceSettings;

/// The instrumentation scope of the gateway's spans.
const SCOPE: &str = "openim-gateway";

/// The attribute names of a callback's span.
pub mod attribute {
    /// The OpenIM command, e.g. `callbackBeforeSetGroupMemberInfoCommand`.
    pub const COMMAND: &str = "openim.command";
    /// OpenIM's operation id (`X-Operation-Id`), when it sent one.
    pub const OPERATION_ID: &str = "openim.operation_id";
    /// The gateway's `X-Request-Id` of the callback.
    pub const REQUEST_ID: &str = "openim_gateway.request_id";
    /// Who decided: the `X-Decision-Source` value (`worker`, `ack`, `fallback:timeout`...).
    pub const DECISION_SOURCE: &str = "openim_gateway.decision_source";
    /// The command's budget, from arrival to answer, in milliseconds.
    pub const BUDGET_MS: &str = "openim_gateway.budget_ms";
    /// How long the callback waited, from arrival until its answer was ready, in
    /// milliseconds (fractional).
    pub const WAITED_MS: &str = "openim_gateway.waited_ms";
}

/// The tracer, set once by [`Traces::start`] when traces are on.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {source}")]
pub struct TracesError {
    endpoint: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The running exporter, when traces are on; [`Traces::shutdown`] sends what is buffered.
#[derive(Debug)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Starts exporting per `settings` (nothing when `None`). Called once, outside the async
    /// runtime: the exporter's blocking HTTP client must not be built on it.
    pub fn start(settings: Option<&TraceSettings>) -> Result<Self, TracesError> {
        let Some(settings) = settings else {
            return Ok(Self { provider: None });
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .build()
            .map_err(|source| TracesError {
                endpoint: settings.endpoint.clone(),
                source,
            })?;
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        // A second start in one process keeps the first tracer (only tests could do it).
        let _ = TRACER.set(provider.tracer(SCOPE));
        tracing::info!(endpoint = %settings.endpoint, service = %settings.service_name, "exporting traces");
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter (at exit).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "traces: the last spans may not have been sent");
            }
        }
    }
}

/// One callback's trace: its span when traces are on, and the trace context the workers get.
#[derive(Debug, Default)]
pub struct CallbackTrace {
    /// The span, inside its context; `None` when traces are off.
    span: Option<Context>,
    /// `traceparent` for the workers.
    traceparent: Option<String>,
    /// `tracestate` for the workers.
    tracestate: Option<String>,
}

impl CallbackTrace {
    /// The trace of a callback for `command` that arrived `since_arrival` ago with the HTTP
    /// headers `request`.
    pub fn start(request: &HeaderMap, command: &'static str, since_arrival: Duration) -> Self {
        let Some(tracer) = TRACER.get() else {
            return Self::passed_on(request);
        };
        let propagator = TraceContextPropagator::new();
        let parent = propagator.extract(&HttpHeaders(request));
        let started = SystemTime::now()
            .checked_sub(since_arrival)
            .unwrap_or_else(SystemTime::now);
        let span = tracer
            .span_builder(command)
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes([KeyValue::new(attribute::COMMAND, command)])
            .start_with_context(tracer, &parent);
        let context = parent.with_span(span);
        let mut carrier = Carrier::default();
        propagator.inject_context(&context, &mut carrier);
        Self {
            span: Some(context),
            traceparent: carrier.traceparent,
            tracestate: carrier.tracestate,
        }
    }

    /// Traces off: OpenIM's trace context, when valid, for the workers.
    fn passed_on(request: &HeaderMap) -> Self {
        if !request.contains_key(headers::TRACEPARENT) {
            return Self::default();
        }
        let propagator = TraceContextPropagator::new();
        let parent = propagator.extract(&HttpHeaders(request));
        let mut carrier = Carrier::default();
        propagator.inject_context(&parent, &mut carrier);
        Self {
            span: None,
            traceparent: carrier.traceparent,
            tracestate: carrier.tracestate,
        }
    }

    /// Whether there is a span to finish (traces are on).
    pub fn has_span(&self) -> bool {
        self.span.is_some()
    }

    /// The `traceparent` header for the workers, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The `tracestate` header for the workers, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// Ends the span (when traces are on) with what came of the callback.
    pub fn finish(&self, answered: &Answered<'_>) {
        let Some(context) = &self.span else {
            return;
        };
        let span = context.span();
        span.set_attribute(KeyValue::new(
            attribute::REQUEST_ID,
            answered.request_id.to_string(),
        ));
        if let Some(operation_id) = answered.operation_id {
            span.set_attribute(KeyValue::new(
                attribute::OPERATION_ID,
                operation_id.to_owned(),
            ));
        }
        span.set_attribute(KeyValue::new(attribute::DECISION_SOURCE, answered.source));
        span.set_attribute(KeyValue::new(
            attribute::BUDGET_MS,
            i64::try_from(answered.budget.as_millis()).unwrap_or(i64::MAX),
        ));
        span.set_attribute(KeyValue::new(
            attribute::WAITED_MS,
            answered.waited.as_secs_f64() * 1000.0,
        ));
        span.end();
    }
}

/// What a callback's span records when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The callback's `X-Request-Id`.
    pub request_id: uuid::Uuid,
    /// OpenIM's operation id.
    pub operation_id: Option<&'a str>,
    /// The `X-Decision-Source` of the answer.
    pub source: &'static str,
    /// The command's budget.
    pub budget: Duration,
    /// From arrival to the answer.
    pub waited: Duration,
}

/// The HTTP request's headers, read by the propagator.
struct HttpHeaders<'a>(&'a HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The two trace headers the propagator writes.
#[derive(Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            headers::TRACEPARENT => self.traceparent = Some(value),
            headers::TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    axum::http::HeaderName::from_static(name),
                    axum::http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    // The tracer is never set in unit tests: these are the "off" paths. The "on" paths run
    // end to end against a real OTLP receiver (tests/tests/e2e/traces.rs).

    #[test]
    fn off_without_a_traceparent_adds_nothing() {
        let trace = CallbackTrace::start(&request(&[]), "command", Duration::ZERO);
        assert_eq!(trace.traceparent(), None);
        assert_eq!(trace.tracestate(), None);
        let only_state = request(&[("tracestate", "congo=t61rcWkgMzE")]);
        let trace = CallbackTrace::start(&only_state, "command", Duration::ZERO);
        assert_eq!(trace.traceparent(), None);
        assert_eq!(trace.tracestate(), None);
    }

    #[test]
    fn off_a_valid_traceparent_is_passed_on() {
        let incoming = request(&[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")]);
        let trace = CallbackTrace::start(&incoming, "command", Duration::ZERO);
        assert_eq!(trace.traceparent(), Some(PARENT));
        assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn off_an_invalid_traceparent_is_dropped() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            let incoming: HeaderMap = [(
                axum::http::HeaderName::from_static("traceparent"),
                axum::http::HeaderValue::from_str(bad).unwrap(),
            )]
            .into_iter()
            .collect();
            let trace = CallbackTrace::start(&incoming, "command", Duration::ZERO);
            assert_eq!(trace.traceparent(), None, "{bad}");
        }
    }
}
