//! Header names, defined once for the gateway, workers and tests.
//!
//! NATS headers are case-sensitive on the wire; HTTP headers are not. The gateway writes the
//! NATS headers exactly as spelled here.

/// A fresh UUID v7 per callback: on the NATS request and on the HTTP answer to OpenIM.
pub const REQUEST_ID: &str = "X-Request-Id";
/// The OpenIM command of the callback, e.g. `callbackBeforeSetGroupMemberInfoCommand`.
pub const CALLBACK_COMMAND: &str = "X-Callback-Command";
/// OpenIM's operation id, from its `operationID` header (Go sends `Operationid`) or the body.
pub const OPERATION_ID: &str = "X-Operation-Id";
/// The moment (Unix milliseconds) after which nobody waits for the answer any more.
pub const DEADLINE_UNIX_MS: &str = "X-Deadline-Unix-Ms";
/// The budget left, in milliseconds, when the request was published.
pub const TIMEOUT_MS: &str = "X-Timeout-Ms";
/// On a probe the gateway sends at start to learn whether any worker serves a command
/// (value `1`): an empty body and an `X-Deadline-Unix-Ms` already past, so a worker that
/// follows the protocol drops it without a reply. Only "no responders" matters to the gateway.
pub const CALLBACK_PROBE: &str = "X-Callback-Probe";
/// On the HTTP answer: who decided (`worker`, `ack` or `fallback:<reason>`).
pub const DECISION_SOURCE: &str = "X-Decision-Source";
/// The header OpenIM sets with `req.Header.Set("operationID", ...)`; Go canonicalises it to
/// `Operationid`, so it must be looked up case-insensitively.
pub const OPENIM_OPERATION_ID: &str = "operationID";
/// The error header of the NATS service API: a reply carrying it means the worker failed.
pub const NATS_SERVICE_ERROR: &str = "Nats-Service-Error";
/// The error code header that goes with [`NATS_SERVICE_ERROR`].
pub const NATS_SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// W3C Trace Context's parent header (`00-<trace id>-<parent span id>-<flags>`): on a NATS
/// request, the gateway's span of the callback when the gateway exports traces, else
/// OpenIM's own header passed on unchanged (and absent when OpenIM sent none). The same
/// lowercase name as over HTTP.
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context's vendor state, passed on with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";
