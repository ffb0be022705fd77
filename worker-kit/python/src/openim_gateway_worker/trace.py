"""Traces: the gateway's W3C trace context continued, and with OpenTelemetry's standard
variables in the worker's environment, a span per handled request exported over OTLP/HTTP
as the child of the gateway's span.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
`OTEL_SDK_DISABLED` is not `true`), with the optional extra installed:
`pip install 'openim-gateway-worker[otel]'` (opentelemetry-api, -sdk and
-exporter-otlp-proto-http). OpenTelemetry reads the rest of its variables itself
(`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`...).

While a handler runs, the request's trace context is the current OpenTelemetry context (its
own span when exporting, else the gateway's), so instrumented libraries the handler calls
continue the trace. Without the extra, nothing here is imported and nothing is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Mapping, Optional

log = logging.getLogger("openim_gateway_worker")

HEADER_TRACEPARENT = "traceparent"
SCOPE = "openim-gateway-worker"
EXTRA_HINT = "pip install 'openim-gateway-worker[otel]'"

_provider: Any = None
_tracer: Any = None


def wanted(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether OpenTelemetry's variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in
               ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def start_exporting(service_name: str, env: Optional[Mapping[str, str]] = None) -> bool:
    """Builds the exporter when the environment asks for one; True when spans are exported.
    `service_name` is the spans' `service.name` unless `OTEL_SERVICE_NAME` names one."""
    global _provider, _tracer
    env = os.environ if env is None else env
    if _tracer is not None:
        return True
    if not wanted(env):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        log.error("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
                  "(%s): traces are off; %s", error, EXTRA_HINT)
        return False
    attributes = {} if env.get("OTEL_SERVICE_NAME", "").strip() else {SERVICE_NAME: service_name}
    try:
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    except Exception as error:  # noqa: BLE001 - a bad OTEL_* value: say so, run without
        log.error("traces are off: OpenTelemetry's exporter cannot be built from the OTEL_* "
                  "variables: %s", " ".join(str(error).splitlines()))
        return False
    _provider = provider
    _tracer = provider.get_tracer(SCOPE)
    log.info("exporting a span per request (OTEL_EXPORTER_OTLP_ENDPOINT)")
    return True


def flush() -> None:
    """Sends the spans still buffered (at shutdown)."""
    if _provider is not None:
        _provider.force_flush()


def _propagation() -> Any:
    """OpenTelemetry's context API and W3C propagator, or None without the package."""
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return context, trace, TraceContextTextMapPropagator()


@contextlib.contextmanager
def request_span(headers: Mapping[str, str], command: str, subject: str) -> Iterator[Any]:
    """Around one handled request: a span child of the gateway's when exporting (yielded, else
    None), and the request's trace context made current while the handler runs."""
    if _tracer is None and HEADER_TRACEPARENT not in headers:
        yield None
        return
    api = _propagation()
    if api is None:
        yield None
        return
    context, trace, propagator = api
    parent = propagator.extract(carrier=dict(headers))
    if _tracer is None:
        token = context.attach(parent)
        try:
            yield None
        finally:
            context.detach(token)
        return
    with _tracer.start_as_current_span(
            command, context=parent, kind=trace.SpanKind.SERVER,
            attributes={"openim.command": command, "messaging.system": "nats",
                        "messaging.destination.name": subject}) as span:
        request_id = headers.get("X-Request-Id")
        if request_id:
            span.set_attribute("openim_gateway.request_id", request_id)
        yield span


def current_traceparent() -> Optional[str]:
    """The `traceparent` of the current context, for a handler that sends something on by
    hand (None without one, or without OpenTelemetry installed)."""
    api = _propagation()
    if api is None:
        return None
    carrier: dict = {}
    api[2].inject(carrier)
    return carrier.get(HEADER_TRACEPARENT)
