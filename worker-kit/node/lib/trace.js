"use strict";

// Traces: with OpenTelemetry's standard variables in the worker's environment, a span per
// handled request, exported over OTLP/HTTP (protobuf) as the child of the gateway's span (its
// `traceparent` NATS header).
//
// On when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and
// OTEL_SDK_DISABLED is not "true") and OpenTelemetry's packages are installed beside the kit
// (optional peer dependencies: @opentelemetry/api, @opentelemetry/core,
// @opentelemetry/resources, @opentelemetry/sdk-trace-base,
// @opentelemetry/exporter-trace-otlp-proto). The exporter reads the rest of OpenTelemetry's
// variables itself (OTEL_EXPORTER_OTLP_HEADERS, ...). Off, none of them is loaded.

const { log } = require("./log.js");

const HEADER_TRACEPARENT = "traceparent";
const SCOPE = "openim-gateway-worker";
const PACKAGES = [
  "@opentelemetry/api",
  "@opentelemetry/core",
  "@opentelemetry/resources",
  "@opentelemetry/sdk-trace-base",
  "@opentelemetry/exporter-trace-otlp-proto",
];

let exporting = null; // { api, propagator, provider, tracer } while spans are exported

/** Whether OpenTelemetry's variables ask for traces. */
function tracesWanted(env = process.env) {
  if (String(env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true") return false;
  return ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].some(
    (name) => String(env[name] ?? "").trim() !== "",
  );
}

/**
 * Builds the exporter when the environment asks for one; true when spans are exported.
 * `serviceName` is the spans' service.name unless OTEL_SERVICE_NAME names one.
 */
function startExporting(serviceName, env = process.env) {
  if (exporting) return true;
  if (!tracesWanted(env)) return false;
  let modules;
  try {
    modules = PACKAGES.map((name) => require(name));
  } catch (error) {
    log.error(
      `OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (${error?.message ?? error}): ` +
        `traces are off; npm install ${PACKAGES.join(" ")}`,
    );
    return false;
  }
  const [api, core, resources, base, otlp] = modules;
  try {
    const name = String(env.OTEL_SERVICE_NAME ?? "").trim() || serviceName;
    const provider = new base.BasicTracerProvider({
      resource: resources.resourceFromAttributes({ "service.name": name }),
      spanProcessors: [new base.BatchSpanProcessor(new otlp.OTLPTraceExporter())],
    });
    exporting = {
      api,
      propagator: new core.W3CTraceContextPropagator(),
      provider,
      tracer: provider.getTracer(SCOPE),
    };
  } catch (error) {
    log.error(`traces are off: the OTLP exporter cannot be built from the OTEL_* variables: ${error?.message ?? error}`);
    return false;
  }
  log.info("exporting a span per request (OTEL_EXPORTER_OTLP_ENDPOINT)");
  return true;
}

/** Sends the spans still buffered (at shutdown). */
async function flushTraces() {
  if (exporting) await exporting.provider.forceFlush().catch(() => {});
}

const headerGetter = {
  keys: (headers) => (headers ? [...headers.keys()] : []),
  get: (headers, key) => (headers && headers.has(key) ? headers.get(key) : undefined),
};

/**
 * A span for one request on `subject` (null when spans are not exported), child of the
 * `traceparent` in the message's NATS headers. End it with `endRequestSpan`.
 */
function startRequestSpan(msgHeaders, command, subject) {
  if (!exporting) return null;
  const { api, propagator, tracer } = exporting;
  const parent = propagator.extract(api.ROOT_CONTEXT, msgHeaders, headerGetter);
  const span = tracer.startSpan(
    command,
    {
      kind: api.SpanKind.SERVER,
      attributes: {
        "openim.command": command,
        "messaging.system": "nats",
        "messaging.destination.name": subject,
      },
    },
    parent,
  );
  const requestId = headerGetter.get(msgHeaders, "X-Request-Id");
  if (requestId) span.setAttribute("openim_gateway.request_id", requestId);
  return span;
}

/** Ends a span from `startRequestSpan`, with the service error code when there is one. */
function endRequestSpan(span, serviceErrorCode) {
  if (!span) return;
  if (serviceErrorCode) {
    span.setAttribute("openim_worker.service_error_code", Number(serviceErrorCode));
    span.setStatus({ code: exporting.api.SpanStatusCode.ERROR, message: "service error" });
  }
  span.end();
}

module.exports = {
  HEADER_TRACEPARENT,
  tracesWanted,
  startExporting,
  flushTraces,
  startRequestSpan,
  endRequestSpan,
};
