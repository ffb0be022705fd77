//! HTTP: the router, the handlers, and the one place where every outcome becomes an answer.
//!
//! Every answer on a callback route is a valid OpenIM answer, because OpenIM ignores the
//! HTTP status and parses the body: a 4xx carries the default decision and an `error` field.
//! Failures are classified by who is at fault (see [`Rejection`] for the caller's, the
//! [`DecisionSource`] fallbacks for upstream's, and the panic handler for ours).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::header::HeaderName;
use axum::{
    body::Body as HttpBody,
    extract::{Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use openim_gateway_proto::{
    catalog::{self, CallbackKind, Command},
    headers, subject,
};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    config::{Config, DefaultDecision, WebhookSecret},
    decision::{self, Body, DecisionSource},
    forward::{Forwarder, Outcome},
    metrics::{CallbackLabels, CommandLabels, Metrics},
};

/// OpenIM's header, as `http::HeaderMap` stores names (lowercase; lookups ignore case).
const OPENIM_OPERATION_ID_HEADER: &str = "operationid";
/// tokio's timers fire on the first millisecond tick after their deadline, a busy runtime
/// polls the woken task a little later still, and on a loaded machine the thread itself may
/// wait a few milliseconds for a core: the gateway stops waiting this much before the budget
/// ends, so that the answer has left when the budget ends. 5 ms was not always enough on the
/// benchmark's 2 shared cores (BENCHMARKS.md); 10 ms costs the worker 0.2 % of the default
/// budget.
const TIMER_SLACK: Duration = Duration::from_millis(10);

/// The wait a budget allows: the budget less [`TIMER_SLACK`], or less a tenth of a very
/// small budget.
fn answer_within(budget: Duration) -> Duration {
    budget.saturating_sub(TIMER_SLACK.min(budget / 10))
}

/// The `source` label of an after-callback that could not be published (still acknowledged).
const UNPUBLISHED: &str = "unpublished";
/// Longest command name echoed in an error answer or a log line.
const MAX_ECHOED_NAME: usize = 128;
/// JSON larger than this is parsed (and a reply checked and written) on tokio's blocking pool,
/// so that one large body does not hold up the event loop, and every other callback's timer,
/// for the milliseconds it takes. OpenIM's bodies are a few hundred bytes.
const INLINE_JSON_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Publishes callbacks and routes replies.
    pub forwarder: Forwarder,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Arrival to the moment the gateway stops waiting: the budget
    /// (`GATEWAY_CALLBACK_TIMEOUT_MS - GATEWAY_SAFETY_MARGIN_MS`) less [`TIMER_SLACK`].
    pub answer_within: Duration,
    /// `{GATEWAY_SUBJECT_PREFIX}.{command}` for every catalog command, built once.
    pub subjects: HashMap<&'static str, async_nats::Subject>,
    /// The answer when no valid worker decision arrives.
    pub default_decision: DefaultDecision,
    /// The path segment required before the command, when configured.
    pub webhook_secret: Option<WebhookSecret>,
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// The allow answer, serialised once: every after-callback's acknowledgement.
    pub allow_body: Bytes,
}

impl AppState {
    /// The shared state of a gateway configured by `config`.
    pub fn new(config: &Config, forwarder: Forwarder, metrics: Arc<Metrics>) -> Self {
        Self {
            forwarder,
            metrics,
            answer_within: answer_within(config.budget()),
            subjects: catalog::COMMANDS
                .iter()
                .map(|command| {
                    let name = subject::for_command(&config.subject_prefix, command.name);
                    (command.name, async_nats::Subject::from(name))
                })
                .collect(),
            default_decision: config.default_decision.clone(),
            webhook_secret: config.webhook_secret.clone(),
            max_body_bytes: config.max_body_bytes,
            allow_body: answer_bytes(&decision::default_answer(
                &DefaultDecision::Allow,
                None,
                None,
            )),
        }
    }
}

impl AppState {
    fn subject(&self, command: &Command) -> async_nats::Subject {
        self.subjects.get(command.name).cloned().unwrap_or_else(|| {
            // Every catalog command has an entry (built from the same table); a command
            // from elsewhere is a bug, answered by the panic layer's default.
            unreachable!("no subject for {}", command.name)
        })
    }
}

/// The gateway's routes. Callbacks are the fallback: any path not listed here is a callback
/// path, parsed by hand so that doubled slashes and any base before the command work.
pub fn router(state: Arc<AppState>) -> Router {
    let panic_body = answer_bytes(&decision::default_answer(
        &state.default_decision,
        None,
        None,
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(callback)
        .with_state(state)
        // Outermost: a bug in a handler still gives OpenIM a valid answer (the default).
        .layer(CatchPanicLayer::custom(move |_panic| {
            tracing::error!("a handler panicked: answering the default decision");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                DecisionSource::InternalError,
                None,
                panic_body.clone(),
            )
        }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.forwarder.is_connected() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to nats\n").into_response()
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text format.
async fn metrics(State(state): State<Arc<AppState>>, request_headers: HeaderMap) -> Response {
    state
        .metrics
        .pending_replies
        .set(i64::try_from(state.forwarder.pending_len()).unwrap_or(i64::MAX));
    let wants_openmetrics = request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.encode_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            state.metrics.encode_prometheus_text(),
        )
            .into_response()
    }
}

/// A request refused before anything was asked: the caller's fault.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    /// The `reason` label of `openim_gateway_bad_requests_total`.
    reason: &'static str,
    /// The `error` field of the answer.
    message: String,
    /// The command, when the path named a known one.
    command: Option<&'static Command>,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            command: None,
        }
    }

    fn for_command(mut self, command: &'static Command) -> Self {
        self.command = Some(command);
        self
    }
}

/// A callback that passed every check, with its clock.
struct Callback<'a> {
    command: &'static Command,
    /// The HTTP request line and headers (OpenIM's `operationID` header).
    parts: &'a Parts,
    /// The body, forwarded byte for byte.
    payload: Bytes,
    /// The body, parsed once (shared with the blocking pool when a large reply is checked).
    request: Arc<Body>,
    arrival: Instant,
    /// When the gateway stops waiting: `arrival + answer_within`.
    deadline: Instant,
    request_id: uuid::Uuid,
}

/// The callback handler: validate, then ask the workers (before) or notify them (after).
async fn callback(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let arrival = Instant::now();
    let deadline = arrival + state.answer_within;
    let request_id = uuid::Uuid::now_v7();
    let (parts, body) = request.into_parts();
    match accept(&state, &parts, body, deadline).await {
        Ok((command, payload, request)) => {
            let callback = Callback {
                command,
                parts: &parts,
                payload,
                request,
                arrival,
                deadline,
                request_id,
            };
            match command.kind {
                CallbackKind::Before => decide(&state, callback).await,
                CallbackKind::After => notify(&state, callback).await,
            }
        }
        Err(rejection) => reject(&state, rejection, request_id),
    }
}

/// Checks everything about the request that does not need NATS, in the order a client
/// would want to hear about it: path, method, command, body.
async fn accept(
    state: &AppState,
    parts: &Parts,
    body: HttpBody,
    deadline: Instant,
) -> Result<(&'static Command, Bytes, Arc<Body>), Rejection> {
    let name = command_from_path(parts.uri.path(), state.webhook_secret.as_ref())?;
    if parts.method != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            format!("method {} is not allowed: callbacks are POST", parts.method),
        ));
    }
    let Some(command) = Command::lookup(name) else {
        let shown: String = name.chars().take(MAX_ECHOED_NAME).collect();
        tracing::warn!(command = %shown.escape_debug(), "unknown callback command: a newer OpenIM? answering the default");
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_command",
            format!("unknown callback command {shown:?}"),
        ));
    };
    let payload = read_body(body, state.max_body_bytes, deadline)
        .await
        .map_err(|rejection| rejection.for_command(command))?;
    let parsing = payload.clone();
    let parsed = off_loop(payload.len(), deadline, move || parse_body(&parsing))
        .await
        .unwrap_or_else(|| Err(body_timeout()))
        .map_err(|rejection| rejection.for_command(command))?;
    Ok((command, payload, Arc::new(parsed)))
}

/// The command is the last non-empty path segment; with a secret, the segment before it
/// must equal the secret (compared in constant time). Nothing about the path is logged.
fn command_from_path<'a>(
    path: &'a str,
    secret: Option<&WebhookSecret>,
) -> Result<&'a str, Rejection> {
    let mut segments = path.rsplit('/').filter(|segment| !segment.is_empty());
    let not_found = || {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no callback at this path",
        )
    };
    let Some(command) = segments.next() else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "no_command",
            "no callback command in the path",
        ));
    };
    if let Some(secret) = secret {
        let given = segments.next().unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(not_found());
        }
    }
    Ok(command)
}

async fn read_body(body: HttpBody, limit: usize, deadline: Instant) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body is larger than {limit} bytes"),
        )
    };
    let reading = Limited::new(body, limit).collect();
    match tokio::time::timeout_at(deadline, reading).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "body_read",
            format!("body could not be read: {error}"),
        )),
        Err(_) => Err(body_timeout()),
    }
}

fn body_timeout() -> Rejection {
    Rejection::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "body was not read and checked before the deadline",
    )
}

/// Runs `work` inline when `size` is small, else on the blocking pool, never waiting past
/// `deadline` (then `None`). A panic in `work` goes on as a panic in the caller, where the
/// router's panic layer answers the default decision.
async fn off_loop<T: Send + 'static>(
    size: usize,
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if size <= INLINE_JSON_BYTES {
        return Some(work());
    }
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only at runtime shutdown.
            Err(_) => None,
        },
        Err(_) => None,
    }
}

fn parse_body(payload: &[u8]) -> Result<Body, Rejection> {
    let bad = |reason, message: String| Rejection::new(StatusCode::BAD_REQUEST, reason, message);
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty", "body is empty".to_owned()));
    }
    if std::str::from_utf8(payload).is_err() {
        return Err(bad("not_utf8", "body is not valid UTF-8".to_owned()));
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad("not_object", "body is not a JSON object".to_owned())),
        Err(error) => Err(bad("not_json", format!("body is not JSON: {error}"))),
    }
}

/// The operation id for `X-Operation-Id`: OpenIM's `operationID` header (any case), else the
/// body's `operationID`; empty or unprintable values count as absent.
fn operation_id<'a>(parts: &'a Parts, body: &'a Body) -> Option<&'a str> {
    let usable = |value: &str| !value.is_empty() && !value.chars().any(char::is_control);
    parts
        .headers
        .get(OPENIM_OPERATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| usable(value))
        .or_else(|| {
            body.get(headers::OPENIM_OPERATION_ID)
                .and_then(Value::as_str)
                .filter(|value| usable(value))
        })
}

fn unix_ms(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// The worker protocol's header names, built once: a name given as a `&str` is validated and
/// copied on every insert.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
const CALLBACK_COMMAND_HEADER: HeaderName = HeaderName::from_static(headers::CALLBACK_COMMAND);
const OPERATION_ID_HEADER: HeaderName = HeaderName::from_static(headers::OPERATION_ID);
const DEADLINE_UNIX_MS_HEADER: HeaderName = HeaderName::from_static(headers::DEADLINE_UNIX_MS);
const TIMEOUT_MS_HEADER: HeaderName = HeaderName::from_static(headers::TIMEOUT_MS);

fn nats_headers(callback: &Callback<'_>) -> async_nats::HeaderMap {
    let left = callback.deadline.saturating_duration_since(Instant::now());
    let deadline_unix_ms = unix_ms(SystemTime::now() + left);
    let operation_id = operation_id(callback.parts, &callback.request);
    // Collected from an iterator whose length is known, so the map is sized once.
    [
        (REQUEST_ID_HEADER, callback.request_id.to_string().into()),
        (CALLBACK_COMMAND_HEADER, callback.command.name.into()),
        (DEADLINE_UNIX_MS_HEADER, deadline_unix_ms.to_string().into()),
        (TIMEOUT_MS_HEADER, left.as_millis().to_string().into()),
    ]
    .into_iter()
    .chain(operation_id.map(|id| (OPERATION_ID_HEADER, id.into())))
    .collect()
}

/// Asks a worker and answers with its normalised reply, or the default with the reason.
async fn decide(state: &AppState, callback: Callback<'_>) -> Response {
    let _inflight = InflightGuard::new(&state.metrics);
    let Callback {
        command,
        request_id,
        ..
    } = callback;
    let nats_headers = nats_headers(&callback);
    let outcome = state
        .forwarder
        .ask(
            state.subject(command),
            nats_headers,
            callback.payload,
            callback.deadline,
        )
        .await;
    let labels = CommandLabels {
        command: command.name,
    };
    let (source, worker_answer) = match outcome {
        Outcome::Reply { message, waited } => {
            state
                .metrics
                .worker_duration
                .get_or_create(&labels)
                .observe(waited.as_secs_f64());
            let request = Arc::clone(&callback.request);
            let checked = off_loop(message.payload.len(), callback.deadline, move || {
                checked_reply(command, &request, &message)
            })
            .await;
            match checked {
                None => {
                    tracing::warn!(command = command.name, %request_id, "the reply could not be checked before the deadline: answering the default");
                    (DecisionSource::Timeout, None)
                }
                Some(Ok(answer)) => (DecisionSource::Worker, Some(answer)),
                Some(Err(error)) => {
                    state.metrics.invalid_replies.get_or_create(&labels).inc();
                    tracing::warn!(command = command.name, %request_id, %error, "invalid worker reply: answering the default");
                    (DecisionSource::InvalidReply, None)
                }
            }
        }
        Outcome::Timeout => {
            tracing::warn!(command = command.name, %request_id, "no worker reply before the deadline: answering the default");
            (DecisionSource::Timeout, None)
        }
        Outcome::NoResponders => {
            tracing::warn!(command = command.name, %request_id, "no worker subscribes to this callback: answering the default");
            (DecisionSource::NoResponders, None)
        }
        Outcome::Unavailable => {
            tracing::debug!(command = command.name, %request_id, "nats unavailable: answering the default");
            (DecisionSource::Unavailable, None)
        }
    };
    let answer = worker_answer.unwrap_or_else(|| {
        answer_bytes(&decision::default_answer(
            &state.default_decision,
            Some(command),
            Some(&callback.request),
        ))
    });
    record(state, command, source.as_str(), callback.arrival);
    json_response(StatusCode::OK, source, Some(request_id), answer)
}

/// The worker's reply, checked and normalised, as the body to send OpenIM.
fn checked_reply(
    command: &Command,
    request: &Body,
    message: &async_nats::Message,
) -> Result<Bytes, decision::InvalidReply> {
    if let Some(error) = message
        .headers
        .as_ref()
        .and_then(|map| map.get(headers::NATS_SERVICE_ERROR))
    {
        return Err(decision::InvalidReply::ServiceError(
            error.as_str().to_owned(),
        ));
    }
    decision::normalise_reply(command, request, &message.payload)
        .map(|answer| answer_bytes(&answer))
}

/// Publishes an after-callback and acknowledges at once: OpenIM has two senders per process
/// for these, so a slow answer would stall it.
async fn notify(state: &AppState, callback: Callback<'_>) -> Response {
    let Callback {
        command,
        request_id,
        ..
    } = callback;
    let nats_headers = nats_headers(&callback);
    let published = state
        .forwarder
        .notify(
            state.subject(command),
            nats_headers,
            callback.payload,
            callback.deadline,
        )
        .await;
    let label = if published {
        DecisionSource::Ack.as_str()
    } else {
        tracing::warn!(command = command.name, %request_id, "after-callback not published: nats unavailable");
        UNPUBLISHED
    };
    record(state, command, label, callback.arrival);
    json_response(
        StatusCode::OK,
        DecisionSource::Ack,
        Some(request_id),
        state.allow_body.clone(),
    )
}

/// Counts an answered callback under its `source` label and observes arrival to answer.
fn record(state: &AppState, command: &'static Command, source: &'static str, arrival: Instant) {
    state
        .metrics
        .callbacks
        .get_or_create(&CallbackLabels {
            command: command.name,
            kind: command.kind.as_str(),
            source,
        })
        .inc();
    state
        .metrics
        .callback_duration
        .get_or_create(&CommandLabels {
            command: command.name,
        })
        .observe(arrival.elapsed().as_secs_f64());
}

/// The caller's fault: a 4xx carrying the default decision and what was wrong.
fn reject(state: &AppState, rejection: Rejection, request_id: uuid::Uuid) -> Response {
    state.metrics.bad_request(rejection.reason);
    tracing::info!(status = rejection.status.as_u16(), reason = rejection.reason, %request_id, "bad callback request");
    let mut answer = decision::default_answer(&state.default_decision, rejection.command, None);
    answer.insert("error".to_owned(), Value::String(rejection.message));
    let mut response = json_response(
        rejection.status,
        DecisionSource::BadRequest,
        Some(request_id),
        answer_bytes(&answer),
    );
    if rejection.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

fn answer_bytes(answer: &Body) -> Bytes {
    // A map of JSON values always serialises.
    Bytes::from(serde_json::to_vec(answer).unwrap_or_default())
}

/// The response's own header names, built once (HTTP/1 sends names in lower case anyway; a
/// name given as a mixed-case `&str` is lowered into a new allocation on every insert).
const DECISION_SOURCE_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-decision-source");
const REQUEST_ID_RESPONSE_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-request-id");

fn json_response(
    status: StatusCode,
    source: DecisionSource,
    request_id: Option<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let mut response = (status, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(
        DECISION_SOURCE_HEADER,
        HeaderValue::from_static(source.as_str()),
    );
    if let Some(request_id) = request_id {
        let mut buffer = uuid::Uuid::encode_buffer();
        if let Ok(value) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut buffer))
        {
            response_headers.insert(REQUEST_ID_RESPONSE_HEADER, value);
        }
    }
    response
}

/// Counts a before-callback in flight for as long as it is being decided, even if OpenIM
/// hangs up and the handler is dropped.
struct InflightGuard<'a>(&'a Metrics);

impl<'a> InflightGuard<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.inflight.inc();
        Self(metrics)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_header_names_are_the_protocol_names() {
        for (built, name) in [
            (DECISION_SOURCE_HEADER.as_str(), headers::DECISION_SOURCE),
            (REQUEST_ID_RESPONSE_HEADER.as_str(), headers::REQUEST_ID),
        ] {
            assert!(built.eq_ignore_ascii_case(name), "{built} vs {name}");
        }
    }

    #[test]
    fn the_wait_ends_before_the_budget() {
        assert_eq!(
            answer_within(Duration::from_millis(4750)),
            Duration::from_millis(4740)
        );
        assert_eq!(
            answer_within(Duration::from_millis(20)),
            Duration::from_millis(18)
        );
        assert_eq!(
            answer_within(Duration::from_millis(1)),
            Duration::from_micros(900)
        );
    }

    #[test]
    fn command_is_the_last_non_empty_segment() {
        for (path, expected) in [
            ("/callbackX", "callbackX"),
            ("/callbackExample/callbackX", "callbackX"),
            ("//callbackX", "callbackX"),
            ("/a//b/callbackX/", "callbackX"),
        ] {
            assert_eq!(command_from_path(path, None).unwrap(), expected, "{path}");
        }
        assert_eq!(
            command_from_path("/", None).unwrap_err().reason,
            "no_command"
        );
        assert_eq!(
            command_from_path("", None).unwrap_err().reason,
            "no_command"
        );
    }

    #[test]
    fn secret_must_stand_just_before_the_command() {
        let config = Config::from_lookup(|name| {
            (name == crate::config::GATEWAY_WEBHOOK_SECRET).then(|| "0123456789abcdef-_".to_owned())
        })
        .unwrap();
        let secret = config.webhook_secret.as_ref();
        assert_eq!(
            command_from_path("/0123456789abcdef-_/cb", secret).unwrap(),
            "cb"
        );
        assert_eq!(
            command_from_path("/base/0123456789abcdef-_/cb", secret).unwrap(),
            "cb"
        );
        for bad in [
            "/cb",
            "/wrong/cb",
            "/0123456789abcdef-_x/cb",
            "/0123456789abcdef-_/x/cb",
            "/0123456789abcdef-_",
        ] {
            assert_eq!(
                command_from_path(bad, secret).unwrap_err().status,
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_are_classified() {
        assert!(parse_body(b"{\"a\":1}\n").is_ok());
        for (body, reason) in [
            (&b""[..], "empty"),
            (b" \n", "empty"),
            (b"\xff\xfe", "not_utf8"),
            (b"[1,2]", "not_object"),
            (b"\"s\"", "not_object"),
            (b"{\"a\":", "not_json"),
            (b"{} {}", "not_json"),
        ] {
            assert_eq!(parse_body(body).unwrap_err().reason, reason);
        }
    }
}
